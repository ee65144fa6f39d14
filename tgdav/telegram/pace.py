"""A token bucket that keeps one kind of request inside Telegram's flood limit (asyncio; clock injected).

Telegram does not publish its limits; for messages.getHistory the defaults (`[telegram]
history_per_second = 1`, `history_burst = 28`) stay inside the rule the sandbox enforces by default
(a burst of 30 calls, then 1 call per second per account: see tgdav/sandbox/services/ratelimit.py
for where those figures come from). The burst is two calls (two seconds at that rate) below the
sandbox's: calls sent at this pace can reach the server closer together than they left (several
connections, scheduling), and the margin absorbs that. Whoever raises the rate should keep a
second's worth of calls of margin.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable


class TokenBucket:
    """take() waits until a token is free: `burst` tokens at most, refilled at `per_second`."""

    def __init__(self, per_second: float, burst: int, *, kept: tuple[float, float] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 sleep=asyncio.sleep) -> None:
        """kept: what kept() gave in an earlier run (tokens, wall time): a restart does not start
        with a full bucket while Telegram still counts the calls made just before it."""
        if per_second <= 0 or burst < 1:
            raise ValueError("a token bucket needs per_second > 0 and burst >= 1")
        self.per_second, self.burst = float(per_second), int(burst)
        self._clock, self._wall, self._sleep = clock, wall, sleep
        self._tokens = float(burst)
        try:
            tokens, at = kept
            self._tokens = max(0.0, min(float(burst), tokens + max(0.0, wall() - at) * self.per_second))
        except (TypeError, ValueError):       # nothing kept (or something unreadable): a full bucket
            pass
        self._at = clock()
        self._lock = asyncio.Lock()

    def kept(self) -> tuple[float, float]:
        """(tokens, wall time) to give the next run's bucket."""
        self._refill()
        return self._tokens, self._wall()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now

    async def take(self) -> None:
        async with self._lock:       # one waiter at a time: tokens go out in order of asking
            self._refill()
            while self._tokens < 1:
                await self._sleep((1 - self._tokens) / self.per_second)
                self._refill()
            self._tokens -= 1

    def available(self) -> int:
        """Tokens free right now (for planning how many calls to start at once)."""
        self._refill()
        return int(self._tokens)
