"""File references: opaque bytes a client must present to download a file, minted with their issue
time whenever a message is fetched, and checked against the fault policy (a TTL, or "every reference
issued before now is expired") the way Telegram expires them.

A reference is version (1 byte) + issue time in microseconds of the services' clock (8 bytes) + a MAC
over the file and the time (12 bytes), so it cannot be moved to another file or made younger.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Callable

from tgdav.sandbox.context import RpcError
from tgdav.sandbox.controls import Controls

_VERSION = 1
_HEAD = struct.Struct(">Bq")
_MAC = 12


class References:
    def __init__(self, secret: bytes, controls: Controls, clock: Callable[[], float]) -> None:
        self._secret = secret
        self._controls = controls
        self._clock = clock

    def mint(self, kind: str, file_id: int) -> bytes:
        head = _HEAD.pack(_VERSION, _micros(self._clock()))
        return head + self._mac(kind, file_id, head)

    def check(self, kind: str, file_id: int, reference: bytes) -> None:
        """Raise FILE_REFERENCE_EMPTY / _INVALID / _EXPIRED unless `reference` is current for the file."""
        if not reference:
            raise RpcError(400, "FILE_REFERENCE_EMPTY")
        head = reference[:_HEAD.size]
        if (len(reference) != _HEAD.size + _MAC or head[0] != _VERSION
                or not hmac.compare_digest(reference[_HEAD.size:], self._mac(kind, file_id, head))):
            raise RpcError(400, "FILE_REFERENCE_INVALID")
        issued = _HEAD.unpack(head)[1]
        ttl, expired_before = self._controls.reference_policy()
        if ((ttl is not None and _micros(self._clock()) - issued > ttl * 1e6)
                or (expired_before is not None and issued < _micros(expired_before))):
            raise RpcError(400, "FILE_REFERENCE_EXPIRED")

    def _mac(self, kind: str, file_id: int, head: bytes) -> bytes:
        return hmac.new(self._secret, f"{kind}:{file_id}:".encode() + head, hashlib.sha256).digest()[:_MAC]


def _micros(t: float) -> int:
    return int(t * 1_000_000)
