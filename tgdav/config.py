"""tgdav's configuration: one TOML file, then TGDAV_* environment variables, into frozen dataclasses.

Each setting is declared once, as a dataclass field made by setting(): its default, its check, the
TGDAV_* variable that overrides it, whether it is a path (relative paths in a file are relative to
that file) and whether it is a secret. The section is the Config field that holds the dataclass.
Loading, the list of valid keys, the variables and redaction are all read from those declarations.

Every value is checked here, once, so the layers below can trust it. A wrong value is a ConfigError
that names where it came from (file or variable), the key, the value and the fix; an unknown key is
an error too, because a silently ignored typo is worse than a refusal. Secrets (api_hash, bot_token,
passwords) never reach repr() or logs: use redacted() to show a configuration.

preflight(config, command) is every check a command can make before it connects anywhere
(credentials, users, TLS files, the state directory, the listening addresses, the login session), in
order; the first problem stops tgdav with one line, "what — fix". What can only be known by
connecting (Redis answers, the session is authorised, helper sessions) is checked where it connects
(tgdav.app.Engine.start).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import socket
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from tgdav.errors import ConfigError, TgdavError

ENV_HINT = "TGDAV_API_ID and TGDAV_API_HASH"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
AUTH_MODES = ("basic", "digest", "none")

# the forms of names a setting (or a command-line option) may hold; other modules match with these
BOT_TOKEN = re.compile(r"\d+:[\w-]+")             # what @BotFather hands out
SESSION_NAME = re.compile(r"[\w-][\w.-]*")        # a plain file name in the state directory
USERNAME = re.compile(r"@\w{4,32}")               # a Telegram @username


# ---- values --------------------------------------------------------------------------------------

class _Invalid(Exception):
    """A validator's complaint: what is wrong, and the fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem, self.fix = problem, fix


def _number(kind: type, lo: float, hi: float | None = None, note: str = "") -> Callable:
    what = "a whole number" if kind is int else "a number"
    span = f"from {lo:g} to {hi:g}" if hi is not None else f"of at least {lo:g}"

    def check(value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                value = None
        whole = kind is not int or isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not whole:
            raise _Invalid(f"is not {what}", f"write {what} {span}{note}")
        if value < lo or (hi is not None and value > hi):
            raise _Invalid(f"is {'below' if value < lo else 'above'} {lo if value < lo else hi:g}",
                           f"use {what} {span}{note}")
        return kind(value)
    return check


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(ib?|b)?|b)?\s*$", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """Bytes from 123, "123", "64 KiB", "512M", "1.5GB": K, M, G, T, KiB.. count in 1024s, KB.. in 1000s."""
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    m = _SIZE.match(text)
    if m is None:
        raise _Invalid("is not a size", 'write bytes or a size such as "64 KiB", "512M", "2 GiB"')
    number, prefix, suffix = m.group(1), (m.group(2) or "").lower(), (m.group(3) or "").lower()
    base = 1000 if suffix == "b" else 1024
    return int(float(number) * base ** " kmgt".index(prefix or " "))


def _size(lo: int, hi: int) -> Callable:
    def check(value: Any) -> int:
        n = parse_size(value)
        if not lo <= n <= hi:
            raise _Invalid("is out of range", f"use a size from {lo} to {hi} bytes")
        return n
    return check


def _part_size(value: Any) -> int:
    """getFile limits must be 4 KiB * 2**k and divide 1 MiB: 4 KiB, 8 KiB, ... 1 MiB."""
    n = parse_size(value)
    if n < 4096 or n > 2**20 or n & (n - 1):
        raise _Invalid("is not a valid getFile part size", 'use a power of two from "4 KiB" to "1 MiB"')
    return n


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise _Invalid("is not true or false", "write true or false")


def _text(pattern: str | re.Pattern = r".+", fix: str = "write a non-empty string") -> Callable:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise _Invalid("is not valid", fix)
        return value
    return check


def _choice(options: tuple[str, ...]) -> Callable:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise _Invalid("is not one of the choices", f"use one of {', '.join(options)}")
        return value.lower()
    return check


def _path(optional: bool) -> Callable:
    def check(value: Any) -> Path | None:
        if not isinstance(value, str) or (not value and not optional):
            raise _Invalid("is not a path", "write a file or directory path as a string")
        return Path(value).expanduser() if value else None
    return check


def _ids_or_usernames(positive: bool, example: str, what: str) -> Callable:
    """A list of numeric ids (> 0 when `positive`) and "@username" strings."""
    def check(value: Any) -> tuple[int | str, ...]:
        if not isinstance(value, list):
            raise _Invalid("is not a list", f"write a list such as {example}")
        for item in value:
            number = isinstance(item, int) and not isinstance(item, bool) and (item > 0 or not positive)
            if not (number or (isinstance(item, str) and USERNAME.fullmatch(item))):
                raise _Invalid(f"holds {item!r}", f'list {what} (numbers) or "@username" strings')
        return tuple(value)
    return check


def _users(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict):
        raise _Invalid("is not a table", 'write users = { alice = "password" }')
    for name, password in value.items():
        if not name or ":" in name:
            raise _Invalid(f"has the user name {name!r}", "use a non-empty name without ':'")
        if not isinstance(password, str) or not password:
            raise _Invalid(f"gives user {name!r} no password",
                           'give a string: plain, "sha256:<hex>", "pbkdf2_sha256$..." or "ha1:<hex>"')
    return MappingProxyType(dict(value))


def _users_from_env(text: str) -> dict[str, str]:
    """TGDAV_USERS: "alice:pw,bob:sha256:..." (a password may hold ':')."""
    users: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        name, sep, password = item.strip().partition(":")
        if not sep:
            raise ConfigError(f"TGDAV_USERS entry {name!r} has no password — write it as "
                              f"name:password, entries separated by commas")
        users[name] = password
    return users


def _listen(value: Any) -> str:
    """"host:port" ("[::1]:9108" for IPv6) or "" for none."""
    if value == "":
        return ""
    host, sep, port = str(value).rpartition(":") if isinstance(value, str) else ("", "", "")
    if not (sep and host.strip("[]") and port.isdigit() and int(port) <= 65535):
        raise _Invalid("is not host:port", 'write an address and port such as "127.0.0.1:9108", or ""')
    return value


def _helpers(value: Any) -> tuple[str, ...]:
    """Helper accounts: bot tokens ("123:abc...") and names of sessions made by `tgdav login --session`."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid("is not a list of strings", 'write helpers = ["<bot token>", "<session name>"]')
    for v in value:
        if not (BOT_TOKEN.fullmatch(v) or SESSION_NAME.fullmatch(v)):
            raise _Invalid("holds an entry that is neither a bot token nor a session name",
                           "give bot tokens from @BotFather or plain session names (letters, digits, . _ -)")
    return tuple(value)


