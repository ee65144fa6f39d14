"""The `tgdav` command: parse arguments, load the configuration, set up logging, call the app.

The composition root (tgdav.app) is imported inside each command, so `--help`, `--version` and
configuration errors answer at once without loading Telethon. A user error is one line on stderr,
"tgdav: error: <what> — <fix>", exit 1; a usage error exits 2 (argparse); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import socket
import sys
import tempfile
from pathlib import Path

from tgdav import __version__, logs
from tgdav.config import LOG_LEVELS, Config, load_config
from tgdav.errors import TgdavError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tgdav", description="Telegram channels as a WebDAV network drive.",
        epilog="Configuration: --config PATH, $TGDAV_CONFIG, ./tgdav.toml or ~/.config/tgdav/tgdav.toml, "
               "then TGDAV_* environment variables (see config/tgdav.example.toml).")
    parser.add_argument("--config", metavar="PATH", help="configuration file (TOML)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="override [log] level")
    parser.add_argument("--version", action="version", version=f"tgdav {__version__}")
    # the same two options after the command (`tgdav serve --config x.toml`); SUPPRESS keeps a value
    # given before the command when they are not repeated after it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="configuration file (TOML)")
    common.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS,
                        help="override [log] level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("login", parents=[common],
                       help="log in once (phone code or bot token); keeps the session")
    p.add_argument("--bot-token", metavar="T",
                   help="log in as a bot; `-` reads the token from standard input (or set TGDAV_BOT_TOKEN), "
                        "which keeps it out of the process list")
    p.add_argument("--phone", metavar="P", help="phone number in international form, e.g. +4912345678")
    p.add_argument("--session", metavar="NAME", type=_session_name,
                   help="log in to this session instead of [telegram] session (a helper account)")

    p = sub.add_parser("serve", parents=[common], help="serve the channels over WebDAV until Ctrl-C")
    p.add_argument("--host", help="override [server] host")
    p.add_argument("--port", type=_port, help="override [server] port")

    p = sub.add_parser("demo", parents=[common],
                       help="serve a local sandbox Telegram with sample files (no account needed)")
    p.add_argument("--seed", metavar="DIR", help="serve the files of DIR instead of generated samples")
    p.add_argument("--profile", metavar="P", help="link emulation profile of the sandbox")
    p.add_argument("--port", type=_port, default=8080, help="WebDAV port (default 8080)")
    p.add_argument("--state", metavar="DIR",
                   help="keep the demo's state (sandbox, session, cache, a tgdav.toml for other commands) "
                        "in DIR and reuse it next time (default: a temporary directory, deleted when the "
                        "demo stops)")

    # prefix_chars="+" makes every "-x" a plain argument here, so all of them reach the sandbox runner
    p = sub.add_parser("sandbox", add_help=False, prefix_chars="+",
                       help="run the local multi-DC sandbox Telegram; prints its JSON line "
                            "(options: tgdav sandbox --help)")
    p.add_argument("args", nargs="*")

    p = sub.add_parser("ls", parents=[common], help="list a folder as the WebDAV server would show it")
    p.add_argument("path", nargs="?", default="/", help="e.g. / or /channel-name (default /)")

    p = sub.add_parser("cache", parents=[common], help="inspect or empty the local cache")
    cache = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    cache.add_parser("stats", parents=[common], help="show the cache's size and contents")
    cache.add_parser("clear", parents=[common], help="empty the cache (the login session is kept)")
    return parser


def setup_logging(level: str, telethon: str | None = None) -> None:
    """tgdav at `level`; Telethon at `telethon` ([log] telethon, default warning): see tgdav.logs."""
    logs.setup(level, LOG_FORMAT, telethon)


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.log_level:
        config = dataclasses.replace(config, log=dataclasses.replace(config.log, level=args.log_level))
    setup_logging(config.log.level, config.log.telethon)
    logging.getLogger("tgdav.cli").debug("configuration: %s", config.redacted())
    return config


def _run(args: argparse.Namespace) -> int:
    if args.command == "sandbox":
        from tgdav.sandbox import runner
        setup_logging(args.log_level or "info")
        return runner.main(args.args)
    if args.command == "demo":
        setup_logging(args.log_level or "info")
        check_listen("127.0.0.1", args.port)       # before the sandbox starts
        check_telethon()
        from tgdav import app
        return app.demo(seed=args.seed, profile=args.profile, port=args.port, state=args.state)

    config = _config(args)
    if args.command != "cache":
        config.require_telegram()
    if args.command == "serve":
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, **overrides))
        config.require_serving()
    check_state_dir(config.state.dir)
    if args.command == "serve":
        check_listen(config.server.host, config.server.port)   # before connecting to Telegram
    if args.command != "cache":
        check_telethon()
    from tgdav import app
    if args.command == "cache":
        return app.cache_stats(config) if args.action == "stats" else app.cache_clear(config)
    if args.command == "login":
        token = _bot_token(args.bot_token, config)
        if args.session:     # a helper account's session ([telegram] helpers): only its own token
            config = dataclasses.replace(config, telegram=dataclasses.replace(config.telegram,
                                                                              session=args.session))
            token = _bot_token(args.bot_token, None)
        return app.login(config, bot_token=token, phone=args.phone)
    if args.command == "ls":
        return app.ls(config, args.path)
    return app.serve(config)


def _session_name(value: str) -> str:
    if not re.fullmatch(r"[\w-][\w.-]*", value):
        raise argparse.ArgumentTypeError("use a plain file name such as helper1 (letters, digits, . _ -)")
    return value


def _bot_token(option: str | None, config: Config | None) -> str | None:
    """--bot-token T, `--bot-token -` (first line of standard input), else TGDAV_BOT_TOKEN / [telegram]
    (config None: the option alone)."""
    if option == "-":
        token = sys.stdin.readline().strip()
        if not token:
            raise TgdavError("`--bot-token -` read no token from standard input — pipe it in, e.g. "
                             "`tgdav login --bot-token - < token.txt`, or set TGDAV_BOT_TOKEN")
        return token
    return option or (config.telegram.bot_token if config is not None else None) or None


def check_state_dir(path: Path) -> None:
    """The state directory must be ours to write (a Docker bind mount owned by root is not)."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
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


