import logging
import os
import shutil
import stat
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from tgdav.cache.store import Store

KIB = 1024
MIB = 1 << 20


def pattern(file_key, offset, size):
    """Deterministic chunk bytes, different for every (file, offset)."""
    seed = (zlib.crc32(file_key.encode()) ^ offset) & 0xFF
    return bytes((seed + i) & 0xFF for i in range(256)) * (size // 256) + b"\x07" * (size % 256)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state", chunk_limit_bytes=16 * 1024**2)
    yield s
    s.close()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_meta_and_chunks_survive_reopen(tmp_path):
    s = Store(tmp_path / "state")
    s.remember_dc("document:1", 4)
    s.remember_dc_auth(4, b"\x01" * 256)
    s.remember_dc_auth(2, b"\x02" * 256)
    s.forget_dc_auth(2)
    s.remember_listing(("channel", 7), ["a.mkv", "b.mp3"])
    s.remember_chunk_index("document:1", [(0, 64 * KIB), (MIB, 11)])
    s.put_chunk("document:1", 0, 64 * KIB, pattern("document:1", 0, 64 * KIB))
    s.put_chunk("document:1", MIB, MIB, b"end of file")    # short chunk stored as is
    s.close()

    s = Store(tmp_path / "state")
    assert s.dc_for("document:1") == 4 and s.dc_for("document:2") is None
    assert s.dc_auth(4) == b"\x01" * 256 and s.dc_auth(2) is None
    assert s.listing(("channel", 7)) == ["a.mkv", "b.mp3"] and s.listing(("channel", 8)) is None
    assert s.chunk_index("document:1") == [(0, 64 * KIB), (MIB, 11)] and s.chunk_index("document:2") == []
    assert s.chunk("document:1", 0, 64 * KIB) == pattern("document:1", 0, 64 * KIB)
    assert s.chunk("document:1", MIB, MIB) == b"end of file"
    assert s.chunk("document:1", 0, 128 * KIB) is None                  # keyed by the exact part
    stats = s.chunk_stats()
    assert (stats["count"], stats["hits"], stats["misses"]) == (2, 2, 1)
    s.close()


def test_directories_are_private(store):
    for path in (store.directory, store.directory / "meta", store.directory / "chunks"):
        assert mode(path) == 0o700


def test_lru_eviction_honours_the_bound_and_keeps_recent_reads(tmp_path):
    limit = 2 * 1024**2
    s = Store(tmp_path / "state", chunk_limit_bytes=limit)
    size = 64 * KIB
    for i in range(24):
        s.put_chunk("f", i * size, size, pattern("f", i * size, size))
        assert s.chunk_stats()["bytes"] <= limit
    assert s.chunk("f", 0, size) is not None and s.chunk("f", size, size) is not None  # refresh 0 and 1
    for i in range(24, 48):
        s.put_chunk("f", i * size, size, pattern("f", i * size, size))
        assert s.chunk_stats()["bytes"] <= limit
    present = [i for i in range(48) if s.chunk("f", i * size, size) is not None]
    assert 0 in present and 1 in present          # read recently: kept
    assert 2 not in present and 47 in present     # oldest unread went first; the newest stays
    assert len(present) >= 20 and s.chunk_stats()["count"] == len(present)
    s.put_chunk("big", 0, 1 << 20, pattern("big", 0, 1 << 20))   # one put may need many evictions
    assert s.chunk_stats()["bytes"] <= limit
    assert s.chunk("big", 0, 1 << 20) == pattern("big", 0, 1 << 20)
    s.remember_chunk_index("big", [(0, 1 << 20)])
    s.remember_dc("big", 3)
    s.clear_chunks()
    assert s.chunk_stats()["count"] == 0 and s.chunk("big", 0, 1 << 20) is None
    assert s.chunk_index("big") == [] and s.dc_for("big") == 3      # the index goes, the DC map stays
    s.close()


def test_garbage_database_is_rebuilt_on_open(tmp_path, caplog):
    s = Store(tmp_path / "state")
    s.remember_dc("document:1", 4)
    s.put_chunk("f", 0, 4 * KIB, b"x" * 4 * KIB)
    s.close()
    for name in ("meta", "chunks"):
        with open(tmp_path / "state" / name / "cache.db", "wb") as f:
            f.write(b"this is not sqlite" * 1000)
    with caplog.at_level(logging.WARNING):
        s = Store(tmp_path / "state")
    assert "broken" in caplog.text
    assert s.dc_for("document:1") is None and s.chunk("f", 0, 4 * KIB) is None
    s.remember_dc("document:1", 5)
    assert s.dc_for("document:1") == 5
    assert (tmp_path / "state" / "meta.broken").is_dir()       # kept aside for a look
    assert not (tmp_path / "state" / "chunks.broken").exists()  # just a cache: deleted
    s.close()


def test_garbage_written_while_open_fails_soft(store):
    store.remember_dc("document:1", 4)
    store.put_chunk("f", 0, 4 * KIB, b"x" * 4 * KIB)
    for name in ("meta", "chunks"):
        with open(store.directory / name / "cache.db", "r+b") as f:
            f.write(os.urandom(64 * KIB))

    def use_from_a_new_thread():        # a new thread opens a new connection to the garbage
        store.remember_dc("document:2", 2)
        store.put_chunk("f", 4 * KIB, 4 * KIB, b"y" * 4 * KIB)
        return store.dc_for("document:2"), store.chunk("f", 4 * KIB, 4 * KIB)

    with ThreadPoolExecutor(1) as pool:
        dc, data = pool.submit(use_from_a_new_thread).result()
    assert dc in (2, None) and data in (b"y" * 4 * KIB, None)
    assert store.dc_for("document:1") in (4, None)
    store.remember_dc("document:3", 3)
    assert store.dc_for("document:3") == 3


def test_directory_deleted_while_open_is_rebuilt(store, caplog):
    store.remember_dc("document:1", 4)
    store.put_chunk("f", 0, 4 * KIB, b"x" * 4 * KIB)
    shutil.rmtree(store.directory)
    with caplog.at_level(logging.WARNING):
        assert store.dc_for("document:1") is None
        assert store.chunk("f", 0, 4 * KIB) is None
    assert "deleted" in caplog.text
    store.remember_dc("document:1", 2)
    store.put_chunk("f", 0, 4 * KIB, b"z" * 4 * KIB)
    assert store.dc_for("document:1") == 2 and store.chunk("f", 0, 4 * KIB) == b"z" * 4 * KIB
    assert mode(store.directory) == 0o700 and mode(store.directory / "meta") == 0o700


def test_eight_threads_put_and_get_byte_exact(store):
    barrier = threading.Barrier(8)

    def worker(t):
        barrier.wait()
        wrong = 0
        for i in range(40):
            key, offset = f"document:{i % 5}", (i % 7) * 64 * KIB    # keys shared between threads
            size = 4 * KIB * (1 + (i + t) % 4)
            store.put_chunk(key, offset, size, pattern(key, offset, size))
            store.remember_dc(key, 1 + i % 5)
            got = store.chunk(key, offset, size)
            wrong += got != pattern(key, offset, size)
            wrong += store.dc_for(key) != 1 + i % 5
        return wrong

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(worker, range(8))) == [0] * 8
    assert store.chunk_stats()["hits"] == 8 * 40