def _redis_url(value: Any) -> str:
    """"redis://[:password@]host:port/db" (or rediss://, unix://) or "" for none."""
    if value == "":
        return ""
    if not isinstance(value, str) or not re.fullmatch(r"(redis|rediss|unix)://\S+", value):
        raise _Invalid("is not a Redis URL", 'write it as "redis://host:6379/0", or "" to keep state in '
                                             'this process')
    return value


def _seconds(lo: float, hi: float | None = None) -> Callable:
    return _number(float, lo, hi, " (seconds)")


# ---- declarations --------------------------------------------------------------------------------

def setting(default: Any = None, check: Callable[[Any], Any] | None = None, *, env: str = "",
            secret: bool = False, path: bool = False, from_env: Callable[[str], Any] | None = None,
            default_for: Callable[[Mapping[str, str]], Any] | None = None) -> Any:
    """One setting, declared once. check(raw value) -> value, or raises _Invalid; env: the TGDAV_*
    variable that overrides it (from_env turns its text into what the file would hold); path: a
    path, relative to the file it is written in (its check is _path); secret: never shown;
    default_for(environment): a default that depends on the environment."""
    if path:
        check = _path(optional=default is None and default_for is None)
    meta = {"check": check, "env": env, "secret": secret, "path": path, "from_env": from_env,
            "default_for": default_for}
    if default_for is not None:
        return field(default_factory=lambda: default_for(os.environ), metadata=meta)
    return field(default=default, metadata=meta)


class _Section:
    """repr() of a section shows secrets as '***' (set) or '' (unset), never their value."""

    def redacted(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret"):
                value = {k: "***" for k in value} if isinstance(value, Mapping) else ("***" if value else "")
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.redacted()!r})"


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def _default_state_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else _home(env) / ".local" / "state"
    return base / "tgdav"


