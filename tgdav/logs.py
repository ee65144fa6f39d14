"""Logging setup: tgdav's own loggers at the chosen level, the libraries' chatter kept down.

`--log-level debug` is for following tgdav's own steps (tgdav.pool, tgdav.fetch, tgdav.reader,
tgdav.catalog, tgdav.access, ...). Telethon narrates every packet at DEBUG and every connect at INFO,
and warns about every connection it loses (the pool handles those and says what matters), so its
loggers stay at `telethon` (from [log] telethon, default error) whatever the level; WsgiDAV
and cheroot's own loggers stay at WARNING (tgdav.access is the access log).
"""

from __future__ import annotations

import logging
import sys

QUIET = ("wsgidav", "cheroot", "asyncio")


def setup(level: str, fmt: str, telethon: str | None = None) -> None:
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)
    logging.getLogger("telethon").setLevel((telethon or "error").upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
