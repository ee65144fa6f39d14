"""Sans-IO tests of the sandbox's server-side MTProto, paired with Telethon's client-side code (its
packet codecs, MTProtoState and handshake formulas), plus the link pacer and decoder fuzzing."""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import os
import random
import struct
from hashlib import sha1

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from telethon import helpers
from telethon.crypto import AES, AuthKey, Factorization, rsa as telethon_rsa
from telethon.extensions import BinaryReader
from telethon.network.connection.tcpabridged import AbridgedPacketCodec
from telethon.network.connection.tcpfull import FullPacketCodec
from telethon.network.connection.tcpintermediate import IntermediatePacketCodec, RandomizedIntermediatePacketCodec
from telethon.network.mtprotostate import MTProtoState
from telethon.tl import functions, types
from telethon.tl.core import GzipPacked, MessageContainer, RpcResult

from tgdav.sandbox.controls import Link
from tgdav.sandbox.counters import Counters
from tgdav.sandbox.keys import AuthKeyStore, key_id_of
from tgdav.sandbox.link import BURST, Pacer
from tgdav.sandbox.proto.connection import ServerConnection
from tgdav.sandbox.proto.errors import ProtocolError
from tgdav.sandbox.proto.handshake import DH_PRIME, Handshake, parse_plain, plain_message
from tgdav.sandbox.proto.session import MsgIds, Salts, Sessions
from tgdav.sandbox.proto.transport import MAX_PACKET, ServerTransport
from tgdav.sandbox.rsakey import KEY_FILE, SandboxRsaKey, load_or_create

LOGGERS = collections.defaultdict(lambda: logging.getLogger("telethon-under-test"))
DC = 2


@pytest.fixture(scope="module")
def rsa_key():
    key = load_or_create(None)
    telethon_rsa.add_key(key.public_pem, old=False)
    return key


def read_frames(codec_cls, data: bytes) -> list[bytes]:
    """Decode server frames with Telethon's own (client-side) codec."""
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        out = []
        while not reader.at_eof():
            out.append(await codec_cls(None).read_packet(reader))
        return out
    return asyncio.run(go())


def chunks(data: bytes, rng: random.Random):
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 700)
        yield data[pos:pos + n]
        pos += n


def test_rsa_key_is_kept_owner_only_in_the_state_dir(rsa_key, tmp_path, monkeypatch):
    monkeypatch.setattr(SandboxRsaKey, "generate", classmethod(lambda cls: rsa_key))   # skip a slow keygen
    created = load_or_create(tmp_path / "state")
    path = tmp_path / "state" / KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    monkeypatch.undo()
    loaded = load_or_create(tmp_path / "state")
    assert loaded.fingerprint == created.fingerprint == rsa_key.fingerprint
    assert loaded.public_pem.startswith("-----BEGIN RSA PUBLIC KEY-----")


# --- transports -------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec_cls", [FullPacketCodec, IntermediatePacketCodec, RandomizedIntermediatePacketCodec,
                                       AbridgedPacketCodec])
def test_transport_pairs_with_telethon_codecs(codec_cls):
    rng = random.Random(1)
    client = codec_cls(None)
    payloads = [rng.randbytes(4 * rng.randint(2, 3000)) for _ in range(30)] + [bytes(4 * 200_000)]
    tag = client.tag or getattr(client, "obfuscate_tag", None) or b""
    stream = tag + b"".join(client.encode_packet(p) for p in payloads)
    server = ServerTransport()
    got = [p for piece in chunks(stream, rng) for p in server.receive_data(piece)]
    assert got == payloads
    replies = payloads[:5] + [struct.pack("<i", -404)]
    framed = b"".join(server.frame(p) for p in replies[:-1]) + server.error_frame(-404)
    assert read_frames(type(client), framed) == replies


def test_full_transport_rejects_bad_crc_seq_and_length():
    good = FullPacketCodec(None).encode_packet(bytes(16))
    with pytest.raises(ProtocolError):
        ServerTransport().receive_data(good[:-1] + bytes([good[-1] ^ 1]))
    second = FullPacketCodec(None)
    second._send_counter = 5
    with pytest.raises(ProtocolError):
        ServerTransport().receive_data(second.encode_packet(bytes(16)))
    with pytest.raises(ProtocolError):
        ServerTransport().receive_data(struct.pack("<iI", MAX_PACKET + 100, 0))
    with pytest.raises(ProtocolError):
        ServerTransport().receive_data(b"\xee\xee\xee\xee" + struct.pack("<i", 0))
    assert ServerTransport().receive_data(good[:10]) == []   # incomplete is not an error


