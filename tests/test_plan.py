import itertools
import math

import pytest
from hypothesis import given, strategies as st

from tgdav.plan import KIB, MIB, Part, part_cap, plan_missing, valid_request

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


def check_plan(start, end, size, maximum):
    """plan_missing covers [start, end) of the file exactly, in order, with valid requests, and
    carries beyond it only 4 KiB alignment slack or bytes past the end of the file."""
    parts = plan_missing(start, end, size, maximum)
    stop = min(end, size)
    if start >= stop:
        assert parts == []
        return parts
    assert parts[0].offset <= start < parts[0].end
    assert parts[-1].offset < stop <= parts[-1].end
    for a, b in itertools.pairwise(parts):
        assert a.end == b.offset                                  # contiguous and ordered
    for p in parts:
        assert valid_request(p.offset, p.limit), p
        assert p.limit <= maximum
        assert p.offset < size
    assert start - parts[0].offset < 4 * KIB                      # slack before: alignment only
    in_file_after = min(parts[-1].end, size) - stop
    assert in_file_after < 4 * KIB                                # slack after, inside the file
    return parts


@given(st.data(), st.integers(0, 10 * GIB), powers)
def test_plan_properties(data, size, maximum):
    start = data.draw(st.one_of(st.integers(0, max(size - 1, 0)),
                                st.sampled_from([0, max(size - 1, 0), size, MIB - 1, MIB, MIB + 1])))
    length = data.draw(st.one_of(st.integers(0, 40 * MIB), st.sampled_from([0, 1, 4095, 4096, MIB])))
    to_eof = [size, size + 5] if size - start <= 64 * MIB else []    # long enough, kept fast
    end = max(start, data.draw(st.sampled_from([start + length, *to_eof])))
    check_plan(start, end, size, maximum)


def test_small_files_and_boundaries_exhaustively():
    for size in [0, 1, 4095, 4096, 4097, 65535, 65536, 65537, MIB - 1, MIB, MIB + 1, 3 * MIB + 12345]:
        points = sorted({0, 1, 4095, 4096, 65535, 65536, MIB - 1, MIB, MIB + 1, size - 1, size} - {-1})
        for start, end in itertools.product(points, points):
            if start <= end:
                check_plan(start, end, size, MIB)
                check_plan(start, end, size, 64 * KIB)


@given(st.integers(0, 1000), st.integers(1, 1000))
def test_aligned_spans_take_few_parts(start_block, blocks):
    """A span of whole 64 KiB blocks (what the reader asks for) takes at most log2 parts per MiB."""
    start, end = start_block * 64 * KIB, (start_block + blocks) * 64 * KIB
    parts = plan_missing(start, end, 10 * GIB)
    mibs = end // MIB - start // MIB + 1
    assert len(parts) <= mibs * (int(math.log2(MIB // (64 * KIB))) + 1)
    assert sum(p.limit for p in parts) == end - start


def test_whole_mibs_are_whole_parts():
    assert plan_missing(3 * MIB, 6 * MIB, GIB) == [Part(3 * MIB, MIB), Part(4 * MIB, MIB), Part(5 * MIB, MIB)]
    assert plan_missing(100, 200, GIB) == [Part(0, 4 * KIB)]
    # past the end of the file bytes are free: one part instead of several
    assert plan_missing(0, 5000, 5000) == [Part(0, 8 * KIB)]


def test_part_cap_follows_the_measured_speed():
    assert part_cap(0, 2.0, 64 * KIB) == MIB                      # unknown: full parts
    assert part_cap(2 * MIB, 2.0, 64 * KIB) == MIB
    assert part_cap(48 * KIB, 2.0, 64 * KIB) == 64 * KIB           # a crawling DC: small parts
    assert part_cap(200 * KIB, 2.0, 64 * KIB) == 256 * KIB


@pytest.mark.parametrize("maximum", [2048, 2 * MIB, 96 * KIB])
def test_bad_part_sizes_are_refused(maximum):
    with pytest.raises(ValueError):
        plan_missing(0, 10, 100, maximum)


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError):
        plan_missing(5, 4, 100)
    with pytest.raises(ValueError):
        plan_missing(-1, 4, 100)
