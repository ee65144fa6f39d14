"""Many WSGI-like threads reading through SyncReader over one Bridge at once."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tgdav.telegram.pool import SPARE_SENDERS

from .conftest import FILES, MIB, delta

THREADS = 16


@pytest.mark.timeout(120)
def test_sixteen_threads_read_random_ranges(shared_engine, sandbox):
    engine = shared_engine
    engine.store.clear_chunks()
    names = sorted(FILES) + ["photo"]
    before = sandbox.snapshot()
    failures: list[str] = []
    done = {"ranges": 0, "bytes": 0}
    lock = threading.Lock()
    start_together = threading.Barrier(THREADS)

    def worker(n: int) -> None:
        rng = random.Random(1000 + n)
        try:
            start_together.wait(10)
            for _ in range(4):
                name = rng.choice(names)
                size = len(sandbox.content(name))
                start = rng.randrange(size)
                if rng.random() < 0.3:
                    start = max(0, (start // MIB) * MIB - rng.randrange(1, 5000))
                end = min(size - 1, start + rng.choice([1, 5000, 300_000, 2 * MIB]))
                block = rng.choice([8192, 65536, 1 << 20])
                got = engine.sync_read(name, start, end, n=block)
                if got != sandbox.expected(name, start, end):
                    with lock:
                        failures.append(f"{name} {start}-{end}: {len(got)} bytes, wrong")
                with lock:
                    done["ranges"] += 1
                    done["bytes"] += len(got)
        except Exception as e:     # noqa: BLE001 - reported below with the thread's number
            with lock:
                failures.append(f"thread {n}: {type(e).__name__}: {e}")

    t = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,), name=f"reader-{n}") for n in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(100)
    took = time.monotonic() - t
    assert not any(th.is_alive() for th in threads), "a reader thread hung"
    assert not failures, failures
    assert done["ranges"] == THREADS * 4
    after = sandbox.snapshot()
    assert delta(before, after, "errors:LIMIT_INVALID") == 0
    assert delta(before, after, "errors:OFFSET_INVALID") == 0
    for dc, stats in engine.stats().items():
        # read-ahead uses at most senders_per_dc; one spare is kept for first parts (seeks)
        assert stats["senders"] <= engine.pool.senders_per_dc + SPARE_SENDERS, (dc, stats)
        assert stats["in_flight"] == 0, (dc, stats)
    print(f"\n{THREADS} threads: {done['ranges']} ranges, {done['bytes']} bytes in {took:.2f} s; "
          f"pool {engine.stats()}")


@pytest.mark.timeout(120)
def test_threads_reading_the_same_range_share_requests(engine, sandbox):
    """Eight threads read the same 3 MiB at once: single flight keeps getFile near one copy."""
    start, end = MIB - 100, 4 * MIB - 100
    results: list[bytes] = [b""] * 8
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait(10)
        results[i] = engine.sync_read("big.bin", start, end)

    assert engine.read("big.bin", 0, 0)          # senders and the DC are warm
    before = sandbox.snapshot()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(100)
    for got in results:
        assert got == sandbox.expected("big.bin", start, end)
    fetched = delta(before, sandbox.snapshot(), "getfile_bytes")
    print(f"\n8 readers of {end - start + 1} bytes fetched {fetched} bytes")
    assert fetched < 2 * (end - start + 1), fetched