@dataclass(frozen=True, repr=False)
class TelegramConfig(_Section):
    api_id: int = setting(0, _number(int, 1), env="TGDAV_API_ID")           # 0 = not set
    api_hash: str = setting("", _text(r"\S+", "paste the api_hash from my.telegram.org"),
                            env="TGDAV_API_HASH", secret=True)
    bot_token: str = setting("", _text(BOT_TOKEN, "paste the token @BotFather gave you (digits:letters)"),
                             env="TGDAV_BOT_TOKEN", secret=True)
    # file name (in the state dir) of the login session
    session: str = setting("tgdav", _text(SESSION_NAME, "use a plain file name such as tgdav (letters, "
                                                        "digits, . _ -)"), env="TGDAV_SESSION")
    # JSON file with a local sandbox's line: talk to it instead
    sandbox: Path | None = setting(None, path=True, env="TGDAV_SANDBOX")
    # helper accounts: bot tokens, session names
    helpers: tuple[str, ...] = setting((), _helpers, secret=True)
    # messages.getHistory pace: calls per second after a burst of history_burst (Telegram's flood
    # rule: tgdav/telegram/pace.py)
    history_per_second: float = setting(1.0, _number(float, 0.01, 1000, " (calls per second)"))
    history_burst: int = setting(28, _number(int, 1, 1000))


@dataclass(frozen=True, repr=False)
class StateConfig(_Section):
    dir: Path = setting(path=True, env="TGDAV_STATE_DIR", default_for=_default_state_dir)
    # "redis://host:port/db": state shared by replicas
    redis: str = setting("", _redis_url, env="TGDAV_REDIS", secret=True)


@dataclass(frozen=True, repr=False)
class ServerConfig(_Section):
    host: str = setting("127.0.0.1", _text(r"\S+", 'write a host name or address such as "127.0.0.1" '
                                                    'or "0.0.0.0"'), env="TGDAV_HOST")
    port: int = setting(8080, _number(int, 0, 65535), env="TGDAV_PORT")
    # cheroot worker threads; Explorer opens many connections
    threads: int = setting(64, _number(int, 1, 1000), env="TGDAV_THREADS")
    # seconds; long so a paused player keeps its connection
    timeout: float = setting(300.0, _seconds(1))
    # largest write to the client (a whole part, no copies)
    block_size: int = setting(1048576, _size(4096, 16 * 2**20))
    tls_cert: Path | None = setting(None, path=True, env="TGDAV_TLS_CERT")
    tls_key: Path | None = setting(None, path=True, env="TGDAV_TLS_KEY")
    # seconds to send a request line and its headers
    head_timeout: float = setting(15.0, _seconds(1, 300))
    # connections of one address served at once; 0 = no limit
    per_ip_limit: int = setting(32, _number(int, 0, 10000))


@dataclass(frozen=True, repr=False)
class AuthConfig(_Section):
    mode: str = setting("basic", _choice(AUTH_MODES), env="TGDAV_AUTH")
    realm: str = setting("tgdav", _text(r'[^"\\\n]+', "use plain text without quotes"))
    users: Mapping[str, str] = setting(check=_users, secret=True, env="TGDAV_USERS", from_env=_users_from_env,
                                       default_for=lambda env: MappingProxyType({}))


@dataclass(frozen=True, repr=False)
class ChannelsConfig(_Section):
    # channel ids or "@username"; empty = every channel
    include: tuple[int | str, ...] = setting((), _ids_or_usernames(False, '[-1001234567890, "@mychannel"]',
                                                                   "channel ids"))
    exclude: tuple[int | str, ...] = setting((), _ids_or_usernames(False, '[-1001234567890, "@mychannel"]',
                                                                   "channel ids"))


@dataclass(frozen=True, repr=False)
class PoolConfig(_Section):
    senders_per_dc: int = setting(4, _number(int, 1, 20, " (Telegram allows about 20 connections per DC)"),
                                  env="TGDAV_SENDERS_PER_DC")
    idle_seconds: float = setting(120.0, _seconds(1))
    # FLOOD_WAIT up to this is waited out; longer -> 503
    max_wait_seconds: float = setting(10.0, _seconds(0))
    # bytes of the first getFile after a seek
    first_part: int = setting(65536, _part_size)
    read_ahead_parts: int = setting(8, _number(int, 0, 64))
    request_timeout: float = setting(30.0, _seconds(1))
    # open a connection to every DC a listing names
    connect_listed_dcs: bool = setting(True, _bool)


@dataclass(frozen=True, repr=False)
class CacheConfig(_Section):
    # bytes of hot chunks kept on disk
    size: int = setting(2 * 2**30, _size(0, 2**50), env="TGDAV_CACHE_SIZE")
    # seconds a channel listing is trusted
    listing_refresh: float = setting(60.0, _seconds(0))
    # keep listings current from Telegram's updates (telegram/updates.py)
    updates: bool = setting(True, _bool)
    # with updates: seconds before a listing is read again anyway
    updates_refresh: float = setting(3600.0, _seconds(0))


