"""Errors: Telegram's RPC errors parsed once into a record, and the typed errors the layers raise
upward. Which record becomes which typed error is one table, in telegram/rpc.py; the WebDAV layer
maps the typed errors to HTTP (one table, in dav/policy.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class TgdavError(Exception):
    """Base of the errors meant for a user: the message says what happened and what to do."""


class NotFound(TgdavError):
    """The channel, message or file does not exist (any more)."""


class RetryLater(TgdavError):
    """Telegram asked us to wait (FLOOD_WAIT); come back after `seconds`."""

    def __init__(self, seconds: float, message: str = "") -> None:
        self.seconds = max(1, int(-(-seconds // 1)))
        super().__init__(message or f"Telegram asked to wait {self.seconds} s (FLOOD_WAIT); try again then")


class SharedStateAway(RetryLater):
    """Redis ([state] redis), which replicas share locks through, is not answering: a write that
    needs a shared lock cannot be made safely now; come back after `seconds` (HTTP 503)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds, "the state this server shares with its replicas (Redis) is not "
                                  "answering, so writes wait for it; reading goes on — try again in "
                                  f"{max(1, int(-(-seconds // 1)))} s")


class UpstreamUnavailable(TgdavError):
    """Telegram (or one of its DCs) cannot be reached or keeps failing."""


class ConnectionsLost(UpstreamUnavailable):
    """A request lost its connection (or met only silence) on every sender it was tried on."""


class Conflict(TgdavError):
    """The request does not fit the tree as it is now (a folder moved or deleted meanwhile): 409."""


class DestinationExists(TgdavError):
    """A MOVE or COPY with Overwrite: F found its destination taken when it came to write (another
    client's write landed after WsgiDAV looked): 412, and nothing changed."""


class Forbidden(TgdavError):
    """The account may not do this here (a read-only channel, writes switched off); HTTP 403."""


class Refused(TgdavError):
    """Telegram refused the request as it was made (an error no rule of telegram/rpc.py's table
    names, a caption too long): HTTP 400, the text names Telegram's error."""


class ConfigError(TgdavError):
    """A configuration value is missing or wrong; the message names it and the fix."""


_NUMBER = re.compile(r"_(\d+)(?=_|$)")


@dataclass(frozen=True)
class RpcErrorRecord:
    """FLOOD_WAIT_3 -> RpcErrorRecord(code=420, type="FLOOD_WAIT", argument=3)."""
    code: int
    type: str
    argument: int | None = None
    message: str = field(default="", compare=False)    # as Telegram sent it

    @classmethod
    def parse(cls, code: int, message: str) -> "RpcErrorRecord":
        message = message or "UNKNOWN"
        m = _NUMBER.search(message)
        if m is None:
            return cls(code, message, None, message)
        return cls(code, message[:m.start()] + message[m.end():], int(m.group(1)), message)

    def __str__(self) -> str:
        return self.message or self.type

