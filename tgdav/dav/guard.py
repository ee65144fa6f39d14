"""Every permission a write needs, checked before WsgiDAV makes its first change.

WsgiDAV checks a request's permissions as it goes: a MOVE across channels copies first and deletes
the source after (so a source it may not delete is found out once the copy exists), an Overwrite: T
deletes the destination before the copy, a DELETE of a folder that cannot be deleted whole goes
member by member (a DELETE of the root empties every channel before the channels refuse), and a
DELETE checks the locks of each member only as it reaches it. A refused request must change
nothing (DESIGN.md, promises 2, 3 and 5), so WriteGuard, just in front of WsgiDAV, refuses up front:

- the root and the channels are never deleted, moved or overwritten (403 in words); what is inside
  a channel is deleted by naming it;
- every path a request changes (PUT, MKCOL, DELETE, PROPPATCH, LOCK: the target; MOVE: the source
  and the destination; COPY: the destination) must be in a channel the account may post in (403
  with the reason), desktop clients' own files included;
- a DELETE, the source of a MOVE and an existing destination of MOVE or COPY must hold no lock,
  on themselves, an ancestor (depth infinity) or anything below them, whose token the request does
  not carry (423 with DAV:no-conflicting-lock naming the locks), in the shelve store or in Redis;
- a name is one file whatever its case (tree.claims): a lock on `Readme.txt` holds against a PUT,
  LOCK, DELETE or MOVE of `readme.txt` too (WsgiDAV keys locks by exact URL); the locks are found
  in the store, so one taken on a spelling the tree no longer shows (another spelling's PUT landed
  since) still holds;
- a LOCK of an unmapped URL makes an empty file (RFC 4918 9.10.4) before WsgiDAV looks for
  conflicting locks: the locks on it, its ancestors and its folder, and PUTs of it under way, are
  checked first, and a PUT begun meanwhile waits for the LOCK (WsgiDAV would refuse the LOCK for it
  after making the file), so a LOCK answered 423 makes nothing.

A check and the change it allows are one step for the locks of this process: in one channel a
LOCK runs alone, while DELETE, MOVE and COPY (which change whole trees) run beside each other but
never beside a LOCK (a ReadWriteLock per channel: those are its readers, LOCK its writer). So a
LOCK granted while a DELETE of its folder runs cannot be deleted under its owner, and two LOCKs of
one missing file cannot both pass the check before either makes it. A LOCK that would wait longer
than ORDER_WAIT behind a long COPY is answered 503 with Retry-After. (Replicas sharing Redis locks
are not ordered this way.)
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterable
from urllib.parse import quote, unquote, urlparse

from wsgidav import util
from wsgidav.dav_error import HTTP_LOCKED, PRECONDITION_CODE_LockConflict, DAVError, DAVErrorCondition
from wsgidav.lock_man.lock_manager import normalize_lock_root
from wsgidav.rw_lock import ReadWriteLock

from tgdav.dav.policy import StartResponse, request_names
from tgdav.errors import Forbidden, RetryLater

CHANGES = frozenset(("PUT", "DELETE", "MKCOL", "PROPPATCH", "LOCK", "MOVE", "COPY"))
ORDERED = frozenset(("LOCK", "DELETE", "MOVE", "COPY"))     # see "one step" in the docstring
ORDER_WAIT = 10.0          # seconds a LOCK waits for the DELETE/MOVE/COPY under way in its channel
NEVER_DELETED = ("the root and the channels are never deleted, moved or replaced through WebDAV: "
                 "delete the files and folders inside a channel, or delete the channel in Telegram")


class WriteGuard:
    """WSGI middleware around WsgiDAV (see the module docstring). `catalog` gives the channels,
    `check(folder)` raises Forbidden with the reason a channel is read-only, `locks` is WsgiDAV's
    lock manager (None: no locks)."""

    def __init__(self, app: Callable, catalog, check: Callable, locks=None) -> None:
        self.app, self.catalog, self.check, self.locks = app, catalog, check, locks
        self._orders: dict[str, ReadWriteLock] = {}
        self._orders_lock = threading.Lock()
        self._putting: dict[str, int] = {}      # PUTs under way, by _folded URL

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        if method not in CHANGES:
            return self.app(environ, start_response)
        if method == "PUT" and self.locks is not None:
            return self._put(environ, start_response)
        if method not in ORDERED or self.locks is None:
            self.inspect(environ, method)
            return self.app(environ, start_response)
        with self._ordered(environ, method):   # WsgiDAV does these methods' work before their body
            self.inspect(environ, method)
            return self._answered(environ, start_response)

    def _answered(self, environ: dict, start_response: StartResponse) -> list[bytes]:
        """WsgiDAV's whole answer to the request (its work done), its body closed."""
        body = self.app(environ, start_response)
        try:
            return list(body)
        finally:
            if hasattr(body, "close"):
                body.close()

    def _put(self, environ: dict, start_response: StartResponse) -> list[bytes]:
        """A PUT starts after a LOCK under way in its channel (a LOCK of a missing file posts its
        empty file before WsgiDAV looks for PUTs under way, and would be refused with the file
        made) and is known to the LOCKs after it (`_putting`) until it ends, body and all."""
        key = _folded(quote("/" + "/".join(request_names(environ))))
        with self._ordered(environ, "PUT"):
            self.inspect(environ, "PUT")
            with self._orders_lock:
                self._putting[key] = self._putting.get(key, 0) + 1
        try:
            return self._answered(environ, start_response)
        finally:
            with self._orders_lock:
                self._putting[key] -= 1
                if not self._putting[key]:
                    del self._putting[key]

    @contextlib.contextmanager
    def _ordered(self, environ: dict, method: str):
        """The channels the request names, in name order: LOCK as the writer, the others as readers."""
        names = request_names(environ)[:1]
        try:
            names += (_destination(environ) or [])[:1] if method in ("MOVE", "COPY") else []
        except Forbidden:
            pass                               # inspect() says why
        with self._orders_lock:
            orders = [self._orders.setdefault(name, ReadWriteLock()) for name in sorted(set(names))]
        held = []
        try:
            for order in orders:
                if method == "LOCK":
                    try:
                        order.acquire_write(timeout=ORDER_WAIT)
                    except RuntimeError:
                        raise RetryLater(5, "a DELETE, MOVE or COPY is under way in this channel; "
                                            "send the LOCK again") from None
                else:
                    order.acquire_read()
                held.append(order)
            yield
        finally:
            for order in reversed(held):
                order.release()

    def inspect(self, environ: dict, method: str) -> None:
        """Raise Forbidden or DAVError(423) when the request may not change what it names."""
        target = request_names(environ)
        dest = _destination(environ) if method in ("MOVE", "COPY") else None
        if method in ("DELETE", "MOVE") and len(target) <= 1:
            raise Forbidden(NEVER_DELETED)
        if dest is not None and len(dest) <= 1:
            raise Forbidden(NEVER_DELETED if self._exists(dest) else
                            "files and folders live inside channels: the destination must be in one")
        changed = [target] if method != "COPY" else []
        changed += [dest] if dest is not None else []
        for names in changed:
            self._writable(names, creating_channel=method == "MKCOL" and len(names) == 1)
        if self.locks is None:
            return
        if method in ("DELETE", "MOVE"):
            self._unlocked(environ, target)
        if dest is not None and environ.get("HTTP_OVERWRITE", "T").upper() != "F":
            self._unlocked(environ, dest)
        lock_null = method == "LOCK" and len(target) >= 2 and self._node(target) is None
        for names in changed:           # its own locks (any spelling) and its ancestors', for every write
            if len(names) >= 2:         # (an existing resource's LOCK: WsgiDAV judges its own URL's
                self._unlocked(environ, names, children=False,      # locks, shared ones included)
                               other_spellings_only=method == "LOCK" and not lock_null)
        if lock_null:
            self._unlocked(environ, target[:-1], children=False)
            self._not_being_written(target)

    def _not_being_written(self, names: list[str]) -> None:
        """A LOCK of a missing file while a PUT of it (any spelling) is receiving its body: 423
        before WsgiDAV makes the empty file (its own refusal comes after it made it)."""
        own = _folded(quote("/" + "/".join(names)))
        writing = list(getattr(self.locks, "_active_writes", None) or ())   # WsgiDAV's write_transaction marks
        with self._orders_lock:
            putting = own in self._putting
        if putting or any(_folded(url) == own for url in writing):
            raise DAVError(HTTP_LOCKED, "a PUT of this file is under way")

    def _node(self, names: list[str]):
        folder = self.catalog.folder(names[0]) if names else None
        return self.catalog.node(folder, tuple(names[1:])) if folder is not None else None

    def _exists(self, names: list[str]) -> bool:
        return not names or self.catalog.folder(names[0]) is not None

    def _writable(self, names: list[str], *, creating_channel: bool) -> None:
        if not names or creating_channel:
            return                      # the root (LOCK/PROPPATCH of it) or a new channel: the provider's
        folder = self.catalog.folder(names[0])
        if folder is not None:          # no such channel: WsgiDAV answers 404/409
            self.check(folder)

    def _unlocked(self, environ: dict, names: list[str], *, children: bool = True,
                  other_spellings_only: bool = False) -> None:
        """No lock on `names` under any spelling of its last name (one file: tree.key), on its
        ancestors (depth infinity) or (`children`) below it, but those whose token the request
        carries. Locks are found in the store, not through the tree: a lock taken on a spelling the
        tree no longer shows (another spelling's PUT landed since) still holds."""
        if "wsgidav.conditions.if" not in environ:
            util.parse_if_header_dict(environ)
        tokens = environ["wsgidav.ifLockTokenList"]
        principal = environ.get("wsgidav.auth.user_name", "anonymous")    # as WsgiDAV names it
        url = quote("/" + "/".join(names))     # as WsgiDAV keys locks (get_ref_url)
        if not other_spellings_only:
            self.locks.check_write_permission(url=url, depth="0", token_list=tokens, principal=principal)
        parent = normalize_lock_root(quote("/" + "/".join(names[:-1])))
        own = _folded(url)
        held = [lock for lock in self.locks.storage.get_lock_list(parent, include_root=False, include_children=True,
                                                                  token_only=False)
                if (_folded(lock["root"]) == own or (children and _folded(lock["root"]).startswith(own + "/")))
                and not (other_spellings_only and normalize_lock_root(lock["root"]) == normalize_lock_root(url))
                and not (lock["token"] in tokens and lock["principal"] == principal)]
        if held:
            condition = DAVErrorCondition(PRECONDITION_CODE_LockConflict)
            for lock in held:
                condition.add_href(lock["root"])
            raise DAVError(HTTP_LOCKED, err_condition=condition)


def _folded(url: str) -> str:
    """A lock root as tree.key compares paths: folders exact, the last name case-insensitively."""
    where, _, name = unquote(normalize_lock_root(url)).rpartition("/")
    return f"{where}/{name.casefold()}"


def _destination(environ: dict) -> list[str] | None:
    """The Destination header's path as names, read as WsgiDAV reads it; None when absent. WsgiDAV
    decodes the URL before it splits it, so a '?' or ';' in a name would cut the path short (and
    the MOVE would go elsewhere): refused in words."""
    raw = environ.get("HTTP_DESTINATION")
    if not raw:
        return None
    path = urlparse(unquote(raw), allow_fragments=False).path
    meant = unquote(urlparse(raw, allow_fragments=False).path)
    if util.normalize_path(path or "/") != util.normalize_path(meant or "/"):
        raise Forbidden("a MOVE or COPY Destination cannot hold '?' or ';' in a name here: "
                        "PUT the file under that name instead")
    return [n for n in util.normalize_path(path or "/").split("/") if n]