@dataclass(frozen=True, repr=False)
class WriteConfig(_Section):
    # false: the whole share is read-only (DAV: 1)
    enabled: bool = setting(True, _bool)
    # MKCOL at the root creates a private channel
    create_channels: bool = setting(True, _bool)
    # in groups, whose tags count beside the account and admins
    trust: tuple[int | str, ...] = setting((), _ids_or_usernames(True, '[123456789, "@alice"]', "user ids"))
    # bytes: a longer PUT is 413 before its body is read
    max_file_size: int = setting(100 * 2**30, _size(1, 2**50))
    # seconds before an unshown message of tgdav's own goes
    leftover_grace: float = setting(6 * 3600.0, _seconds(0))
    # seconds between looks for leftovers (and one at start)
    janitor_interval: float = setting(3600.0, _seconds(1))


@dataclass(frozen=True, repr=False)
class LogConfig(_Section):
    level: str = setting("info", _choice(LOG_LEVELS), env="TGDAV_LOG_LEVEL")
    # Telethon's own loggers (its reconnect warnings are below this)
    telethon: str = setting("error", _choice(LOG_LEVELS))


@dataclass(frozen=True, repr=False)
class MetricsConfig(_Section):
    # "127.0.0.1:9108": /metrics there too, without auth
    listen: str = setting("", _listen, env="TGDAV_METRICS_LISTEN")


@dataclass(frozen=True, repr=False)
class Config:
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    state: StateConfig = field(default_factory=StateConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    channels: ChannelsConfig = field(default_factory=ChannelsConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    write: WriteConfig = field(default_factory=WriteConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    source: Path | None = None               # the file this came from, None = defaults and env only

    def redacted(self) -> dict[str, Any]:
        """The whole configuration as plain data, safe to print or log."""
        out: dict[str, Any] = {f.name: getattr(self, f.name).redacted()
                               for f in dataclasses.fields(self) if f.name != "source"}
        out["source"] = str(self.source) if self.source else None
        return out

    def __repr__(self) -> str:
        return f"Config({self.redacted()!r})"

    def ensure_state_dir(self) -> Path:
        """Create the state directory (sessions, cache) private to this user: 0700."""
        path = self.state.dir
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.chmod(0o700)
        except OSError as e:
            raise ConfigError(f"cannot use state directory {path} ({e.strerror}) — set [state] dir "
                              f"or TGDAV_STATE_DIR to a directory this user can write") from None
        return path

    def sandbox_line(self) -> dict[str, Any] | None:
        """The sandbox's JSON line from [telegram] sandbox, or None when talking to Telegram."""
        path = self.telegram.sandbox
        if path is None:
            return None
        try:
            line = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"sandbox file {path} does not exist — start `tgdav sandbox > {path}` "
                              f"first, or unset [telegram] sandbox / TGDAV_SANDBOX") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"sandbox file {path} is not the JSON line `tgdav sandbox` prints ({e}) "
                              f"— write that line into it again") from None
        if not isinstance(line, dict):
            raise ConfigError(f"sandbox file {path} holds no JSON object — write the line "
                              f"`tgdav sandbox` prints into it")
        return line

    def require_telegram(self) -> None:
        """Commands that talk to Telegram call this first: credentials, or a readable sandbox file."""
        if self.sandbox_line() is not None:
            return
        t = self.telegram
        if t.api_id and t.api_hash:
            return
        where = f"in {self.source}" if self.source else f"in one of {', '.join(map(str, candidate_paths()))}"
        raise ConfigError(f"no Telegram api_id/api_hash configured — get them at my.telegram.org and set "
                          f"api_id and api_hash under [telegram] {where} (or --config PATH / "
                          f"$TGDAV_CONFIG), or set {ENV_HINT}")

    def require_serving(self) -> None:
        """`serve` calls this: refuse to start a server nobody can log in to, or with missing TLS files."""
        a = self.auth
        if a.mode != "none" and not a.users:
            raise ConfigError(f"[auth] mode = {a.mode!r} but no users are configured — add "
                              f'users = {{ alice = "password" }} under [auth] or set '
                              f'TGDAV_USERS=alice:password, '
                              f'or set mode = "none" (TGDAV_AUTH=none) to serve without passwords')
        hashed = [name for name, pw in a.users.items() if pw.startswith(("sha256:", "pbkdf2_sha256$"))]
        if a.mode == "digest" and hashed:
            raise ConfigError(f"[auth] user {hashed[0]!r} has a sha256/pbkdf2 password, which Digest cannot "
                              f'check — use mode = "basic" (with TLS), or give a plain or "ha1:" password')
        for key in ("tls_cert", "tls_key"):
            path = getattr(self.server, key)
            if path is not None and not path.is_file():
                raise ConfigError(f"[server] {key} = {str(path)!r} is not a readable file — "
                                  f"fix the path or remove tls_cert and tls_key to serve plain HTTP")

    def require_session(self) -> None:
        """Commands that need a logged-in account stop here, before Telethon would create an empty
        session file for a wrong configuration."""
        path = Path(self.state.dir) / "sessions" / f"{self.telegram.session}.session"
        if not path.is_file():
            where = f" --config {self.source}" if self.source else ""
            raise ConfigError(f"not logged in: there is no session {path} — run `tgdav{where} login` first "
                              f"(with the same configuration: [state] dir and [telegram] session pick the file)")


# section -> key -> field, read from the declarations above
_SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)
                              if f.name != "source"}
