"""Writes: uploads, folders, deletes, renames, moves and copies, as Telegram messages.

The tree lives in the messages' tag lines (tgdav/telegram/tree.py); this module sends, edits and
deletes those messages and tells the catalog what it did, so the next listing shows it at once.

- Upload: the bytes go up with upload.StreamUpload over the pool's home-DC senders; each finished
  piece is sent with messages.sendMedia(inputMediaUploadedDocument: file name attribute, MIME type
  from the name or the first bytes, and for a fast-start MP4 its duration and size, so Telegram apps
  stream it) on the main client. Only after the last piece is sent is the old version at that
  path deleted (channels.deleteMessages): until then readers see the old file, from then on the new
  one (the newest claim wins). An upload that fails or is abandoned deletes the pieces it already
  sent (none of which were ever visible) and leaves the old version alone. A PUT body passes
  SyncUpload (WSGI thread: bytes into parts, across the bridge) -> Upload (loop: pieces into
  messages) -> upload.StreamUpload (the stream cut into pieces) -> upload.PieceUpload (one piece's
  parts in flight and its spool).
- Empty files and folders are text messages ("#tgdav empty ..." / "#tgdav dir ...").
- Which message owns a path is tree.claims' rule, the one the tree is shown by: an overwrite deletes
  only the claims ranked below the message it sent (tree.superseded), never a newer one.
- Writes to one path are serialised (`_locked`): in the process, and across replicas with a short
  Redis lock when `[state] redis` is set (Redis unreachable or the lock held too long: 503 with
  Retry-After, never a hang). So concurrent PUTs leave exactly one version, the last to commit.
- Rename/move inside a channel edits tag lines (messages.editMessage): no bytes move. A file's one
  deciding message (the file, or the last of its pieces) is edited last; a folder moves with one
  journal post first (tree.py), then its messages are edited, then the journal goes; whatever is
  left after a failure is finished by the next write in that channel. Every caption a change makes
  is checked against Telegram's limit before anything is sent. Copy, and move across channels, send
  the same document again (inputMediaDocument), never re-uploading; a move then deletes the original.
- Changes of more messages than one request takes are decided by one journal message (tree.py): a
  folder DELETE of more than 100 messages posts `#tgdav delete` first; a folder copy (any channel,
  and so a folder move across channels) posts `#tgdav hold` first and shows the copies with one edit
  of it, or rolls them back (`_roll_back`; a hold left behind goes before any write under it,
  `_clear_holds`, or with the janitor, `finish`).
- A channel the account may not post in: Forbidden, with the reason.

Everything here runs on the bridge's loop; SyncWriter is what WSGI threads call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import secrets
import time
from dataclasses import replace

from tgdav.telegram.mtproto import functions, types

from tgdav.errors import (Conflict, DestinationExists, Forbidden, NotFound, RetryLater, RpcErrorRecord,
                          TgdavError, UpstreamUnavailable)
from tgdav.model import FileEntry, Folder, Location
from tgdav.telegram import rpc, tree
from tgdav.telegram.upload import MAX_PARTS, PART, PieceUpload, StreamUpload

log = logging.getLogger("tgdav.writer")

DELETE_BATCH = 100      # channels.deleteMessages takes up to 100 ids
ABANDONED_PIECES = 24 * 3600   # seconds after which unfinished pieces of an overwritten path go
PART_RESENDS = 3        # sendMedia answered FILE_PART_X_MISSING: resend and try again this many times
LOCK_WAIT = 10.0        # seconds a write waits for another replica's lock on its path, then 503
LOCK_HOLD = 120.0       # seconds a Redis path lock lives if its replica dies holding it
LOST_PART = {"FILE_PART_MISSING": rpc.ANSWER}    # sendMedia: the sender resends part X itself


_MAGIC = ((b"%PDF-", "application/pdf"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
          (b"GIF8", "image/gif"), (b"PK\x03\x04", "application/zip"), (b"ID3", "audio/mpeg"),
          (b"OggS", "audio/ogg"), (b"fLaC", "audio/flac"), (b"\x1aE\xdf\xa3", "video/x-matroska"),
          (b"7z\xbc\xaf'\x1c", "application/x-7z-compressed"), (b"\x1f\x8b", "application/gzip"))


def mime_for(name: str, head: bytes = b"") -> str:
    """From the name; when the name says nothing, from the first bytes (cheap magic numbers)."""
    guessed = mimetypes.guess_type(name)[0]
    if guessed:
        return guessed
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"AVI ", b"WEBP"):
        return {b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo", b"WEBP": "image/webp"}[head[8:12]]
    return next((mime for magic, mime in _MAGIC if head.startswith(magic)), "application/octet-stream")


async def max_parts_for(client, premium: bool) -> int:
    """upload_max_fileparts_default / _premium from help.getAppConfig; Telegram's defaults if absent."""
    key = "upload_max_fileparts_premium" if premium else "upload_max_fileparts_default"
    try:
        config = await rpc.call(client, functions.help.GetAppConfigRequest(hash=0), "reading help.getAppConfig")
        for item in getattr(getattr(config, "config", None), "value", []) or []:
            if item.key == key and isinstance(item.value, types.JsonNumber) and item.value.value >= 1:
                return int(item.value.value)
    except TgdavError as e:
        log.debug("help.getAppConfig failed (%s); using the default part limit", e)
    return MAX_PARTS * 2 if premium else MAX_PARTS


