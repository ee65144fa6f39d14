"""The rate rules of the fault controls. getFile (and upload parts): more than N calls per second per
account and DC answers FLOOD_WAIT, and that account stays flooded on that DC for the rule's seconds.
messages.getHistory: a token bucket per account (HistoryRate), on by default."""

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


class HistoryRate:
    """The messages.getHistory rule: a token bucket per account (`burst` calls at once, refilled at
    `per_second`); a call that finds it empty answers FLOOD_WAIT_<seconds> and the account stays
    flooded for getHistory that long. Thread-safe.

    Why these defaults (controls.HISTORY_RULE: 30 calls, then 1 a second, 3 s floods): Telegram
    publishes no figure. Telethon's iter_messages sleeps 1 s between getHistory calls once more than
    3000 messages are asked for, and documents that "retrieving more than 3000 messages will take
    longer than half a minute (or even more based on previous calls)"; its 2018 change that added the
    pause measured "3000 messages within 30 seconds" (LonamiWebs/Telethon#565). Paced that way users
    still meet the odd FLOOD_WAIT_3 (Telethon#3882); pyrogram's unpaced get_chat_history meets
    FLOOD_WAIT_15 (pyrogram#827), and parallel getChatHistory over many chats FLOOD_WAIT_30 (tdlib#743).
    So: a burst of 30 pages (3000 messages), then one page a second, per account."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}       # account -> (tokens, at)
        self._flooded_until: dict[int, float] = {}

    def check(self, account_id: int, now: float, per_second: float, burst: int, seconds: int) -> None:
        with self._lock:
            until = self._flooded_until.get(account_id, 0.0)
            if now < until:
                raise RpcError(420, f"FLOOD_WAIT_{math.ceil(until - now)}")
            tokens, at = self._buckets.get(account_id, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * per_second)
            if tokens < 1:
                self._buckets[account_id] = (tokens, now)
                self._flooded_until[account_id] = now + seconds
                raise RpcError(420, f"FLOOD_WAIT_{seconds}")
            self._buckets[account_id] = (tokens - 1, now)
