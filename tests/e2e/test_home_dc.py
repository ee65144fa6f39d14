"""An account whose home DC is not where a new session begins. Telethon begins on DC 2; Telegram
answers a login there for an account of another DC with 303 PHONE_MIGRATE_X (a phone) or
USER_MIGRATE_X (a bot token), and the client moves (core.telegram.org/api/datacenter). `tgdav login`
keeps the session on the home DC, and `tgdav serve` reads from there: a file read whole (SHA-256)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import urllib.request
from pathlib import Path

from tests.e2e.conftest import TGDAV, sha256, start_server, stop

HOME = 4


def _session_dc(state: Path) -> int:
    """The DC the Telethon session file in `state` is kept on."""
    with sqlite3.connect(state / "sessions" / "e2e.session") as db:
        return db.execute("SELECT dc_id FROM sessions").fetchone()[0]


def test_a_user_and_a_bot_of_dc_4_are_sent_home_at_login_and_read_from_there(tmp_path):
    seed = tmp_path / "seed"
    (seed / "Home").mkdir(parents=True)
    data = os.urandom(300_000)
    (seed / "Home" / "file.bin").write_bytes(data)
    logs = tmp_path / "logs"
    logs.mkdir()
    sandbox = subprocess.Popen(TGDAV + ["sandbox", "--seed", str(seed), "--home-dc", str(HOME),
                                        "--state", str(tmp_path / "sandbox-state")],
                               stdout=subprocess.PIPE, stderr=open(logs / "sandbox.err", "wb"),
                               stdin=subprocess.DEVNULL, start_new_session=True)
    serve = None
    try:
        line = sandbox.stdout.readline()
        assert line, (logs / "sandbox.err").read_text()
        info = json.loads(line)
        assert info["home_dc"] == HOME
        (tmp_path / "sandbox.json").write_bytes(line)

        url, serve = start_server(tmp_path / "user", tmp_path / "sandbox.json", info, logs / "serve")
        with urllib.request.urlopen(url + "Home/file.bin", timeout=30) as r:
            assert sha256(r.read()) == sha256(data)
        assert _session_dc(tmp_path / "user" / "state") == HOME

        bot = tmp_path / "bot"
        bot.mkdir()
        (bot / "tgdav.toml").write_text(f'[telegram]\nsandbox = "{tmp_path / "sandbox.json"}"\nsession = "e2e"\n\n'
                                        f'[state]\ndir = "{bot / "state"}"\n', encoding="utf-8")
        login = subprocess.run(TGDAV + ["--config", str(bot / "tgdav.toml"), "login", "--bot-token",
                                        info["bot_token"]], capture_output=True, text=True, timeout=90)
        assert login.returncode == 0, login.stderr[-2000:]
        assert _session_dc(bot / "state") == HOME

        with urllib.request.urlopen(info["admin"].rstrip("/") + "/counters", timeout=10) as r:
            counters = json.loads(r.read())
        assert counters["2"].get("errors:PHONE_MIGRATE_X") == 1        # sendCode, then sent home
        assert counters["2"].get("errors:USER_MIGRATE_X") == 1         # importBotAuthorization
        assert counters[str(HOME)].get("requests:SignIn") == 1
        assert counters[str(HOME)].get("requests:ImportBotAuthorization") == 1
    finally:
        stop(serve)
        stop(sandbox)