def _messages(updates) -> list[tuple[object, int | None]]:
    """The new or edited messages in a method's Updates answer, each with its update's pts."""
    found = []
    for u in getattr(updates, "updates", None) or []:
        if isinstance(u, (types.UpdateNewChannelMessage, types.UpdateEditChannelMessage,
                          types.UpdateNewMessage, types.UpdateEditMessage)):
            found.append((u.message, getattr(u, "pts", None)))
    return found


class TelegramClock:
    """How far Telegram's clock is ahead of ours, at least: every message it dates (whole seconds,
    rounded down) was made before we had its answer, so (its date - our time on the answer) is a
    lower bound that only grows. `wait_past(seconds)` sleeps until Telegram's clock has surely left
    the newest of those seconds, however far our clock is off: at most about a second after we saw
    it dated."""

    def __init__(self) -> None:
        self.ahead = float("-inf")

    def saw(self, date) -> None:
        """A date Telegram gave (a datetime or a timestamp), read just now."""
        if date is not None:
            stamp = date.timestamp() if hasattr(date, "timestamp") else float(date)
            self.ahead = max(self.ahead, stamp - time.time())

    async def wait_past(self, seconds) -> float | None:
        """Returns the newest of `seconds` (None: there were none, nothing to wait for)."""
        second = max(seconds, default=None)
        if second is not None:
            self.saw(second)               # it is dated, so Telegram's clock has reached it
            await asyncio.sleep(max(0.0, second + 1.02 - self.ahead - time.time()))
        return second


class Upload:
    """One PUT, on the loop. Owns what its pieces become in Telegram: its StreamUpload cuts the
    bytes into pieces, and each finished piece comes to on_piece, which sends it as a message (the
    last one under the path's lock, then the older versions go). commit() ends the stream (an empty
    one is an empty file); abort() deletes the pieces it sent, none of which was ever visible."""

    def __init__(self, writer: "Writer", folder: Folder, path: tuple[str, ...], size: int | None) -> None:
        self.writer, self.folder, self.path = writer, folder, tuple(path)
        self.set_id = secrets.token_hex(4)     # ties its pieces together (tree.Tag); the janitor spares it
        self.sent: list[int] = []              # message ids of pieces already sent (not yet visible)
        self.done = False
        self.stream = writer.new_stream(self.path[-1], self.on_piece, size)

    async def add_part(self, data: bytes) -> None:
        await self.stream.add_part(data)

    async def commit(self, tail: bytes) -> None:
        try:
            await self.stream.close(tail)
            if not self.sent:           # nothing at all: an empty file
                await self.writer.make_empty(self.folder, self.path)
            self.done = True
        finally:
            if self.done:
                self.writer.upload_ended(self)

    async def abort(self) -> None:
        if self.done:
            return
        self.done = True
        self.writer.upload_ended(self)
        await self.stream.abort()
        if self.sent:
            await self.writer.discard(self.folder, self.sent)

    async def on_piece(self, input_file, number: int, piece_size: int, last: bool) -> None:
        """StreamUpload's callback: piece `number` is uploaded; send it as a message."""
        path, name = self.path, self.path[-1]
        if number == 1 and last:
            tag = tree.Tag("file", path)
        else:
            tag = tree.Tag("piece", path, number, number if last else 0, self.set_id)
        attributes = [types.DocumentAttributeFilename(name if tag.kind == "file" else f"{name}.{number:03d}")]
        video = self.stream.video
        if video is not None and tag.kind == "file":    # Telegram apps then stream and seek it
            attributes.append(types.DocumentAttributeVideo(
                duration=video.duration, w=video.width, h=video.height, supports_streaming=True))
        media = types.InputMediaUploadedDocument(
            file=input_file, mime_type=mime_for(name, self.stream.head), force_file=True,
            attributes=attributes)
        piece = self.stream.pieces[number - 1]
        if not last:
            self.sent += await self.writer.send_piece(self.folder, piece, media, tree.compose("", tag))
            return
        async with self.writer.committing(self.folder, path, keep=self.sent):
            self.sent += await self.writer.send_piece(self.folder, piece, media, tree.compose("", tag))


