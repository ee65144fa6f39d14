"""Helper accounts ([telegram] helpers) that cannot start: `tgdav serve` stops with one line naming
the helper, and what the helpers connected before it opened is closed again: their connections
(the sandbox's counters: connections accepted minus connections_closed) and their session files
(a session left open stays locked, and the next `tgdav serve` says the session is in use).

Its own world (the main user and a helper bot on DC 2, a helper session kept for DC 3), served
in-process, so a start can fail in this process and what it left open can be seen here (the exit of
a `tgdav serve` process would close everything, and nobody would see it).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import run, until, wait_until
from tests.read_path.conftest import running_sandbox
from tgdav.app import Engine
from tgdav.config import load_config
from tgdav.errors import ConfigError, UpstreamUnavailable
from tgdav.telegram.accounts import connect_helpers
from tgdav.sandbox.world import World
from tgdav.telegram.login import login, make_client

MAIN = "+15550007001"
FAR_DC = 3          # the DC of the helper session "far" (main and the bot live on DC 2)


@pytest.fixture(scope="module")
def sandbox():
    w = World(seed=7001)
    user = w.add_user(MAIN, "Main", home_dc=2)
    w.add_bot("Helper Bot", "helper_bot", home_dc=2)
    with running_sandbox(w, user, {}) as sb:
        yield sb


def open_connections(sb) -> int:
    return sb.counters.total("connections") - sb.counters.total("connections_closed")


@pytest.fixture(scope="module")
def state(sandbox, tmp_path_factory):
    """A state dir with the main session logged in and a helper session "far" on DC 3, and the
    sandbox's line in a file ([telegram] sandbox)."""
    root = tmp_path_factory.mktemp("helper-start")
    info = sandbox.info
    (root / "sandbox.json").write_text(json.dumps({
        "dcs": {str(dc): list(addr) for dc, addr in info.dcs.items()}, "home_dc": info.home_dc,
        "rsa_public_key": info.rsa_public_key, "api_id": info.api_id, "api_hash": info.api_hash}))

    async def log_in(session: str, phone: str) -> None:
        client = make_client(root / "state", session, 1, "x", info)
        try:
            await login(client, bot_token=None, phone=phone, ask=lambda p, s: sandbox.world.login_code)
        finally:
            await client.disconnect()
    run(log_in("main", MAIN))
    far = make_client(root / "state", "far", 1, "x", info)     # a helper session kept for DC 3
    far.session.set_dc(FAR_DC, *info.dcs[FAR_DC])
    far.session.save()
    far.session.close()
    wait_until(lambda: open_connections(sandbox) == 0, what="the logins' connections closed")
    return root


def config_file(root, helpers: list[str]):
    path = root / f"tgdav-{len(list(root.glob('tgdav-*.toml')))}.toml"
    path.write_text(f'[telegram]\nsandbox = "{root / "sandbox.json"}"\nsession = "main"\n'
                    f'helpers = {json.dumps(helpers)}\n\n[state]\ndir = "{root / "state"}"\n\n'
                    f'[server]\nport = 0\n\n[auth]\nmode = "none"\n', encoding="utf-8")
    return path


def bot_token(sandbox) -> str:
    return next(iter(sandbox.world.bots())).bot_token


@pytest.mark.parametrize("second", ["not logged in", "unreachable"])
def test_helpers_connect_all_or_none(sandbox, state, second):
    """The helpers connected before one that fails are disconnected at once, while their loop runs."""
    if second == "unreachable":
        sandbox.faults({"down": [FAR_DC]})          # the session's DC refuses connections
    specs, error = [bot_token(sandbox), "far" if second == "unreachable" else "nosuch"], (
        UpstreamUnavailable if second == "unreachable" else ConfigError)
    before = sandbox.counters.total("connections")

    async def start() -> None:
        with pytest.raises(error):
            await connect_helpers(specs, lambda name: make_client(state / "state", name, 1, "x", sandbox.info))
        assert sandbox.counters.total("connections") > before        # the bot got connected
        await until(lambda: open_connections(sandbox) == 0, timeout=10,
                    what=lambda: f"every connection closed ({open_connections(sandbox)} open)")
    run(start())


@pytest.mark.parametrize("second", ["not logged in", "unreachable"])
def test_serve_with_a_helper_that_cannot_start_says_so_in_one_line_and_keeps_nothing_open(sandbox, state, second):
    """An Engine that fails to start closes what it opened (the bridge's loop stops, so Telethon
    happens to close a forgotten client's socket too, but not its session file); then `tgdav serve`
    on the same state says what is wrong with the helper, in one line: not that a session is in use."""
    if second == "unreachable":
        sandbox.faults({"down": [FAR_DC]})          # the session's DC refuses connections
        helpers, error = [bot_token(sandbox), "far"], UpstreamUnavailable
        line = "tgdav: error: cannot reach Telegram for the helper account of session 'far': "
    else:
        helpers, error = [bot_token(sandbox), "nosuch"], ConfigError
        line = ("tgdav: error: helper session 'nosuch' is not logged in — run `tgdav login --session "
                "nosuch` first")
    config = config_file(state, helpers)
    before = sandbox.counters.total("connections")

    # in this process: the main account and the helper bot connected, then the second helper failed
    with pytest.raises(error):
        Engine(load_config(str(config), env={})).start()
    assert sandbox.counters.total("connections") >= before + 2      # main and the bot got that far
    wait_until(lambda: open_connections(sandbox) == 0, timeout=10,
               what=lambda: f"every connection closed ({open_connections(sandbox)} open)")

    # as a user sees it: one line, no traceback
    done = subprocess.run([sys.executable, "-m", "tgdav", "--config", str(config), "serve"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(line), done.stderr
    wait_until(lambda: open_connections(sandbox) == 0, timeout=10, what="the serve process's connections closed")
