"""The `tgdav` command as a real process: help, version, and one-line user errors with exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import tgdav

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


def test_config_naming_a_directory_says_so(run, tmp_path):
    (tmp_path / "conf").mkdir()
    line = one_line_error(run("--config", str(tmp_path / "conf"), "serve"))
    assert "is a directory" in line and "does not exist" not in line and str(tmp_path / "conf" / "tgdav.toml") in line


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


SERVE_ENV = dict(TGDAV_API_ID="1", TGDAV_API_HASH="h", TGDAV_AUTH="none")


def test_port_in_use_is_the_line_the_readme_promises(run):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = one_line_error(run("serve", "--port", str(port), **SERVE_ENV))
    assert line == (f"tgdav: error: cannot listen on 127.0.0.1:{port} (Address already in use) — "
                    f"stop the program using it or choose another port with --port")


@pytest.mark.parametrize("host, words", [("no-such-host.invalid", "use an IP address or a host name"),
                                         ("256.1.2.3", "use an IP address or a host name"),
                                         ("192.0.2.1", "use an address of this machine")])
def test_an_invalid_host_is_one_line(run, host, words):
    proc = run("serve", "--host", host, "--port", "0", **SERVE_ENV)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(f"tgdav: error: cannot listen on {host}:0 (")
    assert words in proc.stderr.splitlines()[-1]


def test_demo_on_a_port_in_use_says_so_before_announcing_anything(run):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = one_line_error(run("demo", "--port", str(port)))
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in line


def test_options_are_taken_after_the_command_too(run, tmp_path):
    line = one_line_error(run("serve", "--config", str(tmp_path / "after.toml")))
    assert "after.toml" in line
    line = one_line_error(run("cache", "stats", "--log-level", "debug", "--config", str(tmp_path / "x.toml")))
    assert "x.toml" in line
    # given before the command and not repeated after it, the value is kept
    assert "before.toml" in one_line_error(run("--config", str(tmp_path / "before.toml"), "ls", "/"))


def test_demo_help_tells_where_the_state_goes(run):
    proc = run("demo", "--help")
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0
    assert "default: a temporary directory, deleted when the demo stops" in text
    assert "keep the demo's state" in text


def test_ls_without_a_session_is_one_line_and_leaves_no_session_file(run, tmp_path):
    sandbox = tmp_path / "sandbox.json"
    sandbox.write_text('{"dcs": {"2": ["127.0.0.1", 9]}, "home_dc": 2, "rsa_public_key": "x", '
                       '"api_id": 1, "api_hash": "h"}')
    state = tmp_path / "state"
    line = one_line_error(run("ls", "/", TGDAV_SANDBOX=str(sandbox), TGDAV_STATE_DIR=str(state)))
    assert "not logged in" in line and "tgdav login" in line
    assert not list(state.rglob("*.session"))


def test_serving_every_address_without_passwords_warns(run):
    proc = run("serve", "--host", "0.0.0.0", "--port", "0", **SERVE_ENV)
    assert proc.stderr.splitlines()[0].startswith(
        "tgdav: warning: serving 0.0.0.0 without passwords (auth = none): anyone who can reach")
    assert proc.stderr.splitlines()[1].startswith("tgdav: error: not logged in")


def test_an_empty_bot_token_on_stdin_is_one_line(run):
    line = one_line_error(run("login", "--bot-token", "-", **SERVE_ENV))
    assert "--bot-token -" in line and "TGDAV_BOT_TOKEN" in line


def _without_file_privileges() -> list[str]:
    """As root, drop the capabilities that let root write anybody's files (Docker's uid 10001 sees a
    root-owned bind mount the same way); as anyone else nothing is needed."""
    if os.getuid() != 0:
        return []
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner,-chown", "--"]


def test_a_state_directory_of_another_user_is_one_line(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    if os.getuid() == 0:
        os.chown(state, 10001, 10001)
    else:
        state.chmod(0o500)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGDAV_", "XDG_"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT), TGDAV_STATE_DIR=str(state), **SERVE_ENV)
    for cwd in (tmp_path, state):       # the image's WORKDIR is /state itself
        proc = subprocess.run(_without_file_privileges() + [sys.executable, "-m", "tgdav", "serve"], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        line = one_line_error(proc)
        assert str(state) in line and f"uid {os.getuid()}" in line and "10001" in line


# --- against a running sandbox ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """`tgdav sandbox` as a process; yields (path of its JSON line, the line)."""
    import json
    where = tmp_path_factory.mktemp("cli-sandbox")
    proc = subprocess.Popen([sys.executable, "-m", "tgdav", "sandbox", "--state", str(where / "state")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line, "the sandbox did not start"
        (where / "sandbox.json").write_bytes(line)
        yield where / "sandbox.json", json.loads(line)
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.parametrize("how", ["stdin", "env"])
def test_bot_token_from_stdin_or_environment_and_the_bot_note(run, sandbox, tmp_path, how):
    path, info = sandbox
    env = dict(TGDAV_SANDBOX=str(path), TGDAV_STATE_DIR=str(tmp_path / f"state-{how}"))
    if how == "stdin":
        proc = subprocess.run([sys.executable, "-m", "tgdav", "login", "--bot-token", "-"],
                              input=info["bot_token"] + "\n", capture_output=True, text=True, timeout=90,
                              env={**{k: v for k, v in os.environ.items() if not k.startswith("TGDAV_")},
                                   "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), **env})
    else:
        proc = run("login", TGDAV_BOT_TOKEN=info["bot_token"], **env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].startswith("tgdav: logged in as") and "(bot " in out[0]
    assert out[1].startswith("tgdav: note: a bot cannot list the channels it is in") and "[channels]" in out[1]
    assert info["bot_token"] not in proc.stdout + proc.stderr


def test_a_broken_connection_to_telegram_is_one_line(run, tmp_path, sandbox):
    """A 'DC' that accepts, answers half a frame and hangs up: Telethon raises IncompleteReadError,
    which is not an OSError."""
    import json
    _, info = sandbox
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def hang_up():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"\x40\x00\x00\x00\x00")

    import threading
    threading.Thread(target=hang_up, daemon=True).start()
    try:
        fake = dict(info, dcs={str(dc): ["127.0.0.1", port] for dc in info["dcs"]})
        (tmp_path / "broken.json").write_text(json.dumps(fake))
        line = one_line_error(run("login", "--phone", info["user_phone"],
                                  TGDAV_SANDBOX=str(tmp_path / "broken.json"),
                                  TGDAV_STATE_DIR=str(tmp_path / "state")))
        assert "the connection to Telegram failed" in line and "check the network" in line
    finally:
        server.close()


def test_a_helper_session_logs_in_with_a_token_read_once_from_stdin(sandbox, tmp_path):
    """`tgdav login --session NAME --bot-token -`: the token is read from standard input once (it
    was read a second time, found nothing, and the login stopped)."""
    path, info = sandbox
    state = tmp_path / "state"
    proc = subprocess.run([sys.executable, "-m", "tgdav", "login", "--session", "helper1", "--bot-token", "-"],
                          input=info["bot_token"] + "\n", capture_output=True, text=True, timeout=90,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("TGDAV_")},
                               "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "TGDAV_SANDBOX": str(path),
                               "TGDAV_STATE_DIR": str(state)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("tgdav: logged in as") and "(bot " in proc.stdout
    assert (state / "sessions" / "helper1.session").is_file()
    assert not (state / "sessions" / "tgdav.session").exists()
