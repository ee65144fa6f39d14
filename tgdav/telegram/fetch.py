"""Fetching one part of one file: which DC, which file reference, and the explicit policy for
Telegram's answers (no recursive retries). Errors are parsed once into an RpcErrorRecord:

- FILE_MIGRATE_X: the file lives on DC X; remember it persistently (store.remember_dc) and ask X.
  While a file's DC is unknown, only one request per file goes out (the probe); the others wait for
  its answer, so a file costs one FILE_MIGRATE in its lifetime, and none after a restart.
- FILE_REFERENCE_EXPIRED / _INVALID: refetch the message once (single flight per file), continue
  with the new reference; parts already in flight retry with it.
- anything else: telegram/rpc.py's table (gone -> NotFound, flood -> RetryLater, ...). FLOOD_WAIT
  on getFile and dead connections are the pool's business.

The file -> DC map is read from the store once per file and kept in memory; writes go to a worker
thread, so no store call blocks the loop every stream shares.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from tgdav.telegram.mtproto import functions, types

from tgdav.errors import ConnectionsLost, RpcErrorRecord, TgdavError, UpstreamUnavailable
from tgdav.model import Location
from tgdav.plan import MIB, part_cap
from tgdav.telegram import rpc

log = logging.getLogger("tgdav.fetch")

Refresh = Callable[[Location], Awaitable[Location]]
REFERENCE_ERRORS = frozenset({"FILE_REFERENCE_EXPIRED", "FILE_REFERENCE_INVALID"})
# the errors getFile handles itself: rpc.call answers them (with the record) instead of raising
HANDLED = dict.fromkeys(("FILE_MIGRATE", *REFERENCE_ERRORS), rpc.ANSWER)
SMALLEST_SPLIT = 16 * 1024      # a part that keeps losing its connection is asked in halves down to this
PART_SECONDS = 2.0              # a part should arrive within this at the DC's measured speed
REGROW_AFTER = 16               # parts that arrive whole before a DC's failure cap doubles again


def input_location(loc: Location, file_reference: bytes):
    if loc.kind == "photo":
        return types.InputPhotoFileLocation(id=loc.id, access_hash=loc.access_hash,
                                            file_reference=file_reference, thumb_size=loc.thumb_size)
    return types.InputDocumentFileLocation(id=loc.id, access_hash=loc.access_hash,
                                           file_reference=file_reference, thumb_size="")


class FileFetcher:
    """fetch(location, offset, limit) -> bytes, for parts that obey getFile's rules (see plan.py)."""

    def __init__(self, pool, store, refresh: Refresh, metrics=None) -> None:
        self._pool = pool
        self._store = store
        self._refresh = refresh
        self._metrics = metrics
        self._dcs: dict[str, int | None] = {}             # file -> DC, as far as known here
        self._references: dict[str, bytes] = {}          # newest reference per file, this process
        self._refreshing: dict[str, asyncio.Lock] = {}
        self._probes: dict[str, asyncio.Future] = {}      # files whose DC is being found out
        self._background: set[asyncio.Task] = set()
        self._failure_cap: dict[int, list[int]] = {}      # DC -> [largest part to ask, successes since]

    def part_limit(self, loc: Location) -> int:
        """The largest part worth asking for this file now: what one connection to its DC delivers
        in PART_SECONDS at the measured speed, and no bigger than parts that lately lost their
        connections (halved on each such loss, doubled again after REGROW_AFTER whole ones)."""
        dc = self._dcs.get(loc.file_key) or loc.dc_id
        cap = self._failure_cap.get(dc, [MIB])[0]
        return min(cap, part_cap(self._pool.speed(dc), PART_SECONDS, SMALLEST_SPLIT))

    def _part_arrived(self, dc: int, limit: int) -> None:
        state = self._failure_cap.get(dc)
        if state is not None and limit >= state[0]:
            state[1] += 1
            if state[1] >= REGROW_AFTER:
                state[0], state[1] = min(MIB, state[0] * 2), 0
                if state[0] == MIB:
                    del self._failure_cap[dc]

    def known_dc(self, file_key: str) -> int | None:
        """The DC this fetcher knows holds the file (None while unknown); for telegram/accounts.py."""
        return self._dcs.get(file_key)

    async def fetch(self, loc: Location, offset: int, limit: int, *, urgent: bool = False,
                    interactive: bool = False) -> bytes:
        """The bytes of part (offset, limit). A part whose connections keep failing under it (cut
        after N bytes, silent) is asked for in two halves: what arrives is kept. urgent and
        interactive are the pool's priorities (pool.py)."""
        priority = {"urgent": urgent, "interactive": interactive}
        try:
            return await self._fetch(loc, offset, limit, priority)
        except ConnectionsLost:
            if limit < 2 * SMALLEST_SPLIT:
                raise
            half = limit // 2
            dc = self._dcs.get(loc.file_key) or loc.dc_id
            state = self._failure_cap.setdefault(dc, [MIB, 0])
            state[0], state[1] = min(state[0], half), 0
            log.info("file %s: part %d+%d keeps losing its connection; asking in halves",
                     loc.file_key, offset, limit)
            first = await self.fetch(loc, offset, half, **priority)
            if len(first) < half:         # the end of the file
                return first
            return first + await self.fetch(loc, offset + half, half, **priority)

    async def _fetch(self, loc: Location, offset: int, limit: int, priority: dict) -> bytes:
        key = loc.file_key
        dc = await self._dc_for(loc)
        probe = None
        if dc is None:    # unknown file: this request is the probe, the others wait for it
            probe = self._probes[key] = asyncio.get_running_loop().create_future()
            dc = loc.dc_id
        try:
            data = await self._fetch_on(loc, dc, offset, limit, probe is not None, priority)
        except TgdavError as e:
            if probe is not None and not probe.done():
                probe.set_exception(e)     # the parts waiting on this probe fail with it, at once
                probe.exception()          # (retrieved: no warning when nobody was waiting)
            raise
        finally:
            if probe is not None:
                self._probes.pop(key, None)
                if not probe.done():
                    probe.set_result(None)
        return data

    async def _dc_for(self, loc: Location) -> int | None:
        key = loc.file_key
        while True:
            if key not in self._dcs:
                dc = self._dcs[key] = await asyncio.to_thread(self._store.dc_for, key)
                if dc is not None:
                    log.info("file %s: using DC %d (known)", key, dc)
            dc = self._dcs.get(key)
            if dc is not None:
                return dc
            probe = self._probes.get(key)
            if probe is None:
                return None
            await asyncio.shield(probe)

    def _remember_dc(self, key: str, dc: int) -> None:
        if self._dcs.get(key) == dc:
            return
        self._dcs[key] = dc
        task = asyncio.ensure_future(asyncio.to_thread(self._store.remember_dc, key, dc))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _fetch_on(self, loc: Location, dc: int, offset: int, limit: int, probing: bool,
                        priority: dict) -> bytes:
        key = loc.file_key
        migrated = refreshed = False
        while True:
            reference = self._references.get(key, loc.file_reference)
            request = functions.upload.GetFileRequest(input_location(loc, reference), offset, limit)
            started = asyncio.get_running_loop().time()
            what = f"reading part {offset}+{limit} of file {key}"
            seen = None if self._metrics is None else lambda r, dc=dc: self._metrics.getfile_failed(dc, r.type)
            result = await rpc.call(lambda r, dc=dc: self._pool.invoke(dc, r, **priority), request, what,
                                    HANDLED, seen=seen)
            if isinstance(result, RpcErrorRecord):
                record = result
                if record.type == "FILE_MIGRATE" and record.argument:
                    if migrated:
                        raise UpstreamUnavailable(f"file {key}: Telegram keeps moving it "
                                                  f"(DC {dc} -> DC {record.argument})") from None
                    migrated = True
                    log.info("file %s lives on DC %d (migrated from DC %d)", key, record.argument, dc)
                    if self._metrics is not None:
                        self._metrics.file_migrate(dc, record.argument)
                    dc = record.argument
                    continue
                if record.type in REFERENCE_ERRORS:
                    if refreshed:
                        raise UpstreamUnavailable(f"file {key}: Telegram refuses its fresh file "
                                                  "reference; try again later") from None
                    refreshed = True
                    await self._refresh_reference(loc, reference)
                    continue
                raise rpc.error_for(record, what)       # FILE_MIGRATE without a DC
            if probing or migrated:
                self._remember_dc(key, dc)
                if not migrated:
                    log.info("file %s lives on DC %d", key, dc)
            if not isinstance(result, types.upload.File):
                raise UpstreamUnavailable(f"file {key}: unexpected answer {type(result).__name__}")
            if self._metrics is not None:
                self._metrics.getfile_done(dc, len(result.bytes), asyncio.get_running_loop().time() - started)
            self._part_arrived(dc, limit)
            return result.bytes

    async def _refresh_reference(self, loc: Location, stale: bytes) -> None:
        key = loc.file_key
        async with self._refreshing.setdefault(key, asyncio.Lock()):
            if self._references.get(key, loc.file_reference) != stale:
                return     # another part refreshed it while we waited
            fresh = await rpc.call(self._refresh, loc, f"refreshing the file reference of {key}")
            self._references[key] = fresh.file_reference
            if self._metrics is not None:
                self._metrics.reference_refresh()
            log.info("file %s: file reference refreshed", key)
