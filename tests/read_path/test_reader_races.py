"""PartReader's single flight and cancellation with a scripted fetch (no network): the interleavings
the sandbox makes too rare to hit on purpose."""

from __future__ import annotations

import asyncio

import pytest

from tgdav.cache.reader import PartReader
from tgdav.cache.store import Store
from tgdav.model import Location
from tgdav.plan import Part
from tgdav.sandbox.content import pattern

MIB = 1 << 20
SEED = 99
SIZE = 4 * MIB + 10


def _loc() -> Location:
    return Location("document", SEED, 1, b"ref", 2, SIZE, 1, 1, 1)


class SlowCancelFetch:
    """A fetch whose requests take `delay` and whose cancellation takes `cleanup` seconds to finish,
    as pool.invoke's does (its finally awaits the DC's condition to release the sender)."""

    def __init__(self, delay: float = 0.5, cleanup: float = 0.2) -> None:
        self.delay, self.cleanup = delay, cleanup
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, loc: Location, offset: int, limit: int) -> bytes:
        self.calls.append((offset, limit))
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            await asyncio.sleep(self.cleanup)
            raise
        return pattern(SEED, offset, max(0, min(limit, SIZE - offset)))


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "cache")
    yield s
    s.close()


@pytest.mark.timeout(30)
def test_reader_joining_a_flight_being_cancelled_gets_its_bytes(store):
    """Reader A closes (its read-ahead is cancelled); reader B asks for one of those parts while the
    cancellation is still unwinding. B must get the bytes (a new request), not CancelledError."""
    fetch = SlowCancelFetch()
    reader = PartReader(fetch, store, first_part=64 * 1024, read_ahead=4)
    loc = _loc()

    async def scenario():
        a = reader.stream(loc, 0, SIZE - 1)
        read_ahead = asyncio.ensure_future(a.__anext__())
        await asyncio.sleep(0.05)                 # A's window is in flight
        assert len(fetch.calls) == 4
        read_ahead.cancel()
        try:
            await read_ahead
        except asyncio.CancelledError:
            pass
        await a.aclose()
        await asyncio.sleep(0.01)                 # A's parts have let go; their flights unwind
        wanted = Part(*fetch.calls[1])
        return wanted, await reader.part(loc, wanted)

    wanted, (offset, data) = asyncio.run(scenario())
    assert offset == wanted.offset
    assert data == pattern(SEED, wanted.offset, wanted.limit)


@pytest.mark.timeout(30)
def test_single_flight_shares_one_request(store):
    fetch = SlowCancelFetch(delay=0.2)
    reader = PartReader(fetch, store, first_part=64 * 1024, read_ahead=4)
    loc = _loc()

    async def scenario():
        async def read(start, end):
            out = bytearray()
            async for piece in reader.stream(loc, start, end):
                out += piece
            return bytes(out)
        return await asyncio.gather(read(0, 3 * MIB), read(0, 3 * MIB), read(0, 3 * MIB))

    results = asyncio.run(scenario())
    for got in results:
        assert got == pattern(SEED, 0, 3 * MIB + 1)
    assert len(fetch.calls) == len(set(fetch.calls)), fetch.calls        # no part asked twice


@pytest.mark.timeout(30)
def test_one_reader_leaving_does_not_cancel_a_shared_flight(store):
    fetch = SlowCancelFetch(delay=0.3)
    reader = PartReader(fetch, store, first_part=64 * 1024, read_ahead=4)
    loc = _loc()

    async def scenario():
        b_task = asyncio.ensure_future(reader.part(loc, Part(0, 65536)))
        a_task = asyncio.ensure_future(reader.part(loc, Part(0, 65536)))
        await asyncio.sleep(0.05)
        a_task.cancel()
        return await b_task

    offset, data = asyncio.run(scenario())
    assert data == pattern(SEED, 0, 65536)
    assert fetch.calls == [(0, 65536)]
