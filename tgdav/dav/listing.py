"""PROPFIND of a collection (Depth 0 or 1) rendered straight from the catalog, streamed in chunks.

WsgiDAV builds a resource object per member, asks each for every property through several layers,
builds an element tree of the whole answer and serialises it at once: about 135 us of CPU and a few
KiB of memory per entry (6.8 s and 450 MiB for a channel of 50 000 files). Here one template per
kind of member is filled from the FileEntry or folder and the answer is sent in ~64 KiB chunks as
it is made: a few us per entry, memory bounded by the chunk.

What this renders is exactly what WsgiDAV would answer: the same live properties (allprop, or a
<prop> list of them), hrefs quoted the same way, the same dates; lockdiscovery (empty) and
supportedlock when the share has a lock manager. Everything else goes to WsgiDAV unchanged:
a member or an ancestor with a lock or dead properties (their values live in WsgiDAV's managers),
a request for properties not rendered here (propname, unknown or dead names), an If header, a
file, a path that is not found, a chunked or unparsable body. Text from Telegram goes through
tgdav.text.safe before it is escaped, so any name yields valid XML.
"""

from __future__ import annotations

import io
import time
from typing import Callable, Iterable, Iterator
from urllib.parse import quote
from xml.sax.saxutils import escape

from wsgidav import util
from wsgidav.dav_error import DAVError
from wsgidav.prop_man.property_manager import ShelvePropertyManager

from tgdav.dav.policy import BadPath, request_names
from tgdav.dav.provider import content_type
from tgdav.model import FileEntry
from tgdav.text import safe

CHUNK = 64 * 1024
_HREF_SAFE = "/" + "!*'()," + "$-_|."          # WsgiDAV's get_href: Nautilus chokes on %28
_LIVE = ("resourcetype", "creationdate", "getcontentlength", "getcontenttype", "getlastmodified",
         "displayname", "getetag")
_LOCKS = ("lockdiscovery", "supportedlock")
_SUPPORTEDLOCK = ("<D:supportedlock><D:lockentry><D:lockscope><D:exclusive /></D:lockscope>"
                  "<D:locktype><D:write /></D:locktype></D:lockentry><D:lockentry><D:lockscope>"
                  "<D:shared /></D:lockscope><D:locktype><D:write /></D:locktype></D:lockentry>"
                  "</D:supportedlock>")
_OK = "<D:status>HTTP/1.1 200 OK</D:status>"
_MISSING = "<D:status>HTTP/1.1 404 Not Found</D:status>"
HEAD = '<?xml version="1.0" encoding="utf-8" ?>\n<D:multistatus xmlns:D="DAV:">'
TAIL = "</D:multistatus>"


def xml_text(text: str) -> str:
    """Telegram text as XML character data: made safe (tgdav.text), then escaped."""
    return escape(safe(text))


def href(path: str) -> str:
    return xml_text(quote(path, safe=_HREF_SAFE))


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc1123(ts: float) -> str:
    """email.utils.formatdate(ts, usegmt=True) (what WsgiDAV writes), without its detours."""
    t = time.gmtime(ts)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def rfc3339(ts: float) -> str:
    t = time.gmtime(ts)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"


class DeadProperties(ShelvePropertyManager):
    """WsgiDAV's shelve property manager that can tell whether any URL below a prefix has dead
    properties (one pass over its keys, not one look-up per member)."""

    def any_below(self, url: str) -> bool:
        self._lock.acquire_read()
        try:
            if not self._loaded:
                self._lazy_open()
            return any(self._dict[k] for k in self._dict.keys() if k.startswith(url))
        finally:
            self._lock.release()


class _Names(tuple):
    """Property names to render; allprop: a member leaves out what it lacks (a <prop> list gets
    404 Not Found for it)."""

    def __new__(cls, names, allprop: bool):
        self = super().__new__(cls, names)
        self.allprop = allprop
        return self