# --- handshake --------------------------------------------------------------------------------------

def client_handshake(server: Handshake, rng: random.Random, want_short_key: bool) -> tuple[bytes, bytes, bool]:
    """Telethon's client steps (authenticator.py), with b chosen so g^ab may have a leading zero byte.
    Returns (the key the client derives, the key the server derived, whether dh_gen_ok's
    new_nonce_hash1 passes the client's check)."""
    def send(request):
        _, answer = parse_plain(plain_message(4 << 32, bytes(server.receive(request))))
        return answer

    nonce = rng.getrandbits(127)
    res_pq = send(functions.ReqPqMultiRequest(nonce))
    pq = int.from_bytes(res_pq.pq, "big")
    p, q = Factorization.factorize(pq)
    new_nonce = rng.getrandbits(255)
    inner = bytes(types.PQInnerData(pq=res_pq.pq, p=telethon_rsa.get_byte_array(p), q=telethon_rsa.get_byte_array(q),
                                    nonce=nonce, server_nonce=res_pq.server_nonce, new_nonce=new_nonce))
    fingerprint = res_pq.server_public_key_fingerprints[0]
    dh = send(functions.ReqDHParamsRequest(nonce, res_pq.server_nonce, telethon_rsa.get_byte_array(p),
                                           telethon_rsa.get_byte_array(q), fingerprint,
                                           telethon_rsa.encrypt(fingerprint, inner)))
    key, iv = helpers.generate_key_data_from_nonce(res_pq.server_nonce, new_nonce)
    with BinaryReader(AES.decrypt_ige(dh.encrypted_answer, key, iv)[20:]) as reader:
        server_inner = reader.tgread_object()
    g_a = int.from_bytes(server_inner.g_a, "big")
    b = rng.getrandbits(2048)
    gab = pow(g_a, b, DH_PRIME)
    while want_short_key and gab.bit_length() > 2040:   # step b until g^ab starts with a zero byte
        b, gab = b + 1, gab * g_a % DH_PRIME
    client_inner = bytes(types.ClientDHInnerData(nonce, res_pq.server_nonce, 0,
                                                 telethon_rsa.get_byte_array(pow(3, b, DH_PRIME))))
    hashed = sha1(client_inner).digest() + client_inner
    hashed += os.urandom(-len(hashed) % 16)
    gen = send(functions.SetClientDHParamsRequest(nonce, res_pq.server_nonce, AES.encrypt_ige(hashed, key, iv)))
    client_key = AuthKey(telethon_rsa.get_byte_array(gab))
    assert isinstance(gen, types.DhGenOk)
    return client_key.key, server.auth_key, gen.new_nonce_hash1 == client_key.calc_new_nonce_hash(new_nonce, 1)


def test_the_auth_key_is_256_bytes_as_telegrams_even_with_a_leading_zero_byte(rsa_key):
    """MTProto's auth key is 2048 bits: TDLib keeps g^ab as 256 bytes, zero-padded
    (DhHandshake::gen_key, `to_binary(2048 / 8)`). Telethon drops the leading zeros: when g^ab starts
    with a zero byte its key is another, and dh_gen_ok's new_nonce_hash1 fails its check (it then
    starts a new exchange; its StringSession would have padded a 255-byte key at the wrong end)."""
    rng = random.Random(7)
    for want_short in (False, True):
        client_key, server_key, accepted = client_handshake(Handshake(rsa_key), rng, want_short)
        assert len(server_key) == 256 and int.from_bytes(server_key, "big") == int.from_bytes(client_key, "big")
        assert accepted == (not want_short) == (client_key == server_key)
        assert len(client_key) == (255 if want_short else 256)


def test_handshake_rejects_steps_out_of_order_and_foreign_fingerprints(rsa_key):
    server = Handshake(rsa_key)
    with pytest.raises(ProtocolError):
        server.receive(functions.SetClientDHParamsRequest(1, 2, bytes(16)))
    res_pq = server.receive(functions.ReqPqMultiRequest(5))
    with pytest.raises(ProtocolError):
        server.receive(functions.ReqDHParamsRequest(5, res_pq.server_nonce, b"", b"", 1234, bytes(256)))
    with pytest.raises(ProtocolError):
        server.receive(functions.ReqDHParamsRequest(6, res_pq.server_nonce, b"", b"", rsa_key.fingerprint, bytes(256)))


