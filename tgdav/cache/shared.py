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
Redis being unreachable at start is a clear error. After that, Redis is a shared part that may fail or
lag, and every call to it goes through one RedisLink per URL (link_for):
- each call has a short deadline (DEADLINE for connect and for every answer; one immediate retry
  only when a pooled connection turns out dead, never after a timeout);
- a call that fails marks Redis away (a circuit breaker): for the next AWAY_SECONDS nobody asks it,
  then a background thread PINGs it until it answers, and from then on it is used again, without a
  restart. While it is away no request pays a deadline;
- what a replica learns (DC map, DC authorisations, listings) is also kept in its own embedded store,
  so reads and listings go on from there while Redis is away (Redis's answer wins while it is up);
- what cannot be done without Redis (WsgiDAV's shared locks: every write checks them) raises
  SharedStateAway, which the WebDAV layer answers 503 with Retry-After at once. Reading lock
  discovery (PROPFIND) while Redis is away shows no locks instead (reads_degrade()).
- link.state() is what the status page and the metrics show.
Anything new that talks to Redis (a per-path write lock, pub/sub) goes through link_for(url) too:
call(op) for what may be skipped (a default) or must not (SharedStateAway), acall() on the loop. A
connection that idles on purpose (a pub/sub listener) needs its own client: the link's 1 s socket
timeout would cut it.
"""

from __future__ import annotations

import contextvars
import logging
import pickle
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from tgdav.cache.store import Store
from tgdav.errors import ConfigError, SharedStateAway

log = logging.getLogger("tgdav.shared")

PREFIX = "tgdav:"
DEADLINE = 1.0        # seconds: connecting to Redis, and waiting for each of its answers
AWAY_SECONDS = 3.0    # seconds Redis is left alone after a failure, between background PINGs
_REQUIRED = object()


def open_store(directory: Path, *, chunk_limit_bytes: int, redis_url: str = "") -> Store:
    """The store of one replica: embedded (diskcache) alone, or with its shared part in Redis."""
    if not redis_url:
        return Store(directory, chunk_limit_bytes=chunk_limit_bytes)
    return RedisStore(directory, redis_url, chunk_limit_bytes=chunk_limit_bytes)


def _redis():
    try:
        import redis
    except ImportError:      # pragma: no cover - redis is a dependency
        raise ConfigError("[state] redis is set but the redis package is missing — "
                          "pip install redis") from None
    return redis


def client_options(deadline: float = DEADLINE, *, asyncio: bool = False) -> dict:
    """redis-py options for a client whose every call ends within about `deadline`: connect and
    socket timeouts, and one immediate retry only for a dead pooled connection (a restarted Redis),
    never after a timeout (retries would multiply the deadline; redis-py's default retries 3 times
    with backoff)."""
    redis = _redis()
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    retry_cls = AsyncRetry if asyncio else Retry
    return {"socket_timeout": deadline, "socket_connect_timeout": deadline,
            "retry": retry_cls(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))}


def _connect(url: str, deadline: float = DEADLINE):
    redis = _redis()
    try:
        client = redis.Redis.from_url(url, **client_options(deadline))
        client.ping()
    except ValueError as e:
        raise ConfigError(f"[state] redis = {_shown(url)!r} is not a Redis URL ({e}) — write it as "
                          f"redis://host:port/db") from None
    except redis.RedisError as e:
        raise ConfigError(f"cannot reach Redis at {_shown(url)} ({e}) — start it, or remove "
                          f"[state] redis / TGDAV_REDIS to keep all state in this process") from None
    return client


class RedisLink:
    """The one way to one Redis: a client with short deadlines and a circuit breaker in front of it.

    call(op) runs op(client) when Redis is up; when it is away (or the call fails now) it answers
    `default` at once, or raises SharedStateAway when no default is given (the caller cannot go on
    without Redis). acall() is the same for redis.asyncio clients (the flood board's). A connection
    error or timeout marks Redis away; a background thread then PINGs it every `away_seconds` and
    marks it up when it answers. Errors Redis itself answers (a wrong command) are not an outage.
    Thread-safe; nothing is called while holding the lock."""

    def __init__(self, url: str, *, deadline: float = DEADLINE, away_seconds: float = AWAY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.deadline, self.away_seconds, self._clock = deadline, away_seconds, clock
        self.client = _connect(url, deadline)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._away_since: float | None = None
        self._probed = 0.0
        self._failures = 0
        self._last_error = ""

    @property
    def up(self) -> bool:
        return self._away_since is None

    def retry_after(self) -> float:
        """Seconds until the next PING may find Redis back (what a refused write tells the client)."""
        with self._lock:
            return max(1.0, self._probed + self.away_seconds - self._clock())

    def call(self, op: Callable[[Any], Any], default: Any = _REQUIRED) -> Any:
        if self._away_since is None:
            redis = _redis()
            try:
                return op(self.client)
            except (redis.ConnectionError, redis.TimeoutError) as e:
                self.failed(e)
            except redis.RedisError as e:
                log.warning("Redis %s answered an error: %s", _shown(self.url), e)
                if default is _REQUIRED:
                    raise SharedStateAway(self.away_seconds) from None
                return default
        if default is _REQUIRED:
            raise SharedStateAway(self.retry_after())
        return default

    async def acall(self, op: Callable[[], Awaitable[Any]], default: Any) -> Any:
        """await op() (a redis.asyncio call) unless Redis is away; `default` when away or failing."""
        if self._away_since is None:
            redis = _redis()
            try:
                return await op()
            except (redis.ConnectionError, redis.TimeoutError) as e:
                self.failed(e)
            except redis.RedisError as e:
                log.warning("Redis %s answered an error: %s", _shown(self.url), e)
        return default

    def failed(self, error: BaseException) -> None:
        """A call met a connection error or its deadline: Redis is away until a PING answers."""
        with self._lock:
            self._failures += 1
            self._last_error = f"{type(error).__name__}: {error}"
            if self._away_since is not None:
                return
            self._away_since = self._probed = self._clock()
        log.warning("Redis %s is not answering (%s): replicas go on with their own state and refuse "
                    "writes (503) until it is back", _shown(self.url), self._last_error)
        threading.Thread(target=self._probe, name="tgdav-redis-probe", daemon=True).start()

    def _probe(self) -> None:
        redis = _redis()
        while not self._stop.wait(self.away_seconds):
            try:
                self.client.ping()
            except redis.RedisError as e:
                with self._lock:
                    self._probed = self._clock()
                    self._last_error = f"{type(e).__name__}: {e}"
                continue
            with self._lock:
                away, self._away_since = self._clock() - (self._away_since or 0.0), None
            log.warning("Redis %s answers again after %.0f s: shared state and writes are back",
                        _shown(self.url), away)
            return

    def state(self) -> dict:
        """{"url", "up", "away_seconds" (0 while up), "failures" (calls that failed), "last_error"}."""
        with self._lock:
            since = self._away_since
            return {"url": _shown(self.url), "up": since is None,
                    "away_seconds": 0.0 if since is None else self._clock() - since,
                    "failures": self._failures, "last_error": self._last_error}

    def close(self) -> None:
        self._stop.set()
        with _links_lock:
            if _links.get(self.url) is self:
                del _links[self.url]
        self.client.close()


_links: dict[str, RedisLink] = {}
_links_lock = threading.Lock()


def link_for(url: str) -> RedisLink:
    """The process's RedisLink for `url` (one breaker per Redis, shared by the store, the flood boards
    and the lock storage). A clear ConfigError when Redis cannot be reached now."""
    with _links_lock:
        link = _links.get(url)
    if link is not None:
        return link
    link = RedisLink(url)
    with _links_lock:
        return _links.setdefault(url, link)


def _shown(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


class RedisStore(Store):
    """A Store whose DC map, DC authorisations, listings and flood deadlines are in Redis; chunks and
    chunk indexes stay on this replica's disk. What is shared is also kept in the embedded store (on
    every write and every answer Redis gives), so while Redis is away this replica goes on with what
    it knows. bind_account() must be called once the account is known (after login), before its
    per-account state is used."""

    def __init__(self, directory: Path, url: str, *, chunk_limit_bytes: int) -> None:
        self.url = url
        self.link = link_for(url)
        super().__init__(directory, chunk_limit_bytes=chunk_limit_bytes)
        self._account: int | None = None

    def bind_account(self, account_id: int) -> None:
        self._account = int(account_id)

    @property
    def account_prefix(self) -> str:
        if self._account is None:
            raise RuntimeError("RedisStore: bind_account() first")
        return account_prefix(self._account)

    _AWAY = object()

    def _shared_get(self, key: str, local: tuple, decode: Callable[[bytes], Any]) -> Any:
        """Redis's value for `key` while it answers (decoded, and kept locally too), else this
        replica's own copy."""
        raw = self.link.call(lambda r: r.get(key), self._AWAY)
        if raw is self._AWAY:
            return self._get(local)
        if raw is None:
            return None
        value = decode(raw)
        if value is not None and self._get(local) != value:
            self._set(local, value)
        return value

    def _shared_set(self, key: str, local: tuple, value: Any, raw: Any) -> None:
        self._set(local, value)
        self.link.call(lambda r: r.set(key, raw), None)

    # ---- shared by every account ----
    def dc_for(self, file_key: str) -> int | None:
        return self._shared_get(f"{PREFIX}dc:{file_key}", ("dc", file_key), int)

    def remember_dc(self, file_key: str, dc: int) -> None:
        self._shared_set(f"{PREFIX}dc:{file_key}", ("dc", file_key), int(dc), int(dc))

    # ---- one account's ----
    @staticmethod
    def _auth_local(dc: int, prefix: str | None) -> tuple:
        return ("auth", int(dc)) if prefix is None else ("auth", prefix, int(dc))

    def dc_auth(self, dc: int, *, prefix: str | None = None) -> bytes | None:
        return self._shared_get(f"{prefix or self.account_prefix}auth:{int(dc)}", self._auth_local(dc, prefix),
                                bytes)

    def remember_dc_auth(self, dc: int, key: bytes, *, prefix: str | None = None) -> None:
        self._shared_set(f"{prefix or self.account_prefix}auth:{int(dc)}", self._auth_local(dc, prefix),
                         bytes(key), bytes(key))

    def forget_dc_auth(self, dc: int, *, prefix: str | None = None) -> None:
        self._meta.run(lambda c: c.delete(self._auth_local(dc, prefix)), False)
        self.link.call(lambda r: r.delete(f"{prefix or self.account_prefix}auth:{int(dc)}"), None)

    def listing(self, key: Any) -> Any:
        return self._shared_get(f"{self.account_prefix}listing:{key}", ("listing", key), _unpickle_listing)

    def remember_listing(self, key: Any, value: Any) -> None:
        self._shared_set(f"{self.account_prefix}listing:{key}", ("listing", key), value,
                         pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def flood_board(self, account_id: int | None = None) -> "FloodBoard":
        return FloodBoard(self.url, self.account_prefix if account_id is None else account_prefix(account_id),
                          link=self.link)

    def _account_auth(self, account_id: int, dc: int) -> bytes | None:
        return self.dc_auth(dc, prefix=account_prefix(account_id))

    def _remember_account_auth(self, account_id: int, dc: int, key: bytes) -> None:
        self.remember_dc_auth(dc, key, prefix=account_prefix(account_id))

    def _forget_account_auth(self, account_id: int, dc: int) -> None:
        self.forget_dc_auth(dc, prefix=account_prefix(account_id))

    def shared_state(self) -> dict:
        """Whether Redis answers (RedisLink.state()), for the status page and the metrics."""
        return self.link.state()

    def close(self) -> None:
        super().close()
        self.link.close()


def _unpickle_listing(raw: bytes) -> Any:
    try:
        return pickle.loads(raw)
    except Exception as e:     # written by another version: forget it, the listing is refetched
        log.warning("Redis: a listing is unreadable (%s); fetching it again", e)
        return None


def account_prefix(account_id: int) -> str:
    return f"{PREFIX}acct:{int(account_id)}:"


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
                 wall: Callable[[], float] = time.time, link: RedisLink | None = None) -> None:
        self._url = url
        self._link = link if link is not None else link_for(url)
        self._prefix = prefix
        self._clock = clock
        self._wall = wall
        self._redis = None
        self._until: dict[tuple[int, str], float] = {}
        self.replica = uuid.uuid4().hex

    def _client(self):
        if self._redis is None:
            import redis.asyncio
            self._redis = redis.asyncio.Redis.from_url(self._url, **client_options(self._link.deadline,
                                                                                   asyncio=True))
        return self._redis

    def _key(self, dc: int, method: str) -> str:
        return f"{self._prefix}flood:{int(dc)}:{method}"

    def until(self, dc: int, method: str) -> float:
        """The latest deadline another replica published for `method` on `dc`, on this process's
        clock (0: none)."""
        return self._until.get((dc, method), 0.0)

    async def sync(self, dc: int, method: str) -> float:
        """Read the deadlines others published (nothing while Redis is away: what is known stays)."""
        entries = await self._link.acall(lambda: self._client().hgetall(self._key(dc, method)), None)
        if entries is None:
            return self.until(dc, method)
        mine = self.replica.encode()
        latest = max((float(v) for k, v in entries.items() if k != mine), default=0.0)
        left = latest - self._wall()
        self._until[dc, method] = self._clock() + left if left > 0 else 0.0
        return self._until[dc, method]

    async def publish(self, dc: int, method: str, seconds: float) -> None:
        deadline = self._wall() + seconds
        await self._link.acall(lambda: self._client().eval(_KEEP_LATER, 1, self._key(dc, method), repr(deadline),
                                                           int(seconds * 1000) + 1000, self.replica), None)

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
    """WsgiDAV's lock storage for this share: its LockStorageRedis (through this process's RedisLink)
    when replicas share Redis (a LOCK taken through one replica is seen by all), else its
    LockStorageShelve in the state directory. The write path passes the result as WsgiDAV's
    "lock_storage" option."""
    if redis_url:
        return _shared_locks(link_for(redis_url))       # a clear error now rather than on the first LOCK
    from wsgidav.lock_man.lock_storage import LockStorageShelve
    dav_dir = Path(state_dir) / "dav"
    dav_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return LockStorageShelve(str(dav_dir / "locks.shelve"))


# True while a request that only reads (PROPFIND, GET, HEAD, OPTIONS) is in WsgiDAV: its lock discovery
# may show no locks while Redis is away; everything else must not go on without them.
_reading = contextvars.ContextVar("tgdav_reading", default=False)
READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND"})


def reads_degrade(app: Callable) -> Callable:
    """WSGI wrapper for WsgiDAV: marks requests that only read, so that with Redis away their lock
    discovery answers "no locks" while writes get SharedStateAway (503). WsgiDAV builds its whole
    answer inside the call, so the mark covers every lock lookup of the request."""
    def wrapped(environ: dict, start_response: Callable) -> Any:
        token = _reading.set(environ.get("REQUEST_METHOD", "") in READ_ONLY)
        try:
            return app(environ, start_response)
        finally:
            _reading.reset(token)
    return wrapped


def _shared_locks(link: RedisLink):
    from wsgidav.lock_man.lock_storage_redis import LockStorageRedis

    class SharedLocks(LockStorageRedis):
        """WsgiDAV's LockStorageRedis on the link's client (its deadlines), every operation through
        the link's breaker: SharedStateAway when Redis is away, except the lock list a read asks for."""

        def open(self) -> None:
            self._redis = link.client

        def _through(self, name: str, *args: Any, **kwargs: Any) -> Any:
            op = getattr(super(), name)
            if name == "get_lock_list" and _reading.get():
                return link.call(lambda _: op(*args, **kwargs), [])
            return link.call(lambda _: op(*args, **kwargs))

        def get(self, token):
            return self._through("get", token)

        def create(self, path, lock):
            return self._through("create", path, lock)

        def refresh(self, token, *, timeout):
            return self._through("refresh", token, timeout=timeout)

        def delete(self, token):
            return self._through("delete", token)

        def get_lock_list(self, path, *, include_root, include_children, token_only):
            return self._through("get_lock_list", path, include_root=include_root,
                                 include_children=include_children, token_only=token_only)

        def clear(self):
            return self._through("clear")

    return SharedLocks()