_FIELDS: dict[str, dict[str, dataclasses.Field]] = {
    name: {f.name: f for f in dataclasses.fields(cls)} for name, cls in _SECTIONS.items()}
# section -> key -> check (the dataclass field default is the default)
_RULES: dict[str, dict[str, Callable[[Any], Any]]] = {
    name: {key: f.metadata["check"] for key, f in fields.items()} for name, fields in _FIELDS.items()}
# env var -> (section, key)
_ENV: dict[str, tuple[str, str]] = {f.metadata["env"]: (name, key) for name, fields in _FIELDS.items()
                                    for key, f in fields.items() if f.metadata["env"]}


# ---- lookup --------------------------------------------------------------------------------------

def candidate_paths(env: Mapping[str, str] = os.environ) -> list[Path]:
    """Where a configuration file is looked for when neither --config nor $TGDAV_CONFIG is given."""
    config_home = env.get("XDG_CONFIG_HOME") or str(_home(env) / ".config")
    return [Path.cwd() / "tgdav.toml", Path(config_home) / "tgdav" / "tgdav.toml"]


def find_config(path: str | None = None, env: Mapping[str, str] = os.environ) -> Path | None:
    """--config PATH, else $TGDAV_CONFIG (both must exist), else the first candidate that exists."""
    for explicit, name in ((path, "--config"), (env.get("TGDAV_CONFIG"), "$TGDAV_CONFIG")):
        if explicit:
            p = Path(explicit).expanduser()
            if p.is_dir():
                raise ConfigError(f"configuration file {p} (from {name}) is a directory — name the file "
                                  f"in it, e.g. {p / 'tgdav.toml'}")
            if not p.is_file():
                raise ConfigError(f"configuration file {p} (from {name}) does not exist — fix the path, or "
                                  f"copy config/tgdav.example.toml there")
            return p
    return next((p for p in candidate_paths(env) if p.is_file()), None)


