import itertools

import pytest
from hypothesis import given, strategies as st

from tgdav.ranges import Range, Ranges, Unsatisfiable, parse_range_header

# ---- Range and Ranges against a set-of-bytes oracle -------------------------------------------

UNIVERSE = 40


def runs(byte_set):
    """Maximal runs of consecutive bytes, as half-open Ranges: the oracle for Ranges' iteration."""
    out = []
    for i in sorted(byte_set):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return [Range(s, e) for s, e in out]


ranges_st = st.tuples(st.integers(0, UNIVERSE), st.integers(0, UNIVERSE)).map(lambda p: Range(min(p), max(p)))


def test_range_is_half_open_and_converts_from_inclusive():
    r = Range.inclusive(3, 7)
    assert (r.start, r.end, r.size, r.last) == (3, 8, 5, 7)
    assert not Range(4, 4) and Range(4, 5)
    assert Range(0, 10).intersection(Range(5, 20)) == Range(5, 10)
    assert not Range(0, 5).intersection(Range(5, 9))
    with pytest.raises(ValueError):
        Range(5, 4)
    with pytest.raises(ValueError):
        Range(-1, 4)


def test_adjacent_inserts_merge():
    rs = Ranges([Range(0, 4), Range(8, 12)])
    rs.insert(Range(4, 8))
    assert list(rs) == [Range(0, 12)] and rs.size == 12


@given(st.lists(ranges_st, max_size=12))
def test_ranges_match_set_oracle(inserted):
    rs = Ranges()
    oracle = set()
    for r in inserted:
        rs.insert(r)
        oracle |= set(range(r.start, r.end))
        assert list(rs) == runs(oracle)
    assert rs.size == len(oracle) and len(rs) == len(runs(oracle))
    for start in range(UNIVERSE + 1):
        for end in range(start, UNIVERSE + 1):
            q = Range(start, end)
            wanted = set(range(start, end))
            assert rs.present(q) == (wanted <= oracle)
            assert rs.find_missing(q) == runs(wanted - oracle)


# ---- parse_range_header against a brute-force oracle -----------------------------------------

def oracle(specs, size):
    """Expected result for parsed specs (first|None, last|None): compute each spec's byte set by
    walking every byte of the file."""
    if any(f is not None and l is not None and l < f for f, l in specs):
        return None
    out = []
    for first, last in specs:
        if first is None:
            covered = [i for i in range(size) if i >= size - last] if last > 0 else []
        else:
            covered = [i for i in range(size) if i >= first and (last is None or i <= last)]
        if covered:
            out.append((covered[0], covered[-1]))
    return out or Unsatisfiable


def run(header, size):
    try:
        return parse_range_header(header, size)
    except Unsatisfiable:
        return Unsatisfiable


def render(first, last):
    return f"{'' if first is None else first}-{'' if last is None else last}"


def test_every_single_small_range_matches_oracle():
    numbers = [None, *range(12)]
    for size in range(11):
        for first, last in itertools.product(numbers, numbers):
            if first is None and last is None:
                continue
            header = f"bytes={render(first, last)}"
            assert run(header, size) == oracle([(first, last)], size), (header, size)


@pytest.mark.parametrize("header, size, expected", [
    (None, 10, None),
    ("bytes=0-0", 10, [(0, 0)]),
    ("bytes=0-99", 10, [(0, 9)]),                     # clipped
    ("bytes=9-", 10, [(9, 9)]),
    ("bytes=-3", 10, [(7, 9)]),
    ("bytes=-30", 10, [(0, 9)]),                      # suffix larger than the file: whole file
    ("BYTES = 1-2 ,, -1 ,", 10, [(1, 2), (9, 9)]),    # case, whitespace, empty list elements
    ("bytes=\t4 - 5", 10, [(4, 5)]),
    ("bytes=10-", 10, Unsatisfiable),
    ("bytes=-0", 10, Unsatisfiable),
    ("bytes=0-0", 0, Unsatisfiable),                  # nothing of an empty file is satisfiable
    ("bytes=-5", 0, Unsatisfiable),
    ("bytes=20-30, 5-6", 10, [(5, 6)]),               # unsatisfiable members are dropped
    ("bytes=5-4", 10, None),                          # last < first: invalid, ignore the header
    ("bytes=0-1, 5-4", 10, None),
    ("bytes=", 10, None),
    ("bytes=-", 10, None),
    ("bytes=1-2-3", 10, None),
    ("bytes=a-b", 10, None),
    ("bytes=+1-2", 10, None),
    ("bytes=\u0661-2", 10, None),                     # non-ASCII digits are not digits here
    ("items=0-1", 10, None),
    ("0-1", 10, None),
    ("bytes 0-1", 10, None),
    ("bytes=1" + "0" * 40 + "-", 10, None),           # absurdly long numbers are malformed
])
def test_examples(header, size, expected):
    assert run(header, size) == expected


ows = st.sampled_from(["", " ", "\t", "  "])
small = st.integers(0, 80)
spec_st = st.one_of(st.tuples(small, st.one_of(st.none(), small)), st.tuples(st.none(), small))


@given(st.lists(st.tuples(spec_st, ows, ows, ows), min_size=1, max_size=5),
       st.integers(0, 64), st.sampled_from(["bytes", "Bytes", "BYTES"]), ows)
def test_generated_headers_match_oracle(specs, size, unit, pad):
    header = unit + pad + "=" + ",".join(
        f"{a}{'' if f is None else f}{b}-{c}{'' if l is None else l}" for (f, l), a, b, c in specs)
    assert run(header, size) == oracle([spec for spec, *_ in specs], size), header


def test_large_files():
    size = 10 * 2**30
    assert run("bytes=0-", size) == [(0, size - 1)]
    assert run(f"bytes={size - 1}-{size * 2}", size) == [(size - 1, size - 1)]
    assert run("bytes=-1048576", size) == [(size - 2**20, size - 1)]
    assert run(f"bytes={size}-", size) is Unsatisfiable


@given(st.text(max_size=40), st.integers(0, 100))
def test_garbage_never_crashes(header, size):
    result = run("bytes=" + header, size)
    assert result is None or result is Unsatisfiable or all(
        0 <= first <= last < size for first, last in result)
