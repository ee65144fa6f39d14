"""Writes: uploads, folders, deletes, renames, moves and copies, as Telegram messages.

The tree lives in the messages' tag lines (tgdav/telegram/tree.py); this module sends, edits and
deletes those messages and tells the catalog what it did, so the next listing shows it at once.

- Upload: the bytes go up with upload.StreamUpload over the pool's home-DC senders; each finished
  piece is sent with messages.sendMedia(inputMediaUploadedDocument: file name attribute, MIME type
  from the name or the first bytes, and for a fast-start MP4 its duration and size, so Telegram apps
  stream it) on the main client. Only after the last piece is sent is the old version at that
  path deleted (channels.deleteMessages): until then readers see the old file, from then on the new
  one (the newest claim wins). An upload that fails or is abandoned deletes the pieces it already
  sent (none of which were ever visible) and leaves the old version alone.
- Empty files and folders are text messages ("#tgdav empty ..." / "#tgdav dir ...").
- Rename/move inside a channel edits tag lines (messages.editMessage): no bytes move. Copy, and
  move across channels, send the same document again (inputMediaDocument), never re-uploading; a
  move then deletes the original.
- A channel the account may not post in: Forbidden, with the reason.

Everything here runs on the bridge's loop; SyncWriter is what WSGI threads call.
"""

from __future__ import annotations

import logging
import mimetypes
import secrets
import time
from dataclasses import dataclass, replace

from telethon import errors, functions, types

from tgdav.errors import Forbidden, NotFound, RetryLater, TgdavError, UpstreamUnavailable
from tgdav.model import FileEntry, Folder, Location
from tgdav.telegram import tree
from tgdav.telegram.upload import MAX_PARTS, PART, StreamUpload

log = logging.getLogger("tgdav.writer")

DELETE_BATCH = 100      # channels.deleteMessages takes up to 100 ids
ABANDONED_PIECES = 24 * 3600   # seconds after which unfinished pieces of an overwritten path go
PART_RESENDS = 3        # sendMedia answered FILE_PART_X_MISSING: resend and try again this many times


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
        config = await client(functions.help.GetAppConfigRequest(hash=0))
        for item in getattr(getattr(config, "config", None), "value", []) or []:
            if item.key == key and isinstance(item.value, types.JsonNumber) and item.value.value >= 1:
                return int(item.value.value)
    except (errors.RPCError, ConnectionError, OSError) as e:
        log.debug("help.getAppConfig failed (%s); using the default part limit", e)
    return MAX_PARTS * 2 if premium else MAX_PARTS


def _messages(updates) -> list:
    """The new or edited messages in a method's Updates answer."""
    found = []
    for u in getattr(updates, "updates", None) or []:
        if isinstance(u, (types.UpdateNewChannelMessage, types.UpdateEditChannelMessage,
                          types.UpdateNewMessage, types.UpdateEditMessage)):
            found.append(u.message)
    return found


@dataclass
class Upload:
    """One PUT in progress. The WSGI side feeds parts; commit() makes it visible, abort() forgets it."""
    writer: "Writer"
    folder: Folder
    path: tuple[str, ...]
    stream: StreamUpload
    set_id: str
    sent: list[int]                 # message ids of pieces already sent (not yet visible)
    done: bool = False

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
                self.writer._active.discard(self.set_id)

    async def abort(self) -> None:
        if self.done:
            return
        self.done = True
        self.writer._active.discard(self.set_id)
        await self.stream.abort()
        if self.sent:
            await self.writer._delete_ids(self.folder, self.sent, quiet=True)