def test_hits_and_misses_are_kept_for_every_process_that_reads_the_cache(tmp_path):
    """`tgdav cache stats` (its own process) sees what a serve counted: the totals live in the store."""
    serving = Store(tmp_path / "state")
    serving.put_chunk("document:9", 0, 4096, b"x" * 4096)
    assert serving.chunk("document:9", 0, 4096) and serving.chunk("document:9", 4096, 4096) is None
    looking = Store(tmp_path / "state")            # while the serve runs (its counts flushed on stats)
    serving.chunk_stats()
    got = looking.chunk_stats()
    assert (got["hits"], got["misses"], got["hit_bytes"], got["miss_bytes"]) == (1, 1, 4096, 4096)
    serving.chunk("document:9", 0, 4096)
    serving.close()                                # and when it stops
    assert looking.chunk_stats()["hits"] == 2
    looking.clear_chunks()
    assert looking.chunk_stats()["hits"] == 0
    looking.close()


def _accounts_apart(store) -> None:
    """A helper's DC authorisations are its own: never the main account's, never another helper's."""
    store.bind_account(1)
    one, two = store.for_account(2), store.for_account(3)
    store.remember_dc_auth(4, b"\x01" * 256)
    one.remember_dc_auth(4, b"\x02" * 256)
    assert (store.dc_auth(4), one.dc_auth(4), two.dc_auth(4)) == (b"\x01" * 256, b"\x02" * 256, None)
    one.forget_dc_auth(4)
    assert (store.dc_auth(4), one.dc_auth(4)) == (b"\x01" * 256, None)
    one.remember_dc("document:9", 5)          # the DC map is everyone's
    assert store.dc_for("document:9") == two.dc_for("document:9") == 5