class FastPropfind:
    """WSGI app in front of WsgiDAV: answers the PROPFINDs it can (see the module docstring),
    passes everything else to `app`. `provider` is the share's CatalogProvider, already mounted in
    WsgiDAV (its lock and property managers set)."""

    def __init__(self, app: Callable, provider) -> None:
        self.app, self.provider = app, provider

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "PROPFIND":
            return self.app(environ, start_response)
        try:
            plan = self._plan(environ)
        except (DAVError, BadPath, ValueError):
            plan = None
        if plan is None:
            return self.app(environ, start_response)
        start_response("207 Multi-Status", [("Content-Type", "application/xml; charset=utf-8"),
                                             ("Date", rfc1123(time.time()))])
        return _chunks(plan)

    # --- what to render, or None: WsgiDAV answers ----------------------------------------------
    def _plan(self, environ: dict) -> Iterator[str] | None:
        depth = environ.get("HTTP_DEPTH")
        if depth not in ("0", "1") or any(h in environ for h in ("HTTP_IF", "HTTP_IF_MATCH",
                                                                 "HTTP_IF_NONE_MATCH")):
            return None
        names = self._requested(environ)
        if names is None:
            return None
        path = "/" + "/".join(request_names(environ))
        environ["wsgidav.provider"] = self.provider          # what WsgiDAV gives its resources
        res = self.provider.get_resource_inst(path, environ)
        if res is None or not res.is_collection:
            return None
        if self._has_locks_or_dead_props(res):
            return None
        # the members now, before the 207 is started: a catalog error (Telegram unreachable, a
        # flood wait) still becomes its own answer (503 with Retry-After), not a cut body
        folders, files = (list(_subfolders(res)), _files(res)) if depth == "1" else ([], ())
        return _render(res, names, folders, files)

    def _requested(self, environ: dict) -> _Names | None:
        """The DAV: property names asked for (allprop: all live ones), or None when WsgiDAV must
        answer. The body is read here and put back for WsgiDAV."""
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return None
        length = environ.get("CONTENT_LENGTH", "").strip()
        body = environ["wsgi.input"].read(int(length)) if length and int(length) > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        locks = self.provider.lock_manager is not None
        every = _LIVE + (_LOCKS if locks else ())
        if not body.strip():
            return _Names(every, True)
        root = util.parse_xml_body({"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)},
                                   allow_empty=True)
        if root is None or root.tag != "{DAV:}propfind" or len(root) != 1:
            return None
        mode = root[0]
        if mode.tag == "{DAV:}allprop" and len(mode) == 0:
            return _Names(every, True)
        if mode.tag != "{DAV:}prop":
            return None
        names = tuple(child.tag.removeprefix("{DAV:}") for child in mode)
        if not names or not all(("{DAV:}" + n) == child.tag and n in every for n, child in zip(names, mode)):
            return None
        return _Names(names, False)

    def _has_locks_or_dead_props(self, res) -> bool:
        url = res.get_ref_url()
        lm, pm = self.provider.lock_manager, self.provider.prop_manager
        if lm is not None and (lm.get_indirect_url_lock_list(url) or lm.storage.get_lock_list(
                url, include_root=False, include_children=True, token_only=True)):
            return True
        if pm is not None:
            return not isinstance(pm, DeadProperties) or pm.any_below(url)
        return False


def _chunks(parts: Iterator[str]) -> Iterator[bytes]:
    buf, size = [], 0
    for part in parts:
        buf.append(part)
        size += len(part)
        if size >= CHUNK:
            yield "".join(buf).encode("utf-8")
            buf, size = [], 0
    if buf:
        yield "".join(buf).encode("utf-8")


# --- rendering ------------------------------------------------------------------------------------
def _render(res, names: _Names, folders: list[tuple[str, float | None]], files: Iterable[FileEntry]
            ) -> Iterator[str]:
    yield HEAD
    base = res.path.rstrip("/") + "/"
    yield _folder(base, res.get_display_name(), res.get_last_modified(), names)
    for name, modified in folders:
        yield _folder(f"{base}{name}/", name, modified, names)
    if names.allprop:       # the common case, one template per file
        tail = "<D:lockdiscovery />" + _SUPPORTEDLOCK if "supportedlock" in names else ""
        qbase = quote(base, safe=_HREF_SAFE)
        for entry in files:
            yield _file_allprop(qbase, entry, tail)
    else:
        for entry in files:
            yield _file(base + entry.name, entry, names)
    yield TAIL


def _subfolders(res) -> Iterator[tuple[str, float | None]]:
    """(name, last modified) of each collection in `res`: channels at the root, folders inside."""
    if not hasattr(res, "node"):                       # the root: one folder per channel
        for folder in res.catalog.folders():
            yield folder.name, folder.modified
        return
    for name, d in res.node.dirs.items():
        yield name, (getattr(d, "modified", 0) or res.folder.modified)


def _files(res) -> Iterable[FileEntry]:
    return res.node.files.values() if hasattr(res, "node") else ()


def _propstats(found: list[str], missing: list[str]) -> str:
    out = ""
    if missing:
        out += "<D:propstat><D:prop>" + "".join(f"<D:{n} />" for n in missing) + "</D:prop>" + _MISSING \
               + "</D:propstat>"
    if found:
        out += "<D:propstat><D:prop>" + "".join(found) + "</D:prop>" + _OK + "</D:propstat>"
    return out


def _folder(path: str, display: str, modified: float | None, names: _Names) -> str:
    found, missing = [], []
    for n in names:
        if n == "resourcetype":
            found.append("<D:resourcetype><D:collection /></D:resourcetype>")
        elif n == "displayname":
            found.append(f"<D:displayname>{xml_text(display)}</D:displayname>" if display
                         else "<D:displayname />")
        elif n == "getlastmodified" and modified is not None:
            found.append(f"<D:getlastmodified>{rfc1123(modified)}</D:getlastmodified>")
        elif n == "lockdiscovery":
            found.append("<D:lockdiscovery />")
        elif n == "supportedlock":
            found.append(_SUPPORTEDLOCK)
        elif not names.allprop:
            missing.append(n)
    return f"<D:response><D:href>{href(path)}</D:href>{_propstats(found, missing)}</D:response>"


def _file_allprop(qbase: str, e: FileEntry, tail: str) -> str:
    """_file(...) for allprop (same output), in one template."""
    return (f"<D:response><D:href>{qbase}{quote(e.name, safe=_HREF_SAFE)}</D:href><D:propstat><D:prop>"
            f"<D:resourcetype /><D:creationdate>{rfc3339(e.created)}</D:creationdate>"
            f"<D:getcontentlength>{e.size}</D:getcontentlength>"
            f"<D:getcontenttype>{content_type(e)}</D:getcontenttype>"
            f"<D:getlastmodified>{rfc1123(e.modified)}</D:getlastmodified>"
            f"<D:displayname>{xml_text(e.name)}</D:displayname>"
            f"<D:getetag>&quot;{escape(e.etag.strip(chr(34)))}&quot;</D:getetag>{tail}</D:prop>{_OK}"
            f"</D:propstat></D:response>")


def _file(path: str, e: FileEntry, names: _Names) -> str:
    found = []
    for n in names:
        if n == "resourcetype":
            found.append("<D:resourcetype />")
        elif n == "creationdate":
            found.append(f"<D:creationdate>{rfc3339(e.created)}</D:creationdate>")
        elif n == "getcontentlength":
            found.append(f"<D:getcontentlength>{e.size}</D:getcontentlength>")
        elif n == "getcontenttype":
            found.append(f"<D:getcontenttype>{content_type(e)}</D:getcontenttype>")   # a checked type/subtype
        elif n == "getlastmodified":
            found.append(f"<D:getlastmodified>{rfc1123(e.modified)}</D:getlastmodified>")
        elif n == "displayname":
            found.append(f"<D:displayname>{xml_text(e.name)}</D:displayname>")
        elif n == "getetag":
            found.append(f'<D:getetag>{xml_text(chr(34) + e.etag.strip(chr(34)) + chr(34))}</D:getetag>')
        elif n == "lockdiscovery":
            found.append("<D:lockdiscovery />")
        elif n == "supportedlock":
            found.append(_SUPPORTEDLOCK)
    return f"<D:response><D:href>{href(path)}</D:href>{_propstats(found, [])}</D:response>"
