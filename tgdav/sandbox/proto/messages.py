"""Hand-packed MTProto bodies where Telethon's classes do not help (they only read these on a client).

    rpc_result#f35c6d01 req_msg_id:long result:Object
    rpc_error#2144ca19 error_code:int error_message:string
    vector#1cb5c415 count:int items...
    msg_container#73f1f8dc count:int [msg_id:long seqno:int bytes:int body]...
"""

from __future__ import annotations

import struct

from telethon.tl.tlobject import TLObject
from telethon.tl.types import RpcError as RpcErrorTL

RPC_RESULT = 0xF35C6D01
VECTOR = 0x1CB5C415
MSG_CONTAINER = 0x73F1F8DC
BOOL_TRUE = 0x997275B5
BOOL_FALSE = 0xBC799737


def serialize_result(result: TLObject | bytes | bool | list) -> bytes:
    """A dispatcher's answer as TL bytes: pre-serialized bytes pass through; a Python bool is Bool;
    a list is a boxed Vector of TL objects (Vector<int>/<long> must come pre-serialized)."""
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result)
    if isinstance(result, bool):
        return struct.pack("<I", BOOL_TRUE if result else BOOL_FALSE)
    if isinstance(result, list):
        return b"".join([struct.pack("<Ii", VECTOR, len(result))] + [bytes(x) for x in result])
    if isinstance(result, TLObject):
        return bytes(result)
    raise TypeError(f"cannot serialize a {type(result).__name__} as an RPC result")


def rpc_result_head(req_msg_id: int) -> bytes:
    """The 12 bytes preceding the result body; kept apart so a big body is never copied for it."""
    return struct.pack("<Iq", RPC_RESULT, req_msg_id)


def rpc_error(req_msg_id: int, code: int, message: str) -> bytes:
    return rpc_result_head(req_msg_id) + bytes(RpcErrorTL(error_code=code, error_message=message))


def container(messages: list[tuple[int, int, bytes]]) -> bytes:
    """msg_container of (msg_id, seq_no, body) messages."""
    parts = [struct.pack("<Ii", MSG_CONTAINER, len(messages))]
    for msg_id, seq_no, body in messages:
        parts.append(struct.pack("<qii", msg_id, seq_no, len(body)))
        parts.append(body)
    return b"".join(parts)


def split_container(body: bytes) -> list[tuple[int, int, bytes]]:
    """The (msg_id, seq_no, body) messages of a msg_container; ValueError if it is malformed."""
    try:
        (count,) = struct.unpack_from("<i", body, 4)
        if not 0 <= count <= 1024:
            raise ValueError(f"bad container size {count}")
        pos, out = 8, []
        for _ in range(count):
            msg_id, seq_no, length = struct.unpack_from("<qii", body, pos)
            pos += 16
            if length < 0 or length % 4 or pos + length > len(body):
                raise ValueError("bad message length in container")
            out.append((msg_id, seq_no, body[pos:pos + length]))
            pos += length
    except struct.error as e:
        raise ValueError(f"truncated container: {e}") from None
    return out