class Writer:
    def __init__(self, client, invoke_home, catalog, *, parallel: int = 8, max_parts: int = MAX_PARTS,
                 allow_new_channels: bool = True, lock_redis: str = "", spool_dir=None) -> None:
        self._client = client
        self._invoke = invoke_home          # request -> answer, on a home-DC sender of the pool
        self._catalog = catalog             # TelegramCatalog
        self.parallel = parallel
        self.max_parts = max_parts
        self.allow_new_channels = allow_new_channels
        self.spool_dir = spool_dir          # where uploads spool their parts (upload.PieceUpload)
        self._active: set[str] = set()      # piece set ids of uploads under way in this process
        self._paths: dict[tuple, list] = {}  # path key -> [asyncio.Lock, users] (see _locked)
        self._lock_redis = lock_redis        # "redis://...": path locks shared by replicas
        self._redis = None
        self._finishing: dict[int, asyncio.Future] = {}   # channel -> its journals' finishing under way
        self._reread: set[int] = set()       # channels read whole again since this process started
        self._committed: dict[tuple, set[int]] = {}   # path key -> the claim this process made last
        self._clock = TelegramClock()        # Telegram's dates, to edit after a journal's second

    # --- one writer per path ----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _locked(self, folder: Folder, *paths: tuple[str, ...]):
        """Hold the write lock of each path and of the folders above it (a PUT into a folder and a
        MOVE of that folder take turns), in the process and across replicas with Redis. Lock order:
        path keys sorted, every in-process lock before the Redis ones. Then copies left uncommitted
        over or below the paths are rolled back (`_clear_holds`)."""
        keys = sorted({(folder.channel_id,) + tree.key(tuple(p)[:n]) for p in paths
                       for n in range(1, len(p) + 1)}, key=repr)
        async with contextlib.AsyncExitStack() as stack:
            for k in keys:
                held = self._paths.setdefault(k, [asyncio.Lock(), 0])
                held[1] += 1
                stack.callback(self._unuse, k)
                await stack.enter_async_context(held[0])
            for k in keys:
                if self._lock_redis:
                    await stack.enter_async_context(self._redis_lock(k))
            await self._clear_holds(folder, paths)
            yield

    async def _clear_holds(self, folder: Folder, paths) -> None:
        """Under the locks of `paths`: a hold over or below one of them is a copy no one is filling
        any more (a copy keeps its path's lock until it commits or rolls back), and it would hide
        what this write sends: it is rolled back first (tree.py), or the write fails."""
        records = await self._catalog.records(folder)
        if not any(r.tag is not None and r.tag.kind == "hold" for r in records):
            return
        trusted = self._trusted(folder)
        hidden = tree.held(records, trusted)
        for hold in tree.journals(records, trusted):
            where = hold.tag.path
            if hold.tag.kind == "hold" and any(where[:len(p)] == tuple(p) or tuple(p)[:len(where)] == where
                                               for p in paths):
                await self._roll_back(folder, hold.message_id, [r.message_id for r in hidden[hold.message_id]],
                                      quiet=False)

    def _unuse(self, k: tuple) -> None:
        held = self._paths.get(k)
        if held is not None:
            held[1] -= 1
            if held[1] <= 0:
                del self._paths[k]

    @contextlib.asynccontextmanager
    async def _redis_lock(self, k: tuple):
        """redis-py's lock on one path key: LOCK_WAIT to get it, LOCK_HOLD before it lapses by itself."""
        import redis
        import redis.asyncio
        if self._redis is None:
            self._redis = redis.asyncio.Redis.from_url(self._lock_redis, socket_timeout=2,
                                                       socket_connect_timeout=2)
        lock = self._redis.lock("tgdav:write:" + repr(k), timeout=LOCK_HOLD, blocking_timeout=LOCK_WAIT)
        try:
            got = await lock.acquire()
        except redis.RedisError as e:
            log.warning("Redis path lock failed: %s", e)
            raise RetryLater(5, "the shared lock store (Redis) is not answering") from None
        if not got:
            raise RetryLater(5, "another replica is writing this path")
        try:
            yield
        finally:
            try:
                await lock.release()
            except redis.RedisError as e:    # lapsed or Redis gone: it expires on its own
                log.warning("Redis path lock release failed: %s", e)

    # --- plumbing ---------------------------------------------------------------------------------
    def _peer(self, folder: Folder):
        return types.InputPeerChannel(folder.channel_id, self._catalog.access_hash(folder))

    def _channel(self, folder: Folder):
        return types.InputChannel(folder.channel_id, self._catalog.access_hash(folder))

    @staticmethod
    def check(folder: Folder) -> None:
        if not folder.writable:
            raise Forbidden(f"channel {folder.name!r} is read-only for this account: posting there "
                            "needs its creator or an admin allowed to post messages")

    async def _call(self, request, what: str, overrides=None):
        return await rpc.call(self._client, request, what, overrides)

    async def _send_text(self, folder: Folder, text: str) -> list:
        updates = await self._call(functions.messages.SendMessageRequest(
            self._peer(folder), text, random_id=secrets.randbits(63), no_webpage=True),
            f"posting in {folder.name}")
        return await self._answered(folder, updates)

    async def _send_media(self, folder: Folder, media, caption: str, overrides=None) -> list:
        updates = await self._call(functions.messages.SendMediaRequest(
            self._peer(folder), media, caption, random_id=secrets.randbits(63)),
            f"posting a file in {folder.name}", overrides)
        if isinstance(updates, RpcErrorRecord):
            return updates
        return await self._answered(folder, updates)

    async def _edit(self, folder: Folder, message_id: int, text: str) -> None:
        updates = await self._call(functions.messages.EditMessageRequest(
            self._peer(folder), message_id, message=text), f"editing message {message_id} in {folder.name}",
            {"MESSAGE_NOT_MODIFIED": rpc.IGNORE})
        if updates is None:         # MESSAGE_NOT_MODIFIED: it already said that
            return
        await self._answered(folder, updates)

    async def _answered(self, folder: Folder, updates) -> list:
        """What a send or an edit answered, into the catalog (with each message's pts, so a late
        update of an older version never undoes it) and Telegram's clock; returns the messages."""
        found = _messages(updates)
        for m, _ in found:
            self._clock.saw(getattr(m, "edit_date", None) or getattr(m, "date", None))
        messages = [m for m, _ in found]
        await self._catalog.apply(folder, messages, {m.id: pts for m, pts in found if pts})
        return messages

    async def _delete_ids(self, folder: Folder, ids, quiet: bool = False) -> None:
        ids = sorted(set(ids))
        try:
            for i in range(0, len(ids), DELETE_BATCH):
                batch = ids[i:i + DELETE_BATCH]
                await self._call(functions.channels.DeleteMessagesRequest(self._channel(folder), batch),
                                 f"deleting messages in {folder.name}")
                await self._catalog.forget(folder, batch)
        except Exception as e:
            if not quiet:
                raise
            log.warning("could not delete messages %s in %s: %s", ids, folder.name, e)

    # --- for the janitor (telegram/janitor.py) ---------------------------------------------------
    def running_sets(self) -> set[str]:
        """Piece set ids of the uploads under way in this process."""
        return set(self._active)

    async def delete_leftovers(self, folder: Folder, ids) -> None:
        await self._delete_ids(folder, ids)

    # --- the tree's rules, as this writer applies them ------------------------------------------
    def _trusted(self, folder: Folder) -> tree.Trusted:
        """Whose tags count in this channel: the catalog's rule (tree.build uses the same)."""
        trusted = getattr(self._catalog, "trusted", None)
        return trusted(folder) if trusted is not None else None

    @staticmethod
    def _must_fit(tag: tree.Tag, text: str = "", media: bool = True) -> None:
        """Telegram's caption limit, checked before anything is sent (tree.fits)."""
        if not tree.fits(tag) or not tree.fits(tag, text, tree.CAPTION_MAX if media else tree.MESSAGE_MAX):
            raise TgdavError(f"the path /{'/'.join(tag.path)} is too long for a Telegram caption "
                             f"({tree.CAPTION_MAX} characters with the tag): use shorter names or fewer folders")

    async def _prepare(self, folder: Folder) -> None:
        """Before a write: the first one in this process reads the channel whole again (a listing kept
        from before a crash may miss edits and deletions made just before it), then any folder move
        or delete left half done is finished."""
        if folder.channel_id not in self._reread and hasattr(self._catalog, "reread_stored"):
            await self._catalog.reread_stored(folder)
            self._reread.add(folder.channel_id)
        await self._finish_journals(folder)

    async def _free(self, folder: Folder, records, trusted, path: tuple[str, ...], source=None) -> None:
        """Under the path's lock: nothing but `source` (the file a MOVE renames) is at `path` (a file
        of any case, or a folder), for a MOVE or COPY with Overwrite: F, whose check WsgiDAV made
        before the lock."""
        own = set(source.message_ids) if isinstance(source, FileEntry) else set()
        taken = [c for c in tree.claimants(records, path, trusted) if not own & set(c.message_ids)]
        if taken or isinstance(await self._catalog.node(folder, path), tree.Dir):
            raise DestinationExists(f"/{'/'.join(path)} exists now (another write landed first) "
                                    "and the request says Overwrite: F")

    async def finish(self, folder: Folder, holds_before: float) -> None:
        """What changes left half done in this channel (a failure, a crash): the moves and deletes
        their journals still promise are done (readers already see them done), and copies whose hold
        was posted before `holds_before` (a time) and never committed are rolled back (no reader ever
        saw them; a write under a hold rolls it back at once, `_locked`). The janitor calls it."""
        await self._finish_journals(folder)
        records = await self._catalog.records(folder)
        for hold in tree.journals(records, self._trusted(folder)):
            if hold.tag.kind == "hold" and hold.date < holds_before:
                try:
                    async with self._locked(folder, hold.tag.path):     # rolls it back
                        pass
                except TgdavError as e:     # nobody sees its copies: the next look tries again
                    log.warning("rolling back an unfinished copy in %s failed: %s", folder.name, e)

    async def _parent_exists(self, folder: Folder, path: tuple[str, ...]) -> None:
        """Under the path's lock: the folder it goes into is still there (not moved or deleted)."""
        if len(path) > 1 and not isinstance(await self._catalog.node(folder, path[:-1]), tree.Dir):
            raise Conflict(f"/{'/'.join(path[:-1])} is no longer a folder (moved or deleted meanwhile)")

    async def _finish_journals(self, folder: Folder) -> None:
        """Folder moves and deletes left half done (a failure or a crash after their journal was
        posted, or the change under way beside this write): edit what the journals still move,
        delete what they deleted, then delete the journals. Readers already see them done. A write
        that comes while they are being finished waits for that first. Before the first edit, wait
        until Telegram's clock has left the newest journal's second (`_past_journals`)."""
        running = self._finishing.get(folder.channel_id)
        if running is not None:
            await asyncio.shield(running)
            return
        async def look():
            records, trusted = await self._catalog.records(folder), self._trusted(folder)
            return records, trusted, [j for j in tree.journals(records, trusted) if j.tag.kind != "hold"]
        records, trusted, moves = await look()
        if not moves:
            return
        done = self._finishing[folder.channel_id] = asyncio.get_running_loop().create_future()
        try:
            waited = None
            for _ in range(3):          # journals posted while it waited are waited for too
                if not any(j.tag.kind == "move" for j in moves):
                    break               # deletions only: no edit to time
                newest = await self._past_journals(records, trusted)
                if newest == waited:
                    break
                waited = newest
                records, trusted, moves = await look()
            else:
                return                  # journals keep coming: the next write finishes them
            if not moves:
                return
            todo = tree.unfinished(records, trusted)
            for r, path in todo:
                if path is not None:
                    await self._edit(folder, r.message_id, tree.compose(r.text, replace(r.tag, path=path)))
            await self._delete_ids(folder, [r.message_id for r, path in todo if path is None])
            await self._delete_ids(folder, [j.message_id for j in moves])
        except Exception as e:      # still done for every reader; the next write tries again
            log.warning("finishing folder moves in %s failed: %s", folder.name, e)
        finally:
            del self._finishing[folder.channel_id]
            done.set_result(None)

    async def _past_journals(self, records, trusted) -> float | None:
        """Before an edit: wait until Telegram's clock has left the second of the newest journal
        (move, delete or copy hold) still in the channel. Dates are whole seconds, and a message
        edited within a journal's second is taken for one the journal applies to (tree._moved):
        moved into the folder a journal replaced or deleted, it would vanish until the journal goes,
        and a crash before that would make the next finisher delete it. Returns that date."""
        return await self._clock.wait_past(j.date for j in tree.journals(records, trusted))

    # --- uploads ----------------------------------------------------------------------------------
    async def begin_upload(self, folder: Folder, path: tuple[str, ...], size: int | None) -> Upload:
        self.check(folder)
        path = tuple(path)
        self._must_fit(tree.upload_tag(path))        # before a byte goes to Telegram
        await self._prepare(folder)
        upload = Upload(self, folder, path, size)
        self._active.add(upload.set_id)
        return upload

    # what an Upload asks of its writer
    def new_stream(self, name: str, on_piece, size: int | None) -> StreamUpload:
        """A StreamUpload over the home-DC senders, with this account's part limit and the spool."""
        return StreamUpload(self._invoke, name, on_piece, size=size, parallel=self.parallel,
                            max_parts=self.max_parts, part_size=PART, spool_dir=self.spool_dir)

    async def send_piece(self, folder: Folder, piece: PieceUpload, media, caption: str) -> list[int]:
        """Send an uploaded piece as a message; its ids. Telegram names the first part it lacks
        (FILE_PART_X_MISSING): that part goes again from the piece's spool, and if another is
        missing after that, every part from it on (they expired together). The spool goes once sent."""
        for attempt in range(PART_RESENDS + 1):
            messages = await self._send_media(folder, media, caption, LOST_PART)
            if not isinstance(messages, RpcErrorRecord):
                break
            which = messages.argument or 0
            if attempt == PART_RESENDS or not await piece.resend(which, and_after=attempt > 0):
                raise UpstreamUnavailable(f"Telegram lost part {which} of {piece.name!r} "
                                          f"({messages}); upload it again")
            log.info("Telegram lost part %d of %r; sent it again", which, piece.name)
        piece.forget()
        return [m.id for m in messages]

    @contextlib.asynccontextmanager
    async def committing(self, folder: Folder, path: tuple[str, ...], keep: list[int]):
        """Around sending the message that decides `path`: its lock held and the folder it goes into
        still there; afterwards every claim ranked below `keep` (the new version's message ids, as
        the list holds them then) is deleted."""
        async with self._locked(folder, path):
            await self._parent_exists(folder, path)
            yield
            await self._replace(folder, path, keep=keep)

    def upload_ended(self, upload: Upload) -> None:
        """Committed or aborted: its pieces are no longer an upload under way."""
        self._active.discard(upload.set_id)

    async def discard(self, folder: Folder, ids) -> None:
        """Delete messages no reader saw (a failed upload's pieces); a failure is only logged (the
        janitor deletes what is left)."""
        await self._delete_ids(folder, ids, quiet=True)

    async def _replace(self, folder: Folder, path: tuple[str, ...], keep) -> None:
        """The new version at `path` is sent (`keep`, its messages; the caller holds the path's
        lock): delete the claims ranked below it (never a newer one) and abandoned pieces there."""
        if self._lock_redis and hasattr(self._catalog, "catch_up"):   # what other replicas sent
            await self._catalog.catch_up(folder)
        records = await self._catalog.records(folder)
        trusted = self._trusted(folder)
        k = (folder.channel_id,) + tree.key(path)
        # what this process committed there before (under this lock, so earlier in time) goes even
        # if it ranks higher: Telegram's dates are whole seconds; with Redis, so does every claim
        # the replicas made (they hold the same lock)
        older = None if self._lock_redis else self._committed.get(k, set())

        def decide() -> list[int]:      # a big channel's claims take tens of ms: not on the loop
            return tree.superseded(records, path, keep, trusted, older) + \
                self._abandoned(records, path, set(keep), trusted)
        old = await asyncio.to_thread(decide)
        self._committed[k] = set(keep)
        if old:
            await self._delete_ids(folder, old, quiet=True)

    def _abandoned(self, records: list, path: tuple[str, ...], keep: set[int], trusted) -> list[int]:
        """Pieces at `path` of an upload that never finished (tgdav stopped mid-way) when they are old
        and not this process's; younger ones may be another upload under way."""
        found, _ = tree.claims(records, trusted=trusted)
        claimed = {mid for ranked in found.values() for c in ranked for mid in c.message_ids}
        where = tree.placed(records, trusted)
        now = time.time()
        return [r.message_id for r in records
                if r.message_id in where and r.tag.kind == "piece" and r.message_id not in claimed
                and r.message_id not in keep and tree.key(where[r.message_id]) == tree.key(path)
                and r.tag.set_id not in self._active and now - r.date > ABANDONED_PIECES]

    async def make_empty(self, folder: Folder, path: tuple[str, ...]) -> None:
        self.check(folder)
        path = tuple(path)
        tag = tree.Tag("empty", path)
        self._must_fit(tag)
        await self._prepare(folder)
        async with self._locked(folder, path):
            await self._parent_exists(folder, path)
            messages = await self._send_text(folder, tag.line())
            await self._replace(folder, path, keep={m.id for m in messages})

    # --- folders ----------------------------------------------------------------------------------
    async def mkdir(self, folder: Folder, path: tuple[str, ...]) -> None:
        self.check(folder)
        path = tuple(path)
        tag = tree.Tag("dir", path)
        self._must_fit(tag)
        await self._prepare(folder)
        async with self._locked(folder, path):
            await self._parent_exists(folder, path)
            await self._send_text(folder, tag.line())

    async def create_channel(self, title: str) -> None:
        if not self.allow_new_channels:
            raise Forbidden("creating channels is switched off ([write] create_channels = false)")
        updates = await self._call(functions.channels.CreateChannelRequest(
            title=title, about="Created by tgdav", broadcast=True), f"creating channel {title!r}")
        chats = [c for c in getattr(updates, "chats", []) if isinstance(c, types.Channel)]
        if chats and hasattr(self._catalog, "add_channel"):    # a PUT right after MKCOL finds it
            await self._catalog.add_channel(chats[0])
        self._catalog.invalidate_folders()

    # --- delete -----------------------------------------------------------------------------------
    async def delete(self, folder: Folder, path: tuple[str, ...]) -> None:
        """Delete the file or folder (with everything in it) at `path`; () deletes nothing."""
        self.check(folder)
        path = tuple(path)
        await self._prepare(folder)
        async with self._locked(folder, path):
            node = await self._catalog.node(folder, path)
            if node is None:
                raise NotFound(f"{'/'.join(path)} does not exist")
            records = await self._catalog.records(folder)
            await self._delete_node(folder, records, node, path)

    async def _delete_node(self, folder: Folder, records, node, path: tuple[str, ...]) -> None:
        """Delete the file or folder `node` at `path` (the caller holds its lock). A folder of more
        messages than one deleteMessages call takes goes with a journal (tree.py): gone for every
        reader at once, whatever happens between the calls."""
        trusted = self._trusted(folder)
        if isinstance(node, tree.Dir):   # everything tagged below it, shown or not
            ids = set([r.message_id for r in tree.below(records, path, trusted)] + node.message_ids())
            journal = tree.Tag("delete", path)
            if len(ids) > DELETE_BATCH and tree.fits(journal, limit=tree.MESSAGE_MAX):
                await self._send_text(folder, journal.line())     # from here on gone, whole
                await self._finish_journals(folder)               # the deletions, then the journal
            else:
                await self._delete_ids(folder, ids)
        else:                            # the file, and superseded versions that would show again
            await self._delete_ids(folder, list(node.message_ids) +
                                   tree.superseded(records, path, node.message_ids, trusted))
        self._committed.pop((folder.channel_id,) + tree.key(path), None)

    # --- move and copy ----------------------------------------------------------------------------
    async def move(self, folder: Folder, path: tuple[str, ...], dest: tuple[str, ...], *,
                   overwrite: bool = True) -> None:
        """Inside one channel, caption edits only, all-or-nothing for readers (tree.py): a file's
        deciding message is edited last; a folder moves with its journal. A file moved onto an
        existing file replaces it as an upload does: the moved message wins the path at once, then
        the old one is deleted. Every new caption is checked before the first edit. `overwrite`
        False (Overwrite: F): a destination taken by then is DestinationExists, nothing changed."""
        self.check(folder)
        path, dest = tuple(path), tuple(dest)
        await self._prepare(folder)
        async with self._locked(folder, path, dest):
            node = await self._catalog.node(folder, path)
            if node is None:
                raise NotFound(f"{'/'.join(path)} does not exist")
            await self._parent_exists(folder, dest)
            records = await self._catalog.records(folder)
            trusted = self._trusted(folder)
            if not overwrite:
                await self._free(folder, records, trusted, dest, node)
            await self._past_journals(records, trusted)      # a journal a write beside it posted
            if isinstance(node, tree.Dir):
                await self._move_folder(folder, records, trusted, path, dest)
            else:
                await self._move_file(folder, records, trusted, node, path, dest)

    async def _move_file(self, folder: Folder, records, trusted, node: FileEntry, path, dest) -> None:
        by_id = {r.message_id: r for r in records}
        where = tree.placed(records, trusted)
        edits = []
        for mid in node.message_ids:        # pieces 1..N: the last one decides, so it goes last
            r = by_id[mid]
            tag = replace(r.tag, path=dest) if mid in where else tree.Tag("file", dest)   # a post gets a tag
            self._must_fit(tag, r.text, media=r.entry is not None)
            edits.append((mid, tree.compose(r.text, tag)))
        garbage = tree.superseded(records, path, node.message_ids, trusted)   # would show again
        # an edit ranks by its date, then its (older) id: within the second of a claim already at
        # `dest` it would rank below it, and that claim would win again if deleting it failed
        await self._clock.wait_past(c.rank[0] for c in tree.claimants(records, dest, trusted))
        for mid, text in edits:
            await self._edit(folder, mid, text)
        if garbage:
            await self._delete_ids(folder, garbage, quiet=True)
        await self._replace(folder, dest, keep=set(node.message_ids))

    async def _move_folder(self, folder: Folder, records, trusted, path, dest) -> None:
        where = tree.placed(records, trusted)
        edits = []
        for r in tree.below(records, path, trusted):    # everything tagged below it, shown or not
            tag = replace(r.tag, path=dest + where[r.message_id][len(path):])
            self._must_fit(tag, r.text, media=r.entry is not None)
            edits.append((r.message_id, tree.compose(r.text, tag)))
        if len(edits) <= 1 and not tree.below(records, dest, trusted):   # one edit is all-or-nothing
            for mid, text in edits:
                await self._edit(folder, mid, text)
            return
        journal = tree.Tag("move", dest, source=path)
        self._must_fit(journal, media=False)
        await self._send_text(folder, journal.line())   # from here on moved (and dest replaced)
        await self._finish_journals(folder)              # edits, deletions, the journal; else the next write

    async def copy(self, src_folder: Folder, entry: FileEntry, dst_folder: Folder,
                   dest: tuple[str, ...], *, overwrite: bool = True) -> None:
        """Send the same file again at `dest` (any channel): no bytes are uploaded. `overwrite`
        False (Overwrite: F): a destination taken by then is DestinationExists, nothing sent."""
        self.check(dst_folder)
        dest = tuple(dest)
        plan = self._copy_plan(entry, dest)          # every caption fits, or nothing is sent
        await self._prepare(dst_folder)
        sent: list[int] = []
        async with self._locked(dst_folder, dest):
            await self._parent_exists(dst_folder, dest)
            if not overwrite:
                await self._free(dst_folder, await self._catalog.records(dst_folder),
                                 self._trusted(dst_folder), dest)
            try:
                await self._send_plan(dst_folder, plan, sent)
            except BaseException:
                if sent:
                    await self._delete_ids(dst_folder, sent, quiet=True)
                raise
            await self._replace(dst_folder, dest, keep=set(sent))

    async def copy_folder(self, src_folder: Folder, path: tuple[str, ...], dst_folder: Folder,
                          dest: tuple[str, ...], move: bool = False, *, overwrite: bool = True) -> None:
        """Copy the folder at `path`, with everything in it, to `dest` in any channel, replacing
        what is there, all at once for every reader (tree.py): a hold first, then the copies (the
        same documents sent again, hidden by the hold), then the one edit that shows them and
        removes the old `dest`. A failure before that edit rolls the copies back (else the next
        write in the channel or the janitor does). move=True (a MOVE to another channel) then
        deletes the source as DELETE does: a reader may see the folder in both places for a
        moment, never half of it anywhere, and a retry finishes it. `overwrite` False (Overwrite:
        F): a destination taken by then is DestinationExists, nothing sent."""
        self.check(dst_folder)
        if move:
            self.check(src_folder)
        path, dest = tuple(path), tuple(dest)
        hold, done = tree.Tag("hold", dest), tree.Tag("delete", dest)
        self._must_fit(done, media=False)
        await self._prepare(src_folder)
        if dst_folder.channel_id != src_folder.channel_id:
            await self._prepare(dst_folder)
        async with self._locked_pair(src_folder, path, dst_folder, dest):
            node = await self._catalog.node(src_folder, path)
            if not isinstance(node, tree.Dir):
                raise NotFound(f"{'/'.join(path)} is not a folder (moved or deleted meanwhile)")
            await self._parent_exists(dst_folder, dest)
            if not overwrite:
                records = await self._catalog.records(dst_folder)
                await self._free(dst_folder, records, self._trusted(dst_folder), dest)
            plan: list[tuple[tuple[str, ...] | None, list]] = []     # (a file's path, its messages)
            for d in node.walk():       # every caption fits, or nothing is sent
                where = dest + d.path[len(path):]
                if d.markers or not d.files and not d.dirs:     # a folder made by MKCOL keeps
                    # its marker in the copy: emptied later, it stays a folder, as the source would
                    self._must_fit(tree.Tag("dir", where), media=False)
                    plan.append((None, [(None, tree.Tag("dir", where).line())]))
                for name, entry in d.files.items():
                    plan.append((where + (name,), self._copy_plan(entry, where + (name,))))
            posted = await self._send_text(dst_folder, hold.line())   # what follows is hidden
            sent: list[int] = []
            claims: dict[tuple[str, ...], set[int]] = {}
            try:
                for where, messages in plan:
                    start = len(sent)
                    await self._send_plan(dst_folder, messages, sent)
                    if where is not None:
                        claims[where] = set(sent[start:])
                await self._edit(dst_folder, posted[0].id, done.line())   # shown, whole; old dest gone
            except BaseException:
                await self._roll_back(dst_folder, posted[0].id, sent)
                raise
            for where, ids in claims.items():   # a later write there in the same second wins (_replace)
                self._committed[(dst_folder.channel_id,) + tree.key(where)] = ids
            await self._finish_journals(dst_folder)     # the old dest's messages, then the journal
            if move:
                await self._delete_node(src_folder, await self._catalog.records(src_folder), node, path)

    @contextlib.asynccontextmanager
    async def _locked_pair(self, a: Folder, a_path: tuple[str, ...], b: Folder, b_path: tuple[str, ...]):
        """Both paths' locks (_locked); across channels, the channel with the smaller id first (one
        order for every writer)."""
        if a.channel_id == b.channel_id:
            async with self._locked(a, a_path, b_path):
                yield
            return
        (first, first_path), (second, second_path) = sorted(((a, a_path), (b, b_path)),
                                                            key=lambda pair: pair[0].channel_id)
        async with self._locked(first, first_path), self._locked(second, second_path):
            yield

    async def _roll_back(self, folder: Folder, hold_id: int, copies, quiet: bool = True) -> None:
        """A copy that will not be committed: its copies go first, then its hold. A failure (quiet)
        is only logged: the hold still hides what is left, and the next write under it or the
        janitor rolls it back."""
        try:
            await self._delete_ids(folder, copies)
            await self._delete_ids(folder, [hold_id])
        except Exception as e:
            if not quiet:
                raise
            log.warning("rolling back an unfinished copy in %s failed: %s", folder.name, e)

    def _copy_plan(self, entry: FileEntry, dest: tuple[str, ...]) -> list[tuple[Location | None, str]]:
        """The messages a copy of `entry` at `dest` sends, in order: (the piece to send again, or
        None for a text message; its caption). Every caption is checked here, before anything is sent."""
        pieces = () if entry.location.kind == "empty" else (entry.pieces or (entry.location,))
        set_id = secrets.token_hex(4)
        if not pieces:
            tags = [tree.Tag("empty", dest)]
        elif len(pieces) == 1:
            tags = [tree.Tag("file", dest)]
        else:
            tags = [tree.Tag("piece", dest, n, n if n == len(pieces) else 0, set_id)
                    for n in range(1, len(pieces) + 1)]
        plan = []
        for n, tag in enumerate(tags):
            text = entry.caption if n == len(tags) - 1 else ""     # the user's text on the last
            self._must_fit(tag, text, media=bool(pieces))
            plan.append((pieces[n] if pieces else None, tree.compose(text, tag)))
        return plan

    async def _send_plan(self, folder: Folder, plan, sent: list[int]) -> None:
        """Send a copy's messages in order; each one's id goes into `sent` as soon as it is sent."""
        for loc, caption in plan:
            if loc is None:
                messages = await self._send_text(folder, caption)
            else:
                messages = await self._send_media(folder, _input_media(await self._fresh(loc)), caption)
            sent += [m.id for m in messages]

    async def _fresh(self, loc: Location) -> Location:
        """A location with a current file reference (the message is fetched again)."""
        try:
            return await self._catalog.refresh_location(loc)
        except NotFound:
            raise
        except Exception:
            return loc


