"""The janitor: tgdav's own leftovers in Telegram, found and deleted after a grace period.

A write that is cut short leaves messages no folder shows: the pieces of a big upload when tgdav is
killed before its last piece is sent, or the old version of a file when tgdav stops between sending
the new one and deleting the old (DESIGN.md, promise 2: they are never visible, but they stay in the
channel for everyone reading it in a Telegram app). The janitor looks at every writable channel at
start and every `interval` seconds, reads its whole history again (catalog.reread, so edits and
deletions made elsewhere count), has the writer finish what a journal left half done and roll back
copies never committed whose hold is older than `grace` (writer.finish, tree.py), and deletes what
`leftovers` names.

The rule (pure, `leftovers`), built on the tree's own (tree.claims: the one rule for which message
owns a path, so the janitor never re-derives what the tree shows):
- only messages this account posted (Telegram's `out`) with a valid tag whose poster the tree
  trusts; never untagged posts, never other posters' messages, never folder markers or journals;
- a piece of a set that is not complete (no last piece, or a piece missing);
- a version of a path ranked below the one the path shows (a superseded claim);
- and only when the message, and for a piece every piece of its set, is older than `grace` seconds
  (edit date, else post date) and its set is not an upload running in this process: another
  replica's upload under way keeps posting pieces, so its set stays younger than the grace period.
Deleted messages are counted (metrics: tgdav_leftovers_deleted_total) and shown on the status page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable

from tgdav.telegram import tree

log = logging.getLogger("tgdav.janitor")


def leftovers(records: Iterable[tree.Record], now: float, grace: float, running: set[str] = frozenset(),
              trusted: tree.Trusted = None) -> dict[str, list[int]]:
    """{"pieces": [...], "superseded": [...]}: message ids of this account's leftovers (see above)."""
    records = list(records)
    where = tree.placed(records, trusted)          # trusted, validly tagged messages
    found: dict[str, list[int]] = {"pieces": [], "superseded": []}
    sets: dict[str, list[tree.Record]] = {}
    for r in records:
        if r.message_id in where and r.tag.kind == "piece":
            sets.setdefault(r.tag.set_id, []).append(r)
    claimed, _ = tree.claims(records, trusted=trusted)
    in_claims = {mid for ranked in claimed.values() for c in ranked for mid in c.message_ids}
    for set_id, pieces in sets.items():
        if set_id in running or any(r.message_id in in_claims for r in pieces):
            continue                               # complete (shown or superseded: see below)
        if all(r.own and now - r.edited > grace for r in pieces):
            found["pieces"] += [r.message_id for r in pieces]
    for ranked in claimed.values():
        for c in ranked[1:]:
            if not c.tagged:
                continue
            mine = [r for r in records if r.message_id in c.message_ids]
            if any(r.tag is not None and r.tag.kind == "piece" and r.tag.set_id in running for r in mine):
                continue
            if mine and all(r.own and now - r.edited > grace for r in mine):
                found["superseded"] += list(c.message_ids)
    return found


class Janitor:
    """Runs `leftovers` over every writable channel on the bridge's loop (start() at start, then
    every `interval` seconds). `writer` deletes (delete_leftovers), finishes half-done changes
    (finish) and knows the uploads running (running_sets)."""

    def __init__(self, catalog, writer, *, grace: float, interval: float, metrics=None,
                 clock: Callable[[], float] = time.time) -> None:
        self._catalog, self._writer = catalog, writer
        self.grace, self.interval = grace, interval
        self._metrics = metrics
        self._clock = clock
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tgdav-janitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as e:      # Telegram away, a flood: the next look tries again
                log.warning("looking for leftovers failed: %s", e)
            await asyncio.sleep(self.interval)

    async def sweep(self) -> int:
        """One look at every writable channel; the number of messages deleted."""
        deleted = 0
        for folder in await self._catalog.folders():
            if not folder.writable:
                continue
            await self._catalog.reread(folder)
            await self._writer.finish(folder, self._clock() - self.grace)   # half-done journals, old holds
            records = await self._catalog.records(folder)
            trusted = getattr(self._catalog, "trusted", None)
            found = leftovers(records, self._clock(), self.grace, set(self._writer.running_sets()),
                              trusted(folder) if trusted is not None else None)
            for kind, ids in found.items():
                if not ids:
                    continue
                await self._writer.delete_leftovers(folder, ids)
                log.info("deleted %d leftover messages (%s) in %s", len(ids), kind, folder.name)
                deleted += len(ids)
                if self._metrics is not None:
                    self._metrics.leftovers_deleted(kind, len(ids))
        if self._metrics is not None:
            self._metrics.janitor_swept()
        return deleted
