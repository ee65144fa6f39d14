"""The oracle for tgdav's write path: a plain WsgiDAV (FilesystemProvider on a folder, WsgiDAV's own
locks and dead properties) served by cheroot in this process, as WsgiDAV's own server runs it."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

from cheroot import wsgi
from wsgidav.fs_dav_provider import FilesystemProvider
from wsgidav.wsgidav_app import WsgiDAVApp


@contextmanager
def filesystem_dav(root: Path):
    """Yields the base URL (trailing slash) of a WsgiDAV server over `root` (made if missing)."""
    root.mkdir(parents=True, exist_ok=True)
    app = WsgiDAVApp({
        "provider_mapping": {"/": FilesystemProvider(str(root))},
        "http_authenticator": {"domain_controller": None},
        "simple_dc": {"user_mapping": {"*": True}},
        "lock_storage": True,
        "property_manager": True,
        "verbose": 0,
        "logging": {"enable": False, "enable_loggers": []},
    })
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=4)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.bind_addr[1]}/"
    finally:
        server.stop()
        thread.join(10)
