"""A pool connection's acks ride with its next request: Telethon's send loop took the acks it owed
only after the request that woke it had gone, so nearly every getFile was followed by a packet
holding nothing but an ack (encrypted and sent on its own, read and decrypted by Telegram)."""

from __future__ import annotations

from tgdav.sandbox.controls import Link

from .conftest import MIB, delta, sha


def test_the_acks_a_read_owes_ride_with_its_requests(engine, sandbox):
    # a round trip and a link speed: answers come one by one, as from Telegram
    sandbox.controls.set_link(Link(latency_ms=20, bandwidth=16 * MIB))
    engine.read("big.bin", 0, 4095)               # the DC's first connections, their keys, imports
    before = sandbox.snapshot()
    size = len(sandbox.content("big.bin"))
    got = engine.read("big.bin", 0, size - 1)
    after = sandbox.snapshot()
    assert sha(got) == sha(sandbox.content("big.bin"))
    getfile = delta(before, after, "requests:GetFile", dc=4)
    acks_only = delta(before, after, "packets_acks_only", dc=4)
    assert getfile >= size // MIB
    # an answer that lands between a request's queueing and its sending still gets one of its own
    # (4-12 of 111 here, the more the busier the machine; Telethon's send loop: 44 of 111, the
    # rest of its requests went out several to a container)
    assert acks_only <= getfile // 4, (acks_only, getfile)
