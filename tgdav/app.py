"""The composition root: configuration -> objects. The commands (tgdav.commands), the tests and the
benchmarks build what they run through it, with the same code as `tgdav serve`.

    Bridge (loop thread) ── TelegramClient (main connection: login, listings, exports)
                         ── Accounts: per account Pool(SenderFactory) ── FileFetcher ─┐
                         ── PartReader(Accounts.fetch) ──────────────── SyncReader ───┤
                         ── TelegramCatalog (the main account's pool) ── SyncCatalog ──┤
    Store (diskcache: DC map, DC auth, listings, chunks) used by all of them           │
    dav.build_app(catalog, reader) ── dav.make_server (cheroot) ◀─────────────────────┘

The main account is an Accounts of one; each helper ([telegram] helpers) is one more, built by the
same code (account_pool) with its own DC authorisations and file references, reporting to the same
Metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Callable

from tgdav.bridge import Bridge
from tgdav.cache.announce import ListingAnnouncer
from tgdav.cache.reader import PartReader, SyncReader
from tgdav.cache.shared import open_store
from tgdav.cache.store import Store
from tgdav.config import Config
from tgdav.errors import ConfigError, UpstreamUnavailable
from tgdav.metrics import Metrics
from tgdav.plan import MIB
from tgdav.telegram.accounts import Account, Accounts, Resolver, connect_helpers, disconnect_helpers
from tgdav.telegram.catalog import ChannelFilter, SyncCatalog, TelegramCatalog
from tgdav.telegram.fetch import FileFetcher
from tgdav.telegram.login import SandboxInfo, make_client
from tgdav.telegram.pace import TokenBucket
from tgdav.telegram.pool import Pool
from tgdav.telegram.senders import SenderFactory
from tgdav.telegram.updates import LiveUpdates

log = logging.getLogger("tgdav")
PACE_KEY = "pace:getHistory"      # the getHistory token bucket's state, kept in the store per account

INTERACTIVE_PART = 32 * 1024       # a player's read-ahead parts: small, so a seek wastes little
INTERACTIVE_AHEAD_PER_SENDER = 512 * 1024


@dataclasses.dataclass
class ReadPath:
    """The read path of one logged-in account (and its helpers): what serve, the tests and the
    benchmarks all read through. factory, pool and fetcher are the main account's."""
    factory: SenderFactory
    pool: Pool
    catalog: TelegramCatalog
    fetcher: FileFetcher
    reader: PartReader
    accounts: Accounts               # every account, the main one first (telegram/accounts.py)
    flood_board: object = None       # shared flood deadlines (cache/shared.py) when replicas share Redis
    updates: LiveUpdates | None = None          # listings kept current from Telegram's updates
    announcer: ListingAnnouncer | None = None   # replicas told of each changed listing (Redis)
    keep_pace: object = None         # stores the getHistory pace for the next run

    async def close(self) -> None:
        if self.updates is not None:
            await self.updates.close()
        if self.announcer is not None:
            await self.announcer.close()
        if self.keep_pace is not None:
            await asyncio.to_thread(self.keep_pace)
        await self.accounts.close()      # every account's pool, flood board and helper client
        await asyncio.to_thread(self.reader.close)


