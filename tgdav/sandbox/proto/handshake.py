"""The server side of MTProto's DH auth-key exchange, over unencrypted messages.

    req_pq_multi(nonce)                -> resPQ(nonce, server_nonce, pq, [our RSA fingerprint])
    req_DH_params(.., encrypted_data)  -> server_DH_params_ok(AES-IGE(sha1 + server_DH_inner_data))
    set_client_DH_params(.., data)     -> dh_gen_ok(new_nonce_hash1); auth key = g^ab

encrypted_data of req_DH_params is the OLD scheme Telethon uses: raw RSA of sha1(data) + data + random
padding to 255 bytes. The auth key is g^ab as 256 big-endian bytes, zero-padded, as Telegram's: an
MTProto auth key is 2048 bits (TDLib: DhHandshake::gen_key, `g_ab.to_binary(2048 / 8)`). Telethon
encodes g^ab without its leading zero bytes, so for about one exchange in 256 (g^ab < 2^2040) its key
is another: dh_gen_ok's new_nonce_hash1 fails its check and it starts a new exchange, as it must with
Telegram. (A 255-byte key it did accept broke elsewhere: its StringSession pads keys to 256 bytes at
the end.) A new req_pq restarts the exchange; anything out of order or inconsistent is the client's
fault (ProtocolError).
"""

from __future__ import annotations

import os
import struct
import time
from hashlib import sha1
from typing import Callable

import cryptg
import rsa.prime
from telethon.extensions import BinaryReader
from telethon.tl.functions import ReqDHParamsRequest, ReqPqMultiRequest, ReqPqRequest, SetClientDHParamsRequest
from telethon.tl.tlobject import TLObject
from telethon.tl.types import (ClientDHInnerData, DhGenOk, PQInnerData, PQInnerDataDc, PQInnerDataTemp,
                               PQInnerDataTempDc, ResPQ, ServerDHInnerData, ServerDHParamsOk)

from ..rsakey import SandboxRsaKey
from .errors import ProtocolError

# Telegram's 2048-bit safe prime (p and (p - 1) / 2 are prime) with generator 3.
DH_PRIME = int(
    "c71caeb9c6b1c9048e6c522f70f13f73980d40238e3e21c14934d037563d930f48198a0aa7c14058229493d22530f4d"
    "bfa336f6e0ac925139543aed44cce7c3720fd51f69458705ac68cd4fe6b6b13abdc9746512969328454f18faf8c595f"
    "642477fe96bb2a941d5bcd1d4ac8cc49880708fa9b378e3c4f3a9060bee67cf9a4a4a695811051907e162753b56b0f"
    "6b410dba74d8a84b2a14b3144e0ef1284754fd17ed950d5965b4b9dd46582db1178d169c6bc465b0d6ff9ca3928fef"
    "5b9ae4e418fc15e83ebea0f87fa9ff5eed70050ded2849f47bf959d956850ce929851f0d8115f635b105ee2e4e15d0"
    "4b2454bf6f4fadf034b10403119cd8e3b92fcc5b", 16)
DH_G = 3
_SAFETY = 2 ** (2048 - 64)   # g_a and g_b must lie in [2^1984, p - 2^1984]
_PQ_INNER = (PQInnerData, PQInnerDataDc, PQInnerDataTemp, PQInnerDataTempDc)


def minimal_bytes(n: int) -> bytes:
    """Big-endian bytes of `n` without leading zeros, MTProto's encoding of pq, p, q and g_a."""
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def tmp_aes_key_iv(server_nonce: int, new_nonce: int) -> tuple[bytes, bytes]:
    """The temporary AES key and IV that protect the DH parameters, derived from both nonces."""
    sn = server_nonce.to_bytes(16, "little", signed=True)
    nn = new_nonce.to_bytes(32, "little", signed=True)
    h1, h2, h3 = sha1(nn + sn).digest(), sha1(sn + nn).digest(), sha1(nn + nn).digest()
    return h1 + h2[:12], h2[12:20] + h3 + nn[:4]


def new_nonce_hash(auth_key: bytes, new_nonce: int, number: int) -> int:
    """new_nonce_hash1/2/3 of dh_gen_ok/retry/fail: low 128 bits of sha1(new_nonce + number + aux_hash)."""
    aux_hash = sha1(auth_key).digest()[:8]
    data = new_nonce.to_bytes(32, "little", signed=True) + bytes((number,)) + aux_hash
    return int.from_bytes(sha1(data).digest()[4:20], "little", signed=True)


def parse_plain(packet: bytes) -> tuple[int, TLObject]:
    """An unencrypted message (auth_key_id 0, msg_id, length, body) -> (msg_id, decoded body)."""
    if len(packet) < 24:
        raise ProtocolError("plain message too short")
    key_id, msg_id, length = struct.unpack_from("<qqi", packet)
    if key_id != 0 or not 0 < length <= len(packet) - 20:
        raise ProtocolError("malformed plain message")
    try:
        with BinaryReader(packet[20:20 + length]) as reader:
            return msg_id, reader.tgread_object()
    except Exception as e:   # any decoding failure of the client's bytes
        raise ProtocolError(f"undecodable plain message: {e!r}") from None


def plain_message(msg_id: int, body: bytes) -> bytes:
    return struct.pack("<qqi", 0, msg_id, len(body)) + body


