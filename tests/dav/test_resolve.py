"""Paths are decoded and looked up once per request: a GET of a file crosses the bridge to the
catalog once, for its channel and the file together (then once to open the bytes), whichever layers
(Face, StreamApp, the provider) look at it. Counted on a real Bridge with the real SyncCatalog and
SyncReader in front of a fake catalog and reader."""

from __future__ import annotations

import http.client
import threading

import pytest

from tests.dav.fakes import FakeCatalog
from tgdav.bridge import Bridge
from tgdav.cache.reader import SyncReader
from tgdav.dav.server import build_app, make_server
from tgdav.sandbox.content import pattern
from tgdav.telegram.catalog import SyncCatalog


class CountingBridge(Bridge):
    """A Bridge that counts its round trips: call() (a catalog look-up) and stream() (an open)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls, self.streams = 0, 0

    def call(self, coro, timeout=None, *, on_timeout=None):
        self.calls += 1
        return super().call(coro, timeout, on_timeout=on_timeout)

    def stream(self, agen, *, max_buffered=4):
        self.streams += 1
        return super().stream(agen, max_buffered=max_buffered)


class AsyncCatalog:
    """FakeCatalog as the TelegramCatalog that SyncCatalog runs on the loop."""

    def __init__(self, catalog: FakeCatalog) -> None:
        self._catalog = catalog

    async def folders(self):
        return self._catalog.folders()

    async def folder(self, name):
        return self._catalog.folder(name)

    async def entries(self, folder):
        return self._catalog.entries(folder)

    async def entry(self, folder, name):
        return self._catalog.entry(folder, name)

    async def node(self, folder, path):
        return self._catalog.node(folder, path)


class PatternReader:
    """The PartReader SyncReader streams from: pattern(location.id, ...) in 64 KiB pieces."""

    async def stream(self, location, start, end):
        while start <= end:
            n = min(64 * 1024, end - start + 1)
            yield pattern(location.id, start, n)
            start += n


@pytest.fixture
def bridged():
    bridge = CountingBridge()
    bridge.start()
    catalog = FakeCatalog()
    app = build_app(SyncCatalog(bridge, AsyncCatalog(catalog)), SyncReader(bridge, PatternReader()),
                    users=None, auth="none")
    server = make_server(app, host="127.0.0.1", port=0, threads=4, timeout=30)
    server.expiration_interval = 0.02
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    yield bridge, catalog, server.bind_addr[1]
    server.stop()
    bridge.stop()


def _get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_a_get_of_a_file_looks_its_path_up_once(bridged):
    bridge, catalog, port = bridged
    status, body = _get(port, "/Films/clip%20%231%20100%25%20what%3F.mp4", {"Range": "bytes=1000-1999"})
    assert (status, body) == (206, pattern(11, 1000, 1000))
    # the channel and the file in one trip, then the bytes: 1 catalog round trip (main: 4), 1 open
    assert (bridge.calls, bridge.streams) == (1, 1)
    assert (catalog.calls["folder"], catalog.calls["node"]) == (1, 1)


def test_a_get_of_a_channel_page_looks_it_up_once(bridged):
    bridge, catalog, port = bridged
    status, body = _get(port, "/Films/")
    assert status == 200 and b"small.txt" in body
    assert (bridge.calls, bridge.streams) == (1, 0)
    assert (catalog.calls["folder"], catalog.calls["node"]) == (1, 1)


def test_a_get_of_a_missing_file_asks_once_then_404(bridged):
    bridge, catalog, port = bridged
    assert _get(port, "/Films/nothing.bin")[0] == 404
    assert _get(port, "/Nowhere/nothing.bin")[0] == 404
    # one trip each (WsgiDAV's own 404 shares it): Films the channel and the file, Nowhere the channel
    assert (catalog.calls["folder"], catalog.calls["node"]) == (2, 1)
    assert (bridge.calls, bridge.streams) == (2, 0)


def test_the_catalogs_the_face_is_given_keep_the_model_protocol(bridged):
    from tgdav.dav.face import ReservedNames
    from tgdav.model import Catalog
    bridge, catalog, _ = bridged
    for one in (catalog, ReservedNames(catalog), SyncCatalog(bridge, AsyncCatalog(catalog))):
        assert isinstance(one, Catalog), one
