"""Part planning: bytes of a file that are missing -> the upload.getFile requests (parts) that fetch
them. Pure code, no I/O.

Telegram's rule for getFile without `precise` (valid_request): offset and limit multiples of 4 KiB,
1 MiB divisible by limit (so limit is 4 KiB * 2^k, at most 1 MiB), and the request stays inside one
MiB. The offset need NOT be a multiple of the limit, so a missing range is covered exactly, in order:
its start is aligned down to 4 KiB and its end up to 4 KiB (or left open past the end of the file,
where bytes are free: the reply is short), it is cut at MiB boundaries, and each piece is taken
greedily in the largest allowed size that fits. Hence every byte the parts carry beyond the missing
range is alignment slack (< 4 KiB each side) or lies past the end of the file, and a piece of n KiB
takes at most log2(n/4)+1 parts.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1 << 10
MIB = 1 << 20
ALIGN = 4 * KIB


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
    return (offset >= 0 and limit > 0 and offset % ALIGN == 0 and limit % ALIGN == 0
            and MIB % limit == 0 and offset // MIB == (offset + limit - 1) // MIB)


def check_part_size(name: str, value: int) -> None:
    if value < ALIGN or value > MIB or value & (value - 1):
        raise ValueError(f"{name}={value}: must be a power of two from 4 KiB to 1 MiB")


def _floor_pow2(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def plan_missing(start: int, end: int, size: int, max_part: int = MIB) -> list[Part]:
    """The parts that fetch bytes start <= i < end (half-open) of a file of `size` bytes, in order.

    No part starts at or beyond `size`; the last part may reach past `size` (its reply is short).
    """
    check_part_size("max_part", max_part)
    if start < 0 or end < start:
        raise ValueError(f"bad range [{start}, {end})")
    end = min(end, size)
    if start >= end:
        return []
    pos = start - start % ALIGN
    stop = -(-end // ALIGN) * ALIGN
    parts = []
    while pos < stop:
        room = min(stop, (pos // MIB + 1) * MIB) - pos      # to the range's end or the MiB boundary
        s = min(_floor_pow2(room), max_part)
        if stop >= size and pos + 2 * s <= (pos // MIB + 1) * MIB and s < max_part and room > s:
            s *= 2     # past the end of the file bytes are free: one part instead of several
        parts.append(Part(pos, s))
        pos += s
    return parts


def part_cap(speed: float, seconds: float, smallest: int, max_part: int = MIB) -> int:
    """The largest part worth asking of a connection that carries `speed` bytes/s: one that arrives
    within `seconds` (a slow DC gets small parts, so a part never outlives the request timeout),
    between smallest and max_part. Unknown speed (0): max_part."""
    if speed <= 0:
        return max_part
    return max(smallest, min(max_part, _floor_pow2(max(ALIGN, int(speed * seconds)))))