def _input_media(loc: Location):
    if loc.kind == "photo":
        return types.InputMediaPhoto(types.InputPhoto(loc.id, loc.access_hash, loc.file_reference))
    return types.InputMediaDocument(types.InputDocument(loc.id, loc.access_hash, loc.file_reference))


class SyncUpload:
    """The file object WsgiDAV writes a PUT body into. Owns the crossing from the WSGI thread to the
    loop: bytes are gathered into parts and each is handed to the Upload as it fills (write blocks
    while `parallel` parts are in flight), so memory stays bounded and the bridge is crossed once a
    part. close() makes the file visible; abort() (or a failure) leaves the old version as it was."""

    def __init__(self, bridge, upload: Upload, timeout: float) -> None:
        self._bridge, self._upload, self._timeout = bridge, upload, timeout
        self._late = lambda: UpstreamUnavailable(f"Telegram did not take the upload within {timeout:.0f} s")
        self._buf = bytearray()
        self.closed = False

    def _run(self, coro):
        return self._bridge.call(coro, self._timeout, on_timeout=self._late)

    def write(self, data: bytes) -> int:
        self._buf += data
        while len(self._buf) >= PART:
            part = bytes(self._buf[:PART])
            del self._buf[:PART]
            try:
                self._run(self._upload.add_part(part))
            except BaseException:
                self.abort()
                raise
        return len(data)

    def writelines(self, chunks) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._run(self._upload.commit(bytes(self._buf)))
        except BaseException:
            self.abort()
            raise
        finally:
            self._buf = bytearray()

    def abort(self) -> None:
        self.closed = True
        try:
            self._bridge.call(self._upload.abort(), timeout=60)
        except Exception:
            log.warning("could not clean up an abandoned upload", exc_info=True)


