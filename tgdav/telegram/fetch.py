"""Fetching one part of one file: which DC, which file reference, and the explicit policy for
Telegram's answers (no recursive retries):

- FILE_MIGRATE_X: the file lives on DC X; remember it persistently (store.remember_dc) and ask X.
  While a file's DC is unknown, only one request per file goes out (the probe); the others wait for
  its answer, so a file costs one FILE_MIGRATE in its lifetime, and none after a restart.
- FILE_REFERENCE_EXPIRED / _INVALID: refetch the message once (single flight per file), continue
  with the new reference; parts already in flight retry with it.
- FLOOD_WAIT and dead connections are the pool's business; RetryLater / UpstreamUnavailable pass up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from telethon import errors, functions, types

from tgdav.errors import NotFound, RetryLater, UpstreamUnavailable
from tgdav.model import Location

log = logging.getLogger("tgdav.fetch")

Refresh = Callable[[Location], Awaitable[Location]]


def input_location(loc: Location, file_reference: bytes):
    if loc.kind == "photo":
        return types.InputPhotoFileLocation(id=loc.id, access_hash=loc.access_hash,
                                            file_reference=file_reference, thumb_size=loc.thumb_size)
    return types.InputDocumentFileLocation(id=loc.id, access_hash=loc.access_hash,
                                           file_reference=file_reference, thumb_size="")


class FileFetcher:
    """fetch(location, offset, limit) -> bytes, for parts that obey getFile's rules (see plan.py)."""

    def __init__(self, pool, store, refresh: Refresh) -> None:
        self._pool = pool
        self._store = store
        self._refresh = refresh
        self._references: dict[str, bytes] = {}          # newest reference per file, this process
        self._refreshing: dict[str, asyncio.Lock] = {}
        self._probes: dict[str, asyncio.Future] = {}      # files whose DC is being found out
        self._announced: set[str] = set()

    async def fetch(self, loc: Location, offset: int, limit: int) -> bytes:
        key = loc.file_key
        dc = await self._dc_for(loc)
        probe = None
        if dc is None:    # unknown file: this request is the probe, the others wait for it
            probe = self._probes[key] = asyncio.get_running_loop().create_future()
            dc = loc.dc_id
        try:
            data = await self._fetch_on(loc, dc, offset, limit, probe is not None)
        except (UpstreamUnavailable, RetryLater, NotFound) as e:
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
            dc = self._store.dc_for(key)
            if dc is not None:
                if key not in self._announced:
                    self._announced.add(key)
                    log.info("file %s: using DC %d (known)", key, dc)
                return dc
            probe = self._probes.get(key)
            if probe is None:
                return None
            await asyncio.shield(probe)

    async def _fetch_on(self, loc: Location, dc: int, offset: int, limit: int, probing: bool) -> bytes:
        key = loc.file_key
        migrated = refreshed = False
        while True:
            reference = self._references.get(key, loc.file_reference)
            request = functions.upload.GetFileRequest(input_location(loc, reference), offset, limit)
            try:
                result = await self._pool.invoke(dc, request)
            except errors.FileMigrateError as e:
                if migrated:
                    raise UpstreamUnavailable(f"file {key}: Telegram keeps moving it "
                                              f"(DC {dc} -> DC {e.new_dc})") from None
                migrated = True
                log.info("file %s lives on DC %d (migrated from DC %d)", key, e.new_dc, dc)
                dc = e.new_dc
                continue
            except (errors.FileReferenceExpiredError, errors.FileReferenceInvalidError):
                if refreshed:
                    raise UpstreamUnavailable(f"file {key}: Telegram refuses its fresh file "
                                              "reference; try again later") from None
                refreshed = True
                await self._refresh_reference(loc, reference)
                continue
            except (errors.FileIdInvalidError, errors.LocationInvalidError,
                    errors.ChannelPrivateError, errors.ChannelInvalidError) as e:
                raise NotFound(f"file {key} is no longer available: {e.message}") from None
            except errors.RPCError as e:
                raise UpstreamUnavailable(f"Telegram refused part {offset}+{limit} of file {key}: "
                                          f"{e.message}") from None
            if probing or migrated:
                self._store.remember_dc(key, dc)
                self._announced.add(key)
                if not migrated:
                    log.info("file %s lives on DC %d", key, dc)
            if not isinstance(result, types.upload.File):
                raise UpstreamUnavailable(f"file {key}: unexpected answer {type(result).__name__}")
            return result.bytes

    async def _refresh_reference(self, loc: Location, stale: bytes) -> None:
        key = loc.file_key
        async with self._refreshing.setdefault(key, asyncio.Lock()):
            if self._references.get(key, loc.file_reference) != stale:
                return     # another part refreshed it while we waited
            fresh = await self._refresh(loc)
            self._references[key] = fresh.file_reference
            log.info("file %s: file reference refreshed", key)