def build_read_path(client, store: Store, config: Config, *, is_bot: bool, open_sender=None,
                    metrics=None, helpers=()) -> ReadPath:
    """Wire pool, fetcher, reader and catalog for `client` (connected and logged in) on the running
    loop. open_sender(factory, dc) may wrap SenderFactory.open (tests count the opens).
    helpers: (client, get_me()) of helper accounts (connected, logged in); reads spread over all."""
    pool_cfg = config.pool
    # replicas sharing Redis (cache/shared.py): the store must know the account before it is used
    flood_board = store.flood_board()
    factory, pool = account_pool(client, store, config, metrics=metrics, flood_board=flood_board,
                                 hand_back_floods=bool(helpers), open_sender=open_sender)
    home = client.session.dc_id
    # the getHistory pace, carried over a restart (Telegram counts the calls made just before it)
    pace = TokenBucket(config.telegram.history_per_second, config.telegram.history_burst,
                       kept=store.listing(PACE_KEY))
    catalog = TelegramCatalog(client, store,
                              channel_filter=ChannelFilter(config.channels.include, config.channels.exclude),
                              refresh_seconds=config.cache.listing_refresh, is_bot=is_bot,
                              progress=metrics.scan_progress if metrics is not None else None,
                              # history pages on the pool's home-DC senders, several at once, paced
                              invoke=lambda request: pool.invoke(home, request),
                              pace=pace,
                              parallel=2 * pool_cfg.senders_per_dc,
                              listed=(_dcs_of_listings(pool, factory, shared=flood_board is not None)
                                      if pool_cfg.connect_listed_dcs else None),
                              trust=config.write.trust)
    fetcher = FileFetcher(pool, store, catalog.refresh_location, metrics=metrics)
    main = Account("main", pool, fetcher, None, extra=[flood_board.close] if flood_board is not None else [])
    accounts = Accounts([main] + [_helper(helper, me, store, config, metrics) for helper, me in helpers],
                        max_wait=pool_cfg.max_wait_seconds)
    reader = PartReader(accounts.fetch, store, first_part=pool_cfg.first_part,
                        # at least two parts in flight per sender, or the senders idle a round trip
                        max_ahead=max(pool_cfg.read_ahead_parts, 2 * pool_cfg.senders_per_dc) * MIB,
                        part_limit=accounts.part_limit,
                        # a player's window: what keeps the DC's senders busy (a round trip of
                        # 2 MiB/s each) in small parts, so a seek away wastes little
                        interactive_part=INTERACTIVE_PART,
                        interactive_ahead=pool_cfg.senders_per_dc * INTERACTIVE_AHEAD_PER_SENDER,
                        metrics=metrics)
    return ReadPath(factory, pool, catalog, fetcher, reader, accounts, flood_board,
                    keep_pace=lambda: store.remember_listing(PACE_KEY, pace.kept()))


async def start_live(read_path: ReadPath, client, store: Store, config: Config, metrics=None) -> None:
    """Keep the catalog's listings current: announcements between replicas sharing Redis, and
    Telegram's updates on the main client (with [cache] updates), after which a listing is read
    again only every [cache] updates_refresh seconds, as a safety net."""
    catalog = read_path.catalog
    if config.state.redis:          # replicas share the store (a RedisStore): tell them of changes
        read_path.announcer = ListingAnnouncer(store.url, store.account_prefix, catalog.reread_kept)
        await read_path.announcer.start()
        catalog.on_change = read_path.announcer.announce
    if config.cache.updates:
        read_path.updates = LiveUpdates(client, catalog)
        await read_path.updates.start()
        catalog.refresh_every(config.cache.updates_refresh)
        if metrics is not None:
            metrics.set_updates_source(read_path.updates.stats)


def _dcs_of_listings(pool: Pool, factory: SenderFactory, *, shared: bool):
    """listed(entries) for the catalog: connect to the DCs a listing names before anyone reads
    there (the catalog does not know the pool; this callback is the only link). Replicas sharing
    Redis all list at start: there only DCs with a kept authorisation are connected ahead (no
    replica exports for a read nobody made; the first read's export is shared with the others)."""
    tasks: set[asyncio.Task] = set()

    async def kept_only(dcs) -> None:
        pool.warm([dc for dc in dcs if await factory.has_key(dc)])

    def listed(entries) -> None:
        dcs = {e.location.dc_id for e in entries if e.location.kind != "empty" and e.location.dc_id}
        if not shared:
            pool.warm(dcs)
            return
        task = asyncio.get_running_loop().create_task(kept_only(dcs))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    return listed