def load_config(path: str | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Defaults, then the file found by find_config(), then TGDAV_* environment variables."""
    source = find_config(path, env)
    raw: dict[str, dict[str, tuple[Any, str]]] = {}
    if source is not None:
        _read_file(source, raw)
    _read_env(env, raw)
    sections = {name: _build(name, raw.get(name, {}), source, env) for name in _SECTIONS}
    server = sections["server"]
    if (server.tls_cert is None) != (server.tls_key is None):
        raise ConfigError("[server] tls_cert and tls_key must be set together — give both files "
                          "(certificate and private key) or neither")
    return Config(**sections, source=source)


def _read_file(source: Path, raw: dict[str, dict[str, tuple[Any, str]]]) -> None:
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        what = str(e)[:m.start()].strip() if m else str(e)
        at = f"{source}:{m.group(1)}: {what} (column {m.group(2)})" if m else f"{source}: {what}"
        raise ConfigError(f"{at} — fix the TOML syntax on that line") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read configuration file {source} ({e}) — check its permissions "
                          f"and that it is UTF-8 text") from None
    for name, table in data.items():
        if name not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section [{name}]{_did_you_mean(name, _SECTIONS)} — "
                              f"sections are {', '.join(f'[{s}]' for s in _SECTIONS)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {name} must be a [{name}] table — write it as a section header")
        for key, value in table.items():
            raw.setdefault(name, {})[key] = (value, str(source))


def _read_env(env: Mapping[str, str], raw: dict[str, dict[str, tuple[Any, str]]]) -> None:
    """An empty variable counts as unset (docker compose writes `VAR=` for blanks)."""
    for var, (section, key) in _ENV.items():
        if env.get(var):
            parse = _FIELDS[section][key].metadata["from_env"]
            raw.setdefault(section, {})[key] = (parse(env[var]) if parse else env[var], var)


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _build(name: str, values: dict[str, tuple[Any, str]], source: Path | None,
           env: Mapping[str, str]) -> Any:
    fields = _FIELDS[name]
    kwargs: dict[str, Any] = {key: f.metadata["default_for"](env) for key, f in fields.items()
                              if f.metadata["default_for"] is not None}
    for key, (value, origin) in values.items():
        if key not in fields:
            raise ConfigError(f"{origin}: unknown key {key!r} in [{name}]{_did_you_mean(key, fields)} — "
                              f"valid keys: {', '.join(fields)} (see config/tgdav.example.toml)")
        meta = fields[key].metadata
        try:
            parsed = meta["check"](value)
        except _Invalid as e:
            shown = "<hidden>" if meta["secret"] else repr(value)
            raise ConfigError(f"{origin}: [{name}] {key} = {shown} {e.problem} — {e.fix}") from None
        if meta["path"] and parsed is not None and source is not None \
                and origin == str(source) and not parsed.is_absolute():
            parsed = source.parent / parsed      # relative paths in a file are relative to that file
        kwargs[key] = parsed
    return _SECTIONS[name](**kwargs)


# ---- start-up checks -----------------------------------------------------------------------------

COMMANDS = ("login", "serve", "ls", "cache", "demo")


def preflight(config: Config, command: str, warn: Callable[[str], None] | None = None) -> None:
    """Every check `command` can make before it connects anywhere, in this order; the first problem
    raises a TgdavError of one line ("what — fix"). warn(line) gets what is allowed but risky
    (default: "tgdav: warning: ..." on stderr). `demo` checks only its listening address: it makes
    its own configuration, sandbox and session."""
    if command not in COMMANDS:
        raise ValueError(f"no start-up checks for {command!r}")
    warn = warn or (lambda line: print(f"tgdav: warning: {line}", file=sys.stderr, flush=True))
    if command in ("login", "serve", "ls"):
        config.require_telegram()
    if command == "serve":
        config.require_serving()
    if command != "demo":
        check_state_dir(config.state.dir)
    if command in ("serve", "demo"):
        check_listen(config.server.host, config.server.port)     # before connecting to Telegram
    if command == "serve" and config.metrics.listen:
        from tgdav.metrics import listen_errors
        host, _, port = config.metrics.listen.rpartition(":")
        with listen_errors(config.metrics.listen):
            _bind_once(host.strip("[]"), int(port))
    if command == "serve" and config.auth.mode == "none" and not _loopback(config.server.host):
        warn(f"serving {config.server.host} without passwords (auth = none): anyone who can reach this "
             f"machine can read your channels — add users to [auth] unless that is what you want")
    if command in ("serve", "ls"):
        config.require_session()


def check_state_dir(path: Path) -> None:
    """The state directory must be ours to write (a Docker bind mount owned by root is not)."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise TgdavError(f"the state directory {probe} is a file, not a directory — set [state] dir / "
                         f"TGDAV_STATE_DIR to a folder, or move the file away")
    try:
        if probe.is_dir():
            tempfile.TemporaryFile(dir=probe).close()
            return
    except PermissionError:
        pass
    except OSError:
        return      # other troubles are reported where the directory is used
    try:
        owner = f"belongs to uid {probe.stat().st_uid}, "
    except OSError:
        owner = ""
    uid = os.getuid()
    raise TgdavError(f"cannot write to the state directory {probe} (it {owner}tgdav runs as uid {uid}) — "
                     f"`chown -R {uid} {probe}`, or set [state] dir / TGDAV_STATE_DIR to a folder uid {uid} "
                     f"can write (the Docker image runs as uid 10001: a bind-mounted /state must belong "
                     f"to uid 10001)")


def check_listen(host: str, port: int) -> None:
    """Bind the WebDAV address once and let it go, so a port in use or an address that is not ours
    is one line now, not after connecting to Telegram."""
    from tgdav.dav.server import bind_errors
    with bind_errors(host, port):
        _bind_once(host, port)


def _bind_once(host: str, port: int) -> None:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
