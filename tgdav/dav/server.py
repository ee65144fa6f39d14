"""The WebDAV app and its cheroot server.

Request path, outermost first:

    AccessLog -> ErrorMiddleware -> Authenticator -> PolicyMiddleware -> Face -> StreamApp -> WsgiDAV

WsgiDAV (request resolver only: no locks, no dead properties, its own error printer, authenticator
and dir browser replaced by ours) answers PROPFIND; Face (dav.face) answers the browser's GET of
collections and the reserved /:tgdav/ pages; StreamApp answers GET/HEAD of files. cheroot runs with many threads (Explorer opens lots of connections) and a long socket timeout
(a paused player keeps its connection).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Callable

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from tgdav.dav.access import AccessLog, StreamWatch
from tgdav.dav.auth import SCHEMES, Authenticator
from tgdav.dav.face import Face, ReservedNames
from tgdav.dav.policy import ErrorMiddleware, PolicyMiddleware
from tgdav.dav.provider import CatalogProvider
from tgdav.dav.stream import StreamApp
from tgdav.errors import ConfigError
from tgdav.metrics import Metrics
from tgdav.model import Catalog, Reader

MAX_HEADER_BYTES = 64 * 1024  # request line + headers; a longer URL gets 414
MAX_BODY_BYTES = 1024 * 1024  # PROPFIND bodies are small; nothing else has one

server_log = logging.getLogger("tgdav.server")


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


def build_app(catalog: Catalog, reader: Reader, *, users: dict[str, str] | None, auth: str,
              realm: str = "tgdav", block_size: int = 256 * 1024, metrics: Metrics | None = None) -> Callable:
    """The whole WSGI app for one catalog and reader (metrics: the composition root's, else a fresh one)."""
    metrics = metrics if metrics is not None else Metrics()
    catalog = ReservedNames(catalog)
    for name in ("wsgidav", "wsgidav.wsgidav_app"):
        logging.getLogger(name).setLevel(logging.WARNING)
    dav = WsgiDAVApp({
        "provider_mapping": {"/": CatalogProvider(catalog)},
        "middleware_stack": [RequestResolver],
        "lock_storage": False,
        "property_manager": None,
        "verbose": 1,
        "suppress_version_info": True,
        "logging": {"enable": False},
        "dir_browser": {"enable": False},
    })
    app = StreamApp(catalog, reader, dav, block_size, watch=StreamWatch(metrics))
    app = Face(app, catalog, metrics)
    app = PolicyMiddleware(app)
    app = Authenticator(app, users, auth, realm)
    return AccessLog(ErrorMiddleware(app), metrics)


class _Server(wsgi.Server):
    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        """cheroot writes errors to stderr; send them to logging instead."""
        server_log.log(level, "%s", msg, exc_info=traceback)


def make_server(app: Callable, *, host: str = "127.0.0.1", port: int = 8080, threads: int = 64,
                timeout: int = 300, tls_cert: str | None = None, tls_key: str | None = None) -> wsgi.Server:
    """A cheroot server for `app` (not started: call .prepare() / .serve() or .start())."""
    server = _Server((host, port), app, numthreads=threads, timeout=timeout, server_name="tgdav")
    server.max_request_header_size = MAX_HEADER_BYTES
    server.max_request_body_size = MAX_BODY_BYTES
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise ConfigError("TLS needs both a certificate and a key file")
        server.ssl_adapter = BuiltinSSLAdapter(tls_cert, tls_key)
    return server
