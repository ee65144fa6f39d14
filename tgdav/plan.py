"""Part planning: a byte range of a file -> the upload.getFile requests (parts) that fetch it.

Parts live on a fixed buddy grid so that a part fetched for one read is found again by any later
read (the chunk cache keys on the part): every part has a power-of-two size s, first_part <= s <=
max_part <= 1 MiB, and an offset that is a multiple of s. Such a part always obeys Telegram's rules
for getFile without `precise` (see valid_request).

A read begins with a first_part-sized part (fast first byte) and doubles while alignment allows
(a part of size s can only start at a multiple of s): each size takes one or two parts, so a long
read reaches max_part after at most 2 * log2(max_part / first_part) parts and stays there. Near the end of the range sizes shrink again so that no part carries bytes
past `end` unless it is a single first_part-sized part: bytes past the end of the FILE are free (the
reply is short), bytes past `end` are not. Hence, with last = min(end, size - 1):

    bytes of the file covered by the parts < (last - start + 1) + 2 * first_part

(alignment slack before start < first_part, overshoot past last < first_part).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

KIB = 1 << 10
MIB = 1 << 20


@dataclass(frozen=True, order=True)
class Part:
    """One getFile request: `limit` bytes from `offset`. end is exclusive (offset + limit)."""
    offset: int
    limit: int

    @property
    def end(self) -> int:
        return self.offset + self.limit


def valid_request(offset: int, limit: int) -> bool:
    """Telegram's rules for upload.getFile without `precise`."""
    return (offset >= 0 and limit > 0 and offset % (4 * KIB) == 0 and limit % (4 * KIB) == 0
            and MIB % limit == 0 and offset // MIB == (offset + limit - 1) // MIB)


def _check_sizes(first_part: int, max_part: int) -> None:
    for name, value in (("first_part", first_part), ("max_part", max_part)):
        if value < 4 * KIB or value > MIB or value & (value - 1):
            raise ValueError(f"{name}={value}: must be a power of two from 4 KiB to 1 MiB")
    if first_part > max_part:
        raise ValueError(f"first_part={first_part} > max_part={max_part}")


def plan(start: int, end: int, size: int, first_part: int = 64 * KIB, max_part: int = MIB) -> Iterator[Part]:
    """Lazily, the parts covering bytes start..end (inclusive) of a file of `size` bytes, in order.

    No part starts at or beyond `size`; the last part may extend past end or size.
    """
    _check_sizes(first_part, max_part)
    if start < 0 or end < start:
        raise ValueError(f"bad range {start}..{end}")
    last = min(end, size - 1)
    if start > last:
        return
    offset = start - start % first_part
    cap = first_part                       # the largest size the next part may have (growth)
    while offset <= last:
        s = cap
        while offset % s:                  # alignment: shrink to the largest s dividing offset
            s //= 2
        # near the end: shrink while the part would carry bytes of the file past `last`
        while s > first_part and offset + s - 1 > last and last < size - 1:
            s //= 2
        yield Part(offset, s)
        offset += s
        cap = min(2 * s, max_part)


def containing_parts(part: Part, max_part: int = MIB) -> list[Part]:
    """The grid parts that contain `part` (sizes 2s, 4s, ... max_part, smallest first): a cache
    lookup for `part` may find its bytes inside any of them."""
    out = []
    s = 2 * part.limit
    while s <= max_part:
        out.append(Part(part.offset - part.offset % s, s))
        s *= 2
    return out
