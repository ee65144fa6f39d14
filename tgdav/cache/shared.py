"""State shared by several tgdav processes (replicas) through Redis, when `[state] redis` is set.

What lives in Redis, under keys that start with `tgdav:`:
- file -> DC (`tgdav:dc:<file>`): where a file lives does not depend on who asks, so every replica and
  every account shares it: a file costs the fleet one FILE_MIGRATE.
- per account (`tgdav:acct:<user id>:...`): the auth key each foreign DC accepted after
  importAuthorization (a secret: only replicas logged in as that same account read it, so one export
  per DC serves the fleet), channel listings (they hold that account's file references), and flood
  deadlines per DC (a FLOOD_WAIT seen by one replica keeps the others off that DC until it ends).
- WsgiDAV's locks (its own LockStorageRedis, `wsgidav-*` keys), see lock_storage().

What stays per replica, on its own disk: the login session, the chunk cache and its index.

Values are pickled as diskcache pickles them: Redis must be as private as the state directory (no
port open to anyone but the replicas; a password in the URL if it is reachable at all).

Without a Redis URL nothing here is used: open_store() returns the embedded Store, exactly as before.
Redis being unreachable at start is a clear error; a Redis error later is logged and answered as
"not known" (a store is a memory, and forgetting is always allowed).
"""

from __future__ import annotations

import logging
import pickle
import time
import uuid
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from tgdav.cache.store import Store
from tgdav.errors import ConfigError

log = logging.getLogger("tgdav.shared")

PREFIX = "tgdav:"


def open_store(directory: Path, *, chunk_limit_bytes: int, redis_url: str = "") -> Store:
    """The store of one replica: embedded (diskcache) alone, or with its shared part in Redis."""
    if not redis_url:
        return Store(directory, chunk_limit_bytes=chunk_limit_bytes)
    return RedisStore(directory, redis_url, chunk_limit_bytes=chunk_limit_bytes)


def _connect(url: str):
    try:
        import redis
    except ImportError:      # pragma: no cover - redis is a dependency
        raise ConfigError("[state] redis is set but the redis package is missing — "
                          "pip install redis") from None
    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        client.ping()
    except ValueError as e:
        raise ConfigError(f"[state] redis = {_shown(url)!r} is not a Redis URL ({e}) — write it as "
                          f"redis://host:port/db") from None
    except redis.RedisError as e:
        raise ConfigError(f"cannot reach Redis at {_shown(url)} ({e}) — start it, or remove "
                          f"[state] redis / TGDAV_REDIS to keep all state in this process") from None
    return client


