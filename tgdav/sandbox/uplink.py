"""Emulation of one connection's client -> server link: an upload bandwidth cap.

The server's read loop calls `await pacer.pace(len(data))` after every read. Bytes are let through
as a link of `upload_bandwidth` bytes/s would carry them, allowing a burst of BURST bytes (a token
bucket), so the loop stops reading while the client is "still sending" and the kernel's buffers fill
up and push back on the client, as a slow uplink does. The Link settings are read on every call, so
POST /link applies to open connections at once; 0 means unlimited and costs nothing.
"""

from __future__ import annotations

from typing import Callable

from .controls import Link, LinkTime

BURST = 64 * 1024


class ReadPacer:
    def __init__(self, link: Callable[[], Link], time: LinkTime | None = None) -> None:
        self._link = link
        self._time = time or LinkTime()
        self._free_at = 0.0     # when the emulated uplink has carried everything read so far

    def delay(self, size: int, now: float, bandwidth: int) -> float:
        """Seconds to wait before `size` bytes read at `now` count as arrived. Pure."""
        if bandwidth <= 0:
            self._free_at = 0.0
            return 0.0
        self._free_at = max(self._free_at, now) + size / bandwidth
        return max(0.0, self._free_at - BURST / bandwidth - now)

    async def pace(self, size: int) -> None:
        wait = self.delay(size, self._time.now(), self._link().upload_bandwidth)
        if wait > 0:
            await self._time.sleep(wait)
