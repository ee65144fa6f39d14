"""Configuration: defaults, lookup order, environment overrides, sizes, and errors that name the fix."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from tgdav.config import _RULES, Config, load_config, parse_size
from tgdav.errors import ConfigError, TgdavError

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "tgdav.example.toml"
KEY_LINE = re.compile(r"^# (\w+ = .*)$", re.M)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty HOME and working directory, so no real configuration file is found."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), **extra}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(path=None, env=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    return str(info.value)


def test_defaults_without_any_file(home):
    config = load_config(env=env_for(home))
    assert config.source is None
    assert (config.server.host, config.server.port, config.server.threads) == ("127.0.0.1", 8080, 64)
    assert (config.server.timeout, config.server.block_size) == (300, 1048576)
    assert (config.auth.mode, config.auth.realm, dict(config.auth.users)) == ("basic", "tgdav", {})
    assert (config.pool.senders_per_dc, config.pool.first_part, config.pool.max_wait_seconds) == (4, 65536, 10)
    assert (config.pool.idle_seconds, config.pool.read_ahead_parts, config.pool.request_timeout) == (120, 8, 30)
    assert (config.cache.size, config.cache.listing_refresh) == (2 * 2**30, 60)
    assert (config.telegram.session, config.telegram.api_id, config.telegram.sandbox) == ("tgdav", 0, None)
    assert config.channels.include == config.channels.exclude == ()
    assert config.log.level == "info"
    assert config.state.dir == home / ".local" / "state" / "tgdav"


def test_state_dir_follows_xdg_and_is_created_private(home, tmp_path):
    config = load_config(env=env_for(home, XDG_STATE_HOME=str(tmp_path / "xdg")))
    assert config.state.dir == tmp_path / "xdg" / "tgdav"
    path = config.ensure_state_dir()
    assert path.is_dir() and stat.S_IMODE(path.stat().st_mode) == 0o700


def test_example_file_loads_and_documents_every_key(home):
    config = load_config(str(EXAMPLE), env=env_for(home))
    assert config.source == EXAMPLE and config.telegram.api_id == 12345
    text = EXAMPLE.read_text()
    for section, keys in _RULES.items():
        assert f"[{section}]" in text
        for key in keys:
            assert re.search(rf"^(# )?{key} = ", text, re.M), f"[{section}] {key} is not in the example"
    # the commented-out examples are valid too
    uncommented = write(home / "full.toml", KEY_LINE.sub(r"\1", text))
    full = load_config(str(uncommented), env=env_for(home))
    assert full.telegram.bot_token and full.server.tls_cert == Path("/etc/tgdav/cert.pem")
    assert full.telegram.sandbox == home / "sandbox.json"   # relative to the file


def test_lookup_order(home, tmp_path):
    user = write(home / ".config" / "tgdav" / "tgdav.toml", "[server]\nport = 1001\n")
    assert load_config(env=env_for(home)).source == user
    write(tmp_path / "tgdav.toml", "[server]\nport = 1002\n")
    assert load_config(env=env_for(home)).server.port == 1002
    named = write(tmp_path / "named.toml", "[server]\nport = 1003\n")
    assert load_config(env=env_for(home, TGDAV_CONFIG=str(named))).server.port == 1003
    flag = write(tmp_path / "flag.toml", "[server]\nport = 1004\n")
    config = load_config(str(flag), env=env_for(home, TGDAV_CONFIG=str(named)))
    assert (config.source, config.server.port) == (flag, 1004)


def test_named_files_must_exist(home, tmp_path):
    assert "--config" in error_of(str(tmp_path / "missing.toml"), env_for(home))
    assert "$TGDAV_CONFIG" in error_of(None, env_for(home, TGDAV_CONFIG=str(tmp_path / "gone.toml")))


def test_environment_overrides_the_file(home, tmp_path):
    path = write(tmp_path / "tgdav.toml", '[server]\nport = 1000\nhost = "::1"\n[auth]\nusers = { carol = "x" }\n')
    env = env_for(home, TGDAV_API_ID="77", TGDAV_API_HASH="hash", TGDAV_BOT_TOKEN="1:abc",
                  TGDAV_SESSION="second", TGDAV_SANDBOX="sb.json", TGDAV_STATE_DIR=str(tmp_path / "st"),
                  TGDAV_HOST="0.0.0.0", TGDAV_PORT="9090", TGDAV_THREADS="8", TGDAV_AUTH="Digest",
                  TGDAV_USERS="alice:pw:with:colons, bob:sha256:ab", TGDAV_CACHE_SIZE="512M",
                  TGDAV_SENDERS_PER_DC="20", TGDAV_LOG_LEVEL="DEBUG", TGDAV_TLS_CERT="c.pem",
                  TGDAV_TLS_KEY="k.pem")
    c = load_config(str(path), env=env)
    assert (c.telegram.api_id, c.telegram.api_hash, c.telegram.bot_token) == (77, "hash", "1:abc")
    assert (c.telegram.session, c.telegram.sandbox) == ("second", Path("sb.json"))
    assert c.state.dir == tmp_path / "st"
    assert (c.server.host, c.server.port, c.server.threads) == ("0.0.0.0", 9090, 8)
    assert (c.server.tls_cert, c.server.tls_key) == (Path("c.pem"), Path("k.pem"))
    assert c.auth.mode == "digest"
    assert dict(c.auth.users) == {"alice": "pw:with:colons", "bob": "sha256:ab"}
    assert (c.cache.size, c.pool.senders_per_dc, c.log.level) == (512 * 2**20, 20, "debug")


def test_empty_environment_variable_counts_as_unset(home):
    assert load_config(env=env_for(home, TGDAV_PORT="", TGDAV_USERS="")).server.port == 8080


@pytest.mark.parametrize("text, size", [
    (123, 123), ("123", 123), ("64 KiB", 65536), ("2 GiB", 2 * 2**30), ("1.5GB", 1_500_000_000),
    ("512M", 512 * 2**20), ("512m", 512 * 2**20), ("10 kb", 10_000), ("1k", 1024), ("7 B", 7),
    ("1 TiB", 2**40), ("0.5 MiB", 2**19),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "lots", "1 XB", "-5", "1 iB", True, 1.5, None])
def test_bad_size_names_key_and_examples(home, tmp_path, bad):
    value = "true" if bad is True else ("1.5" if bad == 1.5 else '""' if bad is None else f'"{bad}"')
    path = write(tmp_path / "t.toml", f"[cache]\nsize = {value}\n")
    message = error_of(str(path), env_for(home))
    assert "[cache] size" in message and "GiB" in message and str(path) in message


def test_broken_toml_names_file_and_line(home, tmp_path):
    path = write(tmp_path / "t.toml", '[server]\nport = 8080\nhost = "unclosed\n')
    message = error_of(str(path), env_for(home))
    assert message.startswith(f"{path}:3: ") and "—" in message


@pytest.mark.parametrize("text, key, hint", [
    ("[server]\nprot = 80\n", "'prot'", "'port'"),
    ("[sever]\nport = 80\n", "[sever]", "'server'"),
    ("[pool]\nsenders = 3\n", "'senders'", "senders_per_dc"),
])
def test_unknown_keys_are_rejected(home, tmp_path, text, key, hint):
    message = error_of(str(write(tmp_path / "t.toml", text)), env_for(home))
    assert key in message and hint in message


@pytest.mark.parametrize("text, needle", [
    ("[pool]\nsenders_per_dc = 21\n", "[pool] senders_per_dc = 21 is above 20"),
    ("[pool]\nsenders_per_dc = 0\n", "[pool] senders_per_dc = 0 is below 1"),
    ("[pool]\nfirst_part = \"3 KiB\"\n", "[pool] first_part = '3 KiB'"),
    ("[pool]\nfirst_part = \"96 KiB\"\n", "power of two"),
    ("[server]\nport = 70000\n", "[server] port = 70000 is above 65535"),
    ("[server]\nport = \"http\"\n", "[server] port = 'http' is not a whole number"),
    ("[server]\nthreads = true\n", "[server] threads = True"),
    ("[server]\ntls_cert = \"c.pem\"\n", "tls_cert and tls_key must be set together"),
    ("[auth]\nmode = \"ntlm\"\n", "basic, digest, none"),
    ("[auth]\nusers = { \"a:b\" = \"x\" }\n", "[auth] users"),
    ("[channels]\ninclude = [\"mychannel\"]\n", "@username"),
    ("[log]\nlevel = \"loud\"\n", "debug, info"),
    ("[telegram]\nsession = \"../escape\"\n", "plain file name"),
    ("server = 5\n", "[server] table"),
])
def test_bad_values_name_the_key_and_fix(home, tmp_path, text, needle):
    message = error_of(str(write(tmp_path / "t.toml", text)), env_for(home))
    assert needle in message and " — " in message and "\n" not in message


def test_bad_environment_value_names_the_variable(home):
    message = error_of(None, env_for(home, TGDAV_SENDERS_PER_DC="25"))
    assert message.startswith("TGDAV_SENDERS_PER_DC: [pool] senders_per_dc = '25' is above 20")
    assert "name:password" in error_of(None, env_for(home, TGDAV_USERS="alice"))


def test_secrets_never_appear_in_repr_or_errors(home, tmp_path):
    secrets = ["0123456789abcdef0123456789abcdef", "4242:SECRET-bot-token", "hunter2", "sha256:feedface"]
    path = write(tmp_path / "t.toml", f'[telegram]\napi_id = 1\napi_hash = "{secrets[0]}"\n'
                                      f'bot_token = "{secrets[1]}"\n[auth]\nusers = {{ alice = "{secrets[2]}" }}\n')
    config = load_config(str(path), env=env_for(home, TGDAV_USERS=f"alice:{secrets[2]},bob:{secrets[3]}"))
    shown = repr(config) + str(config.redacted()) + repr(config.telegram) + repr(config.auth) + str(config)
    assert "alice" in shown and "bob" in shown and "***" in shown
    assert not [s for s in secrets if s in shown]
    bad = write(tmp_path / "bad.toml", '[telegram]\nbot_token = "not a token hunter2"\n')
    assert "hunter2" not in error_of(str(bad), env_for(home))


def test_credentials_required_with_a_message_naming_where(home):
    config = load_config(env=env_for(home))
    with pytest.raises(ConfigError) as info:
        config.require_telegram()
    message = str(info.value)
    assert "TGDAV_API_ID" in message and "tgdav.toml" in message and "my.telegram.org" in message
    load_config(env=env_for(home, TGDAV_API_ID="1", TGDAV_API_HASH="h")).require_telegram()


def test_sandbox_file_is_read_and_a_missing_one_is_a_clear_error(home, tmp_path):
    line = tmp_path / "sandbox.json"
    config = load_config(env=env_for(home, TGDAV_SANDBOX=str(line)))
    with pytest.raises(ConfigError, match="tgdav sandbox"):
        config.require_telegram()
    line.write_text('{"api_id": 5, "dcs": {"2": 4000}}\n')
    config.require_telegram()
    assert config.sandbox_line() == {"api_id": 5, "dcs": {"2": 4000}}
    line.write_text("not json")
    with pytest.raises(ConfigError, match="JSON"):
        config.sandbox_line()


def test_serving_needs_users_unless_auth_is_off(home, tmp_path):
    with pytest.raises(ConfigError, match="TGDAV_USERS"):
        load_config(env=env_for(home, TGDAV_HOST="0.0.0.0")).require_serving()
    load_config(env=env_for(home, TGDAV_AUTH="none")).require_serving()
    load_config(env=env_for(home, TGDAV_USERS="a:b")).require_serving()
    tls = env_for(home, TGDAV_USERS="a:b", TGDAV_TLS_CERT=str(tmp_path / "c"), TGDAV_TLS_KEY=str(tmp_path / "k"))
    with pytest.raises(ConfigError, match="tls_cert"):
        load_config(env=tls).require_serving()
    with pytest.raises(ConfigError, match="Digest cannot check"):
        load_config(env=env_for(home, TGDAV_AUTH="digest", TGDAV_USERS="a:b,c:sha256:00")).require_serving()
    load_config(env=env_for(home, TGDAV_AUTH="digest", TGDAV_USERS="a:b,c:ha1:00")).require_serving()


def test_config_is_frozen_and_defaults_are_constructible():
    config = Config()
    with pytest.raises(AttributeError):
        config.server.port = 1          # type: ignore[misc]
    assert config.server.port == 8080 and os.fspath(config.state.dir).endswith("tgdav")


# --- every setting declared once ------------------------------------------------------------------------
README = EXAMPLE.parents[1] / "README.md"


def test_the_readme_names_exactly_the_variables_the_settings_declare():
    from tgdav.config import _ENV
    text = README.read_text()
    paragraph = text[text.index("Environment variables override single keys"):]
    paragraph = paragraph[:paragraph.index("\n\n")]
    assert set(re.findall(r"TGDAV_\w+", paragraph)) == set(_ENV)


# --- preflight: every start-up check, one line each ----------------------------------------------------
def preflight_line(config, command: str, warnings: list | None = None) -> str:
    from tgdav.config import preflight
    with pytest.raises(TgdavError) as info:
        preflight(config, command, warn=(warnings if warnings is not None else []).append)
    message = str(info.value)
    assert "\n" not in message and " — " in message, message
    return message


def logged_in(home: Path, session: str = "tgdav", **env: str):
    """A configuration with credentials and a session file, on a free port, nothing wrong."""
    env = {"TGDAV_STATE_DIR": str(home / "state"), **env}
    config = load_config(env=env_for(home, TGDAV_API_ID="1", TGDAV_API_HASH="h", TGDAV_PORT="0", **env))
    write(home / "state" / "sessions" / f"{session}.session", "")
    return config


def test_preflight_passes_a_good_configuration_for_every_command(home):
    from tgdav.config import COMMANDS, preflight
    config = logged_in(home, TGDAV_AUTH="none")
    warnings: list[str] = []
    for command in COMMANDS:
        preflight(config, command, warn=warnings.append)
    assert warnings == []


def test_preflight_missing_credentials(home):
    config = load_config(env=env_for(home))
    for command in ("login", "ls", "serve"):
        assert "no Telegram api_id/api_hash configured" in preflight_line(config, command)


def test_preflight_cache_and_demo_need_no_account(home):
    from tgdav.config import preflight
    config = load_config(env=env_for(home, TGDAV_PORT="0"))
    preflight(config, "cache")
    preflight(config, "demo")


def test_preflight_serving_without_users(home):
    line = preflight_line(logged_in(home, TGDAV_HOST="0.0.0.0"), "serve")
    assert "no users are configured" in line and "TGDAV_USERS" in line


def test_preflight_missing_tls_files(home, tmp_path):
    config = logged_in(home, TGDAV_AUTH="none", TGDAV_TLS_CERT=str(tmp_path / "c.pem"),
                       TGDAV_TLS_KEY=str(tmp_path / "k.pem"))
    assert "[server] tls_cert" in preflight_line(config, "serve")


def test_preflight_a_port_in_use(home):
    import dataclasses
    import socket
    config = logged_in(home, TGDAV_AUTH="none")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, port=port))
        for command in ("serve", "demo"):
            assert preflight_line(config, command) == (
                f"cannot listen on 127.0.0.1:{port} (Address already in use) — "
                f"stop the program using it or choose another port with --port")


def test_preflight_a_state_dir_that_is_a_file(home):
    write(home / "state-file", "not a directory")
    config = logged_in(home, TGDAV_STATE_DIR=str(home / "state-file"))
    line = preflight_line(config, "cache")
    assert line.startswith(f"the state directory {home / 'state-file'} is a file") and "TGDAV_STATE_DIR" in line


def test_preflight_not_logged_in_and_the_open_server_warning_first(home):
    config = load_config(env=env_for(home, TGDAV_API_ID="1", TGDAV_API_HASH="h", TGDAV_PORT="0",
                                     TGDAV_AUTH="none", TGDAV_HOST="0.0.0.0",
                                     TGDAV_STATE_DIR=str(home / "state")))
    warnings: list[str] = []
    for command in ("ls", "serve"):
        line = preflight_line(config, command, warnings)
        assert line.startswith("not logged in: there is no session") and "tgdav login" in line
    assert len(warnings) == 1 and warnings[0].startswith("serving 0.0.0.0 without passwords")
    assert not (home / "state" / "sessions").exists()


def test_preflight_stops_at_the_first_problem(home):
    """No credentials, no users, no session: the line is the first check's."""
    config = load_config(env=env_for(home, TGDAV_HOST="0.0.0.0", TGDAV_STATE_DIR=str(home / "state")))
    assert "api_id" in preflight_line(config, "serve")


def test_preflight_a_metrics_port_in_use(home):
    import socket
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = logged_in(home, TGDAV_AUTH="none", TGDAV_METRICS_LISTEN=f"127.0.0.1:{port}")
        line = preflight_line(config, "serve")
    assert line.startswith(f"cannot serve metrics on 127.0.0.1:{port} (Address already in use) — ")
    assert "[metrics] listen" in line
