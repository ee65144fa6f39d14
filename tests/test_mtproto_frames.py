"""The receive side of a pool sender's connection (tgdav/telegram/mtproto.py: _Frames, _State):
packets cut right whatever the socket reads look like, a big answer received into its own buffer,
and decryption that answers exactly as Telethon's own MTProtoState does (Telethon is the oracle)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import struct

import pytest
from telethon.crypto import AuthKey
from telethon.errors import InvalidBufferError, SecurityError
from telethon.network.mtprotostate import MTProtoState
from telethon.tl.types import Pong, upload
from telethon.tl.types.storage import FilePartial

from tgdav.sandbox.proto.session import encrypt
from tgdav.telegram import mtproto

SCRATCH = mtproto.SCRATCH


class _Transport:
    """What _Frames asks of its transport."""

    def __init__(self) -> None:
        self.paused = False
        self.closed = False
        self.lost: list = []
        protocol = self

        class Streams:
            def connection_lost(self, exc):
                protocol.lost.append(exc)

        self._streams = Streams()

    def get_protocol(self):
        return self._streams

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def close(self):
        self.closed = True


def _receive(frames: mtproto._Frames, data: bytes, cuts: list[int]) -> None:
    """Deliver `data` as a socket would: recv_into the protocol's buffer, at most cuts[i] bytes each."""
    at, i = 0, 0
    while at < len(data):
        buf = frames.get_buffer(-1)
        assert len(buf) > 0                       # (asyncio refuses an empty buffer)
        n = min(len(buf), cuts[i % len(cuts)], len(data) - at)
        buf[:n] = data[at:at + n]
        frames.buffer_updated(n)
        at, i = at + n, i + 1


def _packet(payload: bytes) -> bytes:
    return struct.pack("<i", len(payload)) + payload


SIZES = [4, 100, SCRATCH - 4, SCRATCH, SCRATCH + 4, (1 << 20) + 64, 8, 1 << 20]


async def _all(frames: mtproto._Frames, n: int) -> list:
    return [await frames.next() for _ in range(n)]


@pytest.mark.parametrize("cuts", [[1], [3, 7], [4096], [65536], [1 << 30], [5, 70000, 1, 300000]])
def test_packets_come_out_whole_in_order_however_the_socket_cuts_them(cuts):
    payloads = [os.urandom(n) for n in SIZES]
    frames = mtproto._Frames(_Transport())
    _receive(frames, b"".join(map(_packet, payloads)), cuts)
    got = asyncio.run(_all(frames, len(payloads)))
    assert [bytes(g) for g in got] == payloads
    # small packets are bytes (the plain sender's DH reads them); big ones a view of their own buffer
    assert [type(g) for g in got] == [bytes if 4 + n <= SCRATCH else memoryview for n in SIZES]


def test_a_big_packet_is_received_into_its_own_buffer_in_one_read_once_its_length_is_known():
    frames = mtproto._Frames(_Transport())
    payload = os.urandom((1 << 20) + 64)
    data = _packet(payload)
    first = 1000                                  # the length and the start of the payload
    _receive(frames, data[:first], [first])
    buf = frames.get_buffer(-1)
    assert len(buf) == len(data) - first          # the whole rest fits the next read
    buf[:] = data[first:]
    frames.buffer_updated(len(buf))
    assert frames.reads == 2
    assert bytes(asyncio.run(frames.next())) == payload


def test_a_length_no_packet_has_fails_the_read_and_closes_the_connection():
    transport = _Transport()
    frames = mtproto._Frames(transport)
    ok = os.urandom(40)
    _receive(frames, _packet(ok) + struct.pack("<i", -404) + b"\0" * 8, [1 << 20])
    assert transport.closed

    async def run():
        assert await frames.next() == ok
        with pytest.raises(InvalidBufferError) as error:
            await frames.next()
        assert error.value.code == 404
        with pytest.raises(ConnectionError):
            await frames.next()
    asyncio.run(run())


