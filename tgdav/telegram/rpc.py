"""Telegram's RPC errors: parsed once into errors.RpcErrorRecord, then ONE table says what each means.

Every request that can meet an RPC error goes through `call(invoke, request, what, overrides)`:
`invoke(request)` is whatever sends it (the client, a pool's invoke); `what` says in words what the
request was for ("reading part 0+1048576 of file 5/12"), and goes into the error's text beside the
name Telegram sent. The table (`TABLE` by error name, then `BY_CODE` by its class; errors.py has the
typed errors, dav/policy.py maps them to HTTP):

    Telegram's error                                           typed error          HTTP
    FLOOD_WAIT_X, FLOOD_PREMIUM_WAIT_X, any other 420          RetryLater(X)        503, Retry-After: X
    CHANNEL_PRIVATE, CHANNEL_INVALID, CHAT_FORBIDDEN, MSG_ID_INVALID, MESSAGE_ID_INVALID,
      PEER_ID_INVALID, FILE_ID_INVALID, LOCATION_INVALID, any other 404
                                                               NotFound             404
    CHAT_WRITE_FORBIDDEN, CHAT_ADMIN_REQUIRED, CHAT_SEND_MEDIA_FORBIDDEN,
      MESSAGE_DELETE_FORBIDDEN, MESSAGE_AUTHOR_REQUIRED, any other 403
                                                               Forbidden            403
    MEDIA_CAPTION_TOO_LONG, MESSAGE_TOO_LONG                   Refused              400
    any other 400 or 406 (MESSAGE_NOT_MODIFIED without its override)
                                                               Refused              400
    FILE_PART_X_MISSING (X = 0 too), FILE_REFERENCE_EXPIRED / _INVALID, *_MIGRATE_X and any
      other 303, any 401, any 5xx or negative code (RANDOM_ID_DUPLICATE, INTERNAL, Timeout)
                                                               UpstreamUnavailable  503, Retry-After
    no answer: the connection lost, refused or timed out       UpstreamUnavailable  503, Retry-After

A call site that handles an error itself says so with `overrides`, {name: handler}: `IGNORE` (the
call answers None: MESSAGE_NOT_MODIFIED on an edit), `ANSWER` (the call answers the record instead
of raising: FILE_MIGRATE_X, FILE_PART_X_MISSING, for the caller's own retry), or any function of the
record that returns the answer or raises. tgdav's own errors (the pool's RetryLater, ConnectionsLost)
pass through unchanged.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from tgdav.errors import (Forbidden, NotFound, Refused, RetryLater, RpcErrorRecord, TgdavError,
                          UpstreamUnavailable)

from tgdav.telegram.mtproto import error_record as record_of   # Telethon's exceptions, read once


Handler = Callable[[RpcErrorRecord], object]


def IGNORE(record: RpcErrorRecord) -> None:
    """Override: the error means there was nothing to do; the call answers None."""
    return None


def ANSWER(record: RpcErrorRecord) -> RpcErrorRecord:
    """Override: the call answers the record itself; the caller handles it (a retry of its own)."""
    return record


def _wait(record: RpcErrorRecord, what: str) -> TgdavError:
    return RetryLater(record.argument or 1, f"Telegram asked tgdav to wait {record.argument or 1} s "
                                            f"({record.type}) while {what}; try again then")


def _gone(record: RpcErrorRecord, what: str) -> TgdavError:
    return NotFound(f"{what}: Telegram says {record.type} (it is gone or not visible to this account)")


def _forbidden(record: RpcErrorRecord, what: str) -> TgdavError:
    return Forbidden(f"Telegram refused {what} ({record.type}): this account may not do that there")


def _too_long(record: RpcErrorRecord, what: str) -> TgdavError:
    return Refused(f"the path is too long for a caption ({record.type}) while {what}: use shorter "
                   "names or fewer folders")


def _lost_part(record: RpcErrorRecord, what: str) -> TgdavError:
    return UpstreamUnavailable(f"Telegram lost part {record.argument} while {what} ({record}); "
                               "upload it again")


def _unavailable(record: RpcErrorRecord, what: str) -> TgdavError:
    return UpstreamUnavailable(f"Telegram could not do {what} ({record}); try again later")


def _refused(record: RpcErrorRecord, what: str) -> TgdavError:
    return Refused(f"Telegram refused {what} ({record})")


TABLE: dict[str, Callable[[RpcErrorRecord, str], TgdavError]] = {
    "FLOOD_WAIT": _wait, "FLOOD_PREMIUM_WAIT": _wait,
    **dict.fromkeys(("CHANNEL_PRIVATE", "CHANNEL_INVALID", "CHAT_FORBIDDEN", "MSG_ID_INVALID",
                     "MESSAGE_ID_INVALID", "PEER_ID_INVALID", "FILE_ID_INVALID", "LOCATION_INVALID"), _gone),
    **dict.fromkeys(("CHAT_WRITE_FORBIDDEN", "CHAT_ADMIN_REQUIRED", "CHAT_SEND_MEDIA_FORBIDDEN",
                     "MESSAGE_DELETE_FORBIDDEN", "MESSAGE_AUTHOR_REQUIRED"), _forbidden),
    "MEDIA_CAPTION_TOO_LONG": _too_long, "MESSAGE_TOO_LONG": _too_long,
    "FILE_PART_MISSING": _lost_part,         # FILE_PART_0_MISSING too: the record's argument is 0
    "FILE_REFERENCE_EXPIRED": _unavailable, "FILE_REFERENCE_INVALID": _unavailable,
}
BY_CODE = {303: _unavailable, 400: _refused, 401: _unavailable, 403: _forbidden, 404: _gone,
           406: _refused, 420: _wait}


def error_for(record: RpcErrorRecord, what: str) -> TgdavError:
    """The table: the typed error (its text names Telegram's error) for a record no override took."""
    rule = TABLE.get(record.type) or BY_CODE.get(record.code) or _unavailable
    return rule(record, what)


def unreachable(error: BaseException, what: str) -> TgdavError:
    """A connection lost, refused or timed out (no answer from Telegram at all)."""
    return UpstreamUnavailable(f"Telegram is not reachable while {what}: {error or type(error).__name__}")


async def call(invoke: Callable[[object], Awaitable[object]], request, what: str,
               overrides: dict[str, Handler] | None = None, *,
               seen: Callable[[RpcErrorRecord], object] | None = None):
    """invoke(request)'s answer; any RPC error as the table (or an override) says, once. `seen` is
    told every record first (metrics count errors by name)."""
    try:
        return await invoke(request)
    except TgdavError:
        raise
    except (ConnectionError, OSError) as e:      # TimeoutError is an OSError
        raise unreachable(e, what) from None
    except Exception as e:
        record = record_of(e)
        if record is None:
            raise
        if seen is not None:
            seen(record)
        handler = (overrides or {}).get(record.type)
        if handler is not None:
            return handler(record)
        raise error_for(record, what) from None
