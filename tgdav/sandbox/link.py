"""Emulation of one connection's server -> client link: latency and bandwidth.

A frame queued at time t is released no earlier than t + latency (so latency never accumulates over
pipelined replies), and as a whole at the moment its last byte would have crossed a link of `bandwidth`
bytes/s that may burst up to BURST bytes (a token bucket). The Link settings are read for every frame,
so a POST /link applies to open connections at once. With the link off (0/0) frames go out as they come.
A drop fault cuts the connection once its byte budget is spent, in the middle of a frame if need be.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Callable

from .controls import Link, LinkTime

BURST = 64 * 1024
log = logging.getLogger(__name__)


class Pacer:
    """Release times for one connection's frames, in queue order. Pure: the caller supplies the times."""

    def __init__(self) -> None:
        self._link_free = 0.0      # when the emulated link finishes sending what was released so far
        self._last_release = 0.0

    def release_time(self, queued_at: float, size: int, link: Link) -> float:
        release = queued_at + link.latency_ms / 1000.0
        if link.bandwidth > 0:
            start = max(release, self._link_free)
            self._link_free = start + size / link.bandwidth
            release = max(release, self._link_free - BURST / link.bandwidth)
        release = max(release, self._last_release)   # frames never overtake each other
        self._last_release = release
        return release


class Ticket:
    """One queued frame. `started` turns true once the frame is on the emulated wire (at the head of
    the queue, its release time computed): from then on it will arrive, whatever the client says."""
    __slots__ = ("queued_at", "frame", "size", "started")

    def __init__(self, queued_at: float, frame: bytes) -> None:
        self.queued_at = queued_at
        self.frame = frame          # released once written
        self.size = len(frame)
        self.started = False


class LinkWriter:
    """Writes one connection's frames in order through the emulated link. send() never blocks;
    run() is the connection's writer task: it returns when the connection is dropped, fails, or,
    after finish(), once everything queued is written. cancel() takes back a frame that has not
    started (rpc_drop_answer of an answer still in the server's outgoing queue)."""

    def __init__(self, writer: asyncio.StreamWriter, link: Callable[[], Link], drop_after: int | None = None,
                 time: LinkTime | None = None) -> None:
        self._writer = writer
        self._link = link
        self._budget = drop_after
        self._time = time or LinkTime()
        self._clock = self._time.now
        self._pacer = Pacer()
        self._queue: collections.deque[Ticket] = collections.deque()
        self._wakeup = asyncio.Event()
        self._finishing = False
        self.sent = 0
        self.dropped = False

    def send(self, frame: bytes) -> Ticket:
        ticket = Ticket(self._clock(), frame)
        self._queue.append(ticket)
        self._wakeup.set()
        return ticket

    def cancel(self, ticket: Ticket) -> bool:
        """Remove a frame that has not started; False if it is on the wire or already written."""
        if ticket.started:
            return False
        try:
            self._queue.remove(ticket)
        except ValueError:
            return False
        return True

    def finish(self) -> None:
        """Write what is queued, then close the connection."""
        self._finishing = True
        self._wakeup.set()

    async def run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._finishing:
                        self._writer.close()
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                ticket = self._queue[0]
                ticket.started = True
                frame = ticket.frame
                link = self._link()
                if link.active:
                    delay = self._pacer.release_time(ticket.queued_at, len(frame), link) - self._clock()
                    if delay > 0:
                        await self._time.sleep(delay)
                self._queue.popleft()
                ticket.frame = b""
                if self._budget is not None and self.sent + len(frame) >= self._budget:
                    self._writer.write(frame[:self._budget - self.sent])
                    self.sent = self._budget
                    self.dropped = True
                    self._writer.close()   # flushes the partial frame, then the client sees the end
                    return
                self._writer.write(frame)
                self.sent += len(frame)
                await self._writer.drain()
        except (ConnectionError, OSError) as e:
            log.debug("link writer stopped: %s", e)