def account_pool(client, store, config: Config, *, metrics=None, flood_board=None,
                 hand_back_floods: bool = False, open_sender=None) -> tuple[SenderFactory, Pool]:
    """One account's SenderFactory and Pool ([pool] settings): the one place either is built, for
    the main account and each helper alike. hand_back_floods: a flooded getFile goes back to
    Accounts to be sent through another account (only when there is another)."""
    pool_cfg = config.pool
    factory = SenderFactory(client, store, metrics=metrics)
    opener = factory.open if open_sender is None else (lambda dc: open_sender(factory, dc))
    pool = Pool(opener, forget_auth=factory.forget, senders_per_dc=pool_cfg.senders_per_dc,
                idle_seconds=pool_cfg.idle_seconds, max_wait=pool_cfg.max_wait_seconds,
                request_timeout=pool_cfg.request_timeout, metrics=metrics, flood_board=flood_board,
                hand_back_floods=hand_back_floods)
    return factory, pool


def _helper(client, me, store: Store, config: Config, metrics) -> Account:
    """A helper account: its own SenderFactory, Pool and FileFetcher (its own DC authorisations and
    file references; the DC map and chunks are shared), reporting to the same metrics."""
    view = store.for_account(me.id)
    board = view.flood_board()
    _, pool = account_pool(client, view, config, metrics=metrics, flood_board=board, hand_back_floods=True)
    resolver = Resolver(client, _who(me), is_bot=bool(me.bot))
    closers = [client.disconnect] + ([board.close] if board is not None else [])
    return Account(_who(me), pool, FileFetcher(pool, view, resolver.refresh, metrics=metrics), resolver,
                   extra=closers)


def pools_stats(accounts: Accounts) -> Callable[[], dict]:
    """The metrics' pool source: every account's connections per DC, added up (gate_seconds and
    speed: the largest)."""
    def stats() -> dict:
        total: dict[str, dict] = {}
        for account in accounts.accounts:
            for dc, state in account.pool.stats().items():
                into = total.setdefault(dc, {})
                for key, value in state.items():
                    into[key] = (max(into.get(key, 0), value) if key in ("gate_seconds", "speed")
                                 else into.get(key, 0) + value)
        return total
    return stats


class Engine:
    """The read path of one logged-in account, running on a bridge loop."""

    def __init__(self, config: Config, metrics=None) -> None:
        self.config = config
        self.metrics = metrics
        self.bridge = Bridge()
        self.store: Store | None = None
        self.client = None
        self.read_path: ReadPath | None = None
        self.catalog: SyncCatalog | None = None
        self.reader: SyncReader | None = None
        self.drive = None          # telegram.writer.SyncWriter when [write] enabled
        self.janitor = None        # telegram.janitor.Janitor when [write] enabled

    @property
    def pool(self) -> Pool | None:
        return self.read_path.pool if self.read_path else None

    def start(self) -> "Engine":
        cfg = self.config
        state = cfg.ensure_state_dir()
        self.store = open_store(state / "cache", chunk_limit_bytes=cfg.cache.size, redis_url=cfg.state.redis)
        self.bridge.start()
        try:
            self.bridge.call(self._start(state), timeout=cfg.pool.request_timeout * 2)
        except TimeoutError:
            self.close()
            raise UpstreamUnavailable("Telegram did not answer while connecting — check the network "
                                      "(or that the sandbox is running)") from None
        except BaseException:
            self.close()
            raise
        return self

    async def _start(self, state: Path) -> None:
        cfg = self.config
        self.client = make_account_client(cfg, state)
        try:
            await self.client.connect()
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as e:
            raise UpstreamUnavailable(f"cannot reach Telegram: {e or type(e).__name__}") from None
        if not await self.client.is_user_authorized():
            raise ConfigError("this session is not logged in — run `tgdav login` first")
        me = await self.client.get_me()
        self.store.bind_account(me.id)    # shared state: this account's keys, floods, listings
        # every helper connected or none; once built, the read path's close() disconnects them
        helpers = await connect_helpers(cfg.telegram.helpers, lambda name: make_account_client(cfg, state, name))
        try:
            self.read_path = build_read_path(self.client, self.store, cfg, is_bot=bool(me.bot),
                                             metrics=self.metrics, helpers=helpers)
        except BaseException:
            await disconnect_helpers(helpers)
            raise
        for _, helper in helpers:
            log.info("helper account %s reads too", _who(helper))
        await start_live(self.read_path, self.client, self.store, cfg, self.metrics)
        self.catalog = SyncCatalog(self.bridge, self.read_path.catalog)
        self.reader = SyncReader(self.bridge, self.read_path.reader)
        if cfg.write.enabled:      # writes: uploads share the pool's home-DC senders
            from tgdav.telegram.writer import SyncWriter, Writer, max_parts_for
            from tgdav.telegram.janitor import Janitor
            home, pool = self.client.session.dc_id, self.read_path.pool
            writer = Writer(
                self.client, lambda request: pool.invoke(home, request), self.read_path.catalog,
                parallel=2 * pool.senders_per_dc, allow_new_channels=cfg.write.create_channels,
                spool_dir=_spool_dir(state),
                max_parts=await max_parts_for(self.client, bool(getattr(me, "premium", False))),
                lock_redis=cfg.state.redis)
            self.drive = SyncWriter(self.bridge, writer)
            # tgdav's own leftovers (a crash mid-upload, between send and delete): at start, then hourly
            self.janitor = Janitor(self.read_path.catalog, writer, grace=cfg.write.leftover_grace,
                                   interval=cfg.write.janitor_interval, metrics=self.metrics)
            self.janitor.start()
        if self.metrics is not None:
            self.metrics.set_pool_source(pools_stats(self.read_path.accounts))
            self.metrics.set_account(_who(me), self.client.session.dc_id)
        log.info("logged in as %s; home DC %d", _who(me), self.client.session.dc_id)

    def close(self) -> None:
        if self.bridge.running:
            try:
                self.bridge.call(self._stop(), timeout=10)
            except Exception:
                log.debug("error while disconnecting", exc_info=True)
            self.bridge.stop()
        if self.store is not None:
            self.store.close()

    async def _stop(self) -> None:
        if self.janitor is not None:
            await self.janitor.stop()
        if self.read_path is not None:
            await self.read_path.close()
        if self.client is not None:
            await self.client.disconnect()


