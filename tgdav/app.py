"""The composition root: configuration -> objects -> a running server. Nothing imports this module
but the CLI.

    Bridge (loop thread) ── TelegramClient (main connection: login, listings, exports)
                         ── Pool(SenderFactory) ── FileFetcher ── PartReader ── SyncReader ─┐
                         ── TelegramCatalog ─────────────────────────────── SyncCatalog ───┤
    Store (diskcache: DC map, DC auth, listings, chunks) used by all of them               │
    dav.build_app(catalog, reader) ── dav.make_server (cheroot) ◀─────────────────────────┘
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import logging
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tgdav.bridge import Bridge
from tgdav.cache.announce import ListingAnnouncer
from tgdav.cache.reader import PartReader, SyncReader
from tgdav.cache.shared import open_store
from tgdav.cache.store import Store
from tgdav.config import Config
from tgdav.errors import ConfigError, TgdavError, UpstreamUnavailable
from tgdav.metrics import Metrics, serve_metrics
from tgdav.plan import MIB
from tgdav.telegram.accounts import Account, Accounts, Resolver, connect_helper
from tgdav.telegram.catalog import ChannelFilter, SyncCatalog, TelegramCatalog
from tgdav.telegram.fetch import FileFetcher
from tgdav.telegram.login import SandboxInfo, login as login_account, make_client
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
    """The read path of one logged-in account: what serve, the tests and the benchmarks all read through."""
    factory: SenderFactory
    pool: Pool
    catalog: TelegramCatalog
    fetcher: FileFetcher
    reader: PartReader
    flood_board: object = None       # shared flood deadlines (cache/shared.py) when replicas share Redis
    accounts: Accounts | None = None  # with [telegram] helpers: every account's pool (telegram/accounts.py)
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
        if self.accounts is not None:
            await self.accounts.close()
        await self.pool.close()
        if self.flood_board is not None:
            await self.flood_board.close()
        await asyncio.to_thread(self.reader.close)


def build_read_path(client, store: Store, config: Config, *, is_bot: bool, open_sender=None,
                    metrics=None, helpers=()) -> ReadPath:
    """Wire pool, fetcher, reader and catalog for `client` (connected and logged in) on the running
    loop. open_sender(factory, dc) may wrap SenderFactory.open (tests count the opens).
    helpers: (client, get_me()) of helper accounts (connected, logged in); reads spread over all."""
    pool_cfg = config.pool
    # replicas sharing Redis (cache/shared.py): the store must know the account before it is used
    flood_board = store.flood_board()
    factory = SenderFactory(client, store, metrics=metrics)
    opener = factory.open if open_sender is None else (lambda dc: open_sender(factory, dc))
    pool = Pool(opener, forget_auth=factory.forget, senders_per_dc=pool_cfg.senders_per_dc,
                idle_seconds=pool_cfg.idle_seconds, max_wait=pool_cfg.max_wait_seconds,
                request_timeout=pool_cfg.request_timeout, metrics=metrics, flood_board=flood_board,
                hand_back_floods=bool(helpers))
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
    accounts = _helper_accounts(factory, pool, fetcher, store, config, helpers) if helpers else None
    reader = PartReader(accounts.fetch if accounts else fetcher.fetch, store, first_part=pool_cfg.first_part,
                        # at least two parts in flight per sender, or the senders idle a round trip
                        max_ahead=max(pool_cfg.read_ahead_parts, 2 * pool_cfg.senders_per_dc) * MIB,
                        part_limit=accounts.part_limit if accounts else fetcher.part_limit,
                        # a player's window: what keeps the DC's senders busy (a round trip of
                        # 2 MiB/s each) in small parts, so a seek away wastes little
                        interactive_part=INTERACTIVE_PART,
                        interactive_ahead=pool_cfg.senders_per_dc * INTERACTIVE_AHEAD_PER_SENDER,
                        metrics=metrics)
    return ReadPath(factory, pool, catalog, fetcher, reader, flood_board, accounts,
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


def _helper_accounts(factory, pool, fetcher, store, config: Config, helpers) -> Accounts:
    """The main account and each helper with its own SenderFactory, Pool and FileFetcher (its own
    DC authorisations and file references; the DC map and chunks are shared)."""
    pool_cfg = config.pool
    accounts = [Account("main", pool, fetcher, None)]
    for client, me in helpers:
        view = store.for_account(me.id)
        board = view.flood_board()
        h_factory = SenderFactory(client, view)
        h_pool = Pool(h_factory.open, forget_auth=h_factory.forget, senders_per_dc=pool_cfg.senders_per_dc,
                      idle_seconds=pool_cfg.idle_seconds, max_wait=pool_cfg.max_wait_seconds,
                      request_timeout=pool_cfg.request_timeout, flood_board=board, hand_back_floods=True)
        resolver = Resolver(client, _who(me), is_bot=bool(me.bot))
        closers = [client.disconnect] + ([board.close] if board is not None else [])
        accounts.append(Account(_who(me), h_pool, FileFetcher(h_pool, view, resolver.refresh), resolver,
                                extra=closers))
    return Accounts(accounts, max_wait=pool_cfg.max_wait_seconds)


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
        self.client = _client(cfg, state)
        try:
            await self.client.connect()
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as e:
            raise UpstreamUnavailable(f"cannot reach Telegram: {e or type(e).__name__}") from None
        if not await self.client.is_user_authorized():
            raise ConfigError("this session is not logged in — run `tgdav login` first")
        me = await self.client.get_me()
        self.store.bind_account(me.id)    # shared state: this account's keys, floods, listings
        helpers = [await connect_helper(spec, lambda name: _client(cfg, state, name))
                   for spec in cfg.telegram.helpers]
        self.read_path = build_read_path(self.client, self.store, cfg, is_bot=bool(me.bot),
                                         metrics=self.metrics, helpers=helpers)
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
            self.metrics.set_pool_source(self.read_path.pool.stats)
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


def _client(cfg: Config, state: Path, session: str | None = None):
    sandbox = SandboxInfo.load(cfg.telegram.sandbox) if cfg.telegram.sandbox else None
    return make_client(state, session or cfg.telegram.session, cfg.telegram.api_id, cfg.telegram.api_hash,
                       sandbox)


def _who(me) -> str:
    return f"@{me.username}" if getattr(me, "username", None) else str(me.id)


# --- commands ----------------------------------------------------------------------------------------
def serve(config: Config, ready: threading.Event | None = None, on_listening=None) -> int:
    """Serve until SIGTERM/SIGINT. `on_listening()` runs once the address is bound and listening."""
    from tgdav.dav.server import bind_errors, build_app, check_bind, make_server

    check_bind(config.server.host, dict(config.auth.users), config.auth.mode)
    if config.auth.mode == "none" and not _loopback(config.server.host):
        print(f"tgdav: warning: serving {config.server.host} without passwords (auth = none): anyone who "
              f"can reach this machine can read your channels — add users to [auth] unless that is "
              f"what you want", file=sys.stderr, flush=True)
    _require_session(config)
    metrics = Metrics()
    engine = Engine(config, metrics).start()
    metrics_server = None
    try:
        metrics.set_cache_source(engine.store.chunk_stats)
        metrics.set_shared_source(engine.store.shared_state)   # [state] redis: the status page says if it answers
        app = build_app(engine.catalog, engine.reader, users=dict(config.auth.users),
                        auth=config.auth.mode, realm=config.auth.realm,
                        block_size=config.server.block_size, metrics=metrics, drive=engine.drive,
                        state_dir=config.state.dir, lock_redis=config.state.redis)
        if config.metrics.listen:
            metrics_server, metrics_url = serve_metrics(config.metrics.listen, metrics)
            print(f"tgdav: serving metrics on {metrics_url}", flush=True)
        server = make_server(app, host=config.server.host, port=config.server.port,
                             threads=config.server.threads, timeout=config.server.timeout,
                             tls_cert=config.server.tls_cert, tls_key=config.server.tls_key,
                             writable=engine.drive is not None, max_file_size=config.write.max_file_size,
                             head_timeout=config.server.head_timeout,
                             per_ip_limit=config.server.per_ip_limit)
        with bind_errors(config.server.host, config.server.port):
            server.prepare()   # binds and listens
        scheme = "https" if config.server.tls_cert else "http"
        host, port = server.bind_addr[:2]
        if on_listening is not None:
            on_listening()
        print(f"tgdav: serving WebDAV on {scheme}://{host}:{port}/", flush=True)
        _stop_on_signals(server)
        if ready is not None:
            ready.set()
        server.serve()
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        engine.close()
    return 0


def _loopback(host: str) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _require_session(config: Config) -> None:
    """Commands that need a logged-in account stop here, before Telethon would create an empty
    session file for a wrong configuration."""
    path = Path(config.state.dir) / "sessions" / f"{config.telegram.session}.session"
    if not path.is_file():
        where = f" --config {config.source}" if config.source else ""
        raise ConfigError(f"not logged in: there is no session {path} — run `tgdav{where} login` first "
                          f"(with the same configuration: [state] dir and [telegram] session pick the file)")


def _stop_on_signals(server) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum, frame):
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, stop)      # the terminal closed: stop as cleanly as for Ctrl-C


def login(config: Config, *, bot_token: str | None, phone: str | None) -> int:
    state = config.ensure_state_dir()
    bridge = Bridge()
    bridge.start()

    def ask(prompt: str, secret: bool) -> str:
        try:
            return getpass.getpass(prompt) if secret else input(prompt)
        except EOFError:
            raise TgdavError("standard input ended before tgdav got an answer — run `tgdav login` in a "
                             "terminal, or pipe the code (and password) in, one per line") from None

    async def run() -> str:
        client = _client(config, state)
        try:
            return await login_account(client, bot_token=bot_token, phone=phone,
                                       ask=lambda p, s: _in_thread(ask, p, s))
        finally:
            await client.disconnect()

    try:
        who = bridge.call(run())
    finally:
        bridge.stop()
    print(f"tgdav: logged in as {who}; the session is kept in {state / 'sessions'}")
    if " (bot " in who and not config.channels.include:
        print("tgdav: note: a bot cannot list the channels it is in, so it serves nothing until you name "
              "them: add include = [-100..., \"@channel\"] under [channels] in the configuration")
    return 0


async def _in_thread(fn, *args):
    import asyncio
    return await asyncio.to_thread(fn, *args)


def ls(config: Config, path: str) -> int:
    _require_session(config)
    engine = Engine(config).start()
    try:
        parts = [p for p in path.strip("/").split("/") if p]
        catalog = engine.catalog
        if not parts:
            for f in catalog.folders():
                print(f"{f.name}/")
            return 0
        folder = catalog.folder(parts[0])
        if folder is None:
            raise TgdavError(f"no channel named {parts[0]!r} — `tgdav ls /` lists them")
        node = catalog.node(folder, tuple(parts[1:]))     # a folder inside the channel, or a file
        if node is None:
            raise TgdavError(f"no file or folder {path!r}")
        for name in getattr(node, "dirs", {}):
            print(f"{'':>14}  {name}/")
        for e in node.files.values() if hasattr(node, "files") else [node]:
            print(f"{e.size:>14}  {e.name}")
        return 0
    finally:
        engine.close()


def cache_stats(config: Config) -> int:
    store = Store(config.ensure_state_dir() / "cache", chunk_limit_bytes=config.cache.size)
    try:
        stats = store.chunk_stats()
    finally:
        store.close()
    print(json.dumps(stats, indent=2))
    return 0


def cache_clear(config: Config) -> int:
    store = Store(config.ensure_state_dir() / "cache", chunk_limit_bytes=config.cache.size)
    try:
        store.clear_chunks()
    finally:
        store.close()
    print("tgdav: chunk cache cleared (sessions, DC map and listings kept)")
    return 0


# --- demo --------------------------------------------------------------------------------------------
def demo(*, seed: str | None, profile: str | None, port: int, state: str | None) -> int:
    """The sandbox's demo world (or --seed folder) served over WebDAV on localhost, logged in as the
    sandbox's user. The sandbox runs as a child process in our process group and ends with us.
    State (sandbox, session, cache, and a tgdav.toml for `tgdav --config ... ls`) goes to `state`,
    kept; without it, to a temporary directory deleted when the demo stops."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):   # while starting up: end through the finally below
            signal.signal(signum, _exit_on_signal)
    temporary = None if state else tempfile.TemporaryDirectory(prefix="tgdav-demo-")
    state_dir = Path(state or temporary.name).expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cmd = [sys.executable, "-m", "tgdav", "sandbox", "--state", str(state_dir / "sandbox")]
    if seed:
        cmd += ["--seed", seed]
    if profile:
        cmd += ["--profile", profile]
    sandbox = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = sandbox.stdout.readline()
        if not line:
            raise TgdavError("the sandbox did not start — run `tgdav sandbox` to see why")
        info = SandboxInfo.from_json(line)
        (state_dir / "sandbox.json").write_text(line)
        config = Config()
        config = dataclasses.replace(
            config,
            telegram=dataclasses.replace(config.telegram, sandbox=state_dir / "sandbox.json", session="demo"),
            state=dataclasses.replace(config.state, dir=state_dir),
            server=dataclasses.replace(config.server, port=port),
            auth=dataclasses.replace(config.auth, mode="none"))
        # other commands (`tgdav --config DIR/tgdav.toml ls /`) get their own session: Telethon keeps
        # its session database locked while the server runs
        _demo_login(dataclasses.replace(config, telegram=dataclasses.replace(config.telegram,
                                                                             session="demo-cli")), info)
        toml = state_dir / "tgdav.toml"
        toml.write_text(f'# written by `tgdav demo`: other commands against the demo, e.g.\n'
                        f'#   tgdav --config {toml} ls /\n'
                        f'[telegram]\nsandbox = {json.dumps(str(state_dir / "sandbox.json"))}\n'
                        f'session = "demo-cli"\n\n[state]\ndir = {json.dumps(str(state_dir))}\n\n'
                        f'[server]\nport = {port}\n\n[auth]\nmode = "none"\n', encoding="utf-8")
        _demo_login(config, info)
        return serve(config, on_listening=lambda: _print_demo_help(port, line.strip(), toml,
                                                                    kept=temporary is None))
    finally:
        sandbox.terminate()
        try:
            sandbox.wait(5)
        except subprocess.TimeoutExpired:
            sandbox.kill()
        if temporary is not None:
            temporary.cleanup()


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _demo_login(config: Config, info: SandboxInfo) -> None:
    raw = info.raw
    answers = {"code": str(raw.get("login_code", "")), "password": str(raw.get("user_password", ""))}
    bridge = Bridge()
    bridge.start()

    async def run() -> str:
        client = _client(config, config.state.dir)
        try:
            return await login_account(
                client, bot_token=None, phone=raw.get("user_phone"),
                ask=lambda prompt, secret: answers["password" if secret else "code"])
        finally:
            await client.disconnect()

    try:
        bridge.call(run(), timeout=60)
    finally:
        bridge.stop()


def _print_demo_help(port: int, sandbox_line: str, toml: Path, kept: bool) -> None:
    url = f"http://127.0.0.1:{port}/"
    state = (f"state     {toml.parent} (kept; --state reuses it)" if kept else
             f"state     {toml.parent} (temporary: deleted when the demo stops; --state DIR keeps it)")
    print(f"""tgdav demo: the sandbox's demo channels are served at {url} (no password; localhost only)

  browser   open {url}
  curl      curl {url}
  rclone    rclone lsf :webdav: --webdav-url {url} --webdav-vendor other
            mkdir -p ~/tgdav && rclone mount :webdav: ~/tgdav --webdav-url {url} --webdav-vendor other --read-only
  Finder    Go > Connect to Server... > {url}
  Explorer  Map network drive > {url}  (or \\\\127.0.0.1@{port}\\DavWWWRoot)
  Kodi      Videos > Files > Add videos > Browse > Add network location > WebDAV server (HTTP),
            server 127.0.0.1, port {port}
  tgdav     tgdav --config {toml} ls /
  {state}

Uploads is the writable channel: put files and folders there (the others are read-only).

sandbox: {sandbox_line}
Ctrl-C (or closing the terminal) stops the demo.""", flush=True)
