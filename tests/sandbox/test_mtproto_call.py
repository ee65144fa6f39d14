"""mtproto.Sender and Call (the pool's only view of a connection) over an unmodified Telethon against
the sandbox's MTProto server: a call cancelled before it went out is taken back (Telegram never
hears of it), one cancelled while Telegram runs it is dropped with rpc_drop_answer, one whose answer
waits behind another on the link is dropped before it is sent; the connection serves on each time."""

from __future__ import annotations

import asyncio


from tests.helpers import until
from tgdav.sandbox.content import pattern
from tgdav.sandbox.controls import Link
from tgdav.telegram.mtproto import Sender, functions, types

from .stub_dispatcher import clean, get_file, sandbox  # noqa: F401 (fixtures)

MIB = 1024 * 1024



def run(sandbox, body):
    async def main():
        client = sandbox.client(2)
        await client.connect()
        sender = await Sender.connect(client, 2, client.session.auth_key.key, retries=1,
                                      connect_timeout=10)
        await sender.introduce(client, functions.help.GetNearestDcRequest())
        try:
            return await body(sender)
        finally:
            await sender.close()
            await client.disconnect()
    return asyncio.run(asyncio.wait_for(main(), 60))


def get_files(sandbox, seed: int) -> list:
    return [r for _ctx, r in sandbox.stub.calls
            if isinstance(r, functions.upload.GetFileRequest) and r.location.id == seed]


async def works(sender, seed: int) -> bool:
    answer = await sender.send(get_file(seed=seed, offset=0, limit=4096)).future
    return answer.bytes == pattern(seed, 0, 4096)


def test_a_call_cancelled_before_it_went_out_is_taken_back(sandbox):
    async def body(sender):
        call = sender.send(get_file(seed=21, offset=0, limit=4096))
        drain = call.cancel(10)              # no await since send: still in Telethon's queue
        return drain, call.future.cancelled(), await works(sender, 22)
    drain, cancelled, ok = run(sandbox, body)
    assert drain is None and cancelled and ok
    assert get_files(sandbox, 21) == []                  # Telegram never heard of it
    assert sandbox.counters.get(2, "drop_requests") == 0


def test_a_call_cancelled_while_it_runs_is_dropped_and_drains(sandbox):
    async def body(sender):
        call = sender.send(get_file(seed=23, offset=0, limit=4096, held=True))
        await until(lambda: get_files(sandbox, 23), 5, "the sandbox runs the getFile")
        drain = call.cancel(10)
        assert drain is not None and not call.future.done()     # its answer may still come
        await until(lambda: sandbox.counters.get(2, "drop_requests") == 1, 5, "the drop reaches Telegram")
        sandbox.stub.release()                               # while the getFile still runs
        await drain
        return call.future.done(), await works(sender, 24)
    done, ok = run(sandbox, body)
    assert done and ok
    assert sandbox.counters.get(2, "drop_requests") == 1
    assert sandbox.counters.get(2, "answers_dropped") == 1


def test_a_call_whose_answer_waits_behind_another_is_dropped_before_it_is_sent(sandbox):
    sandbox.controls.set_link(Link(latency_ms=0, bandwidth=2 * MIB))   # 1 MiB takes 0.5 s

    async def body(sender):
        calls = [sender.send(get_file(seed=25, offset=i * MIB, limit=MIB)) for i in range(3)]
        first = await calls[0].future     # the second is on the wire now, the third queued behind it
        drain = calls[2].cancel(10)
        await drain
        second = await calls[1].future
        return first, second, calls[2].future.cancelled(), await works(sender, 26)
    first, second, third_cancelled, ok = run(sandbox, body)
    assert isinstance(first, types.upload.File) and first.bytes == pattern(25, 0, MIB)
    assert second.bytes == pattern(25, MIB, MIB)
    assert third_cancelled and ok                        # rpc_answer_dropped: it never comes
    assert sandbox.counters.get(2, "answers_dropped") == 1
