"""Byte ranges as a value type (after rclone's lib/ranges) and the HTTP Range header (RFC 9110 14.2).

A `Range` is HALF-OPEN: `Range(start, end)` holds the bytes start <= i < end, so sizes add up and
adjacent ranges touch (Range(0, 4) + Range(4, 8) = Range(0, 8)). HTTP speaks inclusive (first, last)
pairs; `parse_range_header` returns those, and `Range.inclusive(first, last)` converts.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Iterable, Iterator


@dataclass(frozen=True, order=True)
class Range:
    """Bytes start <= i < end. Empty when start == end."""
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"bad range [{self.start}, {self.end})")

    @classmethod
    def inclusive(cls, first: int, last: int) -> Range:
        """The range of bytes first..last, both included (HTTP's way)."""
        return cls(first, last + 1)

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def last(self) -> int:
        """The last byte in the range (inclusive); meaningless for an empty range."""
        return self.end - 1

    def __bool__(self) -> bool:
        return self.end > self.start

    def intersection(self, other: Range) -> Range:
        """The overlap of two ranges, empty (at self.start) when they do not overlap."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Range(start, end) if start < end else Range(self.start, self.start)


class Ranges:
    """A set of bytes kept as sorted, disjoint, non-adjacent (merged) ranges."""

    def __init__(self, ranges: Iterable[Range] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for r in ranges:
            self.insert(r)

    def insert(self, r: Range) -> None:
        """Add the bytes of r, merging with every range it overlaps or touches."""
        if not r:
            return
        lo = bisect.bisect_left(self._ends, r.start)    # first range ending at or after r.start
        hi = bisect.bisect_right(self._starts, r.end)   # ranges starting at or before r.end touch r
        start, end = r.start, r.end
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def present(self, r: Range) -> bool:
        """True when every byte of r is in the set (an empty range is always present)."""
        if not r:
            return True
        i = bisect.bisect_right(self._starts, r.start) - 1
        return i >= 0 and self._ends[i] >= r.end

    def find_missing(self, r: Range) -> list[Range]:
        """The parts of r not in the set, in order."""
        missing = []
        pos = r.start
        i = bisect.bisect_right(self._ends, r.start)    # first range ending after r.start
        while pos < r.end and i < len(self._starts) and self._starts[i] < r.end:
            if self._starts[i] > pos:
                missing.append(Range(pos, self._starts[i]))
            pos = max(pos, self._ends[i])
            i += 1
        if pos < r.end:
            missing.append(Range(pos, r.end))
        return missing

    @property
    def size(self) -> int:
        """Number of bytes in the set."""
        return sum(e - s for s, e in zip(self._starts, self._ends))

    def __iter__(self) -> Iterator[Range]:
        return (Range(s, e) for s, e in zip(self._starts, self._ends))

    def __len__(self) -> int:
        return len(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ranges) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Ranges({list(self)!r})"


class Unsatisfiable(ValueError):
    """A valid Range header none of whose ranges overlaps the file: answer 416."""


_OWS = "[ \t]*"
_SPEC = re.compile(f"{_OWS}([0-9]{{0,30}}){_OWS}-{_OWS}([0-9]{{0,30}}){_OWS}")   # > 30 digits: malformed


def parse_range_header(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """The inclusive (first, last) pairs a Range header asks of a file of `size` bytes, in the
    header's order, unsatisfiable ones dropped and last clipped to size - 1.

    None when the header is absent, not in bytes, or malformed (RFC 9110: ignore it, serve 200).
    Raises Unsatisfiable when it is valid but no range overlaps the file (serve 416).
    """
    if header is None:
        return None
    unit, eq, specs = header.partition("=")
    if not eq or unit.strip(" \t").lower() != "bytes":
        return None
    parsed = []
    for spec in specs.split(","):
        if not spec.strip(" \t"):
            continue                                     # RFC 9110 5.6.1.2: empty list elements
        m = _SPEC.fullmatch(spec)
        if m is None or not (m[1] or m[2]):
            return None
        if m[1] and m[2] and int(m[2]) < int(m[1]):
            return None
        parsed.append((int(m[1]) if m[1] else None, int(m[2]) if m[2] else None))
    if not parsed:
        return None
    satisfiable = []
    for first, last in parsed:
        if first is None:                                # suffix: the last `last` bytes
            if last > 0 and size > 0:
                satisfiable.append((max(0, size - last), size - 1))
        elif first < size:
            satisfiable.append((first, size - 1 if last is None else min(last, size - 1)))
    if not satisfiable:
        raise Unsatisfiable(f"no range of {header!r} overlaps a file of {size} bytes")
    return satisfiable
