"""PartReader with a scripted fetch (no network): single flight on byte ranges, cancellation, and a
read-ahead that follows the reader -- the interleavings the sandbox makes too rare to hit on purpose.
Every fetch is recorded, so "no byte fetched twice" is checked on the requests themselves."""

from __future__ import annotations

import asyncio
import collections

import pytest

from tests.helpers import until
from tgdav.cache.reader import CACHE_READ, PartReader
from tgdav.cache.store import Store
from tgdav.errors import ConnectionsLost
from tgdav.model import Location
from tgdav.plan import valid_request
from tgdav.ranges import Range, Ranges
from tgdav.sandbox.content import pattern

MIB = 1 << 20
KIB = 1 << 10
SEED = 99
SIZE = 8 * MIB + 10


def _loc() -> Location:
    return Location("document", SEED, 1, b"ref", 2, SIZE, 1, 1, 1)


class ScriptedFetch:
    """Requests take `delay`; cancelling one takes `cleanup` to unwind (as pool.invoke's finally does).
    Records (offset, limit, urgent) of every request and which were cancelled; `active` and `done`
    count the requests running and answered, for the tests to wait on (helpers.until), never a sleep."""

    def __init__(self, delay: float = 0.2, cleanup: float = 0.05) -> None:
        self.delay, self.cleanup = delay, cleanup
        self.calls: list[tuple[int, int, bool]] = []
        self.interactive: list[bool] = []             # per call: interactive read-ahead
        self.cancelled: list[tuple[int, int]] = []
        self.active = 0
        self.done = 0

    async def __call__(self, loc: Location, offset: int, limit: int, *, urgent: bool = False,
                       interactive: bool = False) -> bytes:
        assert valid_request(offset, limit), (offset, limit)
        self.calls.append((offset, limit, urgent))
        self.interactive.append(interactive)
        self.active += 1
        try:
            await asyncio.sleep(self.delay(offset) if callable(self.delay) else self.delay)
        except asyncio.CancelledError:
            self.cancelled.append((offset, limit))
            await asyncio.sleep(self.cleanup)
            raise
        finally:
            self.active -= 1
        self.done += 1
        return pattern(SEED, offset, max(0, min(limit, SIZE - offset)))

    def answered(self) -> list[tuple[int, int, bool]]:
        """The calls that were not cancelled (a cancelled request's answer is dropped)."""
        cancelled, out = collections.Counter(self.cancelled), []
        for offset, limit, urgent in self.calls:
            if cancelled[(offset, limit)]:
                cancelled[(offset, limit)] -= 1
            else:
                out.append((offset, limit, urgent))
        return out

    def fetched_bytes(self, answered: bool = False) -> int:
        calls = self.answered() if answered else self.calls
        return sum(min(limit, SIZE - offset) for offset, limit, _ in calls)

    def overlaps(self, answered: bool = False) -> int:
        """Bytes asked for more than once (completed or not; answered=True: of the calls answered)."""
        seen, twice = Ranges(), 0
        for offset, limit, _ in (self.answered() if answered else self.calls):
            r = Range(offset, min(offset + limit, SIZE))
            twice += r.size - sum(m.size for m in seen.find_missing(r))
            seen.insert(r)
        return twice


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "cache")
    yield s
    s.close()


def waiters(reader: PartReader) -> int:
    """Streams holding flights of the reader, all files together."""
    return sum(flight.waiters for f in reader._files.values() for flight in f.flights)


def reader_for(fetch, store, **kw) -> PartReader:
    return PartReader(fetch, store, first_part=64 * KIB, max_ahead=kw.pop("max_ahead", 4 * MIB), **kw)


async def read_all(reader, loc, start, end) -> bytes:
    out = bytearray()
    async for piece in reader.stream(loc, start, end):
        out += piece
    return bytes(out)


@pytest.mark.timeout(30)
def test_a_stream_starts_with_one_small_urgent_part_and_grows_while_read(store):
    fetch = ScriptedFetch(delay=0.01)
    reader = reader_for(fetch, store)
    got = asyncio.run(read_all(reader, _loc(), 0, 6 * MIB))
    assert got == pattern(SEED, 0, 6 * MIB + 1)
    first = fetch.calls[0]
    assert first == (0, 64 * KIB, True)
    # only what the reader waits for is urgent, and that is never more than one small first part
    assert all(limit <= 64 * KIB for _, limit, urgent in fetch.calls if urgent)
    assert max(limit for _, limit, _ in fetch.calls) == MIB        # grew to full parts
    assert fetch.overlaps() == 0


