"""MTProto 2.0 encryption, server salts, message ids and sequence numbers (server side).

    packet     = auth_key_id (8) + msg_key (16) + AES-256-IGE(plaintext)
    plaintext  = salt (8) + session_id (8) + msg_id (8) + seq_no (4) + length (4) + body + padding
    msg_key    = sha256(auth_key[88 + x : 120 + x] + plaintext)[8:24], x = 0 client->server, 8 back
    padding    = 12..1024 bytes, plaintext a multiple of 16

Server msg_ids follow the clock and only grow; responses are 1 mod 4, other messages 3 mod 4.
seq_no is 2 * (content-related messages sent before) + 1 for content-related messages, twice that
count for the others (acks, containers, salt and msg_id notifications).
"""

from __future__ import annotations

import os
import struct
import time
from collections import OrderedDict
from hashlib import sha256
from typing import Callable

import cryptg
from telethon.tl.types import FutureSalt

from .errors import ProtocolError
from .messages import container

CLIENT = 0   # the x of the key derivation for each direction
SERVER = 8


def _aes_key_iv(auth_key: bytes, msg_key: bytes, x: int) -> tuple[bytes, bytes]:
    a = sha256(msg_key + auth_key[x:x + 36]).digest()
    b = sha256(auth_key[40 + x:76 + x] + msg_key).digest()
    return a[:8] + b[8:24] + a[24:32], b[:8] + a[8:24] + b[24:32]


def encrypt(auth_key: bytes, key_id: int, parts: list[bytes], x: int = SERVER,
            random_bytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """Encrypt the plaintext given as `parts` (joined once, so a big body is copied only once)."""
    size = sum(map(len, parts))
    parts.append(random_bytes(12 + (-(size + 12) % 16)))
    plaintext = b"".join(parts)
    h = sha256(auth_key[88 + x:120 + x])
    h.update(plaintext)
    msg_key = h.digest()[8:24]
    key, iv = _aes_key_iv(auth_key, msg_key, x)
    return b"".join((struct.pack("<Q", key_id), msg_key, cryptg.encrypt_ige(plaintext, key, iv)))


def decrypt(auth_key: bytes, packet: bytes, x: int = CLIENT) -> tuple[int, int, int, int, bytes]:
    """(salt, session_id, msg_id, seq_no, body) of an encrypted packet whose key the caller found.
    Raises ProtocolError if the packet is malformed or its msg_key does not match."""
    if len(packet) < 24 + 32 or (len(packet) - 24) % 16:
        raise ProtocolError("encrypted packet has a bad length")
    msg_key = packet[8:24]
    key, iv = _aes_key_iv(auth_key, msg_key, x)
    plaintext = cryptg.decrypt_ige(packet[24:], key, iv)
    h = sha256(auth_key[88 + x:120 + x])
    h.update(plaintext)
    if h.digest()[8:24] != msg_key:
        raise ProtocolError("msg_key mismatch")
    salt, session_id, msg_id, seq_no, length = struct.unpack_from("<qqqii", plaintext)
    padding = len(plaintext) - 32 - length
    if length < 4 or length % 4 or not 12 <= padding <= 1024:
        raise ProtocolError("bad message length or padding")
    return salt, session_id, msg_id, seq_no, plaintext[32:32 + length]


class Salts:
    """Server salts derived from a secret, the auth key and the half hour: every connection agrees on
    them without sharing state. The current and the previous period's salt are accepted."""

    PERIOD = 1800

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or os.urandom(16)

    def _salt(self, key_id: int, period: int) -> int:
        digest = sha256(self._secret + struct.pack("<Qq", key_id, period)).digest()
        return struct.unpack("<q", digest[:8])[0]

    def current(self, key_id: int, now: float) -> int:
        return self._salt(key_id, int(now) // self.PERIOD)

    def is_valid(self, key_id: int, salt: int, now: float) -> bool:
        period = int(now) // self.PERIOD
        return salt in (self._salt(key_id, period), self._salt(key_id, period - 1))

    def future(self, key_id: int, now: float, count: int) -> list[FutureSalt]:
        first = int(now) // self.PERIOD
        return [FutureSalt(valid_since=p * self.PERIOD, valid_until=(p + 1) * self.PERIOD,
                           salt=self._salt(key_id, p)) for p in range(first, first + count)]


class MsgIds:
    """Server msg_ids of one connection: time-based, strictly growing, 1 or 3 mod 4."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = 0

    def next(self, response: bool) -> int:
        now = self._clock()
        msg_id = (int(now) << 32) | (int((now % 1) * 2 ** 32) & ~3)
        if msg_id <= self._last:
            msg_id = (self._last & ~3) + 4
        msg_id |= 1 if response else 3
        self._last = msg_id
        return msg_id


class Session:
    """One client session (auth key + session id): numbers and encrypts the server's messages to it."""

    def __init__(self, auth_key: bytes, key_id: int, session_id: int, msg_ids: MsgIds) -> None:
        self.auth_key = auth_key
        self.key_id = key_id
        self.session_id = session_id
        self._msg_ids = msg_ids
        self._content_sent = 0
        self.last_sent = (0, 0)     # (msg_id, seq_no) of the last packet packed: rpc_answer_dropped says them

    def _seq_no(self, content: bool) -> int:
        if not content:
            return self._content_sent * 2
        self._content_sent += 1
        return self._content_sent * 2 - 1

    def pack(self, salt: int, messages: list[tuple[list[bytes], bool, bool]]) -> bytes:
        """One encrypted packet carrying `messages` of (body parts, is_response, is_content_related);
        several go in a msg_container."""
        if len(messages) == 1:
            parts, response, content = messages[0]
        else:
            parts = [container([(self._msg_ids.next(response), self._seq_no(content), b"".join(body))
                                for body, response, content in messages])]
            response = content = False
        self.last_sent = (self._msg_ids.next(response), self._seq_no(content))
        head = struct.pack("<qqqii", salt, self.session_id, *self.last_sent, sum(map(len, parts)))
        return encrypt(self.auth_key, self.key_id, [head, *parts])


class Sessions:
    """The sessions (auth key id, session id) one DC knows, whichever connection they came on: a
    session may move to another connection (core.telegram.org/mtproto/description: several
    connections can be attached to one session), and only its first message ever is answered with
    new_session_created. Beyond `limit` the least recently used is forgotten (Telegram forgets
    sessions too; the client then gets new_session_created again)."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._known: OrderedDict[tuple[int, int], Session] = OrderedDict()

    def get(self, key_id: int, session_id: int) -> Session | None:
        session = self._known.get((key_id, session_id))
        if session is not None:
            self._known.move_to_end((key_id, session_id))
        return session

    def add(self, session: Session) -> None:
        self._known[(session.key_id, session.session_id)] = session
        if len(self._known) > self._limit:
            self._known.popitem(last=False)

    def pop(self, key_id: int, session_id: int) -> Session | None:
        return self._known.pop((key_id, session_id), None)
