"""The `tgdav` command as a real process: help, version, and one-line user errors with exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import tgdav
from tgdav.cli import _bind_errors
from tgdav.errors import TgdavError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(tmp_path):
    """Run `python -m tgdav ARGS` in an empty directory with an empty HOME and no TGDAV_* variables."""
    home = tmp_path / "home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TGDAV_", "XDG_"))}
    base.update(HOME=str(home), PYTHONPATH=str(ROOT))

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tgdav", *args], cwd=tmp_path, env={**base, **env},
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return run


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """A user error: exit 1, nothing on stdout, exactly one "tgdav: error: what — fix" line on stderr."""
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tgdav: error: ") and " — " in lines[0]
    return lines[0]


def test_help_lists_every_command(run):
    proc = run("--help")
    assert proc.returncode == 0 and proc.stderr == ""
    for command in ("login", "serve", "demo", "sandbox", "ls", "cache", "--config", "--log-level"):
        assert command in proc.stdout
    cache = run("cache", "--help")
    assert cache.returncode == 0 and "stats" in cache.stdout and "clear" in cache.stdout


def test_version(run):
    proc = run("--version")
    assert (proc.returncode, proc.stdout.strip()) == (0, f"tgdav {tgdav.__version__}")


@pytest.mark.parametrize("args", [(), ("serve", "--port", "http"), ("cache",), ("nonsense",),
                                  ("--log-level", "loud", "serve")])
def test_usage_errors_exit_2(run, args):
    proc = run(*args)
    assert proc.returncode == 2 and "usage: tgdav" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_without_credentials_names_files_and_variables(run, tmp_path):
    line = one_line_error(run("serve"))
    assert "api_id" in line and "TGDAV_API_ID" in line and "TGDAV_API_HASH" in line
    assert str(tmp_path / "tgdav.toml") in line and ".config/tgdav/tgdav.toml" in line


@pytest.mark.parametrize("command", [("ls", "/"), ("login",)])
def test_commands_that_need_telegram_check_credentials_first(run, command):
    assert "TGDAV_API_ID" in one_line_error(run(*command))


def test_serve_refuses_an_open_server_without_users(run):
    line = one_line_error(run("serve", "--host", "0.0.0.0", TGDAV_API_ID="1", TGDAV_API_HASH="h"))
    assert "TGDAV_USERS" in line and "TGDAV_AUTH=none" in line


def test_missing_sandbox_file(run, tmp_path):
    line = one_line_error(run("serve", TGDAV_SANDBOX=str(tmp_path / "sandbox.json")))
    assert "sandbox.json" in line and "tgdav sandbox" in line


def test_missing_config_file(run, tmp_path):
    line = one_line_error(run("--config", str(tmp_path / "nope.toml"), "serve"))
    assert "nope.toml" in line and "--config" in line


def test_bad_config_value_names_the_key(run, tmp_path):
    (tmp_path / "tgdav.toml").write_text("[pool]\nsenders_per_dc = 50\n")
    line = one_line_error(run("serve"))
    assert "[pool] senders_per_dc = 50 is above 20" in line and str(tmp_path / "tgdav.toml") in line


def test_unknown_key_is_rejected(run, tmp_path):
    config = tmp_path / "my.toml"
    config.write_text("[server]\nprot = 8080\n")
    line = one_line_error(run("--config", str(config), "cache", "stats"))
    assert "'prot'" in line and "'port'" in line


def test_broken_toml_names_file_and_line(run, tmp_path):
    config = tmp_path / "broken.toml"
    config.write_text('[telegram]\napi_id = 1\napi_hash = "abc\n')
    line = one_line_error(run("--config", str(config), "serve"))
    assert line.startswith(f"tgdav: error: {config}:3: ")


def test_bad_environment_value_hides_secrets(run):
    line = one_line_error(run("serve", TGDAV_BOT_TOKEN="oops hunter2"))
    assert "TGDAV_BOT_TOKEN" in line and "hunter2" not in line


def test_config_errors_do_not_load_telethon(tmp_path):
    code = ("import sys; from tgdav.cli import main; rc = main(['serve']); "
            "print(rc, 'telethon' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TGDAV_")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.stdout.split() == ["1", "False"], proc.stderr


def test_port_in_use_becomes_a_user_error():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(TgdavError, match=f"127.0.0.1:{port} .* — stop the program using it"):
            with _bind_errors("127.0.0.1", port):
                socket.create_server(("127.0.0.1", port)).close()
