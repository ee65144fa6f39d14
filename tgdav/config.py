"""tgdav's configuration: one TOML file, then TGDAV_* environment variables, into frozen dataclasses.

Every value is checked here, once, so the layers below can trust it. A wrong value is a ConfigError
that names where it came from (file or variable), the key, the value and the fix; an unknown key is
an error too, because a silently ignored typo is worse than a refusal. Secrets (api_hash, bot_token,
passwords) never reach repr() or logs: use redacted() to show a configuration.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from tgdav.errors import ConfigError

SECRET = {"secret": True}
ENV_HINT = "TGDAV_API_ID and TGDAV_API_HASH"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
AUTH_MODES = ("basic", "digest", "none")


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


@dataclass(frozen=True, repr=False)
class TelegramConfig(_Section):
    api_id: int = 0                          # 0 = not set
    api_hash: str = field(default="", metadata=SECRET)
    bot_token: str = field(default="", metadata=SECRET)
    session: str = "tgdav"                   # file name (in the state dir) of the login session
    sandbox: Path | None = None              # JSON file with a local sandbox's line: talk to it instead
    helpers: tuple[str, ...] = field(default=(), metadata=SECRET)  # helper accounts: bot tokens, session names
    history_per_second: float = 1.0          # messages.getHistory pace: calls per second after a burst of
    history_burst: int = 28                  # this many (Telegram's flood rule: tgdav/telegram/pace.py)


@dataclass(frozen=True, repr=False)
class StateConfig(_Section):
    dir: Path = field(default_factory=lambda: _default_state_dir(os.environ))
    redis: str = field(default="", metadata=SECRET)   # "redis://host:port/db": state shared by replicas


@dataclass(frozen=True, repr=False)
class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 64                        # cheroot worker threads; Explorer opens many connections
    timeout: float = 300.0                   # seconds; long so a paused player keeps its connection
    block_size: int = 1048576                # largest write to the client (a whole part, no copies)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    head_timeout: float = 15.0               # seconds to send a request line and its headers
    per_ip_limit: int = 32                   # connections of one address served at once; 0 = no limit


@dataclass(frozen=True, repr=False)
class AuthConfig(_Section):
    mode: str = "basic"
    realm: str = "tgdav"
    users: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), metadata=SECRET)


@dataclass(frozen=True, repr=False)
class ChannelsConfig(_Section):
    include: tuple[int | str, ...] = ()      # channel ids or "@username"; empty = every channel
    exclude: tuple[int | str, ...] = ()


@dataclass(frozen=True, repr=False)
class PoolConfig(_Section):
    senders_per_dc: int = 4
    idle_seconds: float = 120.0
    max_wait_seconds: float = 10.0           # FLOOD_WAIT up to this is waited out; longer -> 503
    first_part: int = 65536                  # bytes of the first getFile after a seek
    read_ahead_parts: int = 8
    request_timeout: float = 30.0
    connect_listed_dcs: bool = True          # open a connection to every DC a listing names


@dataclass(frozen=True, repr=False)
class CacheConfig(_Section):
    size: int = 2 * 2**30                    # bytes of hot chunks kept on disk
    listing_refresh: float = 60.0            # seconds a channel listing is trusted
    updates: bool = True                     # keep listings current from Telegram's updates (telegram/updates.py)
    updates_refresh: float = 3600.0          # with updates: seconds before a listing is read again anyway


@dataclass(frozen=True, repr=False)
class WriteConfig(_Section):
    enabled: bool = True                     # false: the whole share is read-only (DAV: 1)
    create_channels: bool = True             # MKCOL at the root creates a private channel
    trust: tuple[int | str, ...] = ()        # in groups, whose tags count beside the account and admins
    max_file_size: int = 100 * 2**30         # bytes: a longer PUT is 413 before its body is read
    leftover_grace: float = 6 * 3600.0       # seconds before an unshown message of tgdav's own goes
    janitor_interval: float = 3600.0         # seconds between looks for leftovers (and one at start)


@dataclass(frozen=True, repr=False)
class LogConfig(_Section):
    level: str = "info"
    telethon: str = "error"                  # Telethon's own loggers (its reconnect warnings are below this)


@dataclass(frozen=True, repr=False)
class MetricsConfig(_Section):
    listen: str = ""                         # "127.0.0.1:9108": /metrics there too, without auth


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
    sections = {name: _build(name, cls, raw.get(name, {}), source, env) for name, cls in _SECTIONS.items()}
    server = sections["server"]
    if (server.tls_cert is None) != (server.tls_key is None):
        raise ConfigError("[server] tls_cert and tls_key must be set together — give both files "
                          "(certificate and private key) or neither")
    return Config(**sections, source=source)


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def _default_state_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else _home(env) / ".local" / "state"
    return base / "tgdav"


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


# env var -> (section, key); TGDAV_USERS is parsed on its own
_ENV = {
    "TGDAV_API_ID": ("telegram", "api_id"), "TGDAV_API_HASH": ("telegram", "api_hash"),
    "TGDAV_BOT_TOKEN": ("telegram", "bot_token"), "TGDAV_SESSION": ("telegram", "session"),
    "TGDAV_SANDBOX": ("telegram", "sandbox"), "TGDAV_STATE_DIR": ("state", "dir"),
    "TGDAV_HOST": ("server", "host"), "TGDAV_PORT": ("server", "port"),
    "TGDAV_THREADS": ("server", "threads"), "TGDAV_TLS_CERT": ("server", "tls_cert"),
    "TGDAV_TLS_KEY": ("server", "tls_key"), "TGDAV_AUTH": ("auth", "mode"),
    "TGDAV_CACHE_SIZE": ("cache", "size"), "TGDAV_SENDERS_PER_DC": ("pool", "senders_per_dc"),
    "TGDAV_LOG_LEVEL": ("log", "level"), "TGDAV_METRICS_LISTEN": ("metrics", "listen"),
    "TGDAV_REDIS": ("state", "redis"),
}


def _read_env(env: Mapping[str, str], raw: dict[str, dict[str, tuple[Any, str]]]) -> None:
    """An empty variable counts as unset (docker compose writes `VAR=` for blanks)."""
    for var, (section, key) in _ENV.items():
        if env.get(var):
            raw.setdefault(section, {})[key] = (env[var], var)
    if env.get("TGDAV_USERS"):
        users: dict[str, str] = {}
        for item in filter(None, env["TGDAV_USERS"].split(",")):
            name, sep, password = item.strip().partition(":")
            if not sep:
                raise ConfigError(f"TGDAV_USERS entry {name!r} has no password — write it as "
                                  f"name:password, entries separated by commas")
            users[name] = password
        raw.setdefault("auth", {})["users"] = (users, "TGDAV_USERS")


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


def _text(pattern: str = r".+", fix: str = "write a non-empty string") -> Callable:
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


def _channels(value: Any) -> tuple[int | str, ...]:
    if not isinstance(value, list):
        raise _Invalid("is not a list", 'write a list such as [-1001234567890, "@mychannel"]')
    for item in value:
        if isinstance(item, bool) or not (isinstance(item, int) or
                                          (isinstance(item, str) and re.fullmatch(r"@\w{4,32}", item))):
            raise _Invalid(f"holds {item!r}", 'list channel ids (numbers) or "@username" strings')
    return tuple(value)


def _senders(value: Any) -> tuple[int | str, ...]:
    if not isinstance(value, list):
        raise _Invalid("is not a list", 'write a list such as [123456789, "@alice"]')
    for item in value:
        if isinstance(item, bool) or not (isinstance(item, int) and item > 0 or
                                          (isinstance(item, str) and re.fullmatch(r"@\w{4,32}", item))):
            raise _Invalid(f"holds {item!r}", 'list user ids (numbers) or "@username" strings')
    return tuple(value)


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
        if not (re.fullmatch(r"\d+:[\w-]+", v) or re.fullmatch(r"[\w-][\w.-]*", v)):
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


# section -> key -> validator; the dataclass field default is the default
_RULES: dict[str, dict[str, Callable[[Any], Any]]] = {
    "telegram": {
        "api_id": _number(int, 1), "api_hash": _text(r"\S+", "paste the api_hash from my.telegram.org"),
        "bot_token": _text(r"\d+:[\w-]+", "paste the token @BotFather gave you (digits:letters)"),
        "session": _text(r"[\w-][\w.-]*", "use a plain file name such as tgdav (letters, digits, . _ -)"),
        "sandbox": _path(optional=True), "helpers": _helpers,
        "history_per_second": _number(float, 0.01, 1000, " (calls per second)"),
        "history_burst": _number(int, 1, 1000),
    },
    "state": {"dir": _path(optional=False), "redis": _redis_url},
    "server": {
        "host": _text(r"\S+", 'write a host name or address such as "127.0.0.1" or "0.0.0.0"'),
        "port": _number(int, 0, 65535), "threads": _number(int, 1, 1000),
        "timeout": _number(float, 1, note=" (seconds)"), "block_size": _size(4096, 16 * 2**20),
        "tls_cert": _path(optional=True), "tls_key": _path(optional=True),
        "head_timeout": _number(float, 1, 300, " (seconds)"), "per_ip_limit": _number(int, 0, 10000),
    },
    "auth": {"mode": _choice(AUTH_MODES), "realm": _text(r'[^"\\\n]+', "use plain text without quotes"),
             "users": _users},
    "channels": {"include": _channels, "exclude": _channels},
    "pool": {
        "senders_per_dc": _number(int, 1, 20, " (Telegram allows about 20 connections per DC)"),
        "idle_seconds": _number(float, 1, note=" (seconds)"),
        "max_wait_seconds": _number(float, 0, note=" (seconds)"),
        "first_part": _part_size, "read_ahead_parts": _number(int, 0, 64),
        "request_timeout": _number(float, 1, note=" (seconds)"),
        "connect_listed_dcs": _bool,
    },
    "cache": {"size": _size(0, 2**50), "listing_refresh": _number(float, 0, note=" (seconds)"),
              "updates": _bool, "updates_refresh": _number(float, 0, note=" (seconds)")},
    "write": {"enabled": _bool, "create_channels": _bool, "trust": _senders,
              "max_file_size": _size(1, 2**50),
              "leftover_grace": _number(float, 0, note=" (seconds)"),
              "janitor_interval": _number(float, 1, note=" (seconds)")},
    "log": {"level": _choice(LOG_LEVELS), "telethon": _choice(LOG_LEVELS)},
    "metrics": {"listen": _listen},
}

_SECTIONS = {"telegram": TelegramConfig, "state": StateConfig, "server": ServerConfig, "auth": AuthConfig,
             "channels": ChannelsConfig, "pool": PoolConfig, "cache": CacheConfig, "write": WriteConfig,
             "log": LogConfig, "metrics": MetricsConfig}
_PATH_KEYS = {("telegram", "sandbox"), ("state", "dir"), ("server", "tls_cert"), ("server", "tls_key")}


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _build(name: str, cls: type, values: dict[str, tuple[Any, str]], source: Path | None,
           env: Mapping[str, str]) -> Any:
    rules = _RULES[name]
    kwargs: dict[str, Any] = {"dir": _default_state_dir(env)} if name == "state" else {}
    for key, (value, origin) in values.items():
        if key not in rules:
            raise ConfigError(f"{origin}: unknown key {key!r} in [{name}]{_did_you_mean(key, rules)} — "
                              f"valid keys: {', '.join(rules)} (see config/tgdav.example.toml)")
        secret = {f.name: f for f in dataclasses.fields(cls)}[key].metadata.get("secret")
        try:
            parsed = rules[key](value)
        except _Invalid as e:
            shown = "<hidden>" if secret else repr(value)
            raise ConfigError(f"{origin}: [{name}] {key} = {shown} {e.problem} — {e.fix}") from None
        if (name, key) in _PATH_KEYS and parsed is not None and source is not None \
                and origin == str(source) and not parsed.is_absolute():
            parsed = source.parent / parsed      # relative paths in a file are relative to that file
        kwargs[key] = parsed
    return cls(**kwargs)