def test_every_account_has_its_own_dc_authorisations(store):
    _accounts_apart(store)
    assert store.flood_board() is None and store.for_account(2).flood_board() is None
    assert store.shared_state() == {}          # nothing shared with replicas: the status page shows none


def test_every_account_has_its_own_dc_authorisations_in_redis_too(tmp_path):
    from tests.scale.conftest import start_redis, stop
    from tgdav.cache.shared import FloodBoard, open_store
    url, proc = start_redis(tmp_path / "redis")
    try:
        store = open_store(tmp_path / "state", chunk_limit_bytes=16 * MIB, redis_url=url)
        try:
            _accounts_apart(store)
            from tgdav import model
            assert isinstance(store, model.StateStore) and isinstance(store.for_account(2), model.AccountStore)
            assert isinstance(store.flood_board(), FloodBoard) and isinstance(store.for_account(2).flood_board(), FloodBoard)
            assert store.shared_state()["up"] is True
        finally:
            store.close()
    finally:
        stop(proc)


def test_both_backends_and_an_accounts_view_keep_the_model_protocols(store, tmp_path):
    from tgdav import model
    assert isinstance(store, model.StateStore)
    assert isinstance(store.for_account(2), model.AccountStore)


def test_a_chunk_is_written_without_a_copy_of_its_bytes(store):
    """The writer thread hands a chunk's bytes to the file as they are: writing a MiB allocates far
    less than a MiB (diskcache's BytesIO.getbuffer() copied every chunk once)."""
    import tracemalloc
    data = pattern("document:1", 0, MIB)
    store.put_chunk("document:1", 0, MIB, data)          # (first use: sqlite statements, caches)
    tracemalloc.start()
    try:
        store.put_chunk("document:1", MIB, MIB, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MIB // 4, peak
    assert store.chunk("document:1", MIB, MIB) == data


def test_chunk_files_live_in_256_directories_made_once_and_kept(tmp_path):
    """diskcache's own layout spreads files over 65536 two-level directories and removes each once
    empty: with a chunk cache's few thousand files, storing a chunk made a directory or two and
    evicting it removed them. Here a chunk's file sits one level deep, and evictions and a clear
    keep the directories for the next chunks."""
    size = 4 * KIB
    s = Store(tmp_path / "state", chunk_limit_bytes=64 * KIB)      # evicts on nearly every put
    chunks = tmp_path / "state" / "chunks"
    for i in range(400):
        s.put_chunk("f", i * size, size, pattern("f", i * size, size))
    files = [p.relative_to(chunks) for p in chunks.rglob("*.val")]
    assert files and all(len(f.parts) == 2 and len(f.parts[0]) == 2 for f in files), files[:3]
    made = {p.name for p in chunks.iterdir() if p.is_dir()}
    assert len(made) > 100        # 400 chunks stored, at most ~16 kept: the others' directories stay
    s.clear_chunks()
    assert not list(chunks.rglob("*.val"))
    assert {p.name for p in chunks.iterdir() if p.is_dir()} == made
    s.put_chunk("f", 0, size, pattern("f", 0, size))
    assert s.chunk("f", 0, size) == pattern("f", 0, size)
    s.close()


def test_a_chunk_cache_in_diskcaches_own_layout_is_still_read_and_emptied(tmp_path):
    from diskcache import Cache
    size = 64 * KIB
    old = Cache(str(tmp_path / "state" / "chunks"), disk_min_file_size=0)
    old.set(Store._chunk_key("f", 0, size), pattern("f", 0, size))
    old.close()
    chunks = tmp_path / "state" / "chunks"
    (first,) = [p.relative_to(chunks) for p in chunks.rglob("*.val")]
    assert len(first.parts) == 3
    s = Store(tmp_path / "state")
    assert s.chunk("f", 0, size) == pattern("f", 0, size)
    s.clear_chunks()
    assert not (chunks / first.parts[0]).exists()      # its emptied directories went with it
    s.close()