def _shown(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


class RedisStore(Store):
    """A Store whose DC map, DC authorisations, listings and flood deadlines are in Redis; chunks and
    chunk indexes stay on this replica's disk. bind_account() must be called once the account is
    known (after login), before its per-account state is used."""

    def __init__(self, directory: Path, url: str, *, chunk_limit_bytes: int) -> None:
        self.url = url
        self._redis = _connect(url)
        super().__init__(directory, chunk_limit_bytes=chunk_limit_bytes)
        self._account: int | None = None

    def bind_account(self, account_id: int) -> None:
        self._account = int(account_id)

    @property
    def account_prefix(self) -> str:
        if self._account is None:
            raise RuntimeError("RedisStore: bind_account() first")
        return account_prefix(self._account)

    def _run(self, op: Callable[[Any], Any], default: Any) -> Any:
        import redis
        try:
            return op(self._redis)
        except redis.RedisError as e:
            log.warning("Redis %s: %s", _shown(self.url), e)
            return default

    # ---- shared by every account ----
    def dc_for(self, file_key: str) -> int | None:
        value = self._run(lambda r: r.get(f"{PREFIX}dc:{file_key}"), None)
        return int(value) if value is not None else None

    def remember_dc(self, file_key: str, dc: int) -> None:
        self._run(lambda r: r.set(f"{PREFIX}dc:{file_key}", int(dc)), None)

    # ---- one account's ----
    def dc_auth(self, dc: int, *, prefix: str | None = None) -> bytes | None:
        return self._run(lambda r: r.get(f"{prefix or self.account_prefix}auth:{int(dc)}"), None)

    def remember_dc_auth(self, dc: int, key: bytes, *, prefix: str | None = None) -> None:
        self._run(lambda r: r.set(f"{prefix or self.account_prefix}auth:{int(dc)}", bytes(key)), None)

    def forget_dc_auth(self, dc: int, *, prefix: str | None = None) -> None:
        self._run(lambda r: r.delete(f"{prefix or self.account_prefix}auth:{int(dc)}"), None)

    def listing(self, key: Any) -> Any:
        raw = self._run(lambda r: r.get(f"{self.account_prefix}listing:{key}"), None)
        if raw is None:
            return None
        try:
            return pickle.loads(raw)
        except Exception as e:     # written by another version: forget it, the listing is refetched
            log.warning("Redis: listing %s is unreadable (%s); fetching it again", key, e)
            return None

    def remember_listing(self, key: Any, value: Any) -> None:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self._run(lambda r: r.set(f"{self.account_prefix}listing:{key}", data), None)

    def flood_board(self, account_id: int | None = None) -> "FloodBoard":
        return FloodBoard(self.url, self.account_prefix if account_id is None else account_prefix(account_id))

    def close(self) -> None:
        super().close()
        self._redis.close()


def account_prefix(account_id: int) -> str:
    return f"{PREFIX}acct:{int(account_id)}:"


class AccountView:
    """A helper account's view of the store: the DC map and chunks are everyone's; the auth keys its
    DCs accepted are its own (secrets, never used by another account). Everything else is the
    store's. Flood deadlines shared through Redis are per account too (flood_board)."""

    def __init__(self, store: Store, account_id: int) -> None:
        self._store = store
        self.account_id = int(account_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def dc_auth(self, dc: int) -> bytes | None:
        if isinstance(self._store, RedisStore):
            return self._store.dc_auth(dc, prefix=account_prefix(self.account_id))
        return self._store._get(("auth", self.account_id, int(dc)))

    def remember_dc_auth(self, dc: int, key: bytes) -> None:
        if isinstance(self._store, RedisStore):
            self._store.remember_dc_auth(dc, key, prefix=account_prefix(self.account_id))
        else:
            self._store._set(("auth", self.account_id, int(dc)), bytes(key))

    def forget_dc_auth(self, dc: int) -> None:
        if isinstance(self._store, RedisStore):
            self._store.forget_dc_auth(dc, prefix=account_prefix(self.account_id))
        else:
            self._store._meta.run(lambda c: c.delete(("auth", self.account_id, int(dc))), False)

    def flood_board(self) -> "FloodBoard | None":
        if isinstance(self._store, RedisStore):
            return self._store.flood_board(self.account_id)
        return None


class FloodBoard:
    """Flood deadlines of one account per DC, shared by its replicas: publish() when Telegram answers
    FLOOD_WAIT / FLOOD_PREMIUM_WAIT, sync() before sending to a DC, until() from the pool's choice
    (no I/O there). until() is what OTHER replicas saw: this replica's own floods are already gated
    by its pool (per sender or per DC), exactly as without Redis. Another replica's FLOOD_WAIT gates
    the whole DC here: we cannot tell which of its connections it was, and Telegram's flood limits
    are per account. Deadlines travel as wall-clock times and are kept here on `clock` (monotonic),
    so replicas agree as far as their clocks do. Uses redis-py's asyncio client on the caller's loop.
    Deadlines are per DC and method (GetFile...), as Telegram floods them. Redis keeps one hash per
    DC and method (replica -> deadline) that expires with its last deadline."""

    def __init__(self, url: str, prefix: str, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._url = url
        self._prefix = prefix
        self._clock = clock
        self._wall = wall
        self._redis = None
        self._until: dict[tuple[int, str], float] = {}
        self.replica = uuid.uuid4().hex

    def _client(self):
        if self._redis is None:
            import redis.asyncio
            self._redis = redis.asyncio.Redis.from_url(self._url, socket_timeout=5, socket_connect_timeout=5)
        return self._redis

    def _key(self, dc: int, method: str) -> str:
        return f"{self._prefix}flood:{int(dc)}:{method}"

    def until(self, dc: int, method: str) -> float:
        """The latest deadline another replica published for `method` on `dc`, on this process's
        clock (0: none)."""
        return self._until.get((dc, method), 0.0)

    async def sync(self, dc: int, method: str) -> float:
        import redis
        try:
            entries = await self._client().hgetall(self._key(dc, method))
        except redis.RedisError as e:
            log.warning("Redis: cannot read the flood deadline of DC %d: %s", dc, e)
            return self.until(dc, method)
        mine = self.replica.encode()
        latest = max((float(v) for k, v in entries.items() if k != mine), default=0.0)
        left = latest - self._wall()
        self._until[dc, method] = self._clock() + left if left > 0 else 0.0
        return self._until[dc, method]

    async def publish(self, dc: int, method: str, seconds: float) -> None:
        import redis
        deadline = self._wall() + seconds
        try:
            await self._client().eval(_KEEP_LATER, 1, self._key(dc, method), repr(deadline),
                                      int(seconds * 1000) + 1000, self.replica)
        except redis.RedisError as e:
            log.warning("Redis: cannot share the flood deadline of DC %d: %s", dc, e)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


# KEYS[1] the DC's hash; ARGV: deadline (wall clock), time to live (ms), replica
_KEEP_LATER = """
local old = redis.call('HGET', KEYS[1], ARGV[3])
if (not old) or tonumber(old) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[1])
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""


def lock_storage(redis_url: str, state_dir: Path):
    """WsgiDAV's lock storage for this share: its LockStorageRedis when replicas share Redis (a LOCK
    taken through one replica is seen by all), else its LockStorageShelve in the state directory.
    The write path passes the result as WsgiDAV's "lock_storage" option."""
    if redis_url:
        from wsgidav.lock_man.lock_storage_redis import LockStorageRedis
        _connect(redis_url).close()          # a clear error now rather than on the first LOCK
        parts = urlsplit(redis_url)
        db = int(parts.path.strip("/") or 0)
        return LockStorageRedis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=db,
                                password=parts.password)
    from wsgidav.lock_man.lock_storage import LockStorageShelve
    dav_dir = Path(state_dir) / "dav"
    dav_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return LockStorageShelve(str(dav_dir / "locks.shelve"))
