"""telegram/rpc.py: every Telegram error becomes one record, and one table says what each means.

Each row: the rpc_error Telegram sends (made into Telethon's exception by Telethon's own
rpc_message_to_error, as its sender does), the typed error rpc.call raises, and the HTTP status
dav/policy.py answers for it. The error's text names Telegram's error, never Telethon's generic
BAD_REQUEST / FORBIDDEN."""

from __future__ import annotations

import asyncio

import pytest
from telethon.errors import rpc_message_to_error
from telethon.tl.types import RpcError

from tgdav.dav.policy import error_reply
from tgdav.errors import (ConnectionsLost, Forbidden, NotFound, Refused, RetryLater, RpcErrorRecord,
                          UpstreamUnavailable)
from tgdav.telegram import rpc


def telegram_says(code: int, message: str) -> Exception:
    return rpc_message_to_error(RpcError(error_code=code, error_message=message), request=None)


def call(error: BaseException, overrides=None, seen=None):
    async def invoke(request):
        raise error
    return asyncio.run(rpc.call(invoke, "request", "doing the thing", overrides, seen=seen))


def raised(error: BaseException, overrides=None) -> Exception:
    with pytest.raises(Exception) as caught:
        call(error, overrides)
    return caught.value


ROWS = [  # (code, Telegram's error, typed error, HTTP status)
    (420, "FLOOD_WAIT_5", RetryLater, "503"),
    (420, "FLOOD_PREMIUM_WAIT_7", RetryLater, "503"),
    (420, "SLOWMODE_WAIT_3", RetryLater, "503"),
    (400, "CHANNEL_PRIVATE", NotFound, "404"),
    (406, "CHANNEL_PRIVATE", NotFound, "404"),
    (400, "CHANNEL_INVALID", NotFound, "404"),
    (400, "MESSAGE_ID_INVALID", NotFound, "404"),
    (400, "MSG_ID_INVALID", NotFound, "404"),
    (400, "PEER_ID_INVALID", NotFound, "404"),
    (400, "FILE_ID_INVALID", NotFound, "404"),
    (400, "LOCATION_INVALID", NotFound, "404"),
    (400, "CHAT_FORBIDDEN", NotFound, "404"),
    (403, "CHAT_WRITE_FORBIDDEN", Forbidden, "403"),
    (400, "CHAT_ADMIN_REQUIRED", Forbidden, "403"),
    (403, "CHAT_SEND_MEDIA_FORBIDDEN", Forbidden, "403"),
    (403, "MESSAGE_DELETE_FORBIDDEN", Forbidden, "403"),
    (403, "MESSAGE_AUTHOR_REQUIRED", Forbidden, "403"),
    (403, "SOME_NEW_PERMISSION_RULE", Forbidden, "403"),
    (400, "MEDIA_CAPTION_TOO_LONG", Refused, "400"),
    (400, "MESSAGE_TOO_LONG", Refused, "400"),
    (400, "MESSAGE_NOT_MODIFIED", Refused, "400"),
    (400, "SOME_NEW_REFUSAL", Refused, "400"),
    (400, "FILE_PART_0_MISSING", UpstreamUnavailable, "503"),
    (400, "FILE_PART_12_MISSING", UpstreamUnavailable, "503"),
    (400, "FILE_REFERENCE_EXPIRED", UpstreamUnavailable, "503"),
    (400, "FILE_REFERENCE_INVALID", UpstreamUnavailable, "503"),
    (303, "FILE_MIGRATE_4", UpstreamUnavailable, "503"),
    (303, "USER_MIGRATE_2", UpstreamUnavailable, "503"),
    (401, "AUTH_KEY_UNREGISTERED", UpstreamUnavailable, "503"),
    (500, "RANDOM_ID_DUPLICATE", UpstreamUnavailable, "503"),
    (500, "INTERNAL", UpstreamUnavailable, "503"),
    (-503, "Timeout", UpstreamUnavailable, "503"),
]


