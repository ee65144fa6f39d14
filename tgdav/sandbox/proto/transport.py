"""MTProto transports, server side: find the client's framing from its first bytes, then cut its byte
stream into packets and frame ours the same way.

    TcpFull           no tag; 4-byte length (payload + 12), 4-byte sequence number, payload, CRC32
    intermediate      tag 0xeeeeeeee; 4-byte length, payload
    padded interm.    tag 0xdddddddd; like intermediate, 0-3 random bytes of padding after the payload
    abridged          tag 0xef; length / 4 in one byte, or 0x7f and three bytes; payload

A transport error for the client is a bare little-endian int32 (-404: unknown auth key) framed like
any packet. Anything malformed raises ProtocolError: the connection is closed, nothing else suffers.
"""

from __future__ import annotations

import abc
import os
import struct
from zlib import crc32

from .errors import ProtocolError

MAX_PACKET = 4 * 1024 * 1024   # well above the largest request Telegram takes (a 1 MiB container)

_INTERMEDIATE_TAG = b"\xee\xee\xee\xee"
_PADDED_TAG = b"\xdd\xdd\xdd\xdd"
_ABRIDGED_TAG = 0xEF
_QUICK_ACK = 0x80000000


class _Codec(abc.ABC):
    name = ""

    @abc.abstractmethod
    def decode(self, buf: bytearray) -> bytes | None:
        """Remove one complete packet from the front of `buf` and return its payload, or None."""

    @abc.abstractmethod
    def encode(self, payload: bytes) -> bytes:
        """The frame carrying `payload`."""


def _check_length(length: int) -> None:
    if not 0 < length <= MAX_PACKET:
        raise ProtocolError(f"bad packet length {length}")


class FullCodec(_Codec):
    name = "full"

    def __init__(self) -> None:
        self._recv_seq = 0
        self._send_seq = 0

    def decode(self, buf: bytearray) -> bytes | None:
        if len(buf) < 8:
            return None
        length, seq = struct.unpack_from("<iI", buf)
        if length % 4 or length < 16:
            raise ProtocolError(f"bad TcpFull length {length}")
        _check_length(length - 12)
        if len(buf) < length:
            return None
        if seq != self._recv_seq:
            raise ProtocolError(f"TcpFull sequence {seq}, expected {self._recv_seq}")
        (crc,) = struct.unpack_from("<I", buf, length - 4)
        if crc32(memoryview(buf)[:length - 4]) != crc:
            raise ProtocolError("TcpFull CRC32 mismatch")
        payload = bytes(buf[8:length - 4])
        del buf[:length]
        self._recv_seq += 1
        return payload

    def encode(self, payload: bytes) -> bytes:
        head = struct.pack("<iI", len(payload) + 12, self._send_seq)
        self._send_seq += 1
        return b"".join((head, payload, struct.pack("<I", crc32(payload, crc32(head)))))


class IntermediateCodec(_Codec):
    name = "intermediate"

    def decode(self, buf: bytearray) -> bytes | None:
        if len(buf) < 4:
            return None
        (length,) = struct.unpack_from("<I", buf)
        length &= ~_QUICK_ACK   # a quick-ack request; we do not send quick acks
        _check_length(length)
        if len(buf) < 4 + length:
            return None
        payload = bytes(buf[4:4 + length])
        del buf[:4 + length]
        return self._unpad(payload)

    def _unpad(self, payload: bytes) -> bytes:
        if len(payload) % 4:
            raise ProtocolError("intermediate payload is not a multiple of 4 bytes")
        return payload

    def encode(self, payload: bytes) -> bytes:
        return struct.pack("<i", len(payload)) + payload


class PaddedIntermediateCodec(IntermediateCodec):
    name = "padded-intermediate"

    def _unpad(self, payload: bytes) -> bytes:
        cut = len(payload) % 4
        return payload[:len(payload) - cut]

    def encode(self, payload: bytes) -> bytes:
        return super().encode(payload + os.urandom(os.urandom(1)[0] % 4))


class AbridgedCodec(_Codec):
    name = "abridged"

    def decode(self, buf: bytearray) -> bytes | None:
        if not buf:
            return None
        words, head = buf[0] & 0x7F, 1
        if words == 0x7F:
            if len(buf) < 4:
                return None
            words, head = int.from_bytes(buf[1:4], "little"), 4
        length = words * 4
        _check_length(length)
        if len(buf) < head + length:
            return None
        payload = bytes(buf[head:head + length])
        del buf[:head + length]
        return payload

    def encode(self, payload: bytes) -> bytes:
        words = len(payload) >> 2
        head = bytes((words,)) if words < 0x7F else b"\x7f" + words.to_bytes(3, "little")
        return head + payload


class ServerTransport:
    """Detects the transport, then turns received bytes into packets and packets into frames."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.codec: _Codec | None = None

    def receive_data(self, data: bytes) -> list[bytes]:
        """All packets completed by `data`, in order. Raises ProtocolError on malformed framing."""
        self._buf += data
        if self.codec is None and not self._detect():
            return []
        packets = []
        while (packet := self.codec.decode(self._buf)) is not None:
            packets.append(packet)
        return packets

    def frame(self, payload: bytes) -> bytes:
        return self.codec.encode(payload)

    def error_frame(self, code: int) -> bytes:
        """A transport error: the bare int32 `code` (negative, e.g. -404) framed as a packet."""
        return self.codec.encode(struct.pack("<i", code))

    def _detect(self) -> bool:
        buf = self._buf
        if buf[:1] == bytes((_ABRIDGED_TAG,)):
            self.codec = AbridgedCodec()
            del buf[:1]
            return True
        if len(buf) < 4:
            return False
        tag = bytes(buf[:4])
        if tag == _INTERMEDIATE_TAG:
            self.codec = IntermediateCodec()
        elif tag == _PADDED_TAG:
            self.codec = PaddedIntermediateCodec()
        else:
            self.codec = FullCodec()   # no tag: the first four bytes are already a TcpFull length
            return True
        del buf[:4]
        return True
