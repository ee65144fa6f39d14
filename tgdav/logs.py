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

from tgdav import text

QUIET = ("wsgidav", "cheroot", "asyncio")


class OneLineFormatter(logging.Formatter):
    """Every record's message is one line, whatever text from Telegram or a client it carries
    (control characters escaped, tgdav.text.one_line); a traceback still follows on its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return text.one_line(super().formatMessage(record))


def setup(level: str, fmt: str, telethon: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("telethon").setLevel((telethon or "error").upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
