"""The getFile rate rule of the fault controls: more than N getFile per second per account and DC
answers FLOOD_WAIT, and that account stays flooded on that DC for the rule's seconds."""

from __future__ import annotations

import math
import threading
from collections import deque

from tgdav.sandbox.context import RpcError


class GetFileRate:
    """Recent getFile times and flood deadlines per (account, DC). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: dict[tuple[int, int], deque[float]] = {}
        self._flooded_until: dict[tuple[int, int], float] = {}

    def check(self, account_id: int, dc_id: int, now: float, per_second: int, seconds: int) -> None:
        key = (account_id, dc_id)
        with self._lock:
            until = self._flooded_until.get(key, 0.0)
            if now < until:
                raise RpcError(420, f"FLOOD_WAIT_{math.ceil(until - now)}")
            recent = self._recent.setdefault(key, deque())
            recent.append(now)
            while recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) > per_second:
                recent.clear()
                self._flooded_until[key] = now + seconds
                raise RpcError(420, f"FLOOD_WAIT_{seconds}")