# --- encrypted sessions -----------------------------------------------------------------------------

class Client:
    """Telethon's client-side MTProtoState and intermediate framing, talking to one ServerConnection."""

    def __init__(self, conn: ServerConnection, key: bytes) -> None:
        self.conn = conn
        self.state = MTProtoState(AuthKey(key), loggers=LOGGERS)
        self.started = False

    def frame(self, payload: bytes) -> bytes:
        tag = b"" if self.started else b"\xee\xee\xee\xee"
        self.started = True
        return tag + IntermediatePacketCodec(None).encode_packet(payload)

    def message(self, obj, content: bool = True) -> tuple[int, bytes]:
        """One message carrying a TL object, or raw bytes as they are."""
        buffer = io.BytesIO()
        msg_id = self.state.write_data_as_message(buffer, obj if isinstance(obj, bytes) else bytes(obj), content)
        return msg_id, buffer.getvalue()

    def send(self, *objs, content: bool = True):
        """Send objs (one message, or a container of several); returns (msg_ids, Incoming)."""
        messages = [self.message(o, content) for o in objs]
        data = b"".join(m for _, m in messages)
        if len(messages) > 1:
            buffer = io.BytesIO()
            self.state.write_data_as_message(
                buffer, struct.pack("<Ii", MessageContainer.CONSTRUCTOR_ID, len(messages)) + data, False)
            data = buffer.getvalue()
        incoming = self.conn.receive_data(self.frame(self.state.encrypt_message_data(data)))
        return [m for m, _ in messages], incoming

    def open(self, frame: bytes) -> list:
        """The server messages in one frame, containers flattened, as TLMessage objects."""
        message = self.state.decrypt_message_data(frame[4:])
        if isinstance(message.obj, MessageContainer):
            return message.obj.messages
        return [message]


def fresh_client(rsa_key) -> Client:
    keys = AuthKeyStore()
    key = os.urandom(256)
    keys.add(DC, key)
    return Client(ServerConnection(DC, keys, rsa_key, Salts(), Counters()), key)


@pytest.fixture
def session(rsa_key):
    return fresh_client(rsa_key)


def objects(client: Client, frames: list[bytes]) -> list:
    return [m.obj for f in frames for m in client.open(f)]


def test_salt_zero_gets_bad_server_salt_then_new_session_and_call(session):
    [msg_id], incoming = session.send(functions.help.GetConfigRequest())
    assert incoming.calls == []
    [bad] = objects(session, incoming.frames)
    assert isinstance(bad, types.BadServerSalt) and bad.bad_msg_id == msg_id
    session.state.salt = bad.new_server_salt
    [msg_id], incoming = session.send(functions.help.GetConfigRequest())
    got = objects(session, incoming.frames)
    assert [type(o) for o in got] == [types.NewSessionCreated]     # its answer will acknowledge it
    assert got[0].server_salt == bad.new_server_salt
    [call] = incoming.calls
    assert call.msg_id == msg_id and isinstance(call.request, functions.help.GetConfigRequest)
    assert call.content
    [ack] = session.open(session.conn.acknowledge(call))            # a slow one's, sent first
    assert ack.obj.msg_ids == [msg_id] and ack.seq_no % 2 == 0      # (not content-related)
    [answer] = session.open(session.conn.answer(call, types.NearestDc("ZZ", 2, 2)))
    assert answer.obj.req_msg_id == msg_id
    assert answer.msg_id % 4 == 1 and answer.seq_no % 2 == 1
    assert BinaryReader(answer.obj.body).tgread_object() == types.NearestDc("ZZ", 2, 2)
    [error] = session.open(session.conn.refuse(call, 420, "FLOOD_WAIT_3"))
    assert (error.obj.error.error_code, error.obj.error.error_message) == (420, "FLOOD_WAIT_3")


def test_server_msg_ids_grow_with_the_clock_and_tell_responses_apart():
    clock = iter([1000.5, 1000.5, 1000.5, 999.0, 1001.0]).__next__
    ids = MsgIds(clock)
    got = [ids.next(response) for response in (True, False, True, True, False)]
    assert got == sorted(set(got))
    assert [m % 4 for m in got] == [1, 3, 1, 1, 3]
    assert got[0] >> 32 == 1000 and got[-1] >> 32 == 1001