@pytest.mark.timeout(30)
def test_reading_8_kib_of_an_open_range_then_closing_costs_at_most_two_requests(store):
    fetch = ScriptedFetch(delay=0.01)
    reader = reader_for(fetch, store)

    async def scenario():
        stream = reader.stream(_loc(), 3 * MIB + 100, SIZE - 1)
        piece = await stream.__anext__()
        await stream.aclose()
        await until(lambda: fetch.active == 0, 5, "the requests the close let go ended")
        return piece
    piece = asyncio.run(scenario())
    assert piece[:8192] == pattern(SEED, 3 * MIB + 100, 8192)
    assert len(fetch.calls) <= 2 and fetch.fetched_bytes() <= 512 * KIB, fetch.calls


SMALL_READS = (5 * MIB + 10_000, 5 * MIB + 300_000, 5 * MIB + 700_000)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("read_ahead_lands", ["before the read ends", "after the read ends"])
def test_reads_inside_a_mib_then_the_whole_mib_fetch_only_what_is_missing(store, read_ahead_lands):
    """A small read may ask for read-ahead up to its end rounded up to a first_part; when the read
    ends before that lands (a loaded machine), the request is cancelled and its answer dropped:
    the whole-MiB read then asks for those bytes again, and no byte is answered twice."""
    firsts = {a - a % 4096 for a in SMALL_READS}
    slow = 0.01 if read_ahead_lands == "before the read ends" else 0.5
    fetch = ScriptedFetch(delay=lambda offset: 0.01 if offset in firsts or offset >= 5 * MIB + MIB else slow)
    reader = reader_for(fetch, store)
    loc = _loc()

    async def scenario():
        for a in SMALL_READS:
            assert await read_all(reader, loc, a, a + 1000) == pattern(SEED, a, 1001)
            await until(lambda: fetch.active == 0)
        fetch.delay = 0.01
        return await read_all(reader, loc, 5 * MIB, 6 * MIB - 1)
    assert asyncio.run(scenario()) == pattern(SEED, 5 * MIB, MIB)
    assert fetch.overlaps(answered=True) == 0, fetch.calls
    assert fetch.fetched_bytes(answered=True) == MIB
    if read_ahead_lands == "after the read ends":
        assert fetch.cancelled, fetch.calls            # the race this case is about did happen


@pytest.mark.timeout(30)
def test_a_read_inside_a_flight_waits_for_it_instead_of_asking_again(store):
    fetch = ScriptedFetch(delay=0.3)
    reader = reader_for(fetch, store)
    loc = _loc()

    async def scenario():
        big = asyncio.ensure_future(read_all(reader, loc, 2 * MIB, 3 * MIB - 1))
        await until(lambda: fetch.done >= 1 and fetch.active > 0, 5,
                    "its first part is in; the rest is in flight")
        inside = await read_all(reader, loc, 2 * MIB + 500_000, 2 * MIB + 600_000)
        return await big, inside
    big, inside = asyncio.run(scenario())
    assert big == pattern(SEED, 2 * MIB, MIB)
    assert inside == pattern(SEED, 2 * MIB + 500_000, 100_001)
    assert fetch.overlaps() == 0, fetch.calls


