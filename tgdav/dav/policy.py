"""Request policy in front of WsgiDAV: what a read-only Telegram share answers before any lookup, and
the one table that turns errors into HTTP.

- Only GET, HEAD, OPTIONS and PROPFIND exist; every other method gets 405 with an Allow header
  (WsgiDAV's read-only provider forgets Allow).
- PROPFIND needs Depth 0 or 1: no Depth means infinity (RFC 4918), which WsgiDAV would walk; we
  answer 403 with DAV:propfind-finite-depth, as the RFC asks.
- Paths are checked once: bad UTF-8, control characters and dot segments get 400; Finder/Explorer
  probe names (._*, .DS_Store, desktop.ini, ...) get 404 without asking the catalog, so probes never
  reach Telegram. Any depth goes on: channels hold folders (tgdav/telegram/tree.py).
- With writes on (`writable`), every WebDAV method is allowed, OPTIONS says `DAV: 1, 2`, and probe
  names go on to the provider, which keeps desktop clients' own files locally.
- ErrorMiddleware maps whatever escapes before the body starts (tgdav errors, WsgiDAV's DAVError,
  bugs) to a response; the client never sees a traceback, and error bodies say what is wrong in
  words (never WsgiDAV's page with its version, a timestamp and exception reprs). What WsgiDAV
  answers itself gets the same words: the provider raises Refusal (a DAVError that renders itself
  with error_reply), and DavBodies replaces WsgiDAV's status pages (its 201 pages included) and
  describes each failure of a 207 in words.
- ERRORS is the one table from tgdav's typed errors to HTTP (status, words, Retry-After): error_reply
  and dav_error (what the provider raises inside WsgiDAV) both read it. A 503 carries Retry-After
  wherever it comes from; a 207 holding one carries it too, and a 207 whose one failure is the
  request's own resource is answered plainly with that status.
- A chunked PROPFIND body is buffered (bounded by the server's body limit) so WsgiDAV parses it. After the body started the exception
  propagates and cheroot closes the connection: the client sees a short body, the server lives on.
"""

from __future__ import annotations

import contextvars
import io
import logging
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable, Iterable, Iterator
from urllib.parse import unquote
from xml.etree import ElementTree as ET

from wsgidav.dav_error import ERROR_RESPONSES, DAVError, get_http_status_string

from tgdav import text
from tgdav.model import Catalog, Target
from tgdav.errors import (Conflict, ConfigError, DestinationExists, Forbidden, NotFound, RetryLater,
                          TgdavError, UpstreamUnavailable)

OUTAGE_RETRY_AFTER = 15    # seconds: what a 503 for an unreachable Telegram asks clients to wait

log = logging.getLogger("tgdav.dav")

READ_METHODS = ("OPTIONS", "GET", "HEAD", "PROPFIND")
ALLOW = ", ".join(READ_METHODS)
# writes on (tgdav/dav/provider.py): class 2, any depth of folders, desktop files kept locally
WRITE_METHODS = READ_METHODS + ("PUT", "DELETE", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "PROPPATCH")
WRITE_ALLOW = ", ".join(WRITE_METHODS)
MAX_XML_BODY = 1024 * 1024   # with writes on cheroot takes any body size; only PUT may be big

PROBE_NAMES = frozenset(name.lower() for name in (
    ".DS_Store", ".localized", ".Spotlight-V100", ".metadata_never_index",
    ".metadata_never_index_unless_rootfs", ".metadata_direct_scope_only", ".Trashes", ".TemporaryItems",
    ".fseventsd", ".VolumeIcon.icns", ".hidden", ".ql_disablethumbnails", ".ql_disablecache",
    ".com.apple.timemachine.donotpresent", ".apdisk", "Icon\r", "desktop.ini", "Thumbs.db",
    "ehthumbs.db", "autorun.inf", "folder.jpg", "folder.gif", "AlbumArtSmall.jpg",
    "System Volume Information", "$RECYCLE.BIN", "RECYCLER",
))

FINITE_DEPTH_BODY = (b'<?xml version="1.0" encoding="utf-8"?>\n'
                     b'<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n')

StartResponse = Callable[..., object]