def ready(client: Client) -> Client:
    _, incoming = client.send(functions.PingRequest(0))
    client.state.salt = objects(client, incoming.frames)[0].new_server_salt
    client.send(functions.PingRequest(0))   # absorbs new_session_created
    return client


def test_a_session_moved_to_a_new_connection_is_not_new_but_a_new_session_id_is(rsa_key):
    """core.telegram.org/mtproto/description: a session is the auth key and the client's session id,
    and several connections may carry it. new_session_created comes once per session, whichever
    connection carries its first message: a client that reconnects keeping its session id is told
    nothing (and must not count on being told); one that draws a new id is told."""
    keys, salts, sessions = AuthKeyStore(), Salts(), Sessions()
    key = os.urandom(256)
    keys.add(DC, key)

    def connection() -> ServerConnection:
        return ServerConnection(DC, keys, rsa_key, salts, Counters(), sessions=sessions)
    client = ready(Client(connection(), key))
    client.conn, client.started = connection(), False        # the same session on a new connection
    _, incoming = client.send(functions.PingRequest(1))
    assert [type(o) for o in objects(client, incoming.frames)] == [types.Pong]
    client.state.reset()                                      # a new session id, as Telethon's reconnect draws
    _, incoming = client.send(functions.PingRequest(2))
    assert [type(o) for o in objects(client, incoming.frames)] == [types.NewSessionCreated, types.Pong]


def test_service_messages_are_answered_by_the_connection(session):
    client = ready(session)
    ids, incoming = client.send(functions.PingRequest(42), functions.GetFutureSaltsRequest(3),
                                functions.DestroySessionRequest(12345), functions.PingDelayDisconnectRequest(9, 75))
    got = objects(client, incoming.frames)
    assert [type(o) for o in got] == [types.Pong, types.FutureSalts, types.DestroySessionNone, types.Pong]
    assert (got[0].msg_id, got[0].ping_id) == (ids[0], 42)
    assert got[1].req_msg_id == ids[1] and len(got[1].salts) == 3
    assert client.state.salt in {s.salt for s in got[1].salts}
    assert incoming.disconnect_after == 75 and incoming.calls == []
    _, incoming = client.send(types.MsgsAck([1, 2]), content=False)
    assert incoming.frames == [] and incoming.calls == []


def test_gzip_containers_and_undecodable_requests(session):
    client = ready(session)
    gzipped = GzipPacked(bytes(functions.upload.GetFileRequest(types.InputPeerPhotoFileLocation(
        peer=types.InputPeerSelf(), photo_id=1), offset=0, limit=4096)))
    ids, incoming = client.send(functions.help.GetConfigRequest(), bytes(gzipped))
    assert [type(c.request) for c in incoming.calls] == [functions.help.GetConfigRequest, functions.upload.GetFileRequest]
    assert [c.msg_id for c in incoming.calls] == ids
    unknown_constructor = struct.pack("<I", 0x12345678) + bytes(8)
    truncated_gzip = struct.pack("<I", GzipPacked.CONSTRUCTOR_ID) + b"\x04abc"
    ids, incoming = client.send(unknown_constructor, truncated_gzip, functions.PingRequest(1))
    got = objects(client, incoming.frames)
    errors = {o.req_msg_id: o.error.error_message for o in got if isinstance(o, RpcResult)}
    assert errors == {ids[0]: "INPUT_METHOD_INVALID", ids[1]: "INPUT_FETCH_ERROR"}
    assert [o.msg_id for o in got if isinstance(o, types.Pong)] == [ids[2]]


def test_bad_client_msg_ids_get_notifications(session):
    client = ready(session)
    for offset, code in ((-1000, 16), (1000, 17)):
        client.state.time_offset = offset
        client.state._last_msg_id = 0
        _, incoming = client.send(functions.PingRequest(1))
        [note] = objects(client, incoming.frames)
        assert isinstance(note, types.BadMsgNotification) and note.error_code == code


