"""The WebDAV app and its cheroot server.

Request path, outermost first:

    AccessLog -> ErrorMiddleware -> Authenticator -> PolicyMiddleware -> Face -> StreamApp
        -> (reads_degrade with locks in Redis) -> FastPropfind -> WriteGuard (writes on: dav.guard)
        -> DavBodies -> WsgiDAV

WsgiDAV (request resolver only: no locks, no dead properties, its own error printer, authenticator
and dir browser replaced by ours; DavBodies puts tgdav's words in place of every body it composes)
answers PROPFIND, except that of a collection without locks or dead properties, which dav.listing
renders from the catalog and streams, and the writes; Face (dav.face) answers the browser's GET of
collections and the reserved /:tgdav/ pages; StreamApp answers GET/HEAD of files. cheroot runs with many threads (Explorer opens lots of connections) and a long socket timeout
(a paused player keeps its connection).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from tgdav.dav.access import AccessLog, StreamWatch
from tgdav.dav.auth import SCHEMES, Authenticator
from tgdav.dav.face import Face, ReservedNames
from tgdav.dav.guard import WriteGuard
from tgdav.dav.http import HardenedServer, TLSAdapter
from tgdav.dav.listing import DeadProperties, FastPropfind
from tgdav.dav.policy import DavBodies, ErrorMiddleware, PolicyMiddleware
from tgdav.dav.provider import CatalogProvider
from tgdav.dav.stream import StreamApp
from tgdav.errors import ConfigError, TgdavError
from tgdav.metrics import Metrics
from tgdav.model import Catalog, Reader

MAX_HEADER_BYTES = 64 * 1024  # request line + headers; a longer URL gets 414
MAX_BODY_BYTES = 1024 * 1024  # PROPFIND bodies are small; nothing else has one



def check_bind(host: str, users: dict[str, str] | None, auth: str) -> None:
    """Refuse to serve Telegram without credentials on anything but loopback."""
    if auth not in SCHEMES:
        raise ConfigError(f"auth must be one of {', '.join(SCHEMES)}, not {auth!r}")
    if auth == "none" or users:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(f"refusing to listen on {host} without users: add users (or listen on "
                          "127.0.0.1, or set auth to 'none' to share without a password on purpose)")


@contextmanager
def bind_errors(host: str, port: int) -> Iterator[None]:
    """A failure to bind the WebDAV address (in use, not ours, unknown) as one line with the fix."""
    fixes = {errno.EADDRINUSE: "stop the program using it or choose another port with --port",
             errno.EADDRNOTAVAIL: "use an address of this machine, e.g. 127.0.0.1 or 0.0.0.0",
             errno.EACCES: "ports below 1024 need privileges: choose a port from 1024 up with --port"}
    try:
        yield
    except socket.gaierror as e:
        raise TgdavError(f"cannot listen on {host}:{port} ({e.strerror}) — "
                         f"use an IP address or a host name this machine can resolve") from None
    except OSError as e:
        fix = fixes.get(e.errno, "check the host and port ([server] host/port, --host/--port)")
        raise TgdavError(f"cannot listen on {host}:{port} ({e.strerror or e}) — {fix}") from None


def build_app(catalog: Catalog, reader: Reader, *, users: dict[str, str] | None, auth: str,
              realm: str = "tgdav", block_size: int = 1024 * 1024, metrics: Metrics | None = None,
              drive=None, state_dir: Path | None = None, lock_redis: str = "") -> Callable:
    """The whole WSGI app for one catalog and reader (metrics: the composition root's, else a fresh one).
    `drive` (a telegram.writer.SyncWriter) makes it writable, with locks, dead properties and desktop
    clients' own files kept in `state_dir` (locks in Redis when `lock_redis` is set: replicas share them)."""
    metrics = metrics if metrics is not None else Metrics()
    catalog = ReservedNames(catalog)
    for name in ("wsgidav", "wsgidav.wsgidav_app"):
        logging.getLogger(name).setLevel(logging.WARNING)
    writes = _write_options(drive, state_dir, lock_redis)
    provider = CatalogProvider(catalog, drive, writes.get("local"))
    dav = WsgiDAVApp({
        "provider_mapping": {"/": provider},
        "middleware_stack": [RequestResolver],
        "lock_storage": writes.get("locks", False),
        "property_manager": writes.get("props"),
        "verbose": 1,
        "suppress_version_info": True,
        "logging": {"enable": False},
        "dir_browser": {"enable": False},
    })
    locks = dav.lock_manager
    dav = DavBodies(dav)        # pulls WsgiDAV's answer inside this call (reads_degrade's mark covers it)
    if drive is not None:      # every permission of a write checked before WsgiDAV changes anything
        dav = WriteGuard(dav, catalog, drive.check, locks)
    # PROPFIND of collections straight from the catalog, streamed (dav.listing); the rest: WsgiDAV
    dav = FastPropfind(dav, provider)
    if lock_redis and drive is not None:      # locks in Redis: with it away, reads show none, writes 503
        from tgdav.cache.shared import reads_degrade
        dav = reads_degrade(dav)              # around all: each looks locks up inside the call
    app = StreamApp(catalog, reader, dav, block_size, watch=StreamWatch(metrics))
    app = Face(app, catalog, metrics)
    app = PolicyMiddleware(app, writable=drive is not None)
    app = Authenticator(app, users, auth, realm)
    return AccessLog(ErrorMiddleware(app), metrics)


def _write_options(drive, state_dir: Path | None, lock_redis: str = "") -> dict:
    """Writes on: WsgiDAV's shelve-backed lock storage and property manager, and the local store of
    desktop clients' own files, all in the state directory (a restart keeps them)."""
    if drive is None:
        return {}
    from tgdav.cache.shared import lock_storage
    from tgdav.dav.provider import LocalFiles
    if state_dir is None:
        raise ConfigError("writes need a state directory for locks and properties")
    dav_dir = Path(state_dir) / "dav"
    dav_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {"locks": lock_storage(lock_redis, state_dir),     # shelve in dav/, or Redis for replicas
            "props": DeadProperties(str(dav_dir / "props.shelve")),
            "local": LocalFiles(dav_dir / "local")}


def make_server(app: Callable, *, host: str = "127.0.0.1", port: int = 8080, threads: int = 64,
                timeout: int = 300, tls_cert: str | None = None, tls_key: str | None = None,
                writable: bool = False, head_timeout: float = 15.0,
                per_ip_limit: int = 32, max_file_size: int = 0) -> HardenedServer:
    """A cheroot server for `app` (not started: call .prepare() / .serve() or .start()), with the
    rules of tgdav.dav.http: a deadline for each request head, at most `per_ip_limit` connections
    of one client address served at once (0: no limit), request bodies consumed or the connection
    closed, and the kernel's maximum listen backlog. `writable`: PUT bodies up to `max_file_size`
    bytes (0: any size; the policy then bounds every other body): a longer Content-Length is 413
    before `100 Continue`, a chunked body is cut with 413 when it grows past it."""
    server = HardenedServer((host, port), app, numthreads=threads, timeout=timeout, server_name="tgdav",
                            head_timeout=head_timeout, per_ip_limit=per_ip_limit)
    server.max_request_header_size = MAX_HEADER_BYTES
    server.max_request_body_size = max_file_size if writable else MAX_BODY_BYTES
    if writable and max_file_size:
        server.too_large = (f"The request body is larger than the largest file this server takes "
                            f"([write] max_file_size = {max_file_size} bytes).")
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise ConfigError("TLS needs both a certificate and a key file")
        server.ssl_adapter = TLSAdapter(tls_cert, tls_key)
    return server
