"""The WebDAV app and its cheroot server.

Request path, outermost first:

    AccessLog -> ErrorMiddleware -> Authenticator -> PolicyMiddleware -> StreamApp -> WsgiDAV

WsgiDAV (dir browser + request resolver only: no locks, no dead properties, its own error printer and
authenticator replaced by ours) answers PROPFIND and GET of collections; StreamApp answers GET/HEAD of
files. cheroot runs with many threads (Explorer opens lots of connections) and a long socket timeout
(a paused player keeps its connection), hardened in tgdav.dav.http: a deadline for each request
head, a per-address limit of connections served at once, the kernel's listen backlog, and request
bodies always consumed or the connection closed.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from wsgidav.dir_browser import WsgiDavDirBrowser
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from tgdav.dav.auth import SCHEMES, Authenticator
from tgdav.dav.http import HardenedServer, TLSAdapter
from tgdav.dav.policy import ErrorMiddleware, PolicyMiddleware, StartResponse
from tgdav.dav.provider import CatalogProvider
from tgdav.dav.stream import StreamApp
from tgdav.errors import ConfigError, TgdavError
from tgdav.model import Catalog, Reader

MAX_HEADER_BYTES = 64 * 1024  # request line + headers; a longer URL gets 414
MAX_BODY_BYTES = 1024 * 1024  # PROPFIND bodies are small; nothing else has one

access_log = logging.getLogger("tgdav.access")


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
              realm: str = "tgdav", block_size: int = 256 * 1024) -> Callable:
    """The whole WSGI app for one catalog and reader."""
    for name in ("wsgidav", "wsgidav.wsgidav_app"):
        logging.getLogger(name).setLevel(logging.WARNING)
    dav = WsgiDAVApp({
        "provider_mapping": {"/": CatalogProvider(catalog)},
        "middleware_stack": [WsgiDavDirBrowser, RequestResolver],
        "lock_storage": False,
        "property_manager": None,
        "verbose": 1,
        "suppress_version_info": True,
        "logging": {"enable": False},
        "dir_browser": {"enable": True, "icon": False, "davmount": False, "ms_sharepoint_support": False,
                        "libre_office_support": False, "response_trailer": ""},
    })
    app = StreamApp(catalog, reader, dav, block_size)
    app = PolicyMiddleware(app)
    app = Authenticator(app, users, auth, realm)
    return AccessLog(ErrorMiddleware(app))


class AccessLog:
    """One INFO line per request on tgdav.access: method, path, status, body bytes, seconds."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        began, status = time.monotonic(), ["-"]

        def record(status_line: str, headers: list, exc_info=None):
            status[0] = status_line.split(" ", 1)[0]
            return start_response(status_line, headers, exc_info) if exc_info else start_response(
                status_line, headers)

        # the path as it arrived (WsgiDAV rewrites PATH_INFO to decoded text on its way)
        path = environ.get("PATH_INFO", "").encode("latin-1", "replace").decode("utf-8", "replace")
        return _Logged(self.app(environ, record), environ, status, began, path)


class _Logged:
    def __init__(self, body: Iterable[bytes], environ: dict, status: list[str], began: float,
                 path: str) -> None:
        self.body, self.environ, self.status, self.began, self.sent = body, environ, status, began, 0
        self.failed, self.path = False, path

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.body:
                self.sent += len(chunk)
                yield chunk
        except BaseException:
            self.failed = True
            raise

    def close(self) -> None:
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            access_log.info("%s %r %s %d %.3fs%s", self.environ.get("REQUEST_METHOD"), self.path, self.status[0],
                            self.sent, time.monotonic() - self.began, " aborted" if self.failed else "")


def make_server(app: Callable, *, host: str = "127.0.0.1", port: int = 8080, threads: int = 64,
                timeout: int = 300, tls_cert: str | None = None, tls_key: str | None = None,
                head_timeout: float = 15.0, per_ip_limit: int = 32) -> HardenedServer:
    """A cheroot server for `app` (not started: call .prepare() / .serve() or .start()), with the
    rules of tgdav.dav.http: a deadline for each request head, at most `per_ip_limit` connections
    of one client address served at once (0: no limit), request bodies consumed or the connection
    closed, and the kernel's maximum listen backlog."""
    server = HardenedServer((host, port), app, numthreads=threads, timeout=timeout, server_name="tgdav",
                            head_timeout=head_timeout, per_ip_limit=per_ip_limit)
    server.max_request_header_size = MAX_HEADER_BYTES
    server.max_request_body_size = MAX_BODY_BYTES
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise ConfigError("TLS needs both a certificate and a key file")
        server.ssl_adapter = TLSAdapter(tls_cert, tls_key)
    return server
