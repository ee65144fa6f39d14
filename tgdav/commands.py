"""The bodies of the `tgdav` commands: serve, login, ls, cache stats/clear, demo. Each gets a checked
configuration (tgdav.config.preflight has run) and builds what it runs through the composition root
(tgdav.app)."""

from __future__ import annotations

import dataclasses
import getpass
import json
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tgdav.app import Engine, build_server, make_account_client
from tgdav.bridge import Bridge
from tgdav.cache.store import Store
from tgdav.config import Config
from tgdav.errors import TgdavError
from tgdav.metrics import Metrics, serve_metrics
from tgdav.telegram.login import SandboxInfo, login as login_account


def serve(config: Config, ready: threading.Event | None = None, on_listening=None) -> int:
    """Serve until SIGTERM/SIGINT (after tgdav.config.preflight(config, "serve")). `on_listening()`
    runs once the address is bound and listening."""
    from tgdav.dav.server import bind_errors

    metrics = Metrics()
    engine = Engine(config, metrics).start()
    metrics_server = None
    try:
        server = build_server(config, engine, metrics)
        if config.metrics.listen:
            metrics_server, metrics_url = serve_metrics(config.metrics.listen, metrics)
            print(f"tgdav: serving metrics on {metrics_url}", flush=True)
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
        client = make_account_client(config, state)
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
        client = make_account_client(config, config.state.dir)
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
