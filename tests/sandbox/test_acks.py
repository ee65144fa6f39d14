"""Acknowledgments as Telegram sends them (core.telegram.org/mtproto/service_messages_about_messages,
"Acknowledgment of Receipt"): "A server usually acknowledges the receipt of a message from a client
(normally, an RPC query) using an RPC response. If a response is a long time coming, a server may
first send a receipt acknowledgment, and somewhat later, the RPC response itself." Against an
unmodified Telethon sender over real sockets: a call answered at once gets no msgs_ack of its own
(the sandbox sent one for every call, a packet the client decrypts and handles for nothing), one
that runs long gets it before its answer."""

from __future__ import annotations

from telethon.tl.types import MsgsAck, upload

from tests.helpers import run, until
from tgdav.sandbox.content import pattern

from .stub_dispatcher import clean, get_file, sandbox  # noqa: F401 (fixtures)


def hear_acks(sender) -> list[int]:
    """The msg_ids the server acknowledges to `sender` with msgs_ack, as they arrive."""
    acked: list[int] = []
    telethons = sender._handlers[MsgsAck.CONSTRUCTOR_ID]

    async def handler(message):
        acked.extend(message.obj.msg_ids)
        await telethons(message)
    sender._handlers[MsgsAck.CONSTRUCTOR_ID] = handler
    return acked


def test_an_answer_acknowledges_its_call_and_a_slow_one_is_acknowledged_first(sandbox):
    async def body():
        client = sandbox.client(2)
        await client.connect()
        try:
            sender = client._sender
            acked = hear_acks(sender)
            quick = [await sender.send(get_file(seed=3, offset=i * 4096, limit=4096)) for i in range(5)]
            slow = sender.send(get_file(seed=4, offset=0, limit=4096, held=True))
            msg_id = await until(lambda: next((m for m, s in sender._pending_state.items()
                                               if s.future is slow), None), 5, "the held call sent")
            await until(lambda: msg_id in acked, 10, "the held call acknowledged")
            heard = list(acked)
            sandbox.stub.release()
            return quick, heard, msg_id, await slow
        finally:
            await client.disconnect()

    quick, heard, msg_id, slow = run(body())
    assert [q.bytes for q in quick] == [pattern(3, i * 4096, 4096) for i in range(5)]
    assert isinstance(slow, upload.File) and slow.bytes == pattern(4, 0, 4096)
    assert heard == [msg_id]                  # the held call only: the quick ones' answers acked them
    assert sandbox.counters.get(2, "acks_sent") == 1
