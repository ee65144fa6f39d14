"""One client connection's MTProto, server side, as a pure object: bytes in, frames and calls out.

Rules (the server acts on what receive_data returns, in this order):
- The first bytes pick the transport (transport.py). Packets with auth_key_id 0 run the DH handshake
  (handshake.py); a finished handshake adds its key to the AuthKeyStore, counted in "auth_keys" once
  its client uses it.
- An encrypted packet needs a key the store knows for THIS DC, else ProtocolError(-404): the server
  sends the transport error and closes. A bad msg_key or length closes the connection as well.
- A client msg_id that is not 0 mod 4 or whose time is >300 s old or >30 s ahead gets
  bad_msg_notification 18/16/17; a salt that is not the key's current or previous one gets
  bad_server_salt. Neither message is processed: the client corrects itself and resends.
- The first accepted message of a session (auth key + session id) is preceded by new_session_created;
  the session lives on in the DC's `Sessions`, so the same session on a new connection gets none.
- Containers and gzip_packed are unpacked; ping / ping_delay_disconnect, get_future_salts and
  destroy_session are answered here; acks and other client service messages are absorbed; any other
  request becomes a Call for the dispatcher. A call's answer acknowledges it; the server sends a
  msgs_ack of its own (acknowledge()) only for a call still unanswered after a while (server.py),
  as Telegram does: "A server usually acknowledges the receipt of a message from a client
  (normally, an RPC query) using an RPC response. If a response is a long time coming, a server
  may first send a receipt acknowledgment, and somewhat later, the RPC response itself"
  (core.telegram.org/mtproto/service_messages_about_messages).
- Replies made here go out as one packet per received packet (a container if there are several).
  A Call is answered later, in any order, with answer() or refuse().
- A request that does not decode is refused with rpc_error 400 (INPUT_METHOD_INVALID for an unknown
  constructor, INPUT_FETCH_ERROR otherwise); the connection lives on.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

from telethon.errors import TypeNotFoundError
from telethon.extensions import BinaryReader
from telethon.tl.functions import (DestroySessionRequest, GetFutureSaltsRequest, PingDelayDisconnectRequest,
                                   PingRequest)
from telethon.tl.tlobject import TLObject, TLRequest
from telethon.tl.types import (BadMsgNotification, BadServerSalt, DestroySessionNone, DestroySessionOk, FutureSalts,
                               MsgsAck, NewSessionCreated, Pong)

from ..counters import Counters
from ..keys import AuthKeyStore
from ..rsakey import SandboxRsaKey
from .errors import ProtocolError
from .handshake import Handshake, parse_plain, plain_message
from .messages import MSG_CONTAINER, rpc_error, rpc_result_head, serialize_result, split_container
from .session import MsgIds, Salts, Session, Sessions, decrypt
from .transport import ServerTransport

_MSGS_ACK = struct.pack("<I", MsgsAck.CONSTRUCTOR_ID)

GZIP_PACKED = 0x3072CFA1
MAX_UNZIPPED = 16 * 1024 * 1024
MSG_TOO_OLD, MSG_TOO_NEW = 300, 30

Outgoing = tuple[list[bytes], bool, bool]   # (body parts, is_response, is_content_related)


@dataclass
class Call:
    """An RPC for the dispatcher."""
    session: Session
    msg_id: int
    request: TLRequest
    content: bool = True      # content-related: an acknowledgment is owed (its answer is one)


@dataclass
class Incoming:
    frames: list[bytes] = field(default_factory=list)   # to send now, in this order
    calls: list[Call] = field(default_factory=list)     # to dispatch, each answered on its own
    disconnect_after: float | None = None               # ping_delay_disconnect: close unless pinged again


class ServerConnection:
    def __init__(self, dc_id: int, keys: AuthKeyStore, rsa_key: SandboxRsaKey, salts: Salts,
                 counters: Counters, *, clock: Callable[[], float] = time.time,
                 sessions: Sessions | None = None) -> None:
        """`sessions`: the DC's (shared by its connections); None: this connection's own."""
        self.dc_id = dc_id
        self.transport = ServerTransport()
        self._keys = keys
        self._rsa = rsa_key
        self._salts = salts
        self._counters = counters
        self._clock = clock
        self._msg_ids = MsgIds(clock)
        self._handshake: Handshake | None = None
        self._sessions = sessions if sessions is not None else Sessions()

    # --- input ------------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> Incoming:
        """Everything `data` completes. Raises ProtocolError when the connection must close."""
        incoming = Incoming()
        detected = self.transport.codec is not None
        packets = self.transport.receive_data(data)
        if not detected and self.transport.codec is not None:
            self._counters.inc(self.dc_id, f"transport:{self.transport.codec.name}")
        for packet in packets:
            if len(packet) < 8:
                raise ProtocolError("packet shorter than an auth_key_id")
            if packet[:8] == bytes(8):
                incoming.frames.append(self._plain(packet))
            else:
                self._encrypted(packet, incoming)
        return incoming

    def goodbye(self, error: ProtocolError) -> bytes | None:
        """The frame to send before closing for `error` (a transport error), if any."""
        if error.transport_code is None or self.transport.codec is None:
            return None
        return self.transport.error_frame(error.transport_code)

    def _plain(self, packet: bytes) -> bytes:
        _, request = parse_plain(packet)
        handshake = self._handshake = self._handshake or Handshake(self._rsa, clock=self._clock)
        answer = handshake.receive(request)
        if handshake.auth_key is not None:
            self._keys.add(self.dc_id, handshake.auth_key)     # (counted when its client uses it)
            self._handshake = None
        return self.transport.frame(plain_message(self._msg_ids.next(True), bytes(answer)))

    def _encrypted(self, packet: bytes, incoming: Incoming) -> None:
        (key_id,) = struct.unpack_from("<Q", packet)
        record = self._keys.get(key_id)
        if record is None or record.dc_id != self.dc_id:
            raise ProtocolError(f"unknown auth key {key_id:016x}", transport_code=-404)
        salt, session_id, msg_id, seq_no, body = decrypt(record.key, packet)
        if record.unused and self._keys.first_use(key_id):
            self._counters.inc(self.dc_id, "auth_keys")
        self._counters.inc(self.dc_id, "packets")
        if body[:4] == _MSGS_ACK:
            self._counters.inc(self.dc_id, "packets_acks_only")
        now = self._clock()
        session = self._sessions.get(key_id, session_id)
        out: list[Outgoing] = []
        bad_msg = _bad_msg_id_code(msg_id, now)
        if bad_msg or not self._salts.is_valid(key_id, salt, now):
            session = session or Session(record.key, key_id, session_id, self._msg_ids)
            notice = (BadMsgNotification(msg_id, seq_no, bad_msg) if bad_msg else
                      BadServerSalt(msg_id, seq_no, 48, self._salts.current(key_id, now)))
            out.append(([bytes(notice)], True, False))
        else:
            if session is None:
                session = self._new_session(record.key, key_id, session_id)
                out.append(([bytes(NewSessionCreated(msg_id, int.from_bytes(os.urandom(8), "little", signed=True),
                                                     self._salts.current(key_id, now)))], False, True))
            self._message(session, msg_id, seq_no, body, out, incoming, now, outer=True)
        if out:
            incoming.frames.append(self._send(session, out))

    def _new_session(self, key: bytes, key_id: int, session_id: int) -> Session:
        session = Session(key, key_id, session_id, self._msg_ids)
        self._sessions.add(session)
        return session

    def _message(self, session: Session, msg_id: int, seq_no: int, body: bytes, out: list[Outgoing],
                 incoming: Incoming, now: float, outer: bool) -> None:
        content = bool(seq_no & 1)
        constructor = body[:4]
        if outer and constructor == struct.pack("<I", MSG_CONTAINER):
            try:
                inner = split_container(body)
            except ValueError:
                out.append(([bytes(BadMsgNotification(msg_id, seq_no, 64))], True, False))
                return
            for args in inner:
                self._message(session, *args, out, incoming, now, outer=False)
            return
        try:
            if constructor == struct.pack("<I", GZIP_PACKED):
                body = _gunzip(body)
            with BinaryReader(body) as reader:
                obj = reader.tgread_object()
        except TypeNotFoundError:
            if content:
                out.append(([rpc_error(msg_id, 400, "INPUT_METHOD_INVALID")], True, True))
            return
        except Exception:   # whatever Telethon's reader raises on the client's broken bytes
            if content:
                out.append(([rpc_error(msg_id, 400, "INPUT_FETCH_ERROR")], True, True))
            return
        self._object(session, msg_id, content, obj, out, incoming, now)

    def _object(self, session: Session, msg_id: int, content: bool, obj: TLObject, out: list[Outgoing],
                incoming: Incoming, now: float) -> None:
        if isinstance(obj, (PingRequest, PingDelayDisconnectRequest)):
            out.append(([bytes(Pong(msg_id, obj.ping_id))], True, True))
            if isinstance(obj, PingDelayDisconnectRequest):
                incoming.disconnect_after = float(obj.disconnect_delay)
        elif isinstance(obj, GetFutureSaltsRequest):
            salts = self._salts.future(session.key_id, now, max(1, min(obj.num, 64)))
            out.append(([bytes(FutureSalts(msg_id, int(now), salts))], True, True))
        elif isinstance(obj, DestroySessionRequest):
            known = self._sessions.pop(session.key_id, obj.session_id) is not None
            answer = DestroySessionOk if known else DestroySessionNone
            out.append(([bytes(answer(obj.session_id))], True, True))
        elif isinstance(obj, TLRequest):
            incoming.calls.append(Call(session, msg_id, obj, content))
        # anything else (msgs_ack, msgs_state_info, http_wait...) needs no answer

    # --- output -----------------------------------------------------------------------------------
    def answer(self, call: Call, result: TLObject | bytes | bool | list) -> bytes:
        """The frame carrying rpc_result(call, result). TypeError if `result` cannot be serialized."""
        return self._send(call.session, [([rpc_result_head(call.msg_id), serialize_result(result)], True, True)])

    def acknowledge(self, call: Call) -> bytes:
        """The frame carrying msgs_ack for `call` (sent when its answer is a long time coming)."""
        self._counters.inc(self.dc_id, "acks_sent")
        return self._send(call.session, [([bytes(MsgsAck([call.msg_id]))], False, False)])

    def push(self, session: Session, obj: TLObject) -> bytes:
        """The frame carrying `obj` (an Updates) as a content message the server starts itself."""
        return self._send(session, [([bytes(obj)], False, True)])

    def refuse(self, call: Call, code: int, message: str) -> bytes:
        """The frame carrying rpc_error(code, message) for `call`."""
        return self._send(call.session, [([rpc_error(call.msg_id, code, message)], True, True)])

    def _send(self, session: Session, messages: list[Outgoing]) -> bytes:
        salt = self._salts.current(session.key_id, self._clock())
        return self.transport.frame(session.pack(salt, messages))


def _bad_msg_id_code(msg_id: int, now: float) -> int:
    """The bad_msg_notification code for a client msg_id, or 0 if it is acceptable."""
    if msg_id % 4:
        return 18
    sent = msg_id >> 32
    if sent < now - MSG_TOO_OLD:
        return 16
    if sent > now + MSG_TOO_NEW:
        return 17
    return 0


def _gunzip(body: bytes) -> bytes:
    """The payload of a gzip_packed, refusing to inflate beyond MAX_UNZIPPED."""
    with BinaryReader(body[4:]) as reader:
        packed = reader.tgread_bytes()
    inflater = zlib.decompressobj(wbits=31)
    data = inflater.decompress(packed, MAX_UNZIPPED)
    if inflater.unconsumed_tail:
        raise ValueError("gzip_packed inflates beyond the limit")
    return data
