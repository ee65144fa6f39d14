import itertools
import math

import pytest
from hypothesis import given, strategies as st

from tgdav.plan import KIB, MIB, Part, containing_parts, plan, valid_request

GIB = 1 << 30
powers = st.sampled_from([4 * KIB << i for i in range(9)])     # 4 KiB .. 1 MiB


def test_valid_request_is_telegrams_rule():
    assert valid_request(0, MIB) and valid_request(MIB, 4 * KIB) and valid_request(MIB - 4 * KIB, 4 * KIB)
    assert not valid_request(0, 3 * 4 * KIB)             # 1 MiB % limit != 0
    assert not valid_request(2 * KIB, 4 * KIB)           # offset not a multiple of 4 KiB
    assert not valid_request(MIB - 4 * KIB, 8 * KIB)     # crosses a MiB boundary
    assert not valid_request(0, 2 * MIB)
    assert not valid_request(0, 0)


def test_valid_request_matches_its_definition_exhaustively():
    """Brute force over a 3 MiB window, 4 KiB granular, and odd offsets/limits."""
    limits = [l for l in range(1024, 2 * MIB + 1, 1024)]
    for offset in range(0, 3 * MIB, 3 * KIB):
        for limit in limits:
            expected = (offset % 4096 == 0 and limit % 4096 == 0 and MIB % limit == 0
                        and offset // MIB == (offset + limit - 1) // MIB)
            assert valid_request(offset, limit) == expected


def check_plan(start, end, size, first, maximum):
    parts = list(plan(start, end, size, first, maximum))
    last = min(end, size - 1)
    if start > last:
        assert parts == []
        return parts
    assert parts[0].offset <= start < parts[0].end
    assert parts[-1].offset <= last < parts[-1].end
    for a, b in itertools.pairwise(parts):
        assert a.end == b.offset                                  # contiguous and ordered
    for p in parts:
        assert valid_request(p.offset, p.limit), p
        assert first <= p.limit <= maximum and p.limit & (p.limit - 1) == 0
        assert p.offset % p.limit == 0                            # on the buddy grid
        assert p.offset < size
    in_file = sum(min(p.end, size) - p.offset for p in parts)
    assert in_file < (last - start + 1) + 2 * first               # the documented bound
    # only a final first-part-sized part may carry file bytes past `last`
    for p in parts[:-1]:
        assert p.end - 1 <= last
    if min(parts[-1].end, size) - 1 > last:
        assert parts[-1].limit == first
    return parts


@given(st.data(), st.integers(0, 10 * GIB), powers, powers)
def test_plan_properties(data, size, first, maximum):
    first, maximum = min(first, maximum), max(first, maximum)
    start = data.draw(st.one_of(st.integers(0, max(size - 1, 0)),
                                st.sampled_from([0, max(size - 1, 0), size, MIB - 1, MIB, MIB + 1])))
    length = data.draw(st.one_of(st.integers(0, 40 * MIB), st.sampled_from([0, 1, 4095, 4096, MIB])))
    to_eof = [size - 1, size + 5] if size - start <= 64 * MIB else []    # long enough, kept fast
    end = max(start, data.draw(st.sampled_from([start + length, *to_eof])))
    check_plan(start, end, size, first, maximum)


def test_small_files_and_boundaries_exhaustively():
    for size in [0, 1, 4095, 4096, 4097, 65535, 65536, 65537, MIB - 1, MIB, MIB + 1, 3 * MIB + 12345]:
        points = sorted({0, 1, 4095, 4096, 65535, 65536, MIB - 1, MIB, MIB + 1, size - 1, size} - {-1})
        for start, end in itertools.product(points, points):
            if start <= end:
                check_plan(start, end, size, 64 * KIB, MIB)
                check_plan(start, end, size, 4 * KIB, 256 * KIB)


@given(st.integers(0, 10 * GIB - 64 * MIB), powers, powers)
def test_long_read_reaches_max_part_quickly_and_stays(start, first, maximum):
    first, maximum = min(first, maximum), max(first, maximum)
    parts = list(itertools.islice(plan(start, 10 * GIB - 1, 10 * GIB, first, maximum), 200))
    reached = next(i for i, p in enumerate(parts) if p.limit == maximum)
    assert reached <= 2 * int(math.log2(maximum // first))
    assert all(p.limit == maximum for p in parts[reached:])
    assert all(a.limit <= b.limit for a, b in itertools.pairwise(parts))  # grows, never shrinks


def test_first_part_is_small_and_growth_doubles():
    sizes = [p.limit for p in itertools.islice(plan(0, GIB, GIB), 7)]
    assert sizes == [64 * KIB, 64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB, MIB, MIB]


def test_reads_share_the_grid():
    """A part planned for one read is, or lies inside, a part another read planned."""
    size = 50 * MIB
    earlier = set(plan(0, size - 1, size))
    for start in range(0, size, 777 * KIB):
        for p in itertools.islice(plan(start, size - 1, size), 12):
            assert p in earlier or any(c in earlier for c in containing_parts(p))


def test_containing_parts():
    assert containing_parts(Part(3 * 64 * KIB, 64 * KIB), 512 * KIB) == [
        Part(128 * KIB, 128 * KIB), Part(0, 256 * KIB), Part(0, 512 * KIB)]
    assert containing_parts(Part(5 * MIB, MIB)) == []


@given(st.integers(0, 10 * GIB), powers)
def test_containing_parts_contain(offset, limit):
    part = Part(offset - offset % limit, limit)
    ancestors = containing_parts(part)
    assert [a.limit for a in ancestors] == [limit << i for i in range(1, len(ancestors) + 1)]
    assert not ancestors or ancestors[-1].limit == MIB
    for a in ancestors:
        assert valid_request(a.offset, a.limit) and a.offset <= part.offset and part.end <= a.end


@pytest.mark.parametrize("first, maximum", [(2048, MIB), (64 * KIB, 2 * MIB), (96 * KIB, MIB), (MIB, 64 * KIB)])
def test_bad_part_sizes_are_refused(first, maximum):
    with pytest.raises(ValueError):
        next(plan(0, 10, 100, first, maximum))


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError):
        next(plan(5, 4, 100))
    with pytest.raises(ValueError):
        next(plan(-1, 4, 100))
