"""DcPool's choice of senders with fake senders (no network): interleavings of urgent requests,
read-ahead and opening senders that the sandbox makes too rare to hit on purpose."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from tgdav.telegram.pool import DcPool


class FakeMtp:
    """The slice of Telethon's MTProtoSender the pool uses; every request is answered at once."""

    def __init__(self) -> None:
        self._send_queue = SimpleNamespace(_deque=[])
        self._pending_state = {}
        self.disconnected = asyncio.get_running_loop().create_future()
        self.sent: list[object] = []

    def is_connected(self) -> bool:
        return True

    def send(self, request):
        future = asyncio.get_running_loop().create_future()
        self._send_queue._deque.append(SimpleNamespace(future=future, request=request, msg_id=0))
        self.sent.append(request)
        future.set_result(SimpleNamespace(bytes=b""))
        return future

    async def disconnect(self) -> None:
        pass


def _pool(opener) -> DcPool:
    return DcPool(4, opener, max_senders=1, slots_per_sender=2, max_wait=10, request_timeout=30,
                  clock=asyncio.get_running_loop().time)


@pytest.mark.timeout(30)
def test_read_ahead_held_back_for_an_urgent_request_goes_when_that_request_is_cancelled():
    """Read-ahead does not take an idle sender while an urgent request waits for one. When that
    urgent request goes away (its stream closed on a seek) while its own new sender is still being
    opened, the read-ahead must be woken to take the idle sender, not left waiting for an event that
    never comes."""
    async def scenario():
        gates = [asyncio.Event(), asyncio.Event()]      # the second open never completes
        opened = []

        async def opener(dc):
            gate = gates[len(opened)]
            opened.append(dc)
            await gate.wait()
            return FakeMtp()

        pool = _pool(opener)
        bulk = asyncio.ensure_future(pool.invoke(SimpleNamespace(name="bulk")))
        await asyncio.sleep(0.01)                    # bulk started the first open
        urgent = asyncio.ensure_future(pool.invoke(SimpleNamespace(name="urgent"), urgent=True))
        await asyncio.sleep(0.01)                    # urgent started the second (the spare)
        gates[0].set()
        await asyncio.sleep(0.01)                    # sender 1 is idle; bulk waits: urgent goes first
        assert not bulk.done()
        urgent.cancel()                              # the player seeks away
        try:
            return await asyncio.wait_for(bulk, 5)
        finally:
            await pool.close()

    assert asyncio.run(scenario()).bytes == b""