class BadPath(ValueError):
    """The request path cannot name anything we serve (the message says why)."""


class RequestBodyError(ValueError):
    """The request body cannot be read as sent (malformed chunked coding); the message says why."""


class RequestBodyTooLarge(RequestBodyError):
    """The request body is larger than the server accepts."""


# What an error status means, in words for the person reading the body. WsgiDAV's own pages show its
# version, a timestamp and Python exception reprs; ours say what is wrong and nothing internal.
STATUS_WORDS = {
    400: "The request is malformed",
    401: "Authentication required",
    403: "This request is not allowed",
    404: "Not found",
    405: "This method is not allowed here",
    406: "No acceptable representation",
    409: "The request conflicts with the current state of the resource",
    411: "The request needs a Content-Length",
    412: "A precondition of the request (If-Match, If-Unmodified-Since, ...) does not hold",
    413: "The request body is too large",
    414: "The request URI is too long",
    415: "The request body has a media type this server does not accept",
    416: "The requested range is not satisfiable",
    422: "The request body cannot be processed",
    423: "The resource is locked",
    424: "The request failed because a related request failed",
    501: "This server does not implement that",
    502: "Bad gateway",
    507: "Insufficient storage",
}
# WsgiDAV messages (DAVError.context_info) that are plain words about the request, and ours for them
_DAV_MESSAGES = {
    "Invalid XML format.": "The request body is not well-formed XML, or declares XML entities (refused)",
    "Body must not be empty.": "The request body must not be empty",
    "Negative content-length.": "Content-Length must be a number of bytes",
    "content-length is not numeric.": "Content-Length must be a number of bytes",
}


def decode_path(environ: dict) -> list[str]:
    """PATH_INFO as the list of its (URL-decoded, UTF-8) names; raises BadPath for hostile paths."""
    raw = environ.get("PATH_INFO", "")
    try:
        path = raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise BadPath("the path is not valid UTF-8") from None
    names = [name for name in path.split("/") if name]
    for name in names:
        if name in (".", ".."):
            raise BadPath("dot segments are not allowed in paths")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise BadPath("control characters are not allowed in paths")
    return names


PATH_KEY = "tgdav.path"          # environ: (PATH_INFO, its names) once decoded
TARGET_KEY = "tgdav.target"      # environ: the model.Target of the request path, once looked up


def request_names(environ: dict) -> list[str]:
    """decode_path(environ), decoded once per request and kept in the environ for the layers below
    (again only if PATH_INFO changed); raises BadPath for hostile paths."""
    raw = environ.get("PATH_INFO", "")
    kept = environ.get(PATH_KEY)
    if kept is None or kept[0] != raw:
        kept = environ[PATH_KEY] = (raw, tuple(decode_path(environ)))
    return list(kept[1])


def target(environ: dict, catalog: Catalog) -> Target:
    """The request path's Target in `catalog`, one per request: Face, StreamApp and the provider
    share its look-ups (the channel, then the folder or file), so each is asked of the catalog once."""
    names = request_names(environ)
    kept = environ.get(TARGET_KEY)
    if kept is None or kept.catalog is not catalog or list(kept.names) != names:
        kept = environ[TARGET_KEY] = Target(catalog, names)
    return kept


def _drop_dot_segments(environ: dict) -> None:
    """"/a/./b" is "/a/b" (RFC 3986 5.2.4); rclone sends "./" before a name holding ':' so that it
    is not read as a URL scheme. ".." stays refused (decode_path)."""
    path = environ.get("PATH_INFO", "")
    if "/./" in path or path.endswith("/."):
        kept = [name for name in path.split("/") if name != "."]
        environ["PATH_INFO"] = "/".join(kept) + ("/" if path.endswith("/.") else "")


def is_probe(name: str) -> bool:
    """A name desktop clients ask for on every folder; Telegram never has it."""
    return name.startswith("._") or name.lower() in PROBE_NAMES


@dataclass
class Reply:
    """A complete small response."""
    status: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def send(self, environ: dict, start_response: StartResponse) -> list[bytes]:
        headers = self.headers + [("Content-Length", str(len(self.body)))]
        start_response(self.status, headers)
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [self.body]