def check_telethon() -> None:
    """Only the Telethon release tgdav is tested with (telegram/mtproto.py): after the checks that
    answer without loading Telethon, before anything talks to Telegram."""
    from tgdav.telegram.mtproto import check_version
    check_version()


def check_listen(host: str, port: int) -> None:
    """Bind the WebDAV address once and let it go, so a port in use or an address that is not ours
    is one line now, not after connecting to Telegram."""
    from tgdav.dav.server import bind_errors
    with bind_errors(host, port):
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)


def _unexpected(e: BaseException) -> str:
    """One line for an error no layer turned into a TgdavError."""
    what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    telethon = type(e).__module__.startswith("telethon")
    rpc = any(c.__name__ == "RPCError" for c in type(e).__mro__)
    # IncompleteReadError is an EOFError; Telethon's InvalidBufferError (a broken reply) is neither
    if isinstance(e, (EOFError, ConnectionError, TimeoutError)) or (telethon and not rpc):
        return (f"the connection to Telegram failed ({what}) — check the network (or that the sandbox "
                f"is running) and run the command again")
    if rpc:
        return f"Telegram refused the request ({what}) — run again with --log-level debug to see which"
    if "database is locked" in str(e):
        return ("the login session is in use by another tgdav process (such as `tgdav serve`) — stop "
                "it first, or log in a second session for this command ([telegram] session = \"other\")")
    if isinstance(e, PermissionError):
        uid = os.getuid()
        return (f"permission denied: {e.filename or what} — make it readable and writable by uid {uid}, "
                f"which tgdav runs as (the Docker image runs as uid 10001: a bind-mounted /state must "
                f"belong to uid 10001)")
    if isinstance(e, OSError):
        return f"{e.strerror or what}{f': {e.filename}' if e.filename else ''} — check that path or device"
    return f"unexpected {what} — run again with --log-level debug to see where, and report it"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)     # every file tgdav creates (sessions, cache, state) is private to this user
    try:
        return _run(args)
    except TgdavError as e:
        print(f"tgdav: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - no traceback for anything a user can cause
        logging.getLogger("tgdav.cli").debug("unexpected error", exc_info=True)
        print(f"tgdav: error: {_unexpected(e)}", file=sys.stderr)
        return 1
