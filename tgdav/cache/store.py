"""What tgdav remembers on disk, in two diskcache caches under one private (0700) directory:

- meta, never evicted: file -> DC, the auth key each foreign DC accepted (a secret), listings, and
  per file the index of its chunks (offset, length). Losing it costs migrations and exports (flood
  waits), so it survives restarts.
- chunks, bounded, least recently used evicted first: the bytes of getFile parts, keyed by file and
  offset. A chunk the index names may have been evicted: chunk() then answers None and the reader
  fetches those bytes again.

A cache whose database is corrupt or deleted is rebuilt with a warning, never fatal: a store is a
memory, and forgetting is always allowed. diskcache is thread-safe (a connection per thread).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from diskcache import UNKNOWN, Cache, Disk, Timeout

log = logging.getLogger(__name__)
T = TypeVar("T")


def _private_dir(path: Path) -> None:
    """Create `path` and any missing parents as 0700 (they hold secrets); tighten `path` itself."""
    for p in reversed([path, *path.parents]):
        if not p.exists():
            p.mkdir(mode=0o700, exist_ok=True)
            os.chmod(p, 0o700)
    try:
        os.chmod(path, 0o700)
    except PermissionError:
        log.warning("cannot make %s private (0700): not its owner", path)


class ChunkFiles(Disk):
    """diskcache's Disk for the chunk cache (one file per chunk), changed in two ways:

    - A bytes value is written to its file in one call. Disk.store hands _write an io.BytesIO and
      _write iterates it, which yields LINES: ~4000 write calls per MiB of file bytes, 3 s of CPU
      per GiB cached (as much as decrypting it). The BytesIO shares the value's bytes: getvalue()
      hands them back as they are, where getbuffer() would copy them first.
    - Files live in 256 directories, one level deep, made once and kept. Disk spreads them over
      65536 two-level directories and removes a directory once it is empty: with the few thousand
      files a chunk cache holds, nearly every chunk stored made a directory or two (an inode each)
      and its eviction removed them again. mkdir, its stat and ext4's inode search were 39% of the
      cache writer thread's CPU (perf, `tgdav serve` streaming from Telegram). The file is opened
      first; its directory is made only when the open finds none.

    A cache written with Disk's layout (before this class) is read as it is; its files' directories
    still go as they empty."""

    def filename(self, key=UNKNOWN, value=UNKNOWN):
        name = os.urandom(16).hex()
        relative = os.path.join(name[:2], name[2:] + ".val")
        return relative, os.path.join(self._directory, relative)

    def _write(self, full_path, iterator, mode, encoding=None):
        if not isinstance(iterator, io.BytesIO):
            return super()._write(full_path, iterator, mode, encoding)
        data = iterator.getvalue()
        try:
            writer = open(full_path, mode)
        except FileNotFoundError:            # its directory is not made yet (or was deleted)
            return super()._write(full_path, (data,), mode, encoding)
        with writer:
            writer.write(data)
        return len(data)

    def remove(self, file_path):
        if file_path.count(os.sep) != 1:     # Disk's two-level layout
            return super().remove(file_path)
        with contextlib.suppress(OSError):   # (another process removed it first)
            os.remove(os.path.join(self._directory, file_path))


class _HealingCache:
    """One diskcache.Cache that rebuilds itself when its database breaks. The broken directory is
    kept aside as <name>.broken (replacing an older one) or deleted. An operation that fails
    otherwise (disk full, lock timeout) is logged and answers `default`."""

    def __init__(self, directory: Path, keep_broken: bool, **settings: Any) -> None:
        self._dir, self._keep_broken, self._settings = directory, keep_broken, settings
        self._lock = threading.Lock()
        try:
            self._cache = self._open()
        except sqlite3.DatabaseError as error:
            self._discard(error)
            self._cache = self._open()

    def _open(self) -> Cache:
        _private_dir(self._dir)
        return Cache(str(self._dir), **self._settings)

    def _discard(self, error: object) -> None:
        log.warning("cache %s is broken (%s); starting it afresh", self._dir, error)
        if self._keep_broken:
            aside = self._dir.with_name(self._dir.name + ".broken")
            shutil.rmtree(aside, ignore_errors=True)
            if self._dir.exists():
                os.replace(self._dir, aside)
        else:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _rebuild(self, broken: Cache, error: object) -> Cache:
        with self._lock:
            if self._cache is broken:            # else another thread rebuilt it already
                try:
                    self._discard(error)
                    self._cache = self._open()
                except (OSError, sqlite3.Error) as e:
                    log.warning("cannot rebuild cache %s: %s", self._dir, e)
                broken.close()
            return self._cache

    def run(self, op: Callable[[Cache], T], default: T) -> T:
        """op(cache), rebuilding the cache and retrying once when its database is broken."""
        cache = self._cache
        for _ in range(2):
            try:
                if (self._dir / "cache.db").exists():
                    return op(cache)
                error: object = "its database was deleted"
            except sqlite3.DatabaseError as e:
                error = e
            except (OSError, Timeout) as e:
                log.warning("cache %s: %s", self._dir, e)
                return default
            cache = self._rebuild(cache, error)
        return default

    def close(self) -> None:
        self._cache.close()


STAT_KEYS = ("hits", "misses", "hit_bytes", "miss_bytes")
STATS_FLUSH_SECONDS = 2.0    # how often a serving process adds its lookups to the stored totals


class Store:
    def __init__(self, directory: Path, chunk_limit_bytes: int = 2 * 1024**3) -> None:
        self.directory = Path(directory)
        self.chunk_limit = chunk_limit_bytes
        _private_dir(self.directory)
        self._meta = _HealingCache(self.directory / "meta", keep_broken=True, eviction_policy="none")
        # every chunk in its own file (min size 0) so the volume counts exactly the stored bytes;
        # evict one chunk per put (cull_limit=1) so that eviction follows recency exactly
        self._chunks = _HealingCache(
            self.directory / "chunks", keep_broken=False, eviction_policy="least-recently-used",
            size_limit=chunk_limit_bytes, cull_limit=1, disk_min_file_size=0, disk=ChunkFiles)
        self._stats_lock = threading.Lock()
        self._pending = dict.fromkeys(STAT_KEYS, 0)   # lookups not yet added to the stored totals
        self._flushed = time.monotonic()

    # ---- meta ----

    def _get(self, key: tuple[Any, ...]) -> Any:
        return self._meta.run(lambda c: c.get(key), None)

    def _set(self, key: tuple[Any, ...], value: Any) -> None:
        self._meta.run(lambda c: c.set(key, value), None)

    def dc_for(self, file_key: str) -> int | None:
        return self._get(("dc", file_key))

    def remember_dc(self, file_key: str, dc: int) -> None:
        self._set(("dc", file_key), dc)

    def dc_auth(self, dc: int) -> bytes | None:
        """The auth key DC `dc` accepted after importAuthorization (a secret)."""
        return self._get(("auth", dc))

    def remember_dc_auth(self, dc: int, key: bytes) -> None:
        self._set(("auth", dc), bytes(key))

    def forget_dc_auth(self, dc: int) -> None:
        self._meta.run(lambda c: c.delete(("auth", dc)), False)

    # ---- accounts ----

    def bind_account(self, account_id: int) -> None:
        """The account this state directory is logged in as (the main one), known after login: its
        DC authorisations are the store's own (dc_auth). Nothing to do here; a store shared through
        Redis keeps that account's keys, listings and flood deadlines under its id."""

    def for_account(self, account_id: int) -> "AccountView":
        """This store as a helper account sees it (tgdav/telegram/accounts.py): the DC map, listings
        and chunks are everyone's; the auth keys its DCs accepted are its own (secrets, never used by
        another account), and so are its flood deadlines shared between replicas (flood_board)."""
        return AccountView(self, account_id)

    def flood_board(self, account_id: int | None = None):
        """Flood deadlines shared with other replicas (cache/shared.py's FloodBoard) of the bound
        account (or `account_id`); None: no replicas to share them with."""
        return None

    def shared_state(self) -> dict:
        """Whether the state shared between replicas answers (the status page); {}: none is shared."""
        return {}

    def _account_auth(self, account_id: int, dc: int) -> bytes | None:
        return self._get(("auth", int(account_id), int(dc)))

    def _remember_account_auth(self, account_id: int, dc: int, key: bytes) -> None:
        self._set(("auth", int(account_id), int(dc)), bytes(key))

    def _forget_account_auth(self, account_id: int, dc: int) -> None:
        self._meta.run(lambda c: c.delete(("auth", int(account_id), int(dc))), False)

    def listing(self, key: Any) -> Any:
        return self._get(("listing", key))

    def remember_listing(self, key: Any, value: Any) -> None:
        self._set(("listing", key), value)

    def chunk_index(self, file_key: str) -> list[tuple[int, int]]:
        """(offset, length) of the chunks stored for a file, as last remembered."""
        return self._get(("chunks", file_key)) or []

    def remember_chunk_index(self, file_key: str, chunks: list[tuple[int, int]]) -> None:
        self._set(("chunks", file_key), list(chunks))

    # ---- chunks ----

    @staticmethod
    def _chunk_key(file_key: str, offset: int, size: int) -> str:
        return f"{file_key}@{offset}+{size}"

    def chunk(self, file_key: str, offset: int, size: int) -> bytes | None:
        """The bytes stored for part (offset, size) of the file, and mark them recently used."""
        data = self._chunks.run(lambda c: c.get(self._chunk_key(file_key, offset, size)), None)
        with self._stats_lock:
            if data is None:
                self._pending["misses"] += 1
                self._pending["miss_bytes"] += size
            else:
                self._pending["hits"] += 1
                self._pending["hit_bytes"] += len(data)
            due = time.monotonic() - self._flushed >= STATS_FLUSH_SECONDS
        if due:
            self._flush_stats()
        return data

    def _flush_stats(self) -> dict[str, int]:
        """Add the pending counts to the totals kept in the store (so `tgdav cache stats`, another
        process, sees what a running serve counted); returns the totals."""
        with self._stats_lock:
            pending, self._pending = self._pending, dict.fromkeys(STAT_KEYS, 0)
            self._flushed = time.monotonic()

            def add(c: Cache) -> dict[str, int]:
                with c.transact():
                    totals = dict(dict.fromkeys(STAT_KEYS, 0), **(c.get(("stats",)) or {}))
                    totals = {k: totals[k] + pending[k] for k in STAT_KEYS}
                    if any(pending.values()):
                        c.set(("stats",), totals)
                    return totals
            return self._meta.run(add, None) or pending

    def put_chunk(self, file_key: str, offset: int, size: int, data: bytes) -> None:
        """Store a part's bytes (short at the end of the file: stored as is), evicting the least
        recently used chunks until the cache is within its limit."""
        def put(c: Cache) -> None:
            c.set(self._chunk_key(file_key, offset, size), bytes(data))
            if c.volume() > self.chunk_limit:        # one eviction was not enough (a bigger chunk)
                c.cull()
        self._chunks.run(put, None)

    def chunk_stats(self) -> dict[str, int]:
        """count and bytes (disk used, index included: what the limit bounds) of the chunk cache,
        its limit, and its hits and misses (lookups and bytes) since it was made or cleared, by
        every process that used it: the status page and `tgdav cache stats` say the same."""
        count, volume = self._chunks.run(lambda c: (len(c), c.volume()), (0, 0))
        return {"count": count, "bytes": volume, "limit": self.chunk_limit, **self._flush_stats()}

    def clear_chunks(self) -> None:
        self._chunks.run(lambda c: c.clear(), 0)
        with self._stats_lock:
            self._pending = dict.fromkeys(STAT_KEYS, 0)
        self._meta.run(lambda c: c.delete(("stats",)), False)

        def forget_indexes(c: Cache) -> None:
            for key in list(c.iterkeys()):
                if isinstance(key, tuple) and key[:1] == ("chunks",):
                    c.delete(key)
        self._meta.run(forget_indexes, None)

    def close(self) -> None:
        self._flush_stats()
        self._meta.close()
        self._chunks.close()


class AccountView:
    """Store.for_account(): a helper account's view of a store. Everything but its own DC
    authorisations and flood board is the store's."""

    def __init__(self, store: Store, account_id: int) -> None:
        self._store = store
        self.account_id = int(account_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def dc_auth(self, dc: int) -> bytes | None:
        return self._store._account_auth(self.account_id, dc)

    def remember_dc_auth(self, dc: int, key: bytes) -> None:
        self._store._remember_account_auth(self.account_id, dc, key)

    def forget_dc_auth(self, dc: int) -> None:
        self._store._forget_account_auth(self.account_id, dc)

    def flood_board(self):
        return self._store.flood_board(self.account_id)
