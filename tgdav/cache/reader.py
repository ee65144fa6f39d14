"""Ranged reads: a byte range -> bytes from memory, the chunk cache or Telegram, in order, with a
read-ahead that follows the reader (after rclone's vfs/vfscache and tdesktop's streaming loader).

What a file holds is tracked as byte ranges, not as parts on a grid:
- chunks: what the cache stores, per file an index {offset: length} (kept in the store's meta, so it
  outlives the process); a chunk the cache evicted is noticed when read and fetched again;
- pending: chunks fetched but not yet written to the cache (a writer thread writes them off the
  path to the client; until then they are served from memory);
- flights: requests in the air, each a byte range with the streams waiting on it (a stream keeps a
  landed flight's bytes until it has read past them).
A stream asks only for what none of these cover (Ranges.find_missing), planned into valid getFile
parts by plan.plan_missing, and waits on a flight that covers its bytes instead of asking again: each
byte is fetched once. A flight is cancelled when its last stream goes away (a seek, a closed
connection), which makes the pool drop its answer.

Streams are not equal (after tdesktop's streaming loader and TDLib's download priorities): a stream
is interactive while a person waits on it -- for its first CLASSIFY_FIRST bytes (it just seeked; the
window it opened then stays interactive), and later while it waits on Telegram less than half the
time (it reads at a media bitrate; looked at every CLASSIFY_EVERY bytes) -- and bulk once it takes
everything as fast as it can (a copy: small parts would only cost it requests), or more than
MEDIA_RATE bytes/s (no video plays that fast: a copy over a link fast enough that its 32 KiB
interactive window stays ahead of it never waits on Telegram, and was taken for a player). The
pool (telegram/pool.py) gives interactive read-ahead priority on senders and bulk read-ahead what
is left.

Read-ahead follows consumption. A stream starts with one `first_part` requested, urgent (the pool
gives it an idle sender). That first piece is handed out in three slices: a client that takes the
second one (and so keeps reading; SyncReader pulls one piece ahead of it) opens the interactive
window at once, `interactive_ahead` bytes in parts of `interactive_part` (enough to keep every sender
of the DC busy: the player's buffer fills at link speed from the start), while a client that reads
a few bytes and leaves cost one part. A bulk stream's window grows from there by what the client
takes (slow start: it doubles per window consumed) up to `max_ahead`, in parts of at most
`part_limit(location)` (the fetcher's: what one connection to the file's DC delivers in a couple of
seconds, smaller while parts keep losing their connections). Small interactive parts waste little
when a player seeks away (its answers on the wire are dropped or small) and never queue behind a
big one. The window never reaches past the end of the range the caller asked for.

SyncReader adapts the async reader to the blocking model.Reader interface over the bridge.

Everything here runs on the bridge's loop, but the writer thread: the store is touched from worker
threads, and the count of bytes waiting for the writer (_pending_bytes) is changed by both, under
_pending_lock (the only lock; nothing is awaited or called while it is held).
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import logging
import threading
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

from tgdav.errors import ConnectionsLost, UpstreamUnavailable
from tgdav.model import Location
from tgdav.plan import ALIGN, MIB, Part, check_part_size, plan_missing
from tgdav.ranges import Range, Ranges

log = logging.getLogger("tgdav.reader")

Fetch = Callable[..., Awaitable[bytes]]        # fetch(location, offset, limit, urgent=False)
MAX_PENDING = 64 * MIB                          # bytes waiting for the cache writer; beyond, not cached
CLASSIFY_FIRST = MIB                            # bytes a stream takes before the first look at its pace
CLASSIFY_EVERY = 4 * MIB                        # and between two later looks
BULK_WAITING = 0.5                              # waiting on Telegram more than this share: bulk
MEDIA_RATE = 16 * MIB                           # taking more bytes/s than any video plays: bulk
CACHE_READ = 4 * MIB                            # bytes of chunks read from the cache in one go
INDEX_EVERY = 32                                # chunks written between two writes of a file's index
                                                # (and once more when the file goes idle)


@dataclass(eq=False)
class _Flight:
    range: Range
    task: asyncio.Task
    waiters: int = 0
    urgent: bool = False          # asked for because a stream waited on it (not read-ahead)


@dataclass(eq=False)
class _File:
    """What is known of one file's bytes in this process."""
    starts: list[int] = field(default_factory=list)       # sorted chunk offsets
    lengths: dict[int, int] = field(default_factory=dict)
    pending: dict[int, bytes] = field(default_factory=dict)
    flights: list[_Flight] = field(default_factory=list)
    unindexed: int = 0            # chunks written since the index was (writer thread only)

    def add_chunk(self, offset: int, length: int) -> None:
        if offset not in self.lengths:
            bisect.insort(self.starts, offset)
        self.lengths[offset] = length

    def remove_chunk(self, offset: int) -> None:
        if self.lengths.pop(offset, None) is not None:
            self.starts.remove(offset)

    def chunk_at(self, pos: int) -> tuple[int, int] | None:
        i = bisect.bisect_right(self.starts, pos) - 1
        if i >= 0:
            offset = self.starts[i]
            if pos < offset + self.lengths[offset]:
                return offset, self.lengths[offset]
        return None

    def covered(self, want: Range) -> Ranges:
        """The bytes of `want` that chunks, pending chunks or flights hold or will hold."""
        have = Ranges()
        i = max(0, bisect.bisect_right(self.starts, want.start) - 1)
        while i < len(self.starts) and self.starts[i] < want.end:
            have.insert(Range(self.starts[i], self.starts[i] + self.lengths[self.starts[i]]))
            i += 1
        for f in self.flights:
            if f.range.start < want.end and want.start < f.range.end:
                have.insert(f.range)
        return have

    def flight_at(self, pos: int) -> _Flight | None:
        for f in self.flights:
            if f.range.start <= pos < f.range.end:
                return f
        return None


