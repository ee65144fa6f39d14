"""The receive side of a pool sender's connection (tgdav/telegram/mtproto.py: _Frames, _State):
packets cut right whatever the socket reads look like, a big answer received into its own buffer,
and decryption that answers exactly as Telethon's own MTProtoState does (Telethon is the oracle)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import struct
from hashlib import sha256

import pytest
from telethon.crypto import AuthKey
from telethon.errors import InvalidBufferError, SecurityError
from telethon.network import MTProtoSender
from telethon.network.mtprotostate import MTProtoState
from telethon.network.requeststate import RequestState
from telethon.tl.functions import InvokeWithoutUpdatesRequest
from telethon.tl.functions.contacts import GetContactIDsRequest
from telethon.tl.functions.upload import GetFileRequest
from telethon.tl.types import InputDocumentFileLocation, MsgsAck, Pong, RpcError, upload
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


def _big(n: int = 1 << 20) -> bytes:
    return os.urandom(n)


SIZES = [4, 100, SCRATCH - 4, SCRATCH, SCRATCH + 4, (1 << 20) + 64, 8, 1 << 20]


async def _all(frames: mtproto._Frames, n: int) -> list[tuple[type, bytes]]:
    """(type, bytes) of the next n payloads, each read before the next is taken (a big one is lent
    only until then)."""
    out = []
    for _ in range(n):
        got = await frames.next()
        out.append((type(got), bytes(got)))
    return out


@pytest.mark.parametrize("cuts", [[1], [3, 7], [4096], [65536], [1 << 30], [5, 70000, 1, 300000]])
def test_packets_come_out_whole_in_order_however_the_socket_cuts_them(cuts):
    payloads = [os.urandom(n) for n in SIZES]
    frames = mtproto._Frames(_Transport())
    _receive(frames, b"".join(map(_packet, payloads)), cuts)
    got = asyncio.run(_all(frames, len(payloads)))
    assert [g for _, g in got] == payloads
    # small packets are bytes (the plain sender's DH reads them); big ones a view of their own buffer
    assert [t for t, _ in got] == [bytes if 4 + n <= SCRATCH else memoryview for n in SIZES]


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


# ---- a big packet's buffer, lent until the next packet is taken ----

def test_a_reader_that_waits_for_each_packet_gets_them_all_through_one_buffer():
    async def run():
        frames = mtproto._Frames(_Transport())
        payloads = [_big((1 << 20) + 64), _big(1 << 20), _big(SCRATCH), _big((1 << 20) + 64), _big(200_000)]
        for p in payloads:
            waiting = asyncio.ensure_future(frames.next())
            await asyncio.sleep(0)                # the reader asks first (Telethon's receive loop)
            _receive(frames, _packet(p), [70_000])
            got = await waiting
            assert sha256(got).digest() == sha256(p).digest()
        return frames.buffers
    assert asyncio.run(run()) == 1


def test_a_lent_packet_cannot_be_read_once_the_next_is_taken():
    async def run():
        frames = mtproto._Frames(_Transport())
        first, second = _big(), _big()
        _receive(frames, _packet(first) + _packet(second), [1 << 30])
        lent = await frames.next()
        assert bytes(lent) == first
        assert bytes(await frames.next()) == second
        with pytest.raises(ValueError):           # released: never a view of reused bytes
            bytes(lent)
    asyncio.run(run())


def test_a_buffer_something_still_views_is_never_reused():
    async def run():
        frames = mtproto._Frames(_Transport())
        payloads = [_big() for _ in range(4)]
        _receive(frames, _packet(payloads[0]), [1 << 30])
        kept = (await frames.next())[1000:3000]   # a view of a slice outlives the lent payload
        for p in payloads[1:]:
            _receive(frames, _packet(p), [1 << 30])
            assert bytes(await frames.next()) == p
        assert bytes(kept) == payloads[0][1000:3000]
        assert frames.buffers == 3                # the kept buffer, then two taking turns
        del kept
        _receive(frames, _packet(payloads[0]), [1 << 30])
        assert bytes(await frames.next()) == payloads[0]
        assert frames.buffers == 3
    asyncio.run(run())


def test_packets_queued_before_the_reader_asks_each_keep_their_own_bytes():
    async def run():
        frames = mtproto._Frames(_Transport())
        payloads = [_big((1 << 20) + 16 * i) for i in range(3)]
        _receive(frames, b"".join(map(_packet, payloads)), [1 << 30])
        for p in payloads:
            assert sha256(await frames.next()).digest() == sha256(p).digest()
        more = [_big() for _ in range(3)]
        for p in more:                            # each arrives before the reader asks
            _receive(frames, _packet(p), [1 << 30])
            assert sha256(await frames.next()).digest() == sha256(p).digest()
        return frames.buffers
    assert asyncio.run(run()) == 3                # three at once; then the spare and the lent one take turns


def test_the_connection_reads_its_packets_itself_and_disconnects_after_the_last():
    """_Intermediate.recv takes packets straight from _Frames over a real socket; those sent before
    the server closed all arrive, then ConnectionError, and the connection is disconnected."""
    payloads = [b"p" * 40, _big((1 << 20) + 64), _big(100_000)]

    async def run():
        got_tag = asyncio.get_running_loop().create_future()

        async def serve(reader, writer):
            got_tag.set_result(await reader.readexactly(4))
            writer.write(b"".join(map(_packet, payloads)))
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = mtproto._Intermediate("127.0.0.1", port, 2, loggers=_Loggers())
        await conn.connect()
        await conn.send(b"hello")                 # (the tag goes first)
        received = []
        for _ in payloads:
            received.append(sha256(await conn.recv()).digest())
        with pytest.raises(ConnectionError):
            await conn.recv()
        for _ in range(100):
            if not conn._connected:
                break
            await asyncio.sleep(0.01)
        server.close()
        return await got_tag, received, conn._connected
    tag, received, connected = asyncio.run(run())
    assert tag == b"\xee" * 4
    assert received == [sha256(p).digest() for p in payloads]
    assert not connected


# ---- a getFile answer parsed once: against Telethon's parser and handler ----

def _answer_packet(key: bytes, session_id: int, msg_id: int, req_msg_id: int, answer: bytes) -> bytes:
    return _server_packet(key, session_id, msg_id, struct.pack("<Iq", 0xf35c6d01, req_msg_id) + answer)


def _senders(key: bytes):
    ours = mtproto._PoolSender(AuthKey(key), loggers=_Loggers())
    theirs = MTProtoSender(AuthKey(key), loggers=_Loggers())
    theirs._state.id = ours._state.id
    return ours, theirs


async def _handled(sender, packet: bytes, request, *, pending: bool = True):
    """Decrypt `packet` with the sender's state and handle it as its receive loop would, `request`
    waiting for req_msg_id 99: (the parsed message's class, the request's outcome)."""
    state = RequestState(request)
    state.msg_id = 99
    if pending:
        sender._pending_state[99] = state
    message = sender._state.decrypt_message_data(packet)
    await sender._process_message(message)
    future = state.future
    if not future.done():
        return type(message.obj), None
    if future.exception() is not None:
        return type(message.obj), type(future.exception())
    result = future.result()
    return type(message.obj), result.to_dict() if hasattr(result, "to_dict") else result


def _get_file():
    location = InputDocumentFileLocation(1, 2, b"ref", "")
    return InvokeWithoutUpdatesRequest(GetFileRequest(location, 0, 1 << 20))


FILE_TYPES = sorted(mtproto._FILE_TYPES.values(), key=lambda c: c.__name__)


@pytest.mark.parametrize("kind", FILE_TYPES, ids=[c.__name__ for c in FILE_TYPES])
@pytest.mark.parametrize("length", [254, 255, 256, 257, 4096, (1 << 20) - 1, 1 << 20])
def test_a_file_answer_is_read_in_one_step_into_what_telethon_makes_of_it(kind, length):
    key = os.urandom(256)
    ours, theirs = _senders(key)
    data = _big(length)
    packet = _answer_packet(key, ours._state.id, _msg_id(), 99, bytes(upload.File(kind(), 1234, data)))

    async def run():
        return (await _handled(ours, memoryview(bytearray(packet)), _get_file()),
                await _handled(theirs, packet, _get_file()))
    (our_class, mine), (_, telethons) = asyncio.run(run())
    assert our_class is mtproto._FileAnswer       # the one-step path took it
    assert mine == telethons
    assert sha256(mine["bytes"]).digest() == sha256(data).digest() and mine["mtime"] == 1234


def _file_bytes(length_prefix: bytes, data: bytes, padding: int) -> bytes:
    return (struct.pack("<II", upload.File.CONSTRUCTOR_ID, FilePartial.CONSTRUCTOR_ID) + struct.pack("<i", 7)
            + length_prefix + data + b"\0" * padding)


ODD_ANSWERS = {
    # the short form (under 254 bytes): Telethon's path
    "short_bytes": lambda: bytes(upload.File(FilePartial(), 7, b"x" * 100)),
    "empty_bytes": lambda: bytes(upload.File(FilePartial(), 7, b"")),
    # a storage type Telethon does not know / a TL type that is no storage.FileType
    "unknown_type": lambda: struct.pack("<III", upload.File.CONSTRUCTOR_ID, 0x12345678, 7) + b"\xfe\0\1\0" + b"x" * 256,
    "not_a_file_type": lambda: struct.pack("<I", upload.File.CONSTRUCTOR_ID) + bytes(Pong(1, 2)) + b"\0" * 300,
    # the length says more bytes than the message holds (past its random padding too)
    "cut_bytes": lambda: _file_bytes(b"\xfe\x00\x10\x00", b"x" * 1000, 0),
    "redirect": lambda: bytes(upload.FileCdnRedirect(4, b"t" * 300, b"k" * 32, b"i" * 16, [])),
    "rpc_error": lambda: bytes(RpcError(400, "LIMIT_INVALID")),
}


@pytest.mark.parametrize("odd", sorted(ODD_ANSWERS))
def test_any_other_answer_goes_through_telethons_parser(odd):
    key = os.urandom(256)
    ours, theirs = _senders(key)
    packet = _answer_packet(key, ours._state.id, _msg_id(), 99, ODD_ANSWERS[odd]())

    async def run():
        return (await _handled(ours, memoryview(bytearray(packet)), _get_file()),
                await _handled(theirs, packet, _get_file()))
    (our_class, mine), (their_class, telethons) = asyncio.run(run())
    assert our_class is their_class and mine == telethons


def test_a_file_answer_for_a_request_that_reads_its_own_result_goes_through_telethon():
    key = os.urandom(256)
    ours, theirs = _senders(key)
    packet = _answer_packet(key, ours._state.id, _msg_id(), 99, bytes(upload.File(FilePartial(), 7, _big(4096))))

    async def run():
        return (await _handled(ours, memoryview(bytearray(packet)), GetContactIDsRequest(0)),
                await _handled(theirs, packet, GetContactIDsRequest(0)))
    (_, mine), (_, telethons) = asyncio.run(run())
    assert mine == telethons


def test_a_file_answer_nobody_waits_for_is_dropped_as_telethon_drops_it():
    key = os.urandom(256)
    ours, theirs = _senders(key)
    packet = _answer_packet(key, ours._state.id, _msg_id(), 99, bytes(upload.File(FilePartial(), 7, _big(4096))))

    async def run():
        for sender in (ours, theirs):
            sender._pending_state[5] = RequestState(_get_file())
            await _handled(sender, packet if sender is theirs else memoryview(bytearray(packet)), _get_file(),
                           pending=False)
        return list(ours._pending_state), list(theirs._pending_state), ours._pending_ack, theirs._pending_ack
    our_pending, their_pending, our_acks, their_acks = asyncio.run(run())
    assert our_pending == their_pending == [5] and our_acks == their_acks != set()


def test_a_file_answer_in_a_container_beside_an_ack_is_read_in_one_step_too():
    key = os.urandom(256)
    ours, theirs = _senders(key)
    data = _big((1 << 20) - 4096)
    rpc = struct.pack("<Iq", 0xf35c6d01, 99) + bytes(upload.File(FilePartial(), 7, data))
    ack = bytes(MsgsAck([1, 2]))
    container = struct.pack("<Ii", 0x73f1f8dc, 2) + b"".join(
        struct.pack("<qii", _msg_id() + 4 * i, 1, len(body)) + body for i, body in enumerate((ack, rpc)))
    packet = _server_packet(key, ours._state.id, _msg_id(), container)

    async def run():
        state = RequestState(_get_file())
        ours._pending_state[99] = state
        message = ours._state.decrypt_message_data(memoryview(bytearray(packet)))
        kinds = [type(m.obj) for m in message.obj.messages]
        await ours._process_message(message)
        return kinds, (await _handled(theirs, packet, _get_file()))[1], state.future.result().to_dict()
    kinds, telethons, mine = asyncio.run(run())
    assert kinds == [MsgsAck, mtproto._FileAnswer]
    assert mine == telethons and sha256(mine["bytes"]).digest() == sha256(data).digest()


def test_a_file_answer_for_a_cancelled_request_is_taken_and_dropped_as_telethon_does():
    key = os.urandom(256)
    ours, theirs = _senders(key)
    packet = _answer_packet(key, ours._state.id, _msg_id(), 99, bytes(upload.File(FilePartial(), 7, _big(4096))))

    async def run():
        out = []
        for sender, data in ((ours, memoryview(bytearray(packet))), (theirs, packet)):
            state = RequestState(_get_file())
            state.msg_id = 99
            sender._pending_state[99] = state
            state.future.cancel()
            await sender._process_message(sender._state.decrypt_message_data(data))   # raises nothing
            out.append((list(sender._pending_state), state.future.cancelled()))
        return out
    mine, telethons = asyncio.run(run())
    assert mine == telethons == ([], True)


def test_a_packet_is_on_the_socket_when_send_returns():
    """_Intermediate.send writes to the transport itself (Telethon queued it for a task of its own
    to write later): the server reads it while the client's loop has not run again."""
    import socket
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    async def run():
        conn = mtproto._Intermediate("127.0.0.1", port, 2, loggers=_Loggers())
        await conn.connect()
        server, _ = listener.accept()              # (blocking: the connection is already queued)
        server.settimeout(5)
        try:
            payload = b"q" * 4000
            await conn.send(payload)
            want, got = b"\xee" * 4 + _packet(payload), b""
            while len(got) < len(want):            # the loop is blocked here: no task can write
                got += server.recv(65536)
            return got == want
        finally:
            server.close()
            await conn.disconnect()
    try:
        assert asyncio.run(run())
    finally:
        listener.close()
