"""tgdav's catalog kept current by Telegram's updates, against the in-process sandbox over real
sockets: the reader is wired by tgdav.app (build_read_path + start_live, as `tgdav serve` does), a
second account posts, edits and deletes with an unmodified Telethon. Assertions are on listings and
the sandbox's counters (requests:GetHistory, requests:GetChannelDifference), never on time."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from telethon.tl import types

from tests.helpers import closing_factory
from tests.read_path.conftest import HOME_DC, Engine, Sandbox, running_sandbox
from tgdav.config import CacheConfig, Config
from tgdav.sandbox.world import World

logging.getLogger("telethon").setLevel(logging.ERROR)

READER, POSTER = "15550005555", "15550006666"
CHANNEL = "Live"


@pytest.fixture(scope="module")
def sandbox():
    w = World(seed=1818)
    reader = w.add_user(READER, "Reader", home_dc=HOME_DC)
    poster = w.add_user(POSTER, "Poster", home_dc=HOME_DC)
    channel = w.add_channel(CHANNEL, creator=poster, members=[reader])
    for i in range(3):
        w.add_document(channel, name=f"seed{i}.bin", size=1000 + i, mime="application/octet-stream", dc=2)
    with running_sandbox(w, reader, {}, channel) as sb:     # served as the read path's sandbox is
        yield sb


@pytest.fixture(autouse=True)
def clean(sandbox):
    sandbox.faults({"clear": True})
    yield
    sandbox.faults({"clear": True})


class Side(Engine):
    """One logged-in account on its own bridge loop (the read path's Engine, built by the same code);
    for the reader, tgdav's read path and updates started as `tgdav serve` starts them."""

    def __init__(self, sb: Sandbox, state: Path, phone: str, *, tgdav: bool, config: Config | None = None):
        super().__init__(sb, state, phone=phone, tgdav=tgdav, live=True, channel=None,
                         config=config or Config(cache=CacheConfig(listing_refresh=0.2, updates_refresh=3600)))

    # --- the reader: what tgdav lists -----------------------------------------------------------------
    def folder(self):
        async def get():
            return next(f for f in await self.catalog.folders() if f.title == CHANNEL)
        return self.call(get())

    def names(self) -> list[str]:
        async def get():
            folder = next(f for f in await self.catalog.folders() if f.title == CHANNEL)
            return sorted(e.name for e in await self.catalog.entries(folder))
        return self.call(get())

    def settle(self) -> None:
        self.call(self.updates.settle())

    # --- the poster: another client ------------------------------------------------------------------
    @property
    def peer(self):
        c = self.sb.channel
        return types.InputPeerChannel(c.id, c.access_hash)

    def post(self, name: str, data: bytes = b"x" * 100):
        async def send():
            return await self.client.send_file(self.peer, data, force_document=True,
                                               attributes=[types.DocumentAttributeFilename(name)])
        return self.call(send())

    def edit(self, message, text: str):
        return self.call(self.client.edit_message(self.peer, message, text))

    def delete(self, *ids: int):
        return self.call(self.client.delete_messages(self.peer, list(ids)))


@pytest.fixture
def sides(sandbox, tmp_path):
    """sides(state=None, phone=READER, tgdav=True, config=None) -> Side, closed after the test (the
    read path's make_engine, for Sides)."""
    yield from closing_factory(
        lambda state, phone=READER, tgdav=True, **kw: Side(sandbox, state, phone, tgdav=tgdav, **kw),
        tmp_path, "side")


@pytest.fixture
def poster(sides) -> Side:
    return sides(phone=POSTER, tgdav=False)