def _spool_dir(state: Path) -> Path:
    """Where uploads spool the parts they may have to send again (unnamed files: nothing stays)."""
    spool = state / "spool"
    spool.mkdir(parents=True, exist_ok=True, mode=0o700)
    return spool


def make_account_client(cfg: Config, state: Path, session: str | None = None):
    """A Telethon client (not connected) for [telegram] session, or `session`, in the state dir.
    Every request it sends is answered within [pool] request_timeout or fails (503), a home DC
    that is down included."""
    sandbox = SandboxInfo.load(cfg.telegram.sandbox) if cfg.telegram.sandbox else None
    return make_client(state, session or cfg.telegram.session, cfg.telegram.api_id, cfg.telegram.api_hash,
                       sandbox, answer_timeout=cfg.pool.request_timeout)


def _who(me) -> str:
    return f"@{me.username}" if getattr(me, "username", None) else str(me.id)




def build_server(config: Config, engine: Engine, metrics: Metrics):
    """The WebDAV app on cheroot for a started Engine (built, not yet bound: server.prepare())."""
    from tgdav.dav.server import build_app, make_server

    metrics.set_cache_source(engine.store.chunk_stats)
    metrics.set_shared_source(engine.store.shared_state)   # [state] redis: the status page says if it answers
    app = build_app(engine.catalog, engine.reader, users=dict(config.auth.users),
                    auth=config.auth.mode, realm=config.auth.realm,
                    block_size=config.server.block_size, metrics=metrics, drive=engine.drive,
                    state_dir=config.state.dir, lock_redis=config.state.redis)
    return make_server(app, host=config.server.host, port=config.server.port,
                       threads=config.server.threads, timeout=config.server.timeout,
                       tls_cert=config.server.tls_cert, tls_key=config.server.tls_key,
                       writable=engine.drive is not None, max_file_size=config.write.max_file_size,
                       head_timeout=config.server.head_timeout,
                       per_ip_limit=config.server.per_ip_limit)
