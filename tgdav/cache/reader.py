"""Ranged reads: a byte range -> a plan of aligned parts -> parts from the chunk cache or the network,
yielded in order, with read-ahead.

The reader sees the network as one callable, fetch(location, offset, limit) -> bytes (cf. fsspec's
Fetcher), and the cache through the store's chunk methods. Parts sit on plan.py's fixed grid, so a
part fetched for one range is found again by any later range (exactly, or inside a cached ancestor).

- Read-ahead: up to `read_ahead` parts are requested ahead of the consumer, never past the range end
  the caller asked for (the WebDAV layer passes the client's exact range).
- Single flight: concurrent readers of the same part share one request; a request is cancelled only
  when its last waiter goes away (a seek or close cancels the read-ahead it made useless).
- SyncReader adapts the async reader to the blocking model.Reader interface over the bridge.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from tgdav.errors import UpstreamUnavailable
from tgdav.model import Location
from tgdav.plan import MIB, Part, containing_parts, plan

log = logging.getLogger("tgdav.reader")

Fetch = Callable[[Location, int, int], Awaitable[bytes]]


@dataclass(eq=False)
class _Flight:
    task: asyncio.Task
    waiters: int = 0


class PartReader:
    def __init__(self, fetch: Fetch, store, *, first_part: int = 64 * 1024, read_ahead: int = 8) -> None:
        self._fetch = fetch
        self._store = store
        self.first_part = first_part
        self.read_ahead = max(1, read_ahead)
        self._flights: dict[tuple[str, int, int], _Flight] = {}

    async def stream(self, loc: Location, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes start..end (inclusive) of the file, in order, in part-sized pieces."""
        if not 0 <= start <= end < loc.size:
            raise ValueError(f"range {start}-{end} outside a file of {loc.size} bytes")
        parts = plan(start, end, loc.size, first_part=self.first_part, max_part=MIB)
        window: deque[asyncio.Task] = deque()
        try:
            for part in parts:
                # cache lookups in stream order: the first missing part is the first request out,
                # so it is the one that finds the file's DC (fetch.py's probe), not a racing later one
                cached = await asyncio.to_thread(self._cached, loc, part)
                window.append(_done(part.offset, cached) if cached is not None
                              else asyncio.ensure_future(self._shared(loc, part)))
                if len(window) < self.read_ahead:
                    continue
                async for piece in self._emit(window.popleft(), start, end):
                    yield piece
            while window:
                async for piece in self._emit(window.popleft(), start, end):
                    yield piece
        finally:
            for task in window:
                task.cancel()

    @staticmethod
    async def _emit(task: asyncio.Task, start: int, end: int) -> AsyncIterator[bytes]:
        offset, data = await task
        lo = max(start - offset, 0)
        hi = min(end + 1 - offset, len(data))
        if hi <= lo:
            if offset <= end:
                raise UpstreamUnavailable(f"Telegram returned no bytes at offset {offset}: "
                                          "the file is shorter than its message says")
            return
        yield data[lo:hi]

    async def part(self, loc: Location, part: Part) -> tuple[int, bytes]:
        """(part.offset, the part's bytes), from the cache, a running request, or a new one."""
        cached = await asyncio.to_thread(self._cached, loc, part)
        if cached is not None:
            return part.offset, cached
        return await self._shared(loc, part)

    async def _shared(self, loc: Location, part: Part) -> tuple[int, bytes]:
        """(part.offset, bytes) from a running request for this part, or a new one (single flight)."""
        key = (loc.file_key, part.offset, part.limit)
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight(asyncio.ensure_future(self._fetch_and_keep(loc, part)))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda _t, k=key, f=flight: self._forget(k, f))
        flight.waiters += 1
        try:
            return part.offset, await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()
                self._forget(key, flight)   # a reader arriving now starts afresh, not on a cancelled task

    def _forget(self, key, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _cached(self, loc: Location, part: Part) -> bytes | None:
        """The part's bytes if the cache holds it, or holds an aligned ancestor containing it."""
        key = loc.file_key
        data = self._store.chunk(key, part.offset, part.limit)
        if data is not None:
            return data
        for parent in containing_parts(part):
            data = self._store.chunk(key, parent.offset, parent.limit)
            if data is not None:
                lo = part.offset - parent.offset
                return data[lo:lo + part.limit]
        return None

    async def _fetch_and_keep(self, loc: Location, part: Part) -> bytes:
        data = await self._fetch(loc, part.offset, part.limit)
        await asyncio.to_thread(self._store.put_chunk, loc.file_key, part.offset, part.limit, data)
        return data


def _done(offset: int, data: bytes) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result((offset, data))
    return future


class SyncReader:
    """model.Reader for WSGI threads: runs PartReader.stream on the bridge's loop."""

    def __init__(self, bridge, reader: PartReader, *, part_timeout: float = 120.0,
                 max_buffered: int = 4) -> None:
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
        self._buffer = memoryview(b"")
        self._done = False

    def read(self, n: int = -1) -> bytes:
        if not self._buffer and not self._done:
            try:
                self._buffer = memoryview(self._stream.next(timeout=self._timeout))
            except StopIteration:
                self._done = True
            except TimeoutError:
                self.close()
                raise UpstreamUnavailable("Telegram sent nothing for "
                                          f"{self._timeout:.0f} s; giving up on this read") from None
        if n is None or n < 0 or n >= len(self._buffer):
            out, self._buffer = self._buffer, memoryview(b"")
        else:
            out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out.tobytes()

    def close(self) -> None:
        self._done = True
        self._stream.close()
