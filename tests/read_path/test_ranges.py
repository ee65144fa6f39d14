"""Every range of every fixture file reads byte-exact (property-based), through the async PartReader
and through SyncReader over the bridge; a second read of the same bytes costs no getFile."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import FILES, MIB, delta, sha

NAMES = sorted(FILES) + ["photo"]
BAD = ("errors:LIMIT_INVALID", "errors:OFFSET_INVALID")


def _size(sandbox, name: str) -> int:
    return len(sandbox.content(name))


@st.composite
def file_ranges(draw, sandbox):
    """(name, start, end): a fixture file and a range inside it, biased to the edges that matter:
    MiB and 4 KiB boundaries (+-1), the first and the last byte, tiny and whole-file lengths."""
    name = draw(st.sampled_from(NAMES))
    size = _size(sandbox, name)
    edges = {0, size - 1, max(0, size - 2)}
    for k in range(0, size // MIB + 2):
        for base in (k * MIB, k * MIB + 4096, k * MIB + 65536, k * MIB + MIB // 2):
            edges.update({base - 1, base, base + 1})
    edges = sorted(e for e in edges if 0 <= e < size)
    point = st.one_of(st.sampled_from(edges), st.integers(0, size - 1))
    start = draw(point)
    how = draw(st.sampled_from(["length", "length", "point", "to_end", "cross"]))
    if how == "cross" and size > MIB:      # straddle a MiB boundary by a little or a lot
        k = draw(st.integers(1, (size - 1) // MIB))
        start = k * MIB - draw(st.one_of(st.integers(1, 8192), st.integers(1, MIB)))
        end = min(k * MIB + draw(st.one_of(st.integers(0, 8192), st.integers(0, 2 * MIB))), size - 1)
    elif how in ("length", "cross"):
        length = draw(st.one_of(st.integers(1, 16), st.integers(1, 300_000), st.integers(1, 3 * MIB)))
        end = min(start + length - 1, size - 1)
    elif how == "point":
        end = draw(point)
        start, end = min(start, end), max(start, end)
        if end - start > 4 * MIB:          # bound the bytes one example moves
            end = start + draw(st.integers(0, 4 * MIB))
    else:
        start = max(start, size - 1 - draw(st.integers(0, 3 * MIB)))
        end = size - 1
    return name, start, end


def test_every_range_byte_exact(shared_engine, sandbox):
    engine = shared_engine
    before = sandbox.snapshot()
    seen = {"examples": 0, "bytes": 0, "last_byte": 0, "cross_mib": 0}

    @settings(max_examples=100, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=file_ranges(sandbox), cold=st.booleans())
    def check(data, cold):
        name, start, end = data
        if cold:    # half the examples go to the network, half mix cache and network
            engine.store.clear_chunks()
        got = engine.read(name, start, end)
        assert len(got) == end - start + 1, (name, start, end)
        assert got == sandbox.expected(name, start, end), (name, start, end)
        seen["examples"] += 1
        seen["bytes"] += len(got)
        seen["last_byte"] += end == _size(sandbox, name) - 1
        seen["cross_mib"] += start // MIB != end // MIB

    check()
    after = sandbox.snapshot()
    for name in BAD:
        assert delta(before, after, name) == 0, (name, after)
    assert delta(before, after, "requests:GetFile") > 0
    assert seen["last_byte"] > 0 and seen["cross_mib"] > 0, seen
    print("\nrange property:", seen)


@pytest.mark.parametrize("name,start,end", [
    ("big.bin", 0, 0),
    ("big.bin", MIB - 1, MIB),                       # one byte either side of a MiB boundary
    ("big.bin", 3 * MIB - 5000, 7 * MIB + 5000),     # several MiB, unaligned both ends
    ("big.bin", 20 * MIB, 20 * MIB + 4320),          # the tail, to the last byte
    ("mid.bin", 4095, 4096),
    ("one.bin", 0, 0),
    ("b4095.bin", 0, 4094),
    ("b4096.bin", 4095, 4095),
    ("b4097.bin", 4096, 4096),
    ("stale.bin", MIB + 1, 4 * MIB + 3),
    ("photo", 1000, 69_999),
])
@pytest.mark.parametrize("block", [1, 8192, 1 << 20])
def test_sync_reader_byte_exact(shared_engine, sandbox, name, start, end, block):
    """SyncReader (WSGI threads' path, through Bridge.stream) with the block sizes WsgiDAV uses;
    read() is short at most, b"" only at the end."""
    if block == 1 and end - start > 10_000:
        end = start + 10_000
    shared_engine.store.clear_chunks()
    got = shared_engine.sync_read(name, start, end, n=block)
    assert sha(got) == sha(sandbox.expected(name, start, end))


def test_sync_stream_returns_short_reads_never_empty_before_end(shared_engine, sandbox):
    stream = shared_engine.sync_reader.open(shared_engine.loc("mid.bin"), 10, 2 * MIB + 10)
    try:
        total = bytearray()
        while True:
            piece = stream.read(100_000)
            assert len(piece) <= 100_000
            if not piece:
                break
            total += piece
        assert stream.read(10) == b""            # stays at the end
    finally:
        stream.close()
    assert bytes(total) == sandbox.expected("mid.bin", 10, 2 * MIB + 10)


def test_out_of_file_range_is_refused(shared_engine):
    size = shared_engine.entries["b4096.bin"].size
    for start, end in [(0, size), (size, size), (5, 4)]:
        with pytest.raises(ValueError):
            shared_engine.read("b4096.bin", start, end)


def test_second_read_sends_no_getfile(engine, sandbox):
    """The same range again, and ranges inside an already read bigger one, are all cache."""
    start, end = 3 * MIB - 1234, 9 * MIB + 777
    assert engine.read("big.bin", start, end) == sandbox.expected("big.bin", start, end)
    before = sandbox.snapshot()
    assert engine.read("big.bin", start, end) == sandbox.expected("big.bin", start, end)
    rng = random.Random(5)
    inner = [(start, start), (end, end), (4 * MIB - 1, 4 * MIB), (5 * MIB, 6 * MIB - 1)]
    inner += [tuple(sorted(rng.randint(start, end) for _ in range(2))) for _ in range(20)]
    for a, b in inner:
        assert engine.read("big.bin", a, b) == sandbox.expected("big.bin", a, b), (a, b)
    # and through the sync path
    assert engine.sync_read("big.bin", start + 5, end - 5) == sandbox.expected("big.bin", start + 5, end - 5)
    after = sandbox.snapshot()
    assert delta(before, after, "requests:GetFile") == 0, after
    assert delta(before, after, "getfile_bytes") == 0


def test_second_read_of_small_files_and_photo_sends_no_getfile(engine, sandbox):
    names = ["one.bin", "b4095.bin", "b4096.bin", "b4097.bin", "photo"]
    for name in names:
        assert engine.read(name) == sandbox.content(name)
    before = sandbox.snapshot()
    for name in names:
        assert engine.read(name) == sandbox.content(name)
        size = engine.entries[name].size
        assert engine.read(name, size - 1, size - 1) == sandbox.content(name)[-1:]
    assert delta(before, sandbox.snapshot(), "requests:GetFile") == 0


def test_bytes_fetched_stay_close_to_bytes_served(engine, sandbox):
    """A small read in the middle of a big file fetches about what it serves (plan.py's bound:
    < length + 2 * first_part), not the read-ahead's worth."""
    before = sandbox.snapshot()
    start, end = 7 * MIB + 100, 7 * MIB + 100 + 200_000
    assert engine.read("big.bin", start, end) == sandbox.expected("big.bin", start, end)
    fetched = delta(before, sandbox.snapshot(), "getfile_bytes")
    assert fetched < (end - start + 1) + 2 * engine.reader.first_part, fetched