class Handshake:
    """One connection's DH exchange. `receive` answers each step; `auth_key` is set once it succeeded."""

    def __init__(self, rsa_key: SandboxRsaKey, *, clock: Callable[[], float] = time.time,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._rsa = rsa_key
        self._clock = clock
        self._random = random_bytes
        self._step = "pq"
        self._nonce = self._server_nonce = self._new_nonce = self._a = 0
        self._pq = (0, 0)
        self.auth_key: bytes | None = None

    def receive(self, request: TLObject) -> TLObject:
        if isinstance(request, (ReqPqMultiRequest, ReqPqRequest)):
            return self._res_pq(request)
        if isinstance(request, ReqDHParamsRequest) and self._step == "dh":
            self._check_nonces(request)
            return self._server_dh_params(request)
        if isinstance(request, SetClientDHParamsRequest) and self._step == "client_dh":
            self._check_nonces(request)
            return self._dh_gen(request)
        raise ProtocolError(f"unexpected {type(request).__name__} in handshake step {self._step}")

    def _check_nonces(self, request: TLObject) -> None:
        if request.nonce != self._nonce or request.server_nonce != self._server_nonce:
            raise ProtocolError("handshake nonce mismatch")

    def _res_pq(self, request: TLObject) -> ResPQ:
        p = rsa.prime.getprime(31)
        q = rsa.prime.getprime(31)
        while q == p:
            q = rsa.prime.getprime(31)
        self._pq = (min(p, q), max(p, q))
        self._nonce = request.nonce
        self._server_nonce = int.from_bytes(self._random(16), "little", signed=True)
        self._step = "dh"
        self.auth_key = None
        return ResPQ(nonce=self._nonce, server_nonce=self._server_nonce, pq=minimal_bytes(p * q),
                     server_public_key_fingerprints=[self._rsa.fingerprint])

    def _server_dh_params(self, request: ReqDHParamsRequest) -> ServerDHParamsOk:
        if request.public_key_fingerprint != self._rsa.fingerprint:
            raise ProtocolError("req_DH_params for an unknown RSA key")
        try:
            plain = self._rsa.decrypt_raw(request.encrypted_data).to_bytes(255, "big")
        except (ValueError, OverflowError):
            raise ProtocolError("undecryptable req_DH_params") from None
        inner, length = _read_object(plain[20:])
        if sha1(plain[20:20 + length]).digest() != plain[:20] or not isinstance(inner, _PQ_INNER):
            raise ProtocolError("bad p_q_inner_data")
        p, q = self._pq
        if (inner.nonce, inner.server_nonce) != (self._nonce, self._server_nonce) \
                or inner.pq != minimal_bytes(p * q) \
                or {inner.p, inner.q, request.p, request.q} != {minimal_bytes(p), minimal_bytes(q)}:
            raise ProtocolError("p_q_inner_data does not match the exchange")
        self._new_nonce = inner.new_nonce
        while True:
            self._a = int.from_bytes(self._random(256), "big")
            g_a = pow(DH_G, self._a, DH_PRIME)
            if _SAFETY <= g_a <= DH_PRIME - _SAFETY:
                break
        answer = bytes(ServerDHInnerData(nonce=self._nonce, server_nonce=self._server_nonce, g=DH_G,
                                         dh_prime=minimal_bytes(DH_PRIME), g_a=minimal_bytes(g_a),
                                         server_time=int(self._clock())))
        data = sha1(answer).digest() + answer
        data += self._random(-len(data) % 16)
        key, iv = tmp_aes_key_iv(self._server_nonce, self._new_nonce)
        self._step = "client_dh"
        return ServerDHParamsOk(nonce=self._nonce, server_nonce=self._server_nonce,
                                encrypted_answer=cryptg.encrypt_ige(data, key, iv))

    def _dh_gen(self, request: SetClientDHParamsRequest) -> DhGenOk:
        data = request.encrypted_data
        if not data or len(data) % 16:
            raise ProtocolError("set_client_DH_params data is not whole AES blocks")
        key, iv = tmp_aes_key_iv(self._server_nonce, self._new_nonce)
        plain = cryptg.decrypt_ige(data, key, iv)
        inner, length = _read_object(plain[20:])
        if sha1(plain[20:20 + length]).digest() != plain[:20] or not isinstance(inner, ClientDHInnerData) \
                or (inner.nonce, inner.server_nonce) != (self._nonce, self._server_nonce):
            raise ProtocolError("bad client_DH_inner_data")
        g_b = int.from_bytes(inner.g_b, "big")
        if not _SAFETY <= g_b <= DH_PRIME - _SAFETY:
            raise ProtocolError("g_b outside the safe range")
        self.auth_key = pow(g_b, self._a, DH_PRIME).to_bytes(256, "big")
        self._step = "done"
        return DhGenOk(nonce=self._nonce, server_nonce=self._server_nonce,
                       new_nonce_hash1=new_nonce_hash(self.auth_key, self._new_nonce, 1))


def _read_object(data: bytes) -> tuple[TLObject | None, int]:
    """(object, bytes it took) from the front of `data`; (None, 0) if it does not decode."""
    try:
        with BinaryReader(data) as reader:
            obj = reader.tgread_object()
            return obj, reader.tell_position()
    except Exception:   # the client's bytes: any failure means "not a valid object"
        return None, 0