@pytest.mark.parametrize("code, name, typed, status", ROWS, ids=[f"{r[1]}({r[0]})" for r in ROWS])
def test_each_telegram_error_becomes_one_typed_error_named_after_it(code, name, typed, status):
    error = raised(telegram_says(code, name))
    assert type(error) is typed, error
    record = RpcErrorRecord.parse(code, name)                 # the name Telegram sent, or its type
    assert record.message in str(error) or record.type in str(error)
    assert "BAD_REQUEST" not in str(error) and "doing the thing" in str(error)
    reply = error_reply(error)
    assert reply.status.startswith(status), reply.status
    if status == "503":       # a client is told when to come back
        assert any(k == "Retry-After" for k, _ in reply.headers), reply.headers


@pytest.mark.parametrize("name, seconds", [("FLOOD_WAIT_5", 5), ("FLOOD_PREMIUM_WAIT_7", 7)])
def test_a_flood_of_either_kind_says_how_long_to_wait(name, seconds):
    error = raised(telegram_says(420, name))
    assert isinstance(error, RetryLater) and error.seconds == seconds
    assert name.rsplit("_", 1)[0] in str(error)
    assert ("Retry-After", str(seconds)) in error_reply(error).headers


@pytest.mark.parametrize("message, part", [("FILE_PART_0_MISSING", 0), ("FILE_PART_3_MISSING", 3)])
def test_every_lost_part_is_one_rule_whatever_its_number(message, part):
    """Telethon makes FILE_PART_0_MISSING a class of its own, apart from FILE_PART_X_MISSING."""
    answer = call(telegram_says(400, message), {"FILE_PART_MISSING": rpc.ANSWER})
    assert answer == RpcErrorRecord(400, "FILE_PART_MISSING", part) and str(answer) == message
    assert f"part {part}" in str(raised(telegram_says(400, message)))


def test_overrides_take_the_errors_a_call_site_handles_and_only_those():
    assert call(telegram_says(400, "MESSAGE_NOT_MODIFIED"), {"MESSAGE_NOT_MODIFIED": rpc.IGNORE}) is None
    assert call(telegram_says(303, "FILE_MIGRATE_4"), {"FILE_MIGRATE": rpc.ANSWER}).argument == 4
    with pytest.raises(Forbidden):     # another error at the same call still goes by the table
        call(telegram_says(403, "CHAT_WRITE_FORBIDDEN"), {"MESSAGE_NOT_MODIFIED": rpc.IGNORE})

    def mine(record):
        raise Refused(f"mine: {record}")
    with pytest.raises(Refused, match="mine: MESSAGE_NOT_MODIFIED"):
        call(telegram_says(400, "MESSAGE_NOT_MODIFIED"), {"MESSAGE_NOT_MODIFIED": mine})


def test_seen_is_told_each_record_once():
    records = []
    with pytest.raises(NotFound):
        call(telegram_says(400, "FILE_ID_INVALID"), seen=records.append)
    call(telegram_says(303, "FILE_MIGRATE_2"), {"FILE_MIGRATE": rpc.ANSWER}, seen=records.append)
    assert [r.type for r in records] == ["FILE_ID_INVALID", "FILE_MIGRATE"]


@pytest.mark.parametrize("error", [ConnectionError("Connection to Telegram failed 5 time(s)"),
                                   ConnectionResetError(104, "reset"), OSError("unreachable"),
                                   asyncio.TimeoutError()])
def test_a_connection_lost_refused_or_timed_out_is_upstream_unavailable(error):
    failed = raised(error)
    assert type(failed) is UpstreamUnavailable and "doing the thing" in str(failed)
    assert error_reply(failed).status.startswith("503")


def test_tgdav_errors_and_other_exceptions_pass_unchanged():
    for error in (RetryLater(9), ConnectionsLost("every sender"), NotFound("x")):
        assert raised(error) is error
    bug = KeyError("not Telegram's")
    assert raised(bug) is bug


def test_an_answer_passes_unchanged():
    async def invoke(request):
        return ("answer to", request)
    assert asyncio.run(rpc.call(invoke, "r", "doing the thing")) == ("answer to", "r")


def test_a_record_is_read_back_from_telethons_tables():
    assert rpc.record_of(telegram_says(420, "FLOOD_PREMIUM_WAIT_7")) == RpcErrorRecord(420, "FLOOD_PREMIUM_WAIT", 7)
    assert rpc.record_of(telegram_says(400, "SOME_NEW_REFUSAL")).type == "SOME_NEW_REFUSAL"
    assert rpc.record_of(ValueError("not an RPC error")) is None