def test_reading_pauses_while_telethon_lags_and_the_end_comes_after_the_queued_packets():
    transport = _Transport()
    frames = mtproto._Frames(transport)
    payloads = [os.urandom(1 << 20) for _ in range(6)]
    _receive(frames, b"".join(map(_packet, payloads)), [1 << 30])
    assert transport.paused                       # 6 MiB waiting > MAX_QUEUED

    async def run():
        for p in payloads[:5]:
            assert bytes(await frames.next()) == p
        assert not transport.paused               # 1 MiB left: the socket is read again
        frames.eof_received()
        frames.connection_lost(None)
        assert transport.lost == [None]           # Telethon's StreamWriter hears of the end
        assert bytes(await frames.next()) == payloads[5]
        with pytest.raises(ConnectionError):
            await frames.next()
    asyncio.run(run())


def test_a_waiting_read_wakes_when_the_packet_completes():
    async def run():
        frames = mtproto._Frames(_Transport())
        reading = asyncio.ensure_future(frames.next())
        await asyncio.sleep(0)
        data = _packet(b"x" * 100)
        _receive(frames, data[:50], [50])
        await asyncio.sleep(0)
        assert not reading.done()
        _receive(frames, data[50:], [1 << 20])
        assert await reading == b"x" * 100
    asyncio.run(run())


# ---- decryption: _State against Telethon's MTProtoState ----

class _Loggers(dict):
    def __missing__(self, name):
        return logging.getLogger(name)


def _states(key: bytes) -> tuple[MTProtoState, MTProtoState]:
    ours, theirs = MTProtoState(AuthKey(key), _Loggers()), MTProtoState(AuthKey(key), _Loggers())
    ours.__class__ = mtproto._State
    theirs.id = ours.id
    return ours, theirs


def _server_packet(key: bytes, session_id: int, msg_id: int, body: bytes, *, salt: int = 7) -> bytes:
    head = struct.pack("<qqqii", salt, session_id, msg_id, 1, len(body))
    return encrypt(key, AuthKey(key).key_id, [head, body])


def _msg_id(offset: float = 0) -> int:
    import time
    return (int((time.time() + offset) * 2**32) // 4) * 4 + 1


def _same(a, b) -> bool:
    return (a is None and b is None) or (
        a.msg_id == b.msg_id and a.seq_no == b.seq_no and a.obj.to_dict() == b.obj.to_dict())


def test_a_big_answer_decrypts_as_telethon_decrypts_it_from_bytes_or_a_view():
    key = os.urandom(256)
    ours, theirs = _states(key)
    answer = upload.File(FilePartial(), 0, os.urandom(1 << 20))
    rpc = struct.pack("<Iq", 0xf35c6d01, 12345) + bytes(answer)
    packet = _server_packet(key, ours.id, _msg_id(), rpc)
    mine = ours.decrypt_message_data(memoryview(bytearray(packet)))
    assert _same(mine, theirs.decrypt_message_data(packet))
    ours2, _ = _states(key)
    ours2.id = ours.id
    assert _same(ours2.decrypt_message_data(packet), mine)


@pytest.mark.parametrize("fault", ["tampered", "wrong_session", "even_msg_id", "key_id", "too_old",
                                   "too_new", "short", "duplicate"])
def test_a_bad_packet_is_refused_or_ignored_exactly_as_telethon_does(fault):
    key = os.urandom(256)
    ours, theirs = _states(key)
    session, msg_id = ours.id, _msg_id()
    body = bytes(Pong(1, 2))
    if fault == "wrong_session":
        session += 1
    if fault == "even_msg_id":
        msg_id += 1
    if fault == "too_old":
        msg_id = _msg_id(-400)
    if fault == "too_new":
        msg_id = _msg_id(60)
    packet = bytearray(_server_packet(key, session, msg_id, body))
    if fault == "tampered":
        packet[-1] ^= 1
    if fault == "key_id":
        packet[0] ^= 1
    if fault == "short":
        packet = bytearray(struct.pack("<i", -404))
    if fault == "duplicate":
        assert _same(ours.decrypt_message_data(memoryview(packet)), theirs.decrypt_message_data(bytes(packet)))

    def outcome(state, data):
        try:
            return state.decrypt_message_data(data)
        except (SecurityError, InvalidBufferError) as e:
            return type(e), getattr(e, "code", None)
    mine, telethons = outcome(ours, memoryview(packet)), outcome(theirs, bytes(packet))
    if isinstance(telethons, tuple):
        assert mine == telethons
    else:
        assert _same(mine, telethons)
        assert (mine is None) == (fault in ("too_old", "too_new", "duplicate"))
