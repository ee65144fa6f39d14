"""The read path (pool, senders, fetcher, part reader, catalog, bridge) against the in-process sandbox.

One sandbox per test session: a World with a user on home DC 2 and a channel of synthetic documents
on DC 2 and on foreign DCs 3 and 4 (one with a stale dc_id), served by a ClusterThread over real
sockets to an unmodified Telethon. Tests read through an `Engine`: a Bridge loop with a logged-in
client, a Store in a state dir, a Pool, a FileFetcher, a PartReader (+ SyncReader) and a
TelegramCatalog, wired as tgdav.app wires them.

Assertions are on exact bytes (the sandbox's content.pattern) and on the sandbox's counters, taken as
differences (Counters.snapshot before/after), never on time.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import closing_factory
from tgdav.app import build_read_path, start_live
from tgdav.bridge import Bridge
from tgdav.cache.reader import SyncReader
from tgdav.cache.store import Store
from tgdav.config import Config, PoolConfig, TelegramConfig
from tgdav.model import FileEntry
from tgdav.sandbox.cluster import ClusterThread
from tgdav.sandbox.content import pattern
from tgdav.sandbox.controls import Controls, Link
from tgdav.sandbox.counters import Counters
from tgdav.sandbox.keys import AuthKeyStore
from tgdav.sandbox.rsakey import load_or_create
from tgdav.sandbox.services import Services
from tgdav.sandbox.world import PatternSource, PhotoSize, World
from tgdav.telegram.login import SandboxInfo, login, make_client
from tgdav.telegram.mtproto import forget_config

logging.getLogger("telethon").setLevel(logging.ERROR)

MIB = 1 << 20
HOME_DC = 2
CHANNEL = "Read path"

# name -> (size, dc the message advertises); "stale.bin" really lives on STALE_TRUE_DC
FILES: dict[str, tuple[int, int]] = {
    "one.bin": (1, 2),
    "b4095.bin": (4095, 3),
    "b4096.bin": (4096, 4),
    "b4097.bin": (4097, 2),
    "mid.bin": (3 * MIB + 12345, 3),
    "home.bin": (2 * MIB + 1, 2),
    "big.bin": (20 * MIB + 4321, 4),
    "stale.bin": (5 * MIB + 777, 3),
    "stale2.bin": (2 * MIB + 99, 3),
    "d4.bin": (6 * MIB + 5, 4),
}
STALE_TRUE_DC = 4
PHOTO_SIZE = 70_001          # bytes of the photo's largest size ("x")
PHOTO_SEED = 424242


@dataclass
class Sandbox:
    world: World
    user: object
    keys: AuthKeyStore
    counters: Counters
    controls: Controls
    services: Services
    cluster: ClusterThread
    info: SandboxInfo
    docs: dict[str, object]                       # name -> sandbox Document
    channel: object = None                        # the channel a test module is about (tests/live)
    contents: dict[str, bytes] = field(default_factory=dict)

    def content(self, name: str) -> bytes:
        """The exact bytes of a fixture file (computed once)."""
        if name not in self.contents:
            if name == "photo":
                self.contents[name] = pattern(PHOTO_SEED, 0, PHOTO_SIZE)
            else:
                doc = self.docs[name]
                self.contents[name] = pattern(doc.id, 0, doc.size)
        return self.contents[name]

    def expected(self, name: str, start: int, end: int) -> bytes:
        return self.content(name)[start:end + 1]

    def snapshot(self) -> dict[str, dict[str, int]]:
        return self.counters.snapshot()

    def total(self, name: str) -> int:
        """Counter `name` summed over every DC."""
        return self.counters.total(name)

    def faults(self, body: dict) -> None:
        self.controls.apply_faults(body, time.monotonic())   # the services' clock is time.monotonic

    def reset(self) -> None:
        self.controls.apply_faults({"clear": True}, time.monotonic())
        self.controls.set_link(Link())


def delta(before: dict, after: dict, name: str, dc: int | None = None) -> int:
    """How much counter `name` grew between two snapshots (on one DC, or on all)."""
    dcs = [str(dc)] if dc is not None else set(before) | set(after)
    return sum(after.get(d, {}).get(name, 0) - before.get(d, {}).get(name, 0) for d in dcs)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def sandbox():
    w = World(seed=20261124)
    user = w.add_user("+15550009999", "Reader", home_dc=HOME_DC)
    channel = w.add_channel(CHANNEL, members=[user])
    docs = {}
    for name, (size, dc) in FILES.items():
        docs[name] = w.add_document(channel, name=name, size=size, mime="application/octet-stream",
                                    dc=dc).media
    w.make_stale(docs["stale.bin"], STALE_TRUE_DC)
    w.make_stale(docs["stale2.bin"], STALE_TRUE_DC)
    w.add_photo(channel, [PhotoSize("m", 320, 240, 5000, PatternSource(PHOTO_SEED + 1)),
                          PhotoSize("x", 800, 600, PHOTO_SIZE, PatternSource(PHOTO_SEED))], dc=3)
    with running_sandbox(w, user, docs) as sb:
        yield sb


@contextmanager
def running_sandbox(w: World, user, docs: dict, channel=None):
    """The world served by a ClusterThread on 127.0.0.1 (stopped at the end)."""
    keys, counters, controls = AuthKeyStore(), Counters(), Controls()
    rsa = load_or_create(None)
    services = Services(w, keys, counters, controls)
    cluster = ClusterThread(services, keys, counters, controls, rsa, w.dc_ids).start()
    try:
        w.dcs.update({dc: ("127.0.0.1", port) for dc, port in cluster.ports.items()})
        info = SandboxInfo(dict(w.dcs), HOME_DC, rsa.public_pem, 1, "x", {})
        yield Sandbox(w, user, keys, counters, controls, services, cluster, info, docs, channel)
    finally:
        cluster.stop()
        forget_config()           # Telethon caches help.config on the class


@pytest.fixture(autouse=True)
def clean_faults(sandbox):
    sandbox.reset()
    yield
    sandbox.reset()


class Engine:
    """The read path of one logged-in account on its own bridge loop, over one state dir. Also what
    tests/live builds its accounts with: `phone` (default: the sandbox's user), `config` (default: one
    made of the pool settings below), `tgdav=False` for a plain Telethon account with no read path,
    `live=True` to start tgdav's updates (app.start_live) as `tgdav serve` does, `channel` the title
    whose entries are indexed at start (None: none)."""

    def __init__(self, sb, state: Path, *, phone: str | None = None, config: Config | None = None,
                 tgdav: bool = True, live: bool = False, channel: str | None = CHANNEL,
                 senders_per_dc: int = 4, read_ahead: int = 8,
                 first_part: int = 64 * 1024, max_wait: float = 10.0, request_timeout: float = 30.0,
                 idle_seconds: float = 120.0, connect_listed_dcs: bool = False, **telegram) -> None:
        """telegram: [telegram] settings, e.g. history_per_second=10, history_burst=4."""
        self.sb = sb
        self.state = Path(state)
        self.phone = phone or sb.user.phone
        self.config = config or Config(pool=PoolConfig(
            senders_per_dc=senders_per_dc, idle_seconds=idle_seconds, max_wait_seconds=max_wait,
            first_part=first_part, read_ahead_parts=read_ahead, request_timeout=request_timeout,
            # off unless a test is about it: most count what a first read on a DC costs
            connect_listed_dcs=connect_listed_dcs),
            telegram=TelegramConfig(**telegram))
        self.bridge = Bridge()
        self.bridge.start()
        self.store: Store | None = None
        self.client = None
        self.read_path = None
        self.entries: dict[str, FileEntry] = {}
        self.opens: Counter[int] = Counter()        # sender open attempts per DC
        try:
            self.call(self._start(tgdav, live, channel), timeout=60)
        except BaseException:
            self.close()
            raise

    async def _start(self, tgdav: bool, live: bool, channel: str | None) -> None:
        sb = self.sb
        self.client = make_client(self.state, "reader", 1, "x", sb.info)
        await login(self.client, bot_token=None, phone=self.phone, ask=lambda p, s: sb.world.login_code)
        if not tgdav:
            return
        self.store = Store(self.state / "cache")
        # wired by the same code as `tgdav serve`
        rp = self.read_path = build_read_path(self.client, self.store, self.config, is_bot=False,
                                              open_sender=self._open_sender)
        if live:
            await start_live(rp, self.client, self.store, self.config)
        self.factory, self.pool, self.catalog, self.fetcher, self.reader, self.updates = (
            rp.factory, rp.pool, rp.catalog, rp.fetcher, rp.reader, rp.updates)
        self.sync_reader = SyncReader(self.bridge, self.reader)
        if channel is not None:
            folder = next(f for f in await self.catalog.folders() if f.title == channel)
            for e in await self.catalog.entries(folder):
                self.entries["photo" if e.location.kind == "photo" else e.name] = e

    async def _open_sender(self, factory, dc_id: int):
        """factory.open, counting the attempts per DC (engine.opens) for the tests."""
        self.opens[dc_id] += 1
        return await factory.open(dc_id)

    def call(self, coro, timeout: float = 60):
        return self.bridge.call(coro, timeout=timeout)

    def loc(self, name: str):
        return self.entries[name].location

    async def aread(self, name: str, start: int, end: int) -> bytes:
        out = bytearray()
        async for piece in self.reader.stream(self.loc(name), start, end):
            out += piece
        return bytes(out)

    def read(self, name: str, start: int = 0, end: int | None = None, timeout: float = 60) -> bytes:
        """Bytes start..end (inclusive; default: to the end) through the async PartReader."""
        if end is None:
            end = self.entries[name].size - 1
        return self.call(self.aread(name, start, end), timeout=timeout)

    def sync_read(self, name: str, start: int, end: int, n: int = 65536) -> bytes:
        """The same through SyncReader (the WSGI threads' path), read(n) until b""."""
        stream = self.sync_reader.open(self.loc(name), start, end)
        out = bytearray()
        try:
            while True:
                piece = stream.read(n)
                if not piece:
                    break
                out += piece
        finally:
            stream.close()
        return bytes(out)

    def stats(self) -> dict:
        async def get():
            return self.pool.stats()
        return self.call(get(), timeout=10)

    def close(self) -> None:
        if self.bridge.running:
            async def stop():
                if self.read_path is not None:
                    await self.read_path.close()
                if self.client is not None:
                    await self.client.disconnect()
            try:
                self.call(stop(), timeout=15)
            except Exception:
                logging.getLogger(__name__).warning("engine close failed", exc_info=True)
            self.bridge.stop()
        if self.store is not None:
            self.store.close()
            self.store = None


@pytest.fixture
def engine_sandbox(sandbox):
    """The sandbox make_engine logs in to (a module may override it with a world of its own)."""
    return sandbox


@pytest.fixture
def make_engine(engine_sandbox, tmp_path):
    """make_engine(state=None, **settings) -> Engine; closed at the end of the test. Without a state
    dir each engine gets a fresh one (a new install); pass one to "restart" on it."""
    yield from closing_factory(lambda state, **settings: Engine(engine_sandbox, state, **settings),
                               tmp_path, "state")


@pytest.fixture
def engine(make_engine) -> Engine:
    return make_engine()


@pytest.fixture(scope="module")
def shared_engine(sandbox, tmp_path_factory):
    """One engine for a whole module (hypothesis examples, many threads)."""
    engine = Engine(sandbox, tmp_path_factory.mktemp("shared"))
    yield engine
    engine.close()

