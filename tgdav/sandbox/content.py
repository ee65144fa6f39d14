"""Deterministic file content.

One function gives the bytes of every synthetic document, so the sandbox can serve files of any size
without disk and every test can compute the exact bytes it expects. Every 4 KiB block of every file
differs (the block index and the file's seed both feed the generator), so a part served from the wrong
offset or the wrong file never matches by accident.
"""

from __future__ import annotations

import random

BLOCK = 4096


def _block(seed: int, index: int) -> bytes:
    return random.Random((seed << 40) ^ index).randbytes(BLOCK)


def pattern(seed: int, offset: int, length: int) -> bytes:
    """Bytes [offset, offset + length) of the synthetic file identified by `seed`."""
    if offset < 0 or length < 0:
        raise ValueError("offset and length must be >= 0")
    if length == 0:
        return b""
    first = offset // BLOCK
    last = (offset + length - 1) // BLOCK
    out = bytearray()
    for index in range(first, last + 1):
        out += _block(seed, index)
    start = offset - first * BLOCK
    return bytes(out[start:start + length])
