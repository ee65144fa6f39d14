"""The `tgdav` command: parse arguments, load the configuration, set up logging, call the app.

The composition root (tgdav.app) is imported inside each command, so `--help`, `--version` and
configuration errors answer at once without loading Telethon. A user error is one line on stderr,
"tgdav: error: <what> — <fix>", exit 1; a usage error exits 2 (argparse); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import re
import socket
import sys
from contextlib import contextmanager
from typing import Iterator

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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("login", help="log in once (phone code or bot token); keeps the session")
    p.add_argument("--bot-token", metavar="T", help="log in as a bot (or set TGDAV_BOT_TOKEN)")
    p.add_argument("--phone", metavar="P", help="phone number in international form, e.g. +4912345678")
    p.add_argument("--session", metavar="NAME", type=_session_name,
                   help="log in to this session instead of [telegram] session (a helper account)")

    p = sub.add_parser("serve", help="serve the channels over WebDAV until Ctrl-C")
    p.add_argument("--host", help="override [server] host")
    p.add_argument("--port", type=_port, help="override [server] port")

    p = sub.add_parser("demo", help="serve a local sandbox Telegram with sample files (no account needed)")
    p.add_argument("--seed", metavar="DIR", help="serve the files of DIR instead of generated samples")
    p.add_argument("--profile", metavar="P", help="link emulation profile of the sandbox")
    p.add_argument("--port", type=_port, default=8080, help="WebDAV port (default 8080)")
    p.add_argument("--state", metavar="DIR", help="state dir (default: a temporary one)")

    # prefix_chars="+" makes every "-x" a plain argument here, so all of them reach the sandbox runner
    p = sub.add_parser("sandbox", add_help=False, prefix_chars="+",
                       help="run the local multi-DC sandbox Telegram; prints its JSON line "
                            "(options: tgdav sandbox --help)")
    p.add_argument("args", nargs="*")

    p = sub.add_parser("ls", help="list a folder as the WebDAV server would show it")
    p.add_argument("path", nargs="?", default="/", help="e.g. / or /channel-name (default /)")

    p = sub.add_parser("cache", help="inspect or empty the local cache")
    cache = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    cache.add_parser("stats", help="show the cache's size and contents")
    cache.add_parser("clear", help="empty the cache (the login session is kept)")
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
        from tgdav import app
        setup_logging(args.log_level or "info")
        with _bind_errors("127.0.0.1", args.port):
            return app.demo(seed=args.seed, profile=args.profile, port=args.port, state=args.state)

    config = _config(args)
    if args.command != "cache":
        config.require_telegram()
    if args.command == "serve":
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, **overrides))
        config.require_serving()
    from tgdav import app
    if args.command == "cache":
        return app.cache_stats(config) if args.action == "stats" else app.cache_clear(config)
    if args.command == "login":
        token = args.bot_token or config.telegram.bot_token or None
        if args.session:     # a helper account's session ([telegram] helpers)
            config = dataclasses.replace(config, telegram=dataclasses.replace(config.telegram,
                                                                              session=args.session))
            token = args.bot_token
        return app.login(config, bot_token=token, phone=args.phone)
    if args.command == "ls":
        return app.ls(config, args.path)
    with _bind_errors(config.server.host, config.server.port):
        return app.serve(config)


def _session_name(value: str) -> str:
    if not re.fullmatch(r"[\w-][\w.-]*", value):
        raise argparse.ArgumentTypeError("use a plain file name such as helper1 (letters, digits, . _ -)")
    return value


@contextmanager
def _bind_errors(host: str, port: int) -> Iterator[None]:
    """A failure to bind the WebDAV address (in use, not ours, unknown) as a TgdavError with the fix."""
    fixes = {errno.EADDRINUSE: "stop the program using it or choose another port with --port",
             errno.EADDRNOTAVAIL: "use an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"}
    try:
        yield
    except socket.gaierror as e:
        raise TgdavError(f"cannot listen on {host}:{port} ({e.strerror}) — "
                         f"use an IP address or a host name this machine can resolve") from None
    except OSError as e:
        if e.errno not in fixes:
            raise
        raise TgdavError(f"cannot listen on {host}:{port} ({e.strerror}) — {fixes[e.errno]}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except TgdavError as e:
        print(f"tgdav: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
