"""rpc_drop_answer as Telegram documents it (core.telegram.org/mtproto/service_messages, "Cancellation
of an RPC query"), against an unmodified Telethon sender over real sockets: dropped while running,
dropped while queued for sending (never sent), and too late (already on the wire: its bytes come)."""

from __future__ import annotations

import asyncio

from telethon.tl.functions import RpcDropAnswerRequest
from telethon.tl.functions.upload import GetFileRequest
from telethon.tl.types import RpcAnswerDropped, RpcAnswerDroppedRunning, RpcAnswerUnknown, upload

from tests.helpers import run, until
from tgdav.sandbox.content import pattern
from tgdav.sandbox.controls import Link

from .stub_dispatcher import clean, get_file, sandbox  # noqa: F401 (fixtures)

MIB = 1024 * 1024




async def sent_msg_id(sender, future) -> int:
    """The msg_id Telethon gave the request behind `future`, once it has gone out."""
    return await until(lambda: next((msg_id for msg_id, state in sender._pending_state.items()
                                     if state.future is future), None), 5, "the request sent")


def getfiles(sandbox) -> int:
    """upload.getFile calls the stub has received so far."""
    return sum(isinstance(request, GetFileRequest) for _, request in sandbox.stub.calls)


async def with_sender(sandbox, body):
    client = sandbox.client(2)
    await client.connect()
    try:
        return await body(client._sender)
    finally:
        await client.disconnect()


def test_a_drop_while_the_call_runs_answers_dropped_running_to_both(sandbox):
    async def body(sender):
        slow = sender.send(get_file(seed=5, offset=0, limit=4096, held=True))
        msg_id = await sent_msg_id(sender, slow)
        reply = await sender.send(RpcDropAnswerRequest(msg_id))     # while the call is held (runs)
        sandbox.stub.release()
        return reply, await slow
    reply, original = run(with_sender(sandbox, body))
    assert isinstance(reply, RpcAnswerDroppedRunning)
    assert isinstance(original, RpcAnswerDroppedRunning)
    assert sandbox.counters.get(2, "drop_requests") == 1
    assert sandbox.counters.get(2, "answers_dropped") == 1


def test_a_drop_of_a_queued_answer_takes_it_back_and_one_on_the_wire_keeps_coming(sandbox):
    sandbox.controls.set_link(Link(latency_ms=0, bandwidth=2 * MIB))   # 1 MiB takes 0.5 s

    async def body(sender):
        asked = getfiles(sandbox)
        parts = [sender.send(get_file(seed=9, offset=i * MIB, limit=MIB)) for i in range(3)]
        ids = [await sent_msg_id(sender, f) for f in parts]
        # all three answered by the server (the stub answers as it is called): one on the wire, two queued
        await until(lambda: getfiles(sandbox) == asked + 3, 5, "the three getFiles reached the stub")
        queued = await sender.send(RpcDropAnswerRequest(ids[2]))
        on_wire = await sender.send(RpcDropAnswerRequest(ids[0]))
        first = await parts[0]
        second = await parts[1]
        # frames never overtake each other (no jitter here): the third answer, had it been sent, was
        # queued before the reply to its drop, which has come
        return queued, on_wire, first, second, parts[2].done()
    queued, on_wire, first, second, third_done = run(with_sender(sandbox, body))
    assert isinstance(queued, RpcAnswerDropped) and queued.bytes > MIB
    assert isinstance(on_wire, RpcAnswerUnknown)
    assert isinstance(first, upload.File) and first.bytes == pattern(9, 0, MIB)
    assert isinstance(second, upload.File) and second.bytes == pattern(9, MIB, MIB)
    assert not third_done                       # the dropped answer never comes
    assert sandbox.counters.get(2, "answers_dropped") == 1
    assert sandbox.counters.get(2, "unawaited_bytes") > MIB


def test_a_drop_of_an_unknown_request_answers_unknown(sandbox):
    async def body(sender):
        return await sender.send(RpcDropAnswerRequest(12345678 << 32))
    assert isinstance(run(with_sender(sandbox, body)), RpcAnswerUnknown)
    assert sandbox.counters.get(2, "answers_dropped") == 0


def test_jitter_lets_answers_overtake_each_other_on_one_connection(sandbox):
    sandbox.controls.set_link(Link(latency_ms=0, jitter_ms=30))

    async def body(sender):
        futures = [sender.send(get_file(seed=11, offset=i * 4096, limit=4096)) for i in range(20)]
        order = []
        pending = {f: i for i, f in enumerate(futures)}
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for f in sorted(done, key=lambda f: pending[f]):
                order.append(pending.pop(f))
                assert f.result().bytes == pattern(11, order[-1] * 4096, 4096)
        return order
    order = run(with_sender(sandbox, body))
    assert sorted(order) == list(range(20))
    assert order != list(range(20))
