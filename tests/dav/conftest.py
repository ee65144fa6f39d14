"""A real cheroot server on 127.0.0.1:0 in a thread, over the fakes."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass
from typing import Callable

import pytest

from tests.dav.fakes import FakeCatalog, FakeReader
from tgdav.dav.server import build_app, make_server


@dataclass
class Served:
    url: str
    port: int
    catalog: FakeCatalog
    reader: FakeReader


@pytest.fixture
def serve() -> Callable[..., Served]:
    """serve(catalog=None, reader=None, users=None, auth="none", tls_cert=None, tls_key=None, **build)."""
    servers = []

    def start(catalog: FakeCatalog | None = None, reader: FakeReader | None = None, *, users=None,
              auth: str = "none", tls_cert=None, tls_key=None, **build) -> Served:
        catalog = catalog or FakeCatalog()
        reader = reader or FakeReader()
        app = build_app(catalog, reader, users=users, auth=auth, **build)
        server = make_server(app, host="127.0.0.1", port=0, threads=8, timeout=30,
                             tls_cert=tls_cert, tls_key=tls_key)
        server.expiration_interval = 0.02  # how often the accept loop looks up: quick stop() in tests
        server.prepare()
        threading.Thread(target=server.serve, daemon=True).start()
        servers.append(server)
        port = server.bind_addr[1]
        scheme = "https" if tls_cert else "http"
        return Served(f"{scheme}://127.0.0.1:{port}", port, catalog, reader)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def dav(serve) -> Served:
    """The sample tree, no auth."""
    return serve()


@dataclass
class Response:
    status: int
    headers: dict[str, str]   # of the last response curl saw, lower-case names
    body: bytes


@pytest.fixture
def curl(tmp_path) -> Callable[..., Response]:
    """curl(url, *args): run the real curl; returns the final status, headers and body."""
    counter = iter(range(10**6))

    def run(url: str, *args: str) -> Response:
        n = next(counter)
        head, body = tmp_path / f"h{n}", tmp_path / f"b{n}"
        subprocess.run(["curl", "-sS", "--path-as-is", "-D", str(head), "-o", str(body), *args, url],
                       check=True, timeout=60)
        block = head.read_bytes().decode("latin-1").strip().split("\r\n\r\n")[-1].split("\r\n")
        headers = {}
        for line in block[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Response(int(block[0].split()[1]), headers, body.read_bytes() if body.exists() else b"")

    return run
