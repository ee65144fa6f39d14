"""Replicas of one account tell each other at once which channel listing changed (Redis pub/sub).

A replica that applied a write or a Telegram update to a listing stores the listing in Redis
(cache/shared.py) and then publishes "<replica>:<channel id>" on `<account prefix>listings`; every
other replica of the account, subscribed there, reads that listing from Redis again (no Telegram
request), so a PUT through one replica is listed by all of them within a round trip to Redis.

Pub/sub is fire and forget: a replica that was disconnected misses announcements, and it still
learns the change from Telegram's own updates (telegram/updates.py) or its slow refresh. A publish
waits at most PUBLISH_TIMEOUT; a broken subscription is retried every RETRY seconds. Uses redis-py's
asyncio client on the caller's loop, apart from the store's other Redis calls.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Awaitable, Callable

log = logging.getLogger("tgdav.announce")

PUBLISH_TIMEOUT = 2.0
RETRY = 1.0


class ListingAnnouncer:
    def __init__(self, url: str, prefix: str, on_announce: Callable[[int], Awaitable[None]]) -> None:
        self._url = url
        self._topic = f"{prefix}listings"
        self._on_announce = on_announce
        self.replica = uuid.uuid4().hex
        self._redis = None
        self._listener: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._subscribed = asyncio.Event()
        self.sent = self.received = 0

    async def start(self) -> None:
        import redis.asyncio
        self._redis = redis.asyncio.Redis.from_url(self._url, socket_connect_timeout=5)
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        await asyncio.wait_for(self._subscribed.wait(), 10)

    def announce(self, channel_id: int) -> None:
        """Tell the other replicas (from the loop; returns at once)."""
        task = asyncio.get_running_loop().create_task(self._publish(channel_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, channel_id: int) -> None:
        import redis
        try:
            await asyncio.wait_for(self._redis.publish(self._topic, f"{self.replica}:{int(channel_id)}"),
                                   PUBLISH_TIMEOUT)
            self.sent += 1
        except (redis.RedisError, OSError, asyncio.TimeoutError) as e:
            log.warning("Redis: cannot announce the change of channel %d: %s", channel_id, e)

    async def _listen(self) -> None:
        import redis
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._topic)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._received(message["data"])
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as e:
                log.warning("Redis: listing announcements interrupted: %s", e)
            await asyncio.sleep(RETRY)

    async def _received(self, data: bytes) -> None:
        replica, _, channel = data.decode(errors="replace").partition(":")
        if replica == self.replica or not channel.isdigit():
            return
        self.received += 1
        try:
            await self._on_announce(int(channel))
        except Exception:      # one failed re-read must not end the subscription
            log.exception("re-reading channel %s after another replica's change failed", channel)

    async def close(self) -> None:
        for task in (self._listener, *self._tasks):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._listener, *self._tasks) if t), return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
