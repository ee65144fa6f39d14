"""Fixtures for the sandbox's world and services: a small world, Services over it with a fake clock,
and a `Sim` that calls the services the way the MTProto server does, with requests and answers
passed through TL serialisation so handlers see (and must produce) exactly what travels on the wire.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass

import pytest
from telethon.extensions import BinaryReader

from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.controls import Controls
from tgdav.sandbox.counters import Counters
from tgdav.sandbox.keys import AuthKeyStore
from tgdav.sandbox.proto.messages import serialize_result
from tgdav.sandbox.server import error_counter
from tgdav.sandbox.services import Services
from tgdav.sandbox.world import Audio, Channel, Document, PatternSource, PhotoSize, Video, World

MIB = 1 << 20
PASSWORD = "correct horse battery staple"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Small:
    """The small world most service tests use, with handles on its interesting parts."""
    world: World
    films: Channel            # user + bot are members; documents on several DCs
    private: Channel          # nobody is a member
    news: Channel             # public (@sandboxnews), user is not a member
    big: Document             # 5 MiB + 123 bytes, pattern bytes, on DC 4
    home: Document            # 300 KiB on DC 2 (the accounts' home)
    stale: Document           # advertised on DC 3, bytes on DC 5
    photo_message_id: int


def build_small_world(seed: int = 7) -> Small:
    w = World(seed=seed)
    w.dcs.update({dc: ("127.0.0.1", 40000 + dc) for dc in w.dc_ids})
    user = w.add_user("+1 555 000 1111", "Ada", username="ada_user")
    w.add_user("15550002222", "Bob", password=PASSWORD)
    bot = w.add_bot("Files Bot", "files_bot")
    films = w.add_channel("Films", members=[user, bot])
    w.add_text(films, "hello")
    big = w.add_document(films, name="big.bin", size=5 * MIB + 123, mime="application/octet-stream", dc=4)
    home = w.add_document(films, name="home.bin", size=300 * 1024, mime="application/octet-stream", dc=2)
    stale = w.add_document(films, name="film.mp4", size=2 * MIB, mime="video/mp4", dc=3,
                           video=Video(12.5, 640, 360))
    w.add_document(films, name="song.mp3", size=4096, mime="audio/mpeg", dc=2, audio=Audio(3, "Song", "Band"))
    w.make_stale(stale.media, 5)
    photo = w.add_photo(films, [PhotoSize("m", 320, 240, 5000, PatternSource(11)),
                                PhotoSize("x", 800, 600, 70001, PatternSource(12))], dc=2)
    private = w.add_channel("Private")
    w.add_text(private, "secret")
    news = w.add_channel("News", username="sandboxnews")
    for i in range(5):
        w.add_text(news, f"news {i}")
    return Small(w, films, private, news, big.media, home.media, stale.media, photo.id)


class Sim:
    """Calls Services as the server does: per-DC auth keys, requests and answers through TL bytes,
    errors counted."""

    def __init__(self, world: World, clock: FakeClock, state_dir=None) -> None:
        self.world = world
        self.clock = clock
        self.keys = AuthKeyStore()
        self.counters = Counters()
        self.controls = Controls()
        self.services = Services(world, self.keys, self.counters, self.controls, clock=clock,
                                 state_dir=state_dir)
        self._loop = asyncio.new_event_loop()
        self._conn = itertools.count(1)

    def close(self) -> None:
        self._loop.close()

    def ctx(self, dc: int = 2, account=None) -> CallContext:
        """A connection with a fresh auth key on `dc`, logged in as `account` if given."""
        kid = self.keys.add(dc, os.urandom(256))
        if account is not None:
            self.keys.bind(kid, account.id)
        n = next(self._conn)
        return CallContext(dc_id=dc, auth_key_id=kid, session_id=n, conn_id=n)

    def call(self, ctx: CallContext, request):
        wire = BinaryReader(bytes(request)).tgread_object()
        try:
            answer = self._loop.run_until_complete(self.services.call(ctx, wire))
        except RpcError as e:
            self.counters.inc(ctx.dc_id, error_counter(e.message))   # as the server does
            raise
        if isinstance(answer, list):
            return [BinaryReader(bytes(x)).tgread_object() for x in answer]
        return BinaryReader(serialize_result(answer)).tgread_object()

    def error(self, ctx: CallContext, request) -> tuple[int, str]:
        with pytest.raises(RpcError) as e:
            self.call(ctx, request)
        return e.value.code, e.value.message


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def small() -> Small:
    return build_small_world()


@pytest.fixture
def sim(small: Small, clock: FakeClock):
    s = Sim(small.world, clock)
    yield s
    s.close()


@pytest.fixture
def user(small: Small):
    return small.world.account_by_phone("15550001111")


@pytest.fixture
def bot(small: Small):
    return small.world.bots()[0]