def text_reply(status: str, message: str, headers: list[tuple[str, str]] | None = None) -> Reply:
    """A body in words (which may quote names and titles: tgdav.text.safe keeps them showable)."""
    return Reply(status, [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]
                 + (headers or []), (text.safe(message.rstrip("\n")) + "\n").encode("utf-8", "replace"))


@dataclass(frozen=True)
class Answer:
    """How one kind of error is answered: the status, the words (from the error), whether the
    client is told when to come back (Retry-After, in seconds) and whether the connection closes."""
    status: int
    words: Callable[[BaseException], str] = str
    retry_after: Callable[[BaseException], int] | None = None
    close: bool = False


# THE table from tgdav's typed errors (tgdav/errors.py) and the request errors of this module to
# HTTP: the first row whose type the error is an instance of answers it. error_reply() (an answer
# tgdav sends itself) and dav_error() (an error raised inside WsgiDAV's handlers) both read it.
# ConfigError is not here: a configuration error during a request is a bug (500, logged).
ERRORS: tuple[tuple[type, Answer], ...] = (
    (Forbidden, Answer(403)),
    (NotFound, Answer(404, lambda e: str(e) or "Not found")),
    (Conflict, Answer(409)),
    (DestinationExists, Answer(412)),
    (RetryLater, Answer(503, retry_after=lambda e: e.seconds)),     # FLOOD_WAIT, Redis away, ...
    (UpstreamUnavailable, Answer(503, lambda e: f"Telegram is unavailable: {e}",   # a DC down
                                 retry_after=lambda e: OUTAGE_RETRY_AFTER)),
    (BadPath, Answer(400, lambda e: f"Bad path: {e}")),
    (RequestBodyTooLarge, Answer(413, lambda e: f"Bad request body: {e}", close=True)),
    (RequestBodyError, Answer(400, lambda e: f"Bad request body: {e}", close=True)),
    (TgdavError, Answer(400)),                                      # bad input, said in words
)


def answer_for(exc: BaseException) -> Answer | None:
    """The row of ERRORS that answers `exc`; None for anything else (a bug: 500)."""
    if isinstance(exc, ConfigError):
        return None
    return next((answer for kind, answer in ERRORS if isinstance(exc, kind)), None)


def _answer_headers(answer: Answer, exc: BaseException) -> list[tuple[str, str]]:
    headers = [("Retry-After", str(answer.retry_after(exc)))] if answer.retry_after else []
    return headers + ([("Connection", "close")] if answer.close else [])


def _status_line(code: int) -> str:
    return "413 Request Entity Too Large" if code == 413 else f"{code} {HTTPStatus(code).phrase}"


def error_reply(exc: BaseException) -> Reply:
    """The answer to an error, from ERRORS. Unknown errors are logged with their traceback."""
    if isinstance(exc, DAVError) and answer_for(exc.src_exception) is not None:
        return error_reply(exc.src_exception)      # raised inside WsgiDAV's handlers (dav_error)
    answer = answer_for(exc)
    if answer is not None:
        return text_reply(_status_line(answer.status), answer.words(exc), _answer_headers(answer, exc))
    if isinstance(exc, DAVError):
        return _dav_error_reply(exc)
    log.error("internal error", exc_info=exc)
    return text_reply("500 Internal Server Error", "Internal server error (details are in the server log)")


def dav_error(exc: BaseException) -> DAVError:
    """An error as a DAVError for WsgiDAV's handlers (which would make anything else a 500): the
    status of its row in ERRORS, its words and headers (Retry-After) when WsgiDAV answers with it
    itself, and the error kept (src_exception) so that error_reply answers it the same way."""
    if isinstance(exc, DAVError):
        return exc
    answer = answer_for(exc)
    if answer is None:
        return Refusal(500, src_exception=exc)
    return Refusal(answer.status, answer.words(exc), src_exception=exc)


# Retry-After of each Refusal made while DavBodies waits for WsgiDAV's answer: a 207 holding a 503
# tells the client when to come back too (WsgiDAV's multistatus has no place for it per member).
_waits: contextvars.ContextVar[list | None] = contextvars.ContextVar("tgdav_waits", default=None)


