"""The catalog's own races, with a fake Telegram whose answers a test holds back (tests/live/fakes.py).
Promise guarded: a change made elsewhere reaches the listing (issue 18's first row)."""

from __future__ import annotations

import asyncio

from tests.helpers import until
from tests.live.fakes import FakeClient
from tgdav.telegram.catalog import TelegramCatalog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoStore:
    def listing(self, key):
        return None

    def remember_listing(self, key, value):
        pass


async def _settle(catalog) -> None:
    while catalog._refreshing:
        await asyncio.gather(*catalog._refreshing.values())


def test_a_folder_reload_during_a_refresh_keeps_what_the_refresh_found():
    async def run():
        client, clock = FakeClient(), Clock()
        client.post("old.bin")
        catalog = TelegramCatalog(client, NoStore(), refresh_seconds=60, clock=clock)
        folder = (await catalog.folders())[0]
        assert [e.name for e in await catalog.entries(folder)] == ["old.bin"]

        client.post("new.bin")                      # posted elsewhere
        clock.now += 61                             # the listing and the channel list are both stale
        client.hold["GetHistory"] = asyncio.Event()
        client.hold["GetDialogs"] = asyncio.Event()
        await catalog.entries(folder)               # starts both refreshes in the background
        await until(lambda: client.calls["GetHistory"] == 2 and client.calls["GetDialogs"] == 2, 5,
                    lambda: dict(client.calls))       # both refreshes asked, both held
        client.hold.pop("GetDialogs").set()         # the channel list is read again first...
        await until(lambda: "folders" not in catalog._refreshing, 5, "the channel list read again")
        client.hold.pop("GetHistory").set()         # ...then the history answer comes back
        await _settle(catalog)

        names = [e.name for e in await catalog.entries(folder)]
        assert names == ["old.bin", "new.bin"]
    asyncio.run(run())