class PartReader:
    def __init__(self, fetch: Fetch, store, *, first_part: int = 64 * 1024, max_ahead: int = 8 * MIB,
                 max_part: int = MIB, part_limit: Callable[[Location], int] | None = None,
                 interactive_part: int = 128 * 1024, interactive_ahead: int = MIB,
                 metrics=None) -> None:
        check_part_size("first_part", first_part)
        check_part_size("max_part", max_part)
        check_part_size("interactive_part", interactive_part)
        self._fetch = fetch
        self._store = store
        self.first_part = first_part
        self.max_ahead = max(first_part, max_ahead)
        self.interactive_part = interactive_part
        self.interactive_ahead = max(self.interactive_part, interactive_ahead)
        self.max_part = max_part
        self._part_limit = part_limit or (lambda loc: max_part)
        self._metrics = metrics
        self._files: dict[str, _File] = {}
        self._loading: dict[str, asyncio.Future] = {}
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tgdav-cache")
        self._pending_bytes = 0     # the loop adds, the writer thread subtracts: under _pending_lock
        self._pending_lock = threading.Lock()
        self.fetched = 0            # bytes received from Telegram
        self.requests = 0           # getFile parts sent

    async def stream(self, loc: Location, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes start..end (inclusive) of the file, in order, in pieces of at most one part."""
        if not 0 <= start <= end < loc.size:
            raise ValueError(f"range {start}-{end} outside a file of {loc.size} bytes")
        f = await self._file(loc)
        held: set[_Flight] = set()
        pos, stop, ahead = start, end + 1, self.first_part
        pace = _Pace()
        read: dict[tuple[int, int], bytes] = {}    # chunks read from the cache ahead of pos
        try:
            while pos < stop:
                cap = self._part_cap(loc)
                if pace.interactive:
                    cap = min(cap, self.interactive_part)
                want = Range(pos, self._window_end(loc, pos, stop, ahead, cap))
                self._request(loc, f, want, held, cap, pace.interactive)
                t = asyncio.get_running_loop().time()
                piece = await self._piece(loc, f, pos, stop, held, read)
                pace.waited += asyncio.get_running_loop().time() - t
                if piece is None:     # a flight it waited on ended without bytes: ask again
                    await asyncio.sleep(0)   # (after the loop has run what that ending scheduled)
                    continue
                pos += len(piece)
                for flight in [h for h in held if h.range.end <= pos]:
                    self._let_go(loc, f, flight, held)
                if pace.taken == 0 and len(piece) >= 3:
                    third = len(piece) // 3
                    yield piece[:third]
                    yield piece[third:2 * third]
                    # the client took the first slice and asks for more: it is reading on
                    ahead = max(ahead, self.interactive_ahead)
                    yield piece[2 * third:]
                else:
                    yield piece
                pace.took(len(piece), asyncio.get_running_loop().time())
                if pace.interactive:
                    ahead = max(ahead, min(self.interactive_ahead, ahead + len(piece)))
                else:
                    ahead = min(self.max_ahead, ahead + len(piece))
        finally:
            for flight in list(held):
                self._let_go(loc, f, flight, held)
            if not f.flights:         # the file is idle: its index catches up after its last chunk
                self._index_later(loc.file_key, f)

    def _window_end(self, loc: Location, pos: int, stop: int, ahead: int, cap: int) -> int:
        """Where the bytes to have in flight end: pos + ahead rounded up to a grain (the largest
        power of two <= ahead, at most a part of `cap`), never past the range's end rounded up to a
        first_part, nor past the file. So a window's chunks end on grain multiples, and a window
        of several MiB asks in whole, MiB-aligned parts once past the MiB it started in."""
        grain = min(cap, 1 << (max(ahead, self.first_part).bit_length() - 1))
        end = -(-(pos + ahead) // grain) * grain
        last = -(-stop // self.first_part) * self.first_part
        return min(end, last, loc.size)

    def _request(self, loc: Location, f: _File, want: Range, held: set[_Flight], cap: int,
                 interactive: bool) -> None:
        """Start flights for the bytes of `want` nothing covers, in parts of at most `cap`; hold
        every flight `want` overlaps. The part at want.start (what the reader waits for now) is
        urgent and one first_part; the others are read-ahead, interactive or bulk."""
        for gap in f.covered(want).find_missing(want):
            parts: list[Part] = []
            if gap.start == want.start:
                # one first_part from pos (4 KiB aligned), moved back only as far as it must to stay
                # inside its MiB: bytes before pos are fetched for nobody (after a seek: waste)
                at = min(gap.start - gap.start % ALIGN, (gap.start // MIB + 1) * MIB - self.first_part)
                block = Part(at, self.first_part)
                head = Range(block.offset, gap.start)
                if (block.end > gap.end < loc.size
                        or f.covered(head).find_missing(head) != ([head] if head else [])):
                    # bytes before pos or after the gap are held already: one part from pos inside it
                    block = plan_missing(gap.start, min(gap.end, block.end), loc.size, self.first_part)[0]
                parts.append(block)
                gap = Range(min(gap.end, block.end), gap.end)
            if gap:
                parts += plan_missing(gap.start, gap.end, loc.size, cap)
            for part in parts:
                urgent = part.offset <= want.start < part.end
                priority = {"urgent": True} if urgent else {"interactive": True} if interactive else {}
                task = asyncio.ensure_future(self._fetch_part(loc, f, part, priority))
                flight = _Flight(Range(part.offset, min(part.end, loc.size)), task, urgent=urgent)
                f.flights.append(flight)
                task.add_done_callback(lambda t, fl=flight: self._landed(f, fl, t))
        for flight in f.flights:
            if flight not in held and flight.range.start < want.end and want.start < flight.range.end:
                flight.waiters += 1
                held.add(flight)

    @staticmethod
    def _landed(f: _File, flight: _Flight, task: asyncio.Task) -> None:
        """A flight ended: it covers nothing any more. Its error is the waiting streams' to raise; a
        read-ahead nobody waits for any more fails quietly (nobody is left to tell)."""
        if flight in f.flights:
            f.flights.remove(flight)
        if not task.cancelled():
            task.exception()

    def _part_cap(self, loc: Location) -> int:
        return max(self.first_part, min(self.max_part, self._part_limit(loc)))

    async def _piece(self, loc: Location, f: _File, pos: int, stop: int, held: set[_Flight],
                     read: dict[tuple[int, int], bytes]) -> bytes | None:
        """Bytes from pos to the end of whatever holds them (bounded by stop), or None to re-plan.
        A chunk in the cache is read with the ones after it up to CACHE_READ bytes (and stop), in one
        trip to a worker thread: a thread handoff per MiB was most of the CPU of serving the cache.
        The others wait in `read` (the stream's) for the next calls."""
        flight = f.flight_at(pos)
        if flight is not None:
            if flight not in held:
                flight.waiters += 1
                held.add(flight)
            try:
                offset, data = await asyncio.shield(flight.task)
            except asyncio.CancelledError:
                if flight.task.cancelled() and not _cancelling():
                    self._let_go(loc, f, flight, held)
                    return None
                raise
            except ConnectionsLost:
                if flight.urgent:
                    raise
                # read-ahead whose connections died under it (a DC cut them all): asked again, now
                # urgent, as when it had failed before the stream reached it
                self._let_go(loc, f, flight, held)
                return None
            return _slice(data, offset, pos, stop)
        landed = _landed_at(held, pos)
        if landed is not None:          # read-ahead of this stream that arrived before it got there
            offset, data = landed
            return _slice(data, offset, pos, stop)
        chunk = f.chunk_at(pos)
        if chunk is not None:
            offset, length = chunk
            data = f.pending.get(offset)
            if data is None:
                data = read.pop(chunk, None)
            if data is None:
                read.clear()
                wanted, end = [chunk], offset + length
                while end - offset < CACHE_READ and end < stop:
                    nxt = f.chunk_at(end)
                    if nxt is None or nxt[0] != end or end in f.pending:
                        break
                    wanted.append(nxt)
                    end += nxt[1]
                got = await asyncio.to_thread(self._chunks, loc.file_key, wanted)
                data = got.pop(chunk)
                read.update((c, d) for c, d in got.items() if d is not None)
            if data is not None:
                piece = _slice(data, offset, pos, stop)
                if self._metrics is not None:
                    self._metrics.cache_read(len(piece), 0)
                return piece
            f.remove_chunk(offset)     # evicted from the cache: fetch it again
        return None

    def _chunks(self, file_key: str, wanted: list[tuple[int, int]]) -> dict[tuple[int, int], bytes | None]:
        """On a worker thread: chunks (offset, length) from the store, None for any it no longer holds."""
        return {(offset, length): self._store.chunk(file_key, offset, length) for offset, length in wanted}

    def _let_go(self, loc: Location, f: _File, flight: _Flight, held: set[_Flight]) -> None:
        held.discard(flight)
        flight.waiters -= 1
        if flight.waiters == 0 and not flight.task.done():
            flight.task.cancel()      # nobody wants these bytes any more: the pool drops the answer
        elif not flight.task.cancelled():
            return
        if flight in f.flights:       # it covers nothing any more (its done callback may not have run)
            f.flights.remove(flight)

    async def _fetch_part(self, loc: Location, f: _File, part: Part, priority: dict) -> tuple[int, bytes]:
        self.requests += 1
        data = await self._fetch(loc, part.offset, part.limit, **priority)
        self.fetched += len(data)
        if self._metrics is not None:
            self._metrics.cache_read(0, len(data))
        if len(data) < min(part.limit, loc.size - part.offset):
            raise UpstreamUnavailable(f"Telegram returned {len(data)} bytes at offset {part.offset}: "
                                      "the file is shorter than its message says")
        data = data[:loc.size - part.offset]
        f.add_chunk(part.offset, len(data))
        with self._pending_lock:
            room = data and self._pending_bytes + len(data) <= MAX_PENDING
            if room:
                self._pending_bytes += len(data)
        if room:
            f.pending[part.offset] = data
            self._writer.submit(self._keep, loc.file_key, f, part.offset, data)
        elif data:
            f.remove_chunk(part.offset)     # the writer is behind: serve it, do not cache it
        return part.offset, data

    def _keep(self, file_key: str, f: _File, offset: int, data: bytes) -> None:
        """On the writer thread: store a chunk; every INDEX_EVERY chunks, its file's index too (and
        when the file goes idle: _index). An index behind the chunks only costs a process that
        starts afresh a refetch of the chunks it does not name; one ahead of them (it names what
        the loop has fetched, written or not) a lookup that finds nothing, then a refetch: a chunk
        is read by its exact (offset, length), whole or not at all."""
        try:
            self._store.put_chunk(file_key, offset, len(data), data)
            f.unindexed += 1
            if f.unindexed >= INDEX_EVERY:
                self._index(file_key, f)
        finally:
            f.pending.pop(offset, None)
            with self._pending_lock:
                self._pending_bytes -= len(data)

    def _index_later(self, file_key: str, f: _File) -> None:
        """Have the writer thread write the file's index after the chunks queued before it."""
        try:
            self._writer.submit(self._index, file_key, f)
        except RuntimeError:          # closed: close() wrote every index
            pass

    def _index(self, file_key: str, f: _File) -> None:
        """On the writer thread: remember the file's chunks in the store, if some are not yet."""
        if f.unindexed:
            f.unindexed = 0
            lengths = dict(f.lengths)      # a copy: the loop thread keeps adding to it
            self._store.remember_chunk_index(file_key, sorted(lengths.items()))

    async def _file(self, loc: Location) -> _File:
        key = loc.file_key
        f = self._files.get(key)
        if f is not None:
            return f
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load(key))
            loading.add_done_callback(lambda _t: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _load(self, key: str) -> _File:
        index = await asyncio.to_thread(self._store.chunk_index, key)
        f = self._files.setdefault(key, _File())
        for offset, length in index:
            f.add_chunk(offset, length)
        return f

    def flush(self) -> None:
        """Wait until every fetched chunk is in the cache (tests, shutdown)."""
        self._writer.submit(lambda: None).result()

    def close(self) -> None:
        for key, f in list(self._files.items()):
            self._index_later(key, f)
        self._writer.shutdown(wait=True)

    def stats(self) -> dict:
        return {"fetched_bytes": self.fetched, "requests": self.requests,
                "flights": sum(len(f.flights) for f in self._files.values()),
                "pending_bytes": self._pending_bytes}


@dataclass(eq=False)
class _Pace:
    """How one stream takes its bytes: interactive (a person waits on it) or bulk (see the module
    docstring). `waited`: seconds spent waiting for bytes since the last look; `looked`: bytes
    taken at the last look (the rate since is the other half of the look)."""
    interactive: bool = True
    taken: int = 0
    waited: float = 0.0
    since: float | None = None
    next_look: int = CLASSIFY_FIRST
    looked: int = 0

    def took(self, n: int, now: float) -> None:
        if self.since is None:
            # from the first piece on (not the seek's wait)
            self.since, self.waited, self.looked = now, 0.0, self.taken + n
        self.taken += n
        if self.taken >= self.next_look:
            elapsed = now - self.since
            rate = (self.taken - self.looked) / elapsed if elapsed > 0 else float("inf")
            self.interactive = self.waited < BULK_WAITING * elapsed and rate <= MEDIA_RATE
            self.looked = self.taken
            self.since, self.waited = now, 0.0
            self.next_look = self.taken + CLASSIFY_EVERY


def _landed_at(held: set[_Flight], pos: int) -> tuple[int, bytes] | None:
    """(offset, bytes) of a flight the stream holds that covers pos and has its bytes: the stream
    keeps its read-ahead's bytes until it has read past them, so they are served from memory,
    not written to the cache and read back from it (which cost a worker thread's read per chunk
    of every first read)."""
    for flight in held:
        task = flight.task
        if (flight.range.start <= pos < flight.range.end and task.done() and not task.cancelled()
                and task.exception() is None):
            return task.result()
    return None


def _slice(data: bytes, offset: int, pos: int, stop: int) -> bytes:
    lo = pos - offset
    hi = min(len(data), stop - offset)
    if hi <= lo:
        raise UpstreamUnavailable(f"Telegram returned no bytes at offset {pos}: "
                                  "the file is shorter than its message says")
    return data if lo == 0 and hi == len(data) else data[lo:hi]


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class SyncReader:
    """model.Reader for WSGI threads: runs PartReader.stream on the bridge's loop. The stream is
    pulled one piece ahead of the client (max_buffered=1), so read-ahead grows with what the client
    really takes, not with what a buffer could hold."""

    def __init__(self, bridge, reader: PartReader, *, part_timeout: float = 120.0,
                 max_buffered: int = 1) -> None:
        self._bridge = bridge
        self._reader = reader
        self._timeout = part_timeout
        self._max_buffered = max_buffered

    def open(self, location: Location, start: int, end: int) -> "_SyncStream":
        stream = self._bridge.stream(self._reader.stream(location, start, end),
                                     max_buffered=self._max_buffered)
        return _SyncStream(stream, self._timeout)


class _SyncStream:
    """ByteStream over a bridged async stream: read(n) returns up to n bytes, b"" only at the end."""

    def __init__(self, stream, timeout: float) -> None:
        self._stream = stream
        self._timeout = timeout
        self._piece = b""         # the piece being handed out, from self._at on
        self._at = 0
        self._done = False

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes; a whole piece is handed on as it is (no copy) when n allows."""
        if self._at >= len(self._piece) and not self._done:
            try:
                self._piece, self._at = self._stream.next(timeout=self._timeout), 0
            except StopIteration:
                self._piece, self._at, self._done = b"", 0, True
            except TimeoutError:
                self.close()
                raise UpstreamUnavailable("Telegram sent nothing for "
                                          f"{self._timeout:.0f} s; giving up on this read") from None
        piece, at = self._piece, self._at
        left = len(piece) - at
        if n is None or n < 0 or n >= left:
            self._piece, self._at = b"", 0
            return piece if at == 0 else piece[at:]
        self._at = at + n
        return piece[at:at + n]

    def close(self) -> None:
        self._done = True
        self._stream.close()