class Writer:
    def __init__(self, client, invoke_home, catalog, *, parallel: int = 8, max_parts: int = MAX_PARTS,
                 allow_new_channels: bool = True, spool_dir=None) -> None:
        self._client = client
        self._invoke = invoke_home          # request -> answer, on a home-DC sender of the pool
        self._catalog = catalog             # TelegramCatalog
        self.parallel = parallel
        self.max_parts = max_parts
        self.allow_new_channels = allow_new_channels
        self.spool_dir = spool_dir          # where uploads spool their parts (upload.PieceUpload)
        self._active: set[str] = set()      # piece set ids of uploads under way in this process

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

    async def _call(self, request):
        try:
            return await self._client(request)
        except errors.FloodWaitError as e:
            raise RetryLater(e.seconds) from None
        except (errors.ChatWriteForbiddenError, errors.ChatAdminRequiredError,
                errors.ChatSendMediaForbiddenError, errors.MessageDeleteForbiddenError,
                errors.MessageAuthorRequiredError) as e:
            raise Forbidden(f"Telegram refused: {e.message}") from None
        except (errors.ChannelPrivateError, errors.ChannelInvalidError) as e:
            raise NotFound(f"channel is not available: {e.message}") from None
        except (errors.MediaCaptionTooLongError, errors.MessageTooLongError) as e:
            raise TgdavError(f"the path is too long for a caption ({e.message}): use shorter names "
                             "or fewer folders") from None
        except (errors.FilePartMissingError, errors.FilePart0MissingError, errors.MessageNotModifiedError):
            raise                       # handled by the callers
        except errors.BadRequestError as e:
            raise TgdavError(f"Telegram refused the request: {e.message}") from None
        except (ConnectionError, OSError) as e:
            raise UpstreamUnavailable(f"Telegram is not reachable: {e}") from None

    async def _send_text(self, folder: Folder, text: str) -> list:
        updates = await self._call(functions.messages.SendMessageRequest(
            self._peer(folder), text, random_id=secrets.randbits(63), no_webpage=True))
        messages = _messages(updates)
        await self._catalog.apply(folder, messages)
        return messages

    async def _send_media(self, folder: Folder, media, caption: str) -> list:
        updates = await self._call(functions.messages.SendMediaRequest(
            self._peer(folder), media, caption, random_id=secrets.randbits(63)))
        messages = _messages(updates)
        await self._catalog.apply(folder, messages)
        return messages

    async def _edit(self, folder: Folder, message_id: int, text: str) -> None:
        try:
            updates = await self._call(functions.messages.EditMessageRequest(
                self._peer(folder), message_id, message=text))
        except errors.MessageNotModifiedError:
            return
        await self._catalog.apply(folder, _messages(updates))

    async def _delete_ids(self, folder: Folder, ids, quiet: bool = False) -> None:
        ids = sorted(set(ids))
        try:
            for i in range(0, len(ids), DELETE_BATCH):
                batch = ids[i:i + DELETE_BATCH]
                await self._call(functions.channels.DeleteMessagesRequest(self._channel(folder), batch))
                await self._catalog.forget(folder, batch)
        except Exception as e:
            if not quiet:
                raise
            log.warning("could not delete messages %s in %s: %s", ids, folder.name, e)

    # --- uploads ----------------------------------------------------------------------------------
    async def begin_upload(self, folder: Folder, path: tuple[str, ...], size: int | None) -> Upload:
        self.check(folder)
        set_id = secrets.token_hex(4)
        holder: list[Upload] = []

        async def on_piece(input_file, number: int, piece_size: int, last: bool) -> None:
            upload = holder[0]
            if number == 1 and last:
                tag = tree.Tag("file", path)
            else:
                tag = tree.Tag("piece", path, number, number if last else 0, set_id)
            name = path[-1]
            attributes = [types.DocumentAttributeFilename(name if tag.kind == "file" else f"{name}.{number:03d}")]
            video = upload.stream.video
            if video is not None and tag.kind == "file":    # Telegram apps then stream and seek it
                attributes.append(types.DocumentAttributeVideo(
                    duration=video.duration, w=video.width, h=video.height, supports_streaming=True))
            media = types.InputMediaUploadedDocument(
                file=input_file, mime_type=mime_for(name, upload.stream.head), force_file=True,
                attributes=attributes)
            piece = upload.stream.pieces[number - 1]
            for attempt in range(PART_RESENDS + 1):
                try:
                    messages = await self._send_media(folder, media, tree.compose("", tag))
                    break
                except (errors.FilePartMissingError, errors.FilePart0MissingError) as e:
                    # Telegram names the first part it lacks: send it again (from the spool); if
                    # another is missing after that, every part from it on (they expired together)
                    which = getattr(e, "which", 0)
                    if attempt == PART_RESENDS or not await piece.resend(which, and_after=attempt > 0):
                        raise UpstreamUnavailable(f"Telegram lost part {which} of {name!r}; "
                                                  "upload it again") from None
                    log.info("Telegram lost part %d of %r; sent it again", which, name)
            piece.forget()
            upload.sent += [m.id for m in messages]
            if last:
                await self._replace(folder, path, keep=upload.sent)

        stream = StreamUpload(self._invoke, path[-1], on_piece, size=size, parallel=self.parallel,
                              max_parts=self.max_parts, part_size=PART, spool_dir=self.spool_dir)
        upload = Upload(self, folder, tuple(path), stream, set_id, [])
        holder.append(upload)
        self._active.add(set_id)
        return upload

    async def _replace(self, folder: Folder, path: tuple[str, ...], keep) -> None:
        """The new version at `path` is sent: delete whatever else claimed the path before."""
        old = await self._older_claims(folder, path, set(keep))
        if old:
            await self._delete_ids(folder, old, quiet=True)

    async def _older_claims(self, folder: Folder, path: tuple[str, ...], keep: set[int]) -> list[int]:
        records = await self._catalog.records(folder)
        complete = {r.tag.set_id for r in records if r.tag is not None and r.tag.kind == "piece"
                    and r.tag.pieces and r.tag.path == path}
        out = []
        for r in records:
            if r.message_id in keep:
                continue
            if r.tag is not None and r.tag.kind == "piece" and r.tag.set_id not in complete:
                # pieces of an upload that never finished (tgdav stopped mid-way) are left over
                # when they are old and not ours; younger ones may be another upload under way
                if r.tag.path == path and r.tag.set_id not in self._active \
                        and time.time() - r.date > ABANDONED_PIECES:
                    out.append(r.message_id)
                continue
            if r.tag is not None and r.tag.kind in ("file", "empty", "piece") and r.tag.path == path:
                out.append(r.message_id)
            elif r.tag is None and r.entry is not None and len(path) == 1 and r.entry.name == path[0]:
                out.append(r.message_id)     # an untagged post of that name at the root
        return out

    async def make_empty(self, folder: Folder, path: tuple[str, ...]) -> None:
        self.check(folder)
        messages = await self._send_text(folder, tree.Tag("empty", tuple(path)).line())
        await self._replace(folder, tuple(path), keep={m.id for m in messages})

    # --- folders ----------------------------------------------------------------------------------
    async def mkdir(self, folder: Folder, path: tuple[str, ...]) -> None:
        self.check(folder)
        await self._send_text(folder, tree.Tag("dir", tuple(path)).line())

    async def create_channel(self, title: str) -> None:
        if not self.allow_new_channels:
            raise Forbidden("creating channels is switched off ([write] create_channels = false)")
        try:
            await self._client(functions.channels.CreateChannelRequest(
                title=title, about="Created by tgdav", broadcast=True))
        except errors.FloodWaitError as e:
            raise RetryLater(e.seconds) from None
        except errors.RPCError as e:
            raise Forbidden(f"Telegram refused to create channel {title!r}: {e.message}") from None
        self._catalog.invalidate_folders()

    # --- delete -----------------------------------------------------------------------------------
    async def delete(self, folder: Folder, path: tuple[str, ...]) -> None:
        """Delete the file or folder (with everything in it) at `path`; () deletes nothing."""
        self.check(folder)
        path = tuple(path)
        node = await self._catalog.node(folder, path)
        if node is None:
            raise NotFound(f"{'/'.join(path)} does not exist")
        if isinstance(node, tree.Dir):   # everything tagged below it, shown or not
            n = len(path)
            ids = [r.message_id for r in await self._catalog.records(folder)
                   if r.tag is not None and r.tag.path[:n] == path] + node.message_ids()
        else:                            # the file, and superseded versions that would show again
            ids = list(node.message_ids) + await self._older_claims(folder, path, set(node.message_ids))
        await self._delete_ids(folder, ids)

    # --- move and copy ----------------------------------------------------------------------------
    async def move(self, folder: Folder, path: tuple[str, ...], dest: tuple[str, ...]) -> None:
        """Inside one channel: every message at or below `path` gets its tag moved to `dest` (caption
        edits only). A file moved onto an existing file replaces it as an upload does: the moved
        message wins the path at once, then the old one is deleted."""
        self.check(folder)
        path, dest = tuple(path), tuple(dest)
        node = await self._catalog.node(folder, path)
        if node is None:
            raise NotFound(f"{'/'.join(path)} does not exist")
        records = await self._catalog.records(folder)
        n = len(path)
        if isinstance(node, tree.Dir):   # everything tagged below it, shown or not (uploads under way too)
            targets = [r for r in records if r.tag is not None and r.tag.path[:n] == path]
            garbage: list[int] = []
        else:
            ids = set(node.message_ids)
            targets = [r for r in records if r.message_id in ids]
            garbage = await self._older_claims(folder, path, ids)   # superseded versions stay behind otherwise
        for r in sorted(targets, key=lambda r: r.message_id):
            if r.tag is None:          # an untagged post at the root: give it a tag
                tag = tree.Tag("file", dest)
            else:
                tag = replace(r.tag, path=dest + r.tag.path[n:])
            await self._edit(folder, r.message_id, tree.compose(r.text, tag))
        if garbage:
            await self._delete_ids(folder, garbage, quiet=True)
        if not isinstance(node, tree.Dir):
            await self._replace(folder, dest, keep={r.message_id for r in targets})

    async def copy(self, src_folder: Folder, entry: FileEntry, dst_folder: Folder,
                   dest: tuple[str, ...]) -> None:
        """Send the same file again at `dest` (any channel): no bytes are uploaded."""
        self.check(dst_folder)
        dest = tuple(dest)
        sent: list[int] = []
        try:
            if entry.location.kind == "empty":
                messages = await self._send_text(dst_folder, tree.compose(entry.caption, tree.Tag("empty", dest)))
                sent += [m.id for m in messages]
            else:
                pieces = entry.pieces or (entry.location,)
                set_id = secrets.token_hex(4)
                for number, loc in enumerate(pieces, 1):
                    loc = await self._fresh(loc)
                    if len(pieces) == 1:
                        tag = tree.Tag("file", dest)
                    else:
                        tag = tree.Tag("piece", dest, number, number if number == len(pieces) else 0, set_id)
                    text = entry.caption if number == len(pieces) else ""
                    messages = await self._send_media(dst_folder, _input_media(loc), tree.compose(text, tag))
                    sent += [m.id for m in messages]
        except BaseException:
            if sent:
                await self._delete_ids(dst_folder, sent, quiet=True)
            raise
        await self._replace(dst_folder, dest, keep=set(sent))

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
    """The file object WsgiDAV writes a PUT body into: bytes are cut into parts and handed to the
    loop as they come (write blocks while `parallel` parts are in flight), so memory stays bounded.
    close() makes the file visible; abort() (or a failure) leaves the old version as it was."""

    def __init__(self, bridge, upload: Upload, timeout: float) -> None:
        self._bridge, self._upload, self._timeout = bridge, upload, timeout
        self._buf = bytearray()
        self.closed = False

    def _run(self, coro):
        try:
            return self._bridge.call(coro, timeout=self._timeout)
        except TimeoutError:
            raise UpstreamUnavailable(f"Telegram did not take the upload within {self._timeout:.0f} s") from None

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

    def _run(self, coro):
        try:
            return self._bridge.call(coro, timeout=self._timeout)
        except TimeoutError:
            raise UpstreamUnavailable(f"Telegram did not answer within {self._timeout:.0f} s") from None

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

    def move(self, folder: Folder, path, dest) -> None:
        self._run(self._writer.move(folder, tuple(path), tuple(dest)))

    def copy(self, src_folder: Folder, entry: FileEntry, dst_folder: Folder, dest) -> None:
        self._run(self._writer.copy(src_folder, entry, dst_folder, tuple(dest)))