def test_unknown_and_foreign_keys_get_transport_error_404(rsa_key):
    keys, counters = AuthKeyStore(), Counters()
    foreign = os.urandom(256)
    keys.add(DC + 1, foreign)
    for key in (os.urandom(256), foreign):
        conn = ServerConnection(DC, keys, rsa_key, Salts(), counters)
        client = Client(conn, key)
        with pytest.raises(ProtocolError) as info:
            client.send(functions.PingRequest(1))
        assert info.value.transport_code == -404
        assert read_frames(IntermediatePacketCodec, conn.goodbye(info.value)) == [struct.pack("<i", -404)]


def test_handshake_through_the_connection_registers_the_key_and_counts_it_once_used(rsa_key):
    keys, counters = AuthKeyStore(), Counters()
    conn = ServerConnection(DC, keys, rsa_key, Salts(), counters)
    server = Handshake(rsa_key)
    conn._handshake = server   # drive the connection's own handshake object from the test client
    key_from_client, _, accepted = client_handshake(_ThroughConnection(conn), random.Random(3), False)
    assert accepted and keys.get(key_id_of(key_from_client)).key == key_from_client
    assert counters.get(DC, "auth_keys") == 0      # a key its client never uses is not counted
    client = Client(ServerConnection(DC, keys, rsa_key, Salts(), counters), key_from_client)
    for i in range(2):
        client.send(functions.PingRequest(i))
        assert counters.get(DC, "auth_keys") == 1


class _ThroughConnection:
    """Looks like a Handshake to client_handshake but goes through ServerConnection's plain path."""

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.started = False
        self.auth_key = None

    def receive(self, request):
        tag = b"" if self.started else b"\xee\xee\xee\xee"
        self.started = True
        frame = tag + IntermediatePacketCodec(None).encode_packet(plain_message(4 << 32, bytes(request)))
        [reply] = self.conn.receive_data(frame).frames
        _, answer = parse_plain(reply[4:])
        return answer


# --- link pacing ------------------------------------------------------------------------------------

MIB = 1024 * 1024


def test_pacer_latency_does_not_accumulate_over_pipelined_frames():
    pacer, link = Pacer(), Link(latency_ms=100, bandwidth=0)
    assert [pacer.release_time(t, 1000, link) for t in (0.0, 0.01, 0.02)] == pytest.approx([0.1, 0.11, 0.12])


def test_pacer_caps_throughput_and_allows_only_a_small_burst():
    pacer, link = Pacer(), Link(latency_ms=0, bandwidth=2 * MIB)
    releases = [pacer.release_time(0.0, MIB, link) for _ in range(8)]
    assert releases == sorted(releases)
    assert 8 * MIB / releases[-1] <= 2 * MIB * (1 + BURST / (7 * MIB))
    assert releases[0] == pytest.approx((MIB - BURST) / (2 * MIB))
    small = Pacer()
    assert small.release_time(5.0, 1000, link) == 5.0   # an idle link sends a small frame at once


def test_pacer_latency_and_bandwidth_together():
    pacer, link = Pacer(), Link(latency_ms=100, bandwidth=MIB)
    first = pacer.release_time(0.0, MIB // 2, link)
    assert first == pytest.approx(0.1 + (MIB // 2 - BURST) / MIB)
    assert pacer.release_time(10.0, 1000, link) == pytest.approx(10.1)


# --- fuzzing ----------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=600), cut=st.integers(0, 600))
def test_random_and_truncated_frames_only_raise_protocol_errors(rsa_key, data, cut):
    conn = ServerConnection(DC, AuthKeyStore(), rsa_key, Salts(), Counters())
    for piece in (data[:cut], data[cut:]):
        try:
            conn.receive_data(piece)
        except ProtocolError:
            return


@FUZZ
@given(body=st.binary(max_size=400), aligned=st.booleans())
def test_random_encrypted_payloads_only_raise_protocol_errors(rsa_key, body, aligned):
    """Random ciphertext under a known auth_key_id, and random bodies validly encrypted."""
    client = fresh_client(rsa_key)
    key_id = struct.pack("<Q", client.state.auth_key.key_id)
    try:
        client.conn.receive_data(client.frame(key_id + body + bytes(-len(body) % 4)))
    except ProtocolError:
        pass
    client = ready(fresh_client(rsa_key))
    if aligned:
        body += bytes(-len(body) % 4)
    try:
        incoming = client.conn.receive_data(client.frame(client.state.encrypt_message_data(client.message(body)[1])))
    except ProtocolError:
        return
    for call in incoming.calls:
        client.open(client.conn.refuse(call, 400, "FUZZ"))