class SyncWriter:
    """Writer for WSGI threads (runs each call on the bridge's loop)."""

    def __init__(self, bridge, writer: Writer, timeout: float = 300.0) -> None:
        self._bridge, self._writer, self._timeout = bridge, writer, timeout
        self._late = lambda: UpstreamUnavailable(f"Telegram did not answer within {timeout:.0f} s")

    def _run(self, coro):
        return self._bridge.call(coro, self._timeout, on_timeout=self._late)

    def check(self, folder: Folder) -> None:
        Writer.check(folder)

    @property
    def allow_new_channels(self) -> bool:
        return self._writer.allow_new_channels

    def open_upload(self, folder: Folder, path, size: int | None) -> SyncUpload:
        upload = self._run(self._writer.begin_upload(folder, tuple(path), size))
        return SyncUpload(self._bridge, upload, self._timeout)

    def make_empty(self, folder: Folder, path) -> None:
        self._run(self._writer.make_empty(folder, tuple(path)))

    def mkdir(self, folder: Folder, path) -> None:
        self._run(self._writer.mkdir(folder, tuple(path)))

    def create_channel(self, title: str) -> None:
        self._run(self._writer.create_channel(title))

    def delete(self, folder: Folder, path) -> None:
        self._run(self._writer.delete(folder, tuple(path)))

    def move(self, folder: Folder, path, dest, *, overwrite: bool = True) -> None:
        self._run(self._writer.move(folder, tuple(path), tuple(dest), overwrite=overwrite))

    def copy(self, src_folder: Folder, entry: FileEntry, dst_folder: Folder, dest, *,
             overwrite: bool = True) -> None:
        self._run(self._writer.copy(src_folder, entry, dst_folder, tuple(dest), overwrite=overwrite))

    def copy_folder(self, src_folder: Folder, path, dst_folder: Folder, dest, move: bool = False, *,
                    overwrite: bool = True) -> None:
        self._run(self._writer.copy_folder(src_folder, tuple(path), dst_folder, tuple(dest), move,
                                           overwrite=overwrite))