@pytest.mark.timeout(30)
def test_overlapping_reads_of_different_shapes_fetch_each_byte_once(store):
    fetch = ScriptedFetch(delay=0.05)
    reader = reader_for(fetch, store)
    loc = _loc()
    shapes = [(0, 3 * MIB), (MIB // 2, 2 * MIB + 7), (100, 200), (2 * MIB - 5, 4 * MIB),
              (3 * MIB + 4096, 3 * MIB + 8191), (0, SIZE - 1)]

    async def scenario():
        return await asyncio.gather(*(read_all(reader, loc, a, b) for a, b in shapes))
    for (a, b), got in zip(shapes, asyncio.run(scenario())):
        assert got == pattern(SEED, a, b - a + 1)
    assert fetch.overlaps() == 0, fetch.calls


@pytest.mark.timeout(30)
def test_reader_joining_a_flight_being_cancelled_gets_its_bytes(store):
    """Reader A closes (its read-ahead is cancelled); reader B asks for those bytes while the
    cancellation is still unwinding. B must get the bytes (a new request), not CancelledError."""
    fetch = ScriptedFetch(delay=0.5, cleanup=0.2)
    reader = reader_for(fetch, store)
    loc = _loc()

    async def scenario():
        a = reader.stream(loc, 0, SIZE - 1)
        first = asyncio.ensure_future(a.__anext__())
        await until(lambda: fetch.active == 1, 5, "A's first part in flight")
        first.cancel()
        try:
            await first
        except asyncio.CancelledError:
            pass
        await a.aclose()
        await until(lambda: fetch.cancelled, 5, "A's flight unwinding")     # for `cleanup` seconds
        return await read_all(reader, loc, 0, 64 * KIB - 1)

    assert asyncio.run(scenario()) == pattern(SEED, 0, 64 * KIB)
    assert fetch.cancelled == [(0, 64 * KIB)]


@pytest.mark.timeout(30)
def test_one_reader_leaving_does_not_cancel_a_shared_flight(store):
    fetch = ScriptedFetch(delay=0.3)
    reader = reader_for(fetch, store)
    loc = _loc()

    async def scenario():
        b_task = asyncio.ensure_future(read_all(reader, loc, 0, 65535))
        a_task = asyncio.ensure_future(read_all(reader, loc, 0, 65535))
        await until(lambda: waiters(reader) == 2, 5, "both readers on the one flight")
        a_task.cancel()
        return await b_task

    assert asyncio.run(scenario()) == pattern(SEED, 0, 65536)
    assert [c[:2] for c in fetch.calls] == [(0, 65536)] and fetch.cancelled == []


@pytest.mark.timeout(30)
def test_a_seek_cancels_the_read_ahead_it_made_useless(store):
    fetch = ScriptedFetch(delay=lambda offset: 0.02 if offset < MIB else 2.0)   # past 1 MiB: in flight
    reader = reader_for(fetch, store)
    loc = _loc()

    async def scenario():
        a = reader.stream(loc, 0, SIZE - 1)
        got = 0
        async for piece in a:               # a player reads a while: read-ahead grows
            got += len(piece)
            if got >= MIB:
                break
        await a.aclose()                     # the player drops the connection and seeks
        await until(lambda: fetch.active == 0, 5, "the read-ahead the close let go ended")
        return await read_all(reader, loc, 6 * MIB, 6 * MIB + 9)

    assert asyncio.run(scenario()) == pattern(SEED, 6 * MIB, 10)
    ahead = {(o, l) for o, l, _ in fetch.calls if MIB <= o < 6 * MIB}
    assert ahead and set(fetch.cancelled) == ahead, "the read-ahead the seek made useless goes on"


@pytest.mark.timeout(30)
def test_a_second_read_comes_from_the_cache_even_after_a_restart(store, tmp_path):
    fetch = ScriptedFetch(delay=0.01)
    reader = reader_for(fetch, store)
    loc = _loc()
    assert asyncio.run(read_all(reader, loc, 1000, 2 * MIB)) == pattern(SEED, 1000, 2 * MIB - 999)
    reader.close()
    calls = len(fetch.calls)
    again = reader_for(fetch, store)         # a new process on the same store
    assert asyncio.run(read_all(again, loc, 4096, 2 * MIB - 1)) == pattern(SEED, 4096, 2 * MIB - 4096)
    assert len(fetch.calls) == calls


@pytest.mark.timeout(30)
def test_read_ahead_that_lost_its_connections_while_waited_on_is_asked_again_urgent(store):
    """Every connection of a DC cut at once: a read-ahead part fails (ConnectionsLost) while the
    stream waits on it. The stream asks for it again, urgent (the pool's full attempts, a new
    sender), as it does when such a part fails before the stream reaches it; the read goes on."""
    class Failing(ScriptedFetch):
        failed: list[int] = []

        async def __call__(self, loc, offset, limit, *, urgent=False, interactive=False):
            if offset == 128 * KIB and not urgent and not self.failed:
                self.calls.append((offset, limit, urgent))
                self.failed.append(offset)
                await asyncio.sleep(0.3)            # the stream is waiting on it by then
                raise ConnectionsLost("Telegram DC 2 is not answering (SenderLost)")
            return await super().__call__(loc, offset, limit, urgent=urgent, interactive=interactive)

    fetch = Failing(delay=0.01)
    reader = reader_for(fetch, store, interactive_part=32 * KIB, interactive_ahead=MIB)
    assert asyncio.run(read_all(reader, _loc(), 0, 2 * MIB - 1)) == pattern(SEED, 0, 2 * MIB)
    assert fetch.failed == [128 * KIB]
    assert [(o, urgent) for o, _, urgent in fetch.calls if o == 128 * KIB] == [(128 * KIB, False),
                                                                               (128 * KIB, True)]


@pytest.mark.timeout(60)
def test_a_cached_file_is_read_from_the_store_several_chunks_per_thread_trip(store):
    """Serving the cache: each trip to a worker thread brings CACHE_READ bytes of chunks, not one
    chunk (a thread handoff per MiB was most of the server's CPU per GiB served from the cache)."""
    fetch = ScriptedFetch(delay=0.01)
    reader = reader_for(fetch, store)
    loc = _loc()
    assert asyncio.run(read_all(reader, loc, 0, SIZE - 1)) == pattern(SEED, 0, SIZE)
    reader.close()
    calls, trips = len(fetch.calls), []

    class Counting(PartReader):
        def _chunks(self, file_key, wanted):
            trips.append(sum(length for _, length in wanted))
            return super()._chunks(file_key, wanted)

    again = Counting(fetch, store, first_part=64 * KIB, max_ahead=4 * MIB)     # a new process
    assert asyncio.run(read_all(again, loc, 100, SIZE - 1)) == pattern(SEED, 100, SIZE - 100)
    again.close()
    assert len(fetch.calls) == calls                 # all of it from the cache
    assert len(store.chunk_index(loc.file_key)) > 9  # ... in more chunks than the trips below
    assert len(trips) <= -(-SIZE // CACHE_READ) + 1, trips
    assert sum(trips) == SIZE, trips                 # each chunk read once


@pytest.mark.timeout(30)
def test_a_flight_that_ends_cancelled_by_itself_is_asked_again_not_spun_on(store):
    """A part whose fetch ends in CancelledError from inside (not cancelled by a stream) is asked for
    again, and the stream goes on."""
    class CancelsOnce(ScriptedFetch):
        def __init__(self):
            super().__init__(delay=0.01)
            self.failed = False

        async def __call__(self, loc, offset, limit, **priority):
            if not self.failed:
                self.failed = True
                raise asyncio.CancelledError()
            return await super().__call__(loc, offset, limit, **priority)

    fetch = CancelsOnce()
    reader = reader_for(fetch, store)
    assert asyncio.run(read_all(reader, _loc(), 0, 300_000)) == pattern(SEED, 0, 300_001)


# --- interactive and bulk streams (issue 19) ---------------------------------------------------------

@pytest.mark.timeout(30)
def test_a_player_that_keeps_reading_gets_its_whole_window_at_once(store):
    """After the first piece (handed out in three slices), a client that took the second slice opens
    the interactive window at once: a player's buffer fills at link speed, not by a slow start from
    one 64 KiB part. The window's parts are small and interactive."""
    fetch = ScriptedFetch(delay=0.05)
    reader = reader_for(fetch, store, interactive_part=32 * KIB, interactive_ahead=MIB)

    async def scenario():
        stream = reader.stream(_loc(), 2 * MIB + 100, SIZE - 1)
        for _ in range(3):                          # the first piece, three slices
            await stream.__anext__()
        await stream.__anext__()                    # the client took the second slice: read on
        # The window's parts are tasks created before that piece was handed out; they reach fetch
        # when the loop next runs them. (The piece itself may need no wait: the part after the
        # first one was asked for with it and has landed already.)
        await asyncio.sleep(0)
        asked = sum(limit for _, limit, _ in fetch.calls)
        await stream.aclose()
        return asked
    asked = asyncio.run(scenario())
    assert asked >= MIB, fetch.calls                 # the whole window at once
    ahead = [(limit, i) for (_, limit, urgent), i in zip(fetch.calls, fetch.interactive) if not urgent]
    assert ahead and all(limit <= 32 * KIB and i for limit, i in ahead), fetch.calls


@pytest.mark.timeout(30)
def test_a_client_that_reads_a_slice_and_leaves_does_not_open_the_window(store):
    fetch = ScriptedFetch(delay=0.01)
    reader = reader_for(fetch, store, interactive_part=32 * KIB, interactive_ahead=MIB)

    async def scenario():
        stream = reader.stream(_loc(), 100, SIZE - 1)
        await stream.__anext__()
        await stream.__anext__()        # what SyncReader pulls ahead of a client that read 8 KiB
        await stream.aclose()
        await until(lambda: fetch.active == 0, 5, "the requests the close let go ended")
    asyncio.run(scenario())
    # the first window only (the first part and the rest of its grain): the player's window did
    # not open for a client that left
    assert len(fetch.calls) <= 2 and fetch.fetched_bytes() <= 128 * KIB, fetch.calls


@pytest.mark.timeout(60)
def test_a_stream_that_takes_everything_turns_bulk_and_one_at_a_media_pace_stays_interactive(store):
    """Past its first 4 MiB a stream that mostly waits on Telegram is bulk (big parts, bulk
    priority); one whose client is the slower side (a player at its bitrate) stays interactive."""
    loc = _loc()

    def run(consume_delay: float) -> ScriptedFetch:
        fetch = ScriptedFetch(delay=0.02)
        reader = reader_for(fetch, store, interactive_part=32 * KIB, interactive_ahead=256 * KIB)

        async def scenario():
            taken = 0
            async for piece in reader.stream(loc, 0, 7 * MIB):
                taken += len(piece)
                if consume_delay:
                    await asyncio.sleep(consume_delay * len(piece) / (64 * KIB))
        asyncio.run(scenario())
        store.clear_chunks()
        return fetch

    def late(fetch):      # read-ahead asked for beyond the first classification
        return [(limit, i) for (offset, limit, urgent), i in zip(fetch.calls, fetch.interactive)
                if offset >= 5 * MIB and not urgent]

    bulk = late(run(0.0))
    assert bulk and not any(i for _, i in bulk) and max(limit for limit, _ in bulk) > 32 * KIB, bulk
    media = late(run(0.06))        # about 1 MiB/s against a link 3x faster
    assert media and all(i and limit <= 32 * KIB for limit, i in media), media


@pytest.mark.timeout(60)
def test_a_stream_faster_than_any_video_turns_bulk_even_when_it_never_waits_on_telegram(store):
    """A fast link (here answers in 1 ms) keeps an interactive window ahead of its stream, so the
    stream never waits on Telegram, and its client (the HTTP thread, 32 KiB at a time, sharing the
    GIL) looked like a player: it stayed interactive, in 32 KiB parts, for the whole file (8189
    getFile for 256 MiB, 26 MiB/s and 40 s of CPU per GiB through `tgdav serve`). Taking more than
    MEDIA_RATE bytes/s is no video playing: bulk."""
    loc = _loc()
    fetch = ScriptedFetch(delay=0.001)
    reader = reader_for(fetch, store, interactive_part=32 * KIB, interactive_ahead=256 * KIB)

    async def scenario():
        async for piece in reader.stream(loc, 0, 7 * MIB):
            # a client that takes 128 MiB/s at most: slower than the read-ahead, faster than a video
            await asyncio.sleep(len(piece) / (128 * MIB))
    asyncio.run(scenario())
    # asked for after the second look (at 5 MiB: about 85-90 MiB/s here), with the window it opened
    late = [(limit, i) for (offset, limit, urgent), i in zip(fetch.calls, fetch.interactive)
            if offset >= 6 * MIB and not urgent]
    assert late and not any(i for _, i in late) and max(limit for limit, _ in late) > 32 * KIB, late


@pytest.mark.timeout(30)
def test_read_ahead_that_lands_before_the_stream_reaches_it_is_served_from_memory_not_read_back(store):
    """The window's later parts land (and are written to the cache) while the stream still waits on
    its first: the stream takes their bytes from the flights it holds, never from the cache (a
    first read from Telegram read most of its bytes back from disk, a worker thread's trip each)."""
    part = 64 * KIB
    trips = []

    class LastFirst(ScriptedFetch):
        async def __call__(self, loc, offset, limit, **kw):
            if offset == part:          # the window's first part answers after all the others
                await until(lambda: self.done == 8, timeout=10)     # (the first part and 7 more)
                await asyncio.to_thread(reader.flush)              # ... all in the cache
            return await super().__call__(loc, offset, limit, **kw)

    class Counting(PartReader):
        def _chunks(self, file_key, wanted):
            trips.append(wanted)
            return super()._chunks(file_key, wanted)

    fetch = LastFirst(delay=0.01)
    reader = Counting(fetch, store, first_part=part, max_ahead=part, interactive_part=part,
                      interactive_ahead=8 * part)
    loc = _loc()
    assert asyncio.run(read_all(reader, loc, 0, 9 * part - 1)) == pattern(SEED, 0, 9 * part)
    reader.close()
    assert fetch.done == 9 and fetch.overlaps() == 0
    assert trips == []
    assert len(store.chunk_index(loc.file_key)) == 9     # every part was cached all the same


class CountingStore(Store):
    """A Store that counts how often a file's chunk index is written."""
    index_writes = 0

    def remember_chunk_index(self, file_key, chunks):
        self.index_writes += 1
        super().remember_chunk_index(file_key, chunks)


@pytest.mark.timeout(60)
def test_the_chunk_index_is_written_every_few_chunks_and_when_the_file_goes_idle(tmp_path):
    """A file read at link speed has its index written every INDEX_EVERY chunks and once after its
    last chunk, not after every chunk (it was: the writer was always 'caught up'); the index then
    names every chunk, and a new process reads the file from the cache alone."""
    from tgdav.cache.reader import INDEX_EVERY
    store = CountingStore(tmp_path / "cache")
    fetch = ScriptedFetch(delay=0.005)                             # one part in the air at a time:
    one = {"max_part": 64 * KIB, "max_ahead": 64 * KIB,           # the writer keeps up with them
           "interactive_part": 64 * KIB, "interactive_ahead": 64 * KIB}
    reader = reader_for(fetch, store, **one)                      # every chunk 64 KiB: 129 chunks
    loc = _loc()
    try:
        assert asyncio.run(read_all(reader, loc, 0, SIZE - 1)) == pattern(SEED, 0, SIZE)
        reader.flush()
        chunks = store.chunk_index(loc.file_key)
        assert len(chunks) == -(-SIZE // (64 * KIB)) and sum(n for _, n in chunks) == SIZE
        assert store.index_writes <= len(chunks) // INDEX_EVERY + 1, store.index_writes
    finally:
        reader.close()
    calls = len(fetch.calls)
    again = reader_for(fetch, store, **one)                       # a new process
    try:
        assert asyncio.run(read_all(again, loc, 0, SIZE - 1)) == pattern(SEED, 0, SIZE)
    finally:
        again.close()
        store.close()
    assert len(fetch.calls) == calls


@pytest.mark.timeout(60)
def test_an_index_behind_or_ahead_of_the_chunks_costs_a_refetch_never_a_wrong_byte(tmp_path):
    """What a process killed mid-file leaves: chunks the index does not name (written after its last
    write) and an index naming chunks never written. A new process serves the exact bytes,
    fetching only what the index does not lead it to, each byte once."""
    store = Store(tmp_path / "cache")
    part = 64 * KIB
    for offset in range(0, 4 * MIB, part):                        # the first 4 MiB are cached...
        store.put_chunk(_loc().file_key, offset, part, pattern(SEED, offset, part))
    store.remember_chunk_index(_loc().file_key,                   # ... the index names 2 MiB of them
                               [(o, part) for o in range(0, 2 * MIB, part)]        # and 1 MiB never
                               + [(o, part) for o in range(6 * MIB, 7 * MIB, part)])   # written
    fetch = ScriptedFetch(delay=0.002)
    reader = reader_for(fetch, store)
    try:
        assert asyncio.run(read_all(reader, _loc(), 0, SIZE - 1)) == pattern(SEED, 0, SIZE)
    finally:
        reader.close()
        store.close()
    assert fetch.overlaps() == 0
    assert fetch.fetched_bytes() == SIZE - 2 * MIB     # the 2 MiB the index named came from the cache