class Refusal(DAVError):
    """A DAVError raised by tgdav's provider: when WsgiDAV answers with it itself (DELETE, COPY and
    MOVE collect errors and print them), the body is still tgdav's words, never WsgiDAV's page with
    its version, a timestamp and the exception's repr (get_response_page), and a 207 multistatus
    describes it in the same words (get_user_info)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        answer = answer_for(self.src_exception) if self.src_exception is not None else None
        if answer is not None:      # its headers (Retry-After, Connection: close) go out too
            given = list(self.add_headers or [])
            names = {k.lower() for k, _ in given}
            self.add_headers = given + [(k, v) for k, v in _answer_headers(answer, self.src_exception)
                                        if k.lower() not in names]
        wait = next((v for k, v in self.add_headers or () if k.lower() == "retry-after"), None)
        if wait is not None and (waits := _waits.get()) is not None:
            waits.append(int(wait))

    def reply(self) -> Reply:
        return error_reply(self)

    def get_response_page(self):
        r = self.reply()
        return dict(r.headers).get("Content-Type", "text/plain; charset=utf-8"), r.body

    def get_user_info(self) -> str:
        return self.reply().body.decode("utf-8", "replace").strip()


def _dav_error_reply(exc: DAVError) -> Reply:
    """WsgiDAV's DAVError in words: the status, what it means, and the DAV precondition if any."""
    status = get_http_status_string(exc)
    headers = list(exc.add_headers or [])
    if exc.value in (204, 304) or exc.value < 400:
        return Reply(status, headers)
    if exc.err_condition is not None:
        return Reply(status, [("Content-Type", "application/xml; charset=utf-8")] + headers,
                     exc.err_condition.as_string().encode() + b"\n")
    if exc.value >= 500 and exc.value not in STATUS_WORDS:
        log.error("internal error (WebDAV layer): %s", exc, exc_info=exc.src_exception)
        return text_reply("500 Internal Server Error", "Internal server error (details are in the server log)")
    context = str(exc.context_info or "").strip()
    words = _DAV_MESSAGES.get(context) or (context if isinstance(exc, Refusal) else "") or STATUS_WORDS.get(
        exc.value, status.split(" ", 1)[-1])
    return text_reply(status, words, headers)


def _buffer_chunked_body(environ: dict, limit: int | None = None) -> bool:
    """A chunked request body (no Content-Length) as a plain one for WsgiDAV, which reads an XML body
    only when CONTENT_LENGTH says how long it is (and would take a chunked PROPFIND for allprop).
    cheroot's ChunkedRFile bounds it by max_request_body_size; `limit` bounds it here too (writes
    on: the server takes PUT bodies of any size). False when the body is longer than `limit`."""
    if environ.get("CONTENT_LENGTH", "").strip() or not environ.get("wsgi.input_terminated"):
        return True
    body = environ["wsgi.input"].read() if limit is None else environ["wsgi.input"].read(limit + 1)
    if limit is not None and len(body) > limit:
        return False
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return True


def _depth_refusal(environ: dict) -> "Reply | None":
    """PROPFIND's Depth: infinity is refused (403 propfind-finite-depth, RFC 4918 9.1), anything but
    0 or 1 is a bad request; None when the depth is fine."""
    depth = environ.get("HTTP_DEPTH", "infinity").strip().lower()
    if depth == "infinity":
        return Reply("403 Forbidden", [("Content-Type", "application/xml; charset=utf-8")], FINITE_DEPTH_BODY)
    if depth not in ("0", "1"):
        return text_reply("400 Bad Request", "Depth must be 0 or 1")
    return None


def _ignore_body(environ: dict) -> None:
    """A body on GET/HEAD/OPTIONS means nothing (RFC 9110): hide it from WsgiDAV, whose directory
    browser fails on one. The server drains it after the response (or closes the connection)."""
    if environ.get("CONTENT_LENGTH", "").strip() not in ("", "0") or environ.get("wsgi.input_terminated"):
        environ["CONTENT_LENGTH"] = "0"
        environ["wsgi.input"] = io.BytesIO()
        environ["wsgi.input_terminated"] = False


class PolicyMiddleware:
    """Answers what needs no lookup (methods, OPTIONS, Depth, hostile and probe paths)."""

    def __init__(self, app: Callable, writable: bool = False) -> None:
        self.app = app
        self.writable = writable

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        _drop_dot_segments(environ)
        if self.writable:
            return self._writable(environ, start_response)
        method = environ.get("REQUEST_METHOD", "")
        if method not in READ_METHODS:
            return text_reply("405 Method Not Allowed", "This share is read-only",
                              [("Allow", ALLOW)]).send(environ, start_response)
        if method == "OPTIONS":
            return Reply("200 OK", [("DAV", "1"), ("Allow", ALLOW), ("MS-Author-Via", "DAV"),
                                    ("Accept-Ranges", "bytes")]).send(environ, start_response)
        if method in ("GET", "HEAD", "OPTIONS"):
            _ignore_body(environ)
        if method == "PROPFIND":
            if (refusal := _depth_refusal(environ)) is not None:
                return refusal.send(environ, start_response)
            _buffer_chunked_body(environ)
        try:
            names = request_names(environ)
        except BadPath as exc:
            return error_reply(exc).send(environ, start_response)
        if any(is_probe(name) for name in names):
            return text_reply("404 Not Found", "Not found").send(environ, start_response)
        return self.app(environ, start_response)

    def _writable(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        """Writes on: every WebDAV method; probe names go on to the provider, which keeps desktop
        clients' own files locally (never in Telegram) and answers the rest 404 from the catalog."""
        method = environ.get("REQUEST_METHOD", "")
        if method not in WRITE_METHODS:
            return text_reply("405 Method Not Allowed", f"{method} is not supported",
                              [("Allow", WRITE_ALLOW)]).send(environ, start_response)
        if method == "OPTIONS":
            return Reply("200 OK", [("DAV", "1, 2"), ("Allow", WRITE_ALLOW), ("MS-Author-Via", "DAV"),
                                    ("Accept-Ranges", "bytes")]).send(environ, start_response)
        if method == "PROPFIND" and (refusal := _depth_refusal(environ)) is not None:
            return refusal.send(environ, start_response)
        if method in ("GET", "HEAD", "OPTIONS"):
            _ignore_body(environ)
        elif method != "PUT":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > MAX_XML_BODY or not _buffer_chunked_body(environ, MAX_XML_BODY):
                return text_reply("413 Payload Too Large", f"{method} bodies are limited to "
                                  f"{MAX_XML_BODY} bytes", [("Connection", "close")]).send(environ, start_response)
        try:
            request_names(environ)
        except BadPath as exc:
            return error_reply(exc).send(environ, start_response)
        return self.app(environ, start_response)


_STATUS_PREFIX = re.compile(r"(\d{3}) ([^:]*): (.*)")
SUCCESS_WORDS = {200: "Done", 201: "Created", 204: ""}
_DESCRIPTION = "{DAV:}responsedescription"


class DavBodies:
    """Wraps WsgiDAV (inside StreamApp): whatever body WsgiDAV composes itself is replaced by
    tgdav's words in the one style of error_reply. Its HTML status pages (201 for PUT, MKCOL, COPY,
    MOVE; errors it raises itself) become text/plain words; in a 207 answer to DELETE, COPY, MOVE
    or PROPPATCH every response says in words what went wrong (no exception reprs). tgdav's own
    refusals (Refusal) already carry their words."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        started: list = []

        def hold(status: str, headers: list, exc_info=None):
            started[:] = [status, headers]
            return lambda data: None     # WsgiDAV never uses write()

        names = request_names(environ)       # now: WsgiDAV re-encodes PATH_INFO as it goes
        waits = _waits.set([])               # the Retry-After of every Refusal made meanwhile
        try:
            body = self.app(environ, hold)   # WsgiDAV's body is a generator: it starts when pulled
            chunks = iter(body)
            try:
                first = next(chunks, None)
            except BaseException:
                if hasattr(body, "close"):
                    body.close()
                raise
        finally:
            wait = max(_waits.get() or [OUTAGE_RETRY_AFTER])
            _waits.reset(waits)
        status, headers = started
        kind = next((v for k, v in headers if k.lower() == "content-type"), "")
        code = int(status[:3])
        method = environ.get("REQUEST_METHOD", "")
        own = kind.startswith("text/html") or (code == 207 and method != "PROPFIND")
        if not own:
            start_response(status, headers)
            return _Resumed(first, chunks, body)
        try:
            data = (first or b"") + b"".join(chunks)    # a status page or a small multistatus
        finally:
            if hasattr(body, "close"):
                body.close()
        if code != 207:
            words = SUCCESS_WORDS.get(code, "Done") if code < 400 else STATUS_WORDS.get(
                code, status.split(" ", 1)[-1])
            keep = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-length")]
            return text_reply(status, words, keep).send(environ, start_response)
        data, failures = _described(data)
        own = [(code, words) for href, code, words in failures if _names(href) == names]
        retry = [("Retry-After", str(wait))] if any(code == 503 for _, code, _ in failures) else []
        if own and len(failures) == 1:
            (code, words), = own      # the request's own resource failed, nothing else: a plain answer
            return text_reply(_status_line(code), words, retry).send(environ, start_response)
        start_response(status, [(k, str(len(data)) if k.lower() == "content-length" else v) for k, v in headers]
                       + retry)
        return [data]


def _names(href: str) -> list[str]:
    return [name for name in unquote(href).split("/") if name]


def _described(xml: bytes) -> tuple[bytes, list[tuple[str, int, str]]]:
    """A 207 body with every response's error described in words (WsgiDAV gives bare statuses, and
    PROPPATCH descriptions may hold exception reprs), and (href, status, words) of each failure."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return xml, []
    failures = []
    for response in root.iter("{DAV:}response"):
        status = response.find("{DAV:}status")
        parts = (status.text or "").split(" ", 2) if status is not None else []     # HTTP/1.1 403 Forbidden
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if 400 <= code < 600:
            status.text = f"HTTP/1.1 {_status_line(code)}"      # WsgiDAV writes "503 Status"
        if response.find(_DESCRIPTION) is None and code >= 400:
            ET.SubElement(response, _DESCRIPTION).text = STATUS_WORDS.get(code, _status_line(code)[4:])
    for described in root.iter(_DESCRIPTION):
        lines: list[str] = []
        for line in (described.text or "").splitlines():
            line = line.strip()
            if not line or line.startswith(("Source exception:", "Error condition:")):
                continue
            m = _STATUS_PREFIX.match(line)        # WsgiDAV's "403 Forbidden: Access denied to ..."
            if m:
                line = m.group(3) if m.group(3) not in ERROR_RESPONSES.values() else STATUS_WORDS.get(
                    int(m.group(1)), m.group(2))
            if line not in lines:
                lines.append(line)
        described.text = text.safe("\n".join(lines))
    for response in root.iter("{DAV:}response"):
        parts = (response.findtext("{DAV:}status") or "").split(" ", 2)
        if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) >= 400:
            failures.append((response.findtext("{DAV:}href") or "", int(parts[1]),
                             response.findtext(_DESCRIPTION) or ""))
    ET.register_namespace("D", "DAV:")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root), failures


class ErrorMiddleware:
    """Holds the response back until the first body chunk, so an error before it becomes a clean reply."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        started: list = []

        def hold(status: str, headers: list, exc_info=None) -> None:
            started[:] = [status, headers]

        body: Iterable[bytes] | None = None
        try:
            body = self.app(environ, hold)
            chunks = iter(body)
            first = next(chunks, None)
        except Exception as exc:  # noqa: BLE001 - every error becomes a reply
            if body is not None and hasattr(body, "close"):
                body.close()
            return error_reply(exc).send(environ, start_response)
        start_response(*started)
        return _Resumed(first, chunks, body)


class _Resumed:
    """The body after its first chunk was taken; close() reaches the inner body even if never iterated."""

    def __init__(self, first: bytes | None, rest: Iterator[bytes], body: Iterable[bytes]) -> None:
        self._first, self._rest, self._body = first, rest, body

    def __iter__(self) -> Iterator[bytes]:
        if self._first is not None:
            yield self._first
        yield from self._rest

    def close(self) -> None:
        if hasattr(self._body, "close"):
            self._body.close()
