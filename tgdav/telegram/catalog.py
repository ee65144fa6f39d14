"""Channels -> folders, messages -> file entries, with listings kept in the store.

The first listing of a channel reads its whole history (100 messages a request): the first page
gives the count and the newest id, and the other pages are asked for in parallel on the pool's
home-DC senders, paced to stay inside Telegram's flood rule for messages.getHistory (pace.py).
After that a listing is served from memory; when it is older than `refresh_seconds`, it is still
served at once and refreshed in the background (a GET of a known file never waits for the message
list): only messages newer than the newest known are asked for (one request when nothing changed).
There is no periodic re-read of the whole history: edits and deletions made elsewhere come from live
updates. Listings persist in the store as a small head and pieces of SEGMENT message ids, so a
change rewrites the pieces it touches, never the whole listing, and a restart starts from what it
knew. A channel's date comes from its last message, which the dialog list gives: listing the root
never reads a channel's history.

Inside a channel, messages tgdav wrote carry a tag line that places them in a folder tree
(tgdav/telegram/tree.py); the catalog keeps one tree.Record per message and builds the tree from them.
Writes (tgdav/telegram/writer.py) tell the catalog what they sent, edited and deleted, so a listing
shows a write at once, without waiting for a refresh.

Whose tags count (`trusted`): in a broadcast channel only admins post, so every tag. In a supergroup
(megagroup: every member posts, each message names its sender) only the account's own, the group's
admins' (channels.getParticipants, read again with every whole read) and those of the senders
`[write] trust` names; other members' posts show as untagged files, never hiding a tagged one.

Bots cannot list dialogs or read history (BOT_METHOD_INVALID): for a bot, channels come from the
`include` setting and messages from channels.getMessages by id, scanning up to a gap of `bot_gap`
missing ids past the newest one found.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace

from tgdav.telegram.mtproto import TelegramClient, errors, functions, types

from tgdav.errors import ConfigError, NotFound, UpstreamUnavailable
from tgdav.model import FileEntry, Folder, Location
from tgdav.telegram import names, rpc, tree

log = logging.getLogger("tgdav.catalog")

LISTING_VERSION = 4          # 4: records name their sender, megagroups keep their admins, pieces
PAGE = 100
SEGMENT = 250           # message ids per stored piece of a listing (~65 KB pickled)
GONE_KEPT = 10_000      # deleted ids a channel remembers, so a late update cannot bring them back
GONE_SHARED = 1_000     # the newest of them in the stored head, so replicas tell each other deletions


@dataclass
class _Channel:
    folder: Folder
    access_hash: int
    records: dict[int, tree.Record] = field(default_factory=dict)   # message id -> record (raw names)
    max_id: int = 0
    checked: float = 0.0          # clock time of the last refresh
    refreshes: int = 0
    segments: set[int] = field(default_factory=set)   # pieces of the listing in the store (see SEGMENT)
    root: tree.Dir = field(default_factory=lambda: tree.Dir(()))
    listing: list[FileEntry] = field(default_factory=list)
    pts: int = 0                  # the channel's pts the records are current to (0: not known)
    read_pts: int = 0             # the pts the last history read started at
    megagroup: bool = False       # a supergroup: tags count from trusted senders only
    admins: frozenset[int] = frozenset()    # a supergroup's creator and admins (user ids)
    stored: bool = False          # records come from a listing kept by an earlier run, not re-read yet
    gone: set[int] = field(default_factory=set)     # ids deleted (Telegram never gives an id twice)
    versions: dict[int, int] = field(default_factory=dict)   # id -> pts of the version its record holds


def _segment_records(records: dict[int, tree.Record], segment: int) -> list[tree.Record]:
    return [records[mid] for mid in range(segment * SEGMENT, (segment + 1) * SEGMENT) if mid in records]


def record_for(message, channel_id: int, channel_access_hash: int) -> tree.Record | None:
    """What a message adds to the tree: a file (tagged or not), a folder or empty-file marker; or None."""
    if not isinstance(message, types.Message):
        return None
    tag, text = tree.parse(message.message or "")
    entry = entry_for(message, channel_id, channel_access_hash)
    if entry is None and tag is None:
        return None
    date = message.date.timestamp() if message.date else 0.0
    edited = message.edit_date.timestamp() if getattr(message, "edit_date", None) else date
    sender = getattr(message, "from_id", None)
    sender = sender.user_id if isinstance(sender, types.PeerUser) else 0
    return tree.Record(message.id, date, edited, tag, text, entry, sender,
                       own=bool(getattr(message, "out", False)))


def _timestamp(date) -> float:
    return date.timestamp() if date else 0.0


def _stale(message, channel: "_Channel", version: int | None = None) -> bool:
    """A message as it was before what the listing already holds: deleted since, or an older version
    (an update or a difference fetched before this process's own later change landed first). Versions
    are ordered by the pts of the update that brought them (`version`) when both are known (dates
    are whole seconds, and a post and its edit, an upload then its MOVE, often share one), and by
    date (a whole read may have brought a newer version than the pts held says). A message without
    a pts (Telethon's own gap fill dispatches a difference's new messages with pts 0, maybe fetched
    before this process's edit) cannot be ordered against a version whose pts is held: it is left
    to the heal such an update starts (updates.py), which brings the message with one. A message as
    first posted (no edit_date) never replaces a record held for its id: that record is the same
    post or a later edit of it (a whole read brings the edit without a pts, and a late update of
    the post, in the same second, would have taken a copied folder's commit back to its hold)."""
    mid = getattr(message, "id", 0)
    if mid in channel.gone:
        return True
    if getattr(message, "edit_date", None) is None and mid in channel.records:
        return True
    held = channel.versions.get(mid)
    if held is not None and (version is None or version < held):
        return True
    known = channel.records.get(mid)
    edited = getattr(message, "edit_date", None) or getattr(message, "date", None)
    return known is not None and edited is not None and edited.timestamp() < known.edited


def _current_to(channel: "_Channel", pts: int) -> bool:
    """The listing already holds what the channel's `pts` brought (and maybe more): a change of that
    pts must not be applied again (never when either pts is 0: not known)."""
    return 0 < pts <= channel.pts


def _versioned(channel: "_Channel", versions: dict[int, int]) -> None:
    """Remember the pts of the versions just taken (the newest GONE_KEPT ids: a late update is seconds old)."""
    channel.versions.update(versions)
    if len(channel.versions) > GONE_KEPT:
        channel.versions = dict(sorted(channel.versions.items())[-(GONE_KEPT // 2):])


def _deleted(channel: "_Channel", ids) -> None:
    channel.gone.update(ids)
    if len(channel.gone) > GONE_KEPT:       # the newest half: a late update is seconds old
        channel.gone = set(sorted(channel.gone)[-(GONE_KEPT // 2):])


def _merged(channel: "_Channel", head: dict, kept: dict[int, tree.Record]) -> list[int]:
    """Another replica's stored listing merged into `channel`'s records, never going back: a record
    it lacks stays (it was stored before this process learned it: its own write, an update), a
    record is dropped only when deleted (ids in this channel's or the stored head's `gone`), an edit
    is taken only when newer than the record held (a tie keeps what this process has served). The
    ids the stored copy lacks or holds older, for writing back (only strictly newer ones: two replicas
    never write the same id back and forth), and the ids it holds that were deleted: a write-back of
    another replica, from a copy read before this one stored a deletion, may have put them back
    (stores are whole pieces, not merges), and every replica merging it would list them again."""
    _deleted(channel, set(head.get("gone", ())) - channel.gone)
    records = {mid: r for mid, r in kept.items() if mid not in channel.gone}
    lacking = [mid for mid in kept if mid in channel.gone]
    for mid, own in channel.records.items():
        if mid in channel.gone:
            continue
        shared = records.get(mid)
        if shared is None or own.edited > shared.edited:
            lacking.append(mid)
        if shared is None or own.edited >= shared.edited:
            records[mid] = own
    channel.records = records
    return lacking


def can_post(chat) -> bool:
    """Creator, or an admin allowed to post (channels); in groups, anyone not banned from media."""
    if getattr(chat, "creator", False):
        return True
    rights = getattr(chat, "admin_rights", None)
    if rights is not None and (rights.post_messages or getattr(chat, "megagroup", False)):
        return True
    if getattr(chat, "megagroup", False):
        banned = getattr(chat, "banned_rights", None) or getattr(chat, "default_banned_rights", None)
        return not (banned and (banned.send_messages or banned.send_media))
    return False


def entry_for(message, channel_id: int, channel_access_hash: int) -> FileEntry | None:
    """The file a message carries (document or photo), or None."""
    media = getattr(message, "media", None)
    date = message.date.timestamp() if message.date else 0.0
    edited = message.edit_date.timestamp() if getattr(message, "edit_date", None) else date
    if isinstance(media, types.MessageMediaDocument) and isinstance(media.document, types.Document):
        doc = media.document
        file_name = next((a.file_name for a in doc.attributes
                          if isinstance(a, types.DocumentAttributeFilename)), "")
        kind = _document_kind(doc)
        name = names.clean(file_name) or names.fallback_name(kind, date, message.id, doc.mime_type)
        loc = Location("document", doc.id, doc.access_hash, doc.file_reference, doc.dc_id, doc.size,
                       channel_id, channel_access_hash, message.id)
        mime = doc.mime_type or "application/octet-stream"
    elif isinstance(media, types.MessageMediaPhoto) and isinstance(media.photo, types.Photo):
        photo = media.photo
        size, thumb = _largest_photo_size(photo)
        if not size:
            return None
        name = names.fallback_name("photo", date, message.id, "image/jpeg")
        loc = Location("photo", photo.id, photo.access_hash, photo.file_reference, photo.dc_id, size,
                       channel_id, channel_access_hash, message.id, thumb_size=thumb)
        mime = "image/jpeg"
    else:
        return None
    etag = f"{loc.id:x}-{loc.size:x}-{int(edited):x}"
    return FileEntry(name=name, size=loc.size, mime=mime, modified=edited, created=date, etag=etag,
                     location=loc)


def _document_kind(doc) -> str:
    for a in doc.attributes:
        if isinstance(a, types.DocumentAttributeVideo):
            return "video"
        if isinstance(a, types.DocumentAttributeAudio):
            return "voice" if a.voice else "audio"
    return "document"


def _largest_photo_size(photo) -> tuple[int, str]:
    best = (0, "")
    for s in photo.sizes:
        if isinstance(s, types.PhotoSize):
            best = max(best, (s.size, s.type))
        elif isinstance(s, types.PhotoSizeProgressive) and s.sizes:
            best = max(best, (max(s.sizes), s.type))
    return best


class _Scan:
    """What a history read has found so far, and its progress reports."""

    def __init__(self, channel: _Channel, progress) -> None:
        self.channel, self.progress = channel, progress
        self.found: dict[int, tree.Record] = {}
        self.seen = 0
        self.lowest = 0           # the oldest message id seen
        self.ids: set[int] = set()                  # every message id seen
        self.pages: list[tuple[int, int]] = []      # (newest id, oldest id) of each page read

    def take(self, page) -> None:
        folder = self.channel.folder
        for m in page.messages:
            if isinstance(m, types.Message):
                record = record_for(m, folder.channel_id, self.channel.access_hash)
                if record:
                    self.found[m.id] = record
        if page.messages:
            ids = [m.id for m in page.messages]
            low = min(ids)
            self.lowest = low if not self.lowest else min(self.lowest, low)
            self.ids.update(ids)
            self.pages.append((max(ids), low))
        self.seen += len(page.messages)

    def report(self, done: bool) -> None:
        if self.progress is not None:
            self.progress(self.channel.folder.name, self.seen, len(self.found), done)


class ChannelFilter:
    """Which channels to show: all, or those in `include`, minus `exclude` (ids or @usernames)."""

    def __init__(self, include=(), exclude=()) -> None:
        self.include = [str(x) for x in include]
        self.exclude = {str(x).lstrip("@").lower() for x in exclude}

    def allows(self, channel_id: int, username: str | None) -> bool:
        keys = {str(channel_id), f"-100{channel_id}", (username or "").lower()}
        if self.include and not keys & {x.lstrip("@").lower() for x in self.include}:
            return False
        return not keys & self.exclude


class TelegramCatalog:
    """The async catalog on the bridge's loop. SyncCatalog gives WSGI threads the model.Catalog."""

    def __init__(self, client: TelegramClient, store, *, channel_filter: ChannelFilter | None = None,
                 refresh_seconds: float = 60.0, is_bot: bool = False, bot_gap: int = 200,
                 clock=time.monotonic, progress=None, invoke=None, pace=None, parallel: int = 4,
                 listed=None, trust=()) -> None:
        self._client = client
        self._trust = tuple(trust)          # [write] trust: user ids or "@username" whose tags count
        self._trust_ids: set[int] | None = None     # resolved once, with the account's own id
        # getHistory goes through `invoke` (the pool's home-DC senders: several pages in flight) when
        # given, else through the client; `pace` (a pace.TokenBucket) keeps it inside the flood rule
        self._invoke, self._pace, self._parallel = invoke, pace, max(1, parallel)
        self._on_listed = listed    # listed(entries) after a channel's listing is (re)built (app.py)
        # progress(channel, messages, files, done) after each page of a full history scan
        # (tgdav.metrics.Metrics.scan_progress: the status page and a log line every few thousand)
        self._progress = progress
        self._store = store
        self._filter = channel_filter or ChannelFilter()
        self._refresh_seconds = refresh_seconds
        self._is_bot = self.is_bot = is_bot
        self._bot_gap = bot_gap
        self._clock = clock
        self._channels: dict[str, _Channel] | None = None
        self._folders_checked = 0.0
        self._locks: dict[object, asyncio.Lock] = {}
        self._refreshing: dict[object, asyncio.Task] = {}
        # on_change(channel_id) after a write or an update changed a listing (replicas are told:
        # tgdav/telegram/updates.py)
        self.on_change = None

    # --- folders ----------------------------------------------------------------------------------
    async def folders(self) -> list[Folder]:
        """The channels. Known ones are answered at once; a stale list is refreshed in the background."""
        if self._channels is not None and self._clock() - self._folders_checked > self._refresh_seconds:
            self._in_background("folders", self._refresh_folders)
        if self._channels is None:
            async with self._lock("folders"):
                if self._channels is None:
                    await self._load_folders()
        return [c.folder for c in self._channels.values()]

    async def _refresh_folders(self) -> None:
        async with self._lock("folders"):
            if self._clock() - self._folders_checked > self._refresh_seconds:
                await self._load_folders()

    def _in_background(self, key, refresh) -> None:
        """Run refresh() once at a time per key, off the request that noticed the staleness: a GET of
        a known file never waits for Telegram's message list."""
        if key in self._refreshing:
            return

        async def run():
            try:
                await refresh()
            except Exception as e:      # the next look tries again; what is known stays served
                log.warning("refreshing %s failed: %s", key, e)
            finally:
                self._refreshing.pop(key, None)
        self._refreshing[key] = asyncio.get_running_loop().create_task(run())

    async def folder(self, name: str) -> Folder | None:
        await self.folders()
        channel = self._channels.get(name)
        return channel.folder if channel else None

    async def _load_folders(self) -> None:
        found = await (self._bot_channels() if self._is_bot else self._user_channels())
        titles = names.unique((c.id, names.clean(c.title) or f"channel {c.id}") for c, _ in found)
        old = {c.folder.channel_id: c for c in (self._channels or {}).values()}
        channels: dict[str, _Channel] = {}
        for chat, last in found:
            kept = old.get(chat.id)
            # the channel's date: its last message (the dialog list gives it), never its whole history
            modified = max(last, kept.root.modified if kept else 0.0)
            folder = Folder(name=titles[chat.id], channel_id=chat.id, title=chat.title,
                            username=getattr(chat, "username", None), modified=modified,
                            writable=can_post(chat))
            megagroup = bool(getattr(chat, "megagroup", False))
            if kept:        # the same object: a refresh running on it now is not lost
                kept.folder, kept.megagroup = folder, megagroup
            channels[folder.name] = kept or _Channel(folder, chat.access_hash, megagroup=megagroup)
        self._channels = channels
        self._folders_checked = self._clock()

    async def _user_channels(self) -> list[tuple[object, float]]:
        """(channel, date of its last message) for each channel in the dialog list."""
        found, seen = [], set()
        async for dialog in self._client.iter_dialogs():
            chat = dialog.entity
            if isinstance(chat, types.Channel) and chat.id not in seen and not chat.left:
                seen.add(chat.id)
                if self._filter.allows(chat.id, chat.username):
                    found.append((chat, _timestamp(dialog.date or chat.date)))
        return found

    async def _bot_channels(self) -> list:
        if not self._filter.include:
            raise ConfigError("a bot cannot list its channels — name them in [channels] include "
                              "(ids or @usernames)")
        found = []
        for ref in self._filter.include:
            try:
                entity = await self._client.get_entity(int(ref) if ref.lstrip("-").isdigit() else ref)
            except (ValueError, errors.RPCError) as e:
                log.warning("channel %s from [channels] include cannot be opened: %s", ref, e)
                continue
            if isinstance(entity, types.Channel) and self._filter.allows(entity.id, entity.username):
                found.append((entity, _timestamp(entity.date)))   # a bot has no dialog list
        return found

    # --- entries ----------------------------------------------------------------------------------
    async def entries(self, folder: Folder) -> list[FileEntry]:
        channel = await self._channel(folder)
        return channel.listing

    async def entry(self, folder: Folder, name: str) -> FileEntry | None:
        channel = await self._channel(folder)
        return channel.root.files.get(name)

    async def node(self, folder: Folder, path: tuple[str, ...]) -> tree.Dir | FileEntry | None:
        """The folder or file at `path` inside the channel (() is the channel itself)."""
        channel = await self._channel(folder)
        return tree.find(channel.root, tuple(path))

    def refresh_every(self, seconds: float) -> None:
        """How long a listing is trusted (longer once updates keep it current)."""
        self._refresh_seconds = seconds

    # --- what writes tell us ----------------------------------------------------------------------
    def invalidate_folders(self) -> None:
        """The channel list changed (a channel was created): read it again on the next look."""
        self._folders_checked = -1e18

    async def add_channel(self, chat) -> None:
        """A channel this account just created (channels.createChannel's answer): listed at once, so
        a PUT right after MKCOL finds it (rclone, Finder)."""
        await self.folders()
        if any(c.folder.channel_id == chat.id for c in self._channels.values()):
            return
        name = names.clean(chat.title) or f"channel {chat.id}"
        if name.casefold() in {n.casefold() for n in self._channels}:
            name = names.with_suffix(name, chat.id)
        folder = Folder(name=name, channel_id=chat.id, title=chat.title, username=getattr(chat, "username", None),
                        modified=chat.date.timestamp(), writable=can_post(chat))
        self._channels[name] = _Channel(folder, chat.access_hash)

    async def reread_stored(self, folder: Folder) -> None:
        """Before the first write: a listing kept by an earlier run (which may have been killed
        before it stored its last changes) is replaced by the whole history, read now."""
        channel = await self._channel(folder)
        async with self._lock(folder.channel_id):
            if channel.stored:
                await self._refresh(channel, full=True)

    async def catch_up(self, folder: Folder) -> None:
        """Read what was posted since the last look (other replicas' writes), now."""
        channel = await self._channel(folder)
        async with self._lock(folder.channel_id):
            found = await (self._bot_scan(channel, channel.max_id) if self._is_bot
                           else self._history(channel, channel.max_id))
            channel.records.update(found)
            channel.max_id = max([channel.max_id, *found])
            await self._reindex(channel, found)

    def trusted(self, folder: Folder) -> tree.Trusted:
        """Whose tags count in this channel (the rule the tree was built with); None: everyone's."""
        channel = (self._channels or {}).get(folder.name)
        return self._trusted(channel) if channel is not None else None

    def _trusted(self, channel: _Channel) -> tree.Trusted:
        if not channel.megagroup:
            return None
        allowed = frozenset(channel.admins | (self._trust_ids or set()))
        return lambda r: r.sender in allowed

    async def _resolve_trust(self) -> None:
        """The account's own id and [write] trust's senders as user ids (usernames looked up once)."""
        if self._trust_ids is not None:
            return
        ids = {(await self._client.get_me(input_peer=True)).user_id}
        for who in self._trust:
            if isinstance(who, int) or str(who).lstrip("-").isdigit():
                ids.add(int(who))
                continue
            try:
                ids.add((await self._client.get_entity(who)).id)
            except (ValueError, errors.RPCError) as e:
                log.warning("[write] trust names %s, who cannot be found: %s", who, e)
        self._trust_ids = ids

    async def _load_admins(self, channel: _Channel) -> None:
        """A supergroup's creator and admins, whose tags count there."""
        await self._resolve_trust()
        try:
            found = await self._call(functions.channels.GetParticipantsRequest(
                types.InputChannel(channel.folder.channel_id, channel.access_hash),
                types.ChannelParticipantsAdmins(), 0, 200, 0), f"reading the admins of {channel.folder.name}")
        except Exception as e:        # keep the admins known before; the next whole read asks again
            log.warning("the admins of %s cannot be read: %s", channel.folder.name, e)
            return
        channel.admins = frozenset(p.user_id for p in getattr(found, "participants", []))

    async def reread(self, folder: Folder) -> list[tree.Record]:
        """The channel's whole history read again now (edits and deletions made elsewhere too), the
        tree rebuilt from it; its records. What the janitor decides from (telegram/janitor.py)."""
        channel = await self._channel(folder)
        async with self._lock(folder.channel_id):
            await self._refresh(channel, full=True)
            return list(channel.records.values())

    async def apply(self, folder: Folder, messages: list, versions: dict[int, int] | None = None) -> None:
        """Messages this account just sent or edited in `folder`'s channel; `versions`: message id ->
        the pts of the update that answered (so a late update of an older version is known as older)."""
        channel = await self._channel(folder)
        async with self._lock(folder.channel_id):   # not in the middle of a refresh's fetch
            for m in messages:
                record = record_for(m, channel.folder.channel_id, channel.access_hash)
                if record is None:
                    channel.records.pop(getattr(m, "id", 0), None)
                else:   # max_id stays: the next refresh still asks for whatever others posted meanwhile
                    channel.records[m.id] = record
            _versioned(channel, versions or {})
            await self._reindex(channel, [getattr(m, "id", 0) for m in messages])
        self._changed(channel)

    async def forget(self, folder: Folder, message_ids) -> None:
        """Messages this account just deleted."""
        channel = await self._channel(folder)
        async with self._lock(folder.channel_id):
            for mid in message_ids:
                channel.records.pop(mid, None)
            _deleted(channel, message_ids)
            await self._reindex(channel, message_ids)
        self._changed(channel)

    # --- what updates tell us (tgdav/telegram/updates.py) ----------------------------------------
    def pts_of(self, channel_id: int) -> int | None:
        """The pts a listed channel's records are current to (0: not known); None if the channel
        has no listing yet (its first look reads the history, so nothing to keep current)."""
        channel = self._listed(channel_id)
        return None if channel is None else channel.pts

    def input_channel(self, channel_id: int) -> types.InputChannel | None:
        channel = self._listed(channel_id)
        return None if channel is None else types.InputChannel(channel_id, channel.access_hash)

    def listed(self) -> list[int]:
        """The channels that have a listing now."""
        return [c.folder.channel_id for c in (self._channels or {}).values() if c.refreshes]

    async def apply_changes(self, channel_id: int, messages=(), deleted=(), pts: int | None = None,
                            version: int | None = None) -> bool:
        """New or edited messages, deleted ids and the pts they bring a listed channel to, from
        Telegram's updates; `version`: the pts the messages are as of (an update's own pts, a
        difference's). False if the channel has no listing (nothing to change). A message as it
        was before what the listing holds (deleted since, or an older version: fetched before this
        process's own change) is left out (_stale), and so is the whole change when the listing is
        already current to `version` or later (see apply_update)."""
        channel = self._listed(channel_id)
        if channel is None:
            return False
        async with self._lock(channel_id):
            if version is not None and _current_to(channel, version):
                return True
            changed = await self._take(channel, messages, deleted, pts, version)
        if changed:
            self._changed(channel)
        return True

    async def apply_update(self, channel_id: int, messages, deleted, pts: int, count: int) -> str | None:
        """One pushed update (its pts and pts_count), weighed under the channel's lock against the pts
        the listing holds then, not before the wait for it: a whole read (the janitor's, a reload)
        that ended while the update waited is current to the pts its first page was read at, so it
        may hold this update's change and later ones (a post already deleted again), which the
        update must not undo. Answers None (no listing: its first look reads the history), "old"
        (the listing is current to this pts or later: nothing done), "next" (it follows the
        listing's pts: applied, the pts moved) or "gap" (applied; updates before it are missing,
        for the caller to heal)."""
        channel = self._listed(channel_id)
        if channel is None:
            return None
        async with self._lock(channel_id):
            if _current_to(channel, pts):
                return "old"
            kept = channel.pts
            follows = bool(pts) and (not kept or pts - count == kept)
            changed = await self._take(channel, messages, deleted, pts if follows else None, pts or None)
        if changed:
            self._changed(channel)
        return "next" if follows else "gap"

    async def _take(self, channel: _Channel, messages, deleted, pts: int | None, version: int | None) -> bool:
        """Under the channel's lock: the change applied to its records (apply_changes); whether any
        record changed."""
        for m in messages:
            if _stale(m, channel, version):
                continue
            record = record_for(m, channel.folder.channel_id, channel.access_hash)
            if record is None:
                channel.records.pop(getattr(m, "id", 0), None)
            else:
                channel.records[m.id] = record
                channel.max_id = max(channel.max_id, m.id)
            if version is not None:
                _versioned(channel, {getattr(m, "id", 0): version})
        for mid in deleted:
            channel.records.pop(mid, None)
        _deleted(channel, deleted)
        if pts is not None:
            channel.pts = max(channel.pts, pts)
        if messages or deleted:
            await self._reindex(channel, [*(getattr(m, "id", 0) for m in messages), *deleted])
        elif pts is not None:
            self._remember(channel, ())      # the head only: it keeps the pts
        return bool(messages or deleted)

    async def reload(self, channel_id: int) -> None:
        """Read a listed channel's whole history again (its update gap was too long to fetch)."""
        channel = self._listed(channel_id)
        if channel is None:
            return
        async with self._lock(channel_id):
            await self._refresh(channel, full=True)
        self._changed(channel)

    async def load_kept(self) -> list[int]:
        """At start: every channel whose listing an earlier run kept is loaded from the store
        (no request); returns their ids, for the update tracker to bring them current."""
        await self.folders()
        for channel in list(self._channels.values()):
            async with self._lock(channel.folder.channel_id):
                if not channel.checked:
                    self._load_listing(channel)
        return self.listed()

    async def reread_kept(self, channel_id: int) -> None:
        """Another replica changed this channel's listing in the shared store: merge it from there
        (_merged: a copy stored before this process's own change never undoes it)."""
        channel = self._listed(channel_id)
        if channel is None:
            return
        async with self._lock(channel_id):
            kept = await asyncio.to_thread(self._kept, channel)
            if kept is not None:
                head, records = kept
                lacking = _merged(channel, head, records)
                channel.segments |= set(head["segments"])
                channel.max_id = max(channel.max_id, head["max_id"])
                channel.pts = max(channel.pts, head.get("pts", 0))
                if lacking:      # the stored copy is older than this process's: store what it
                    await self._reindex(channel, lacking)   # lacks, and tell the others it changed
                    self._changed(channel)
                else:
                    self._index(channel, await asyncio.to_thread(
                        tree.build, list(channel.records.values()), channel_id, channel.access_hash,
                        self._trusted(channel)))

    def _listed(self, channel_id: int) -> _Channel | None:
        return next((c for c in (self._channels or {}).values()
                     if c.folder.channel_id == channel_id and c.refreshes), None)

    def _changed(self, channel: _Channel) -> None:
        if self.on_change is not None:
            self.on_change(channel.folder.channel_id)

    async def records(self, folder: Folder) -> list[tree.Record]:
        channel = await self._channel(folder)
        return list(channel.records.values())

    def access_hash(self, folder: Folder) -> int:
        channel = (self._channels or {}).get(folder.name)
        if channel is None or channel.folder.channel_id != folder.channel_id:
            raise NotFound(f"channel {folder.name!r} is not available")
        return channel.access_hash

    async def _channel(self, folder: Folder) -> _Channel:
        await self.folders()
        channel = self._channels.get(folder.name)
        if channel is None or channel.folder.channel_id != folder.channel_id:
            raise NotFound(f"channel {folder.name!r} is not available")
        if channel.refreshes and self._clock() - channel.checked > self._refresh_seconds:
            self._in_background(folder.channel_id, lambda: self._refresh_stale(folder))
            return channel
        if not channel.refreshes:              # nothing to show yet: this look waits for it
            await asyncio.shield(self._first_read(channel))
        return channel

    def _first_read(self, channel: _Channel) -> asyncio.Future:
        """The first listing of a channel (from the store, else its whole history) as a task the
        catalog owns: a look that gives up (an HTTP client's timeout) does not cancel it, later looks
        wait for the same task, and what it read is kept."""
        key = ("first", channel.folder.channel_id)
        task = self._refreshing.get(key)
        if task is None:
            async def run():
                try:
                    async with self._lock(channel.folder.channel_id):
                        if channel.megagroup and self._trust_ids is None:   # whose tags count, first
                            await self._resolve_trust()
                        if not channel.checked:
                            self._load_listing(channel)
                        if not channel.refreshes:
                            await self._refresh(channel)
                finally:
                    self._refreshing.pop(key, None)
            task = self._refreshing[key] = asyncio.get_running_loop().create_task(run())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())   # seen by its waiters
        return task

    async def _refresh_stale(self, folder: Folder) -> None:
        channel = (self._channels or {}).get(folder.name)
        if channel is None:
            return
        async with self._lock(folder.channel_id):
            if self._clock() - channel.checked > self._refresh_seconds:
                await self._refresh(channel)

    async def _refresh(self, channel: _Channel, full: bool = False) -> None:
        """The first look reads the whole history; later ones only what is newer than the newest known
        (edits and deletions by others come from live updates, not from reading everything again).
        `full`: read the whole history again (an update gap too old to fetch)."""
        since = channel.max_id if channel.refreshes and not full else 0
        found = await (self._bot_scan(channel, since) if self._is_bot
                       else self._history(channel, since))
        if channel.megagroup and (not since or self._trust_ids is None):
            await self._load_admins(channel)
        if since:
            channel.records.update(found)
        else:
            channel.records = found
            channel.stored = False
            channel.pts = channel.read_pts       # a whole read is current to where it started
        channel.max_id = max([channel.max_id, *found])
        channel.refreshes += 1
        channel.checked = self._clock()
        self._index(channel)
        self._remember(channel, None if not since else found)

    # --- the listing in the store: a small head and the records in pieces of SEGMENT message ids -----
    def _store_key(self, channel: _Channel) -> str:
        return f"channel:{channel.folder.channel_id}"

    def _remember(self, channel: _Channel, changed=None) -> None:
        """Store the pieces holding the message ids in `changed` (None: every piece) and the head:
        one new post rewrites one piece of at most SEGMENT records, never the whole listing."""
        key = self._store_key(channel)
        ids = channel.records if changed is None else changed
        for segment in sorted({mid // SEGMENT for mid in ids}):
            records = _segment_records(channel.records, segment)
            self._store.remember_listing(f"{key}:{segment}", records)
            if records:
                channel.segments.add(segment)
            else:
                channel.segments.discard(segment)
        if changed is None:                  # a whole new history: pieces of the old one are gone
            channel.segments = {mid // SEGMENT for mid in channel.records}
        self._store.remember_listing(key, {
            "version": LISTING_VERSION, "access_hash": channel.access_hash, "max_id": channel.max_id,
            "segments": sorted(channel.segments), "pts": channel.pts, "admins": channel.admins,
            "gone": sorted(channel.gone)[-GONE_SHARED:]})

    def _kept(self, channel: _Channel) -> tuple[dict, dict[int, tree.Record]] | None:
        """(head, records) of the listing in the store; None if there is none or a piece is missing."""
        key = self._store_key(channel)
        head = self._store.listing(key)
        if not head or head.get("version") != LISTING_VERSION:
            return None
        records: dict[int, tree.Record] = {}
        for segment in head["segments"]:
            piece = self._store.listing(f"{key}:{segment}")
            if piece is None:
                return None
            records.update((r.message_id, r) for r in piece)
        return head, records

    def _load_listing(self, channel: _Channel) -> None:
        """Start from the listing an earlier run kept; the first refresh is then incremental."""
        kept = self._kept(channel)
        if kept is None:                     # none, or a piece is missing: read the history again
            return
        head, records = kept
        channel.records, channel.segments = records, set(head["segments"])
        channel.max_id = head["max_id"]
        channel.pts = head.get("pts", 0)
        channel.admins = frozenset(head.get("admins", ()))
        channel.stored = True
        channel.refreshes = 1
        channel.checked = self._clock()
        self._index(channel)

    async def _reindex(self, channel: _Channel, changed=None) -> None:
        """After a write: the tree built and the changed pieces stored in a worker thread, so a big
        channel (100 ms for 10 000 messages) does not hold up the loop; the caller holds the channel lock."""
        records = list(channel.records.values())
        trusted = self._trusted(channel)

        def work() -> tree.Dir:
            root = tree.build(records, channel.folder.channel_id, channel.access_hash, trusted)
            self._remember(channel, changed)
            return root
        self._index(channel, await asyncio.to_thread(work))

    def _index(self, channel: _Channel, root: tree.Dir | None = None) -> None:
        if root is None:
            root = tree.build(list(channel.records.values()), channel.folder.channel_id, channel.access_hash,
                              self._trusted(channel))
        channel.root = root
        channel.listing = sorted(root.files.values(), key=lambda e: e.location.message_id)
        if self._on_listed is not None:
            self._on_listed(channel.listing)
        if root.modified > channel.folder.modified:
            channel.folder = replace(channel.folder, modified=root.modified)

    # --- reading the history ----------------------------------------------------------------------
    async def _history(self, channel: _Channel, min_id: int) -> dict[int, tree.Record]:
        """The channel's messages newer than min_id (0: all of them). A whole history is read in
        parallel: the first page gives the count and the newest id, the others are asked for at once
        by their place below that id (offset_id = newest + 1, add_offset = 100 k), as many at a time
        as `parallel` and the getHistory pace allow; ceil(count / 100) calls in all.

        A message deleted while the pages are read (by this writer, another replica, a Telegram app)
        moves every older message up one place, so a page cut after the deletion starts one message
        lower than its neighbour cut before it ended: that message is in no page. Then fewer distinct
        messages were seen than the first page counted, and what lies between the pages is read by
        message id (_between_pages), which no deletion moves."""
        peer = types.InputPeerChannel(channel.folder.channel_id, channel.access_hash)
        scan = _Scan(channel, None if min_id else self._progress)
        last = await self._page(peer, 0, 0, min_id)
        if not min_id:          # the channel's pts when the read starts (updates carry on from it)
            channel.read_pts = getattr(last, "pts", 0) or 0
        scan.take(last)
        count = 0               # messages in the channel when the read started (all of them <= top)
        if not min_id and len(last.messages) == PAGE:
            count = getattr(last, "count", 0) or PAGE
            last = await self._pages_in_parallel(peer, max(m.id for m in last.messages), count, scan)
            if len(scan.ids) >= count:
                last = None
        # one page after another: newer-than-min_id pages, or the oldest ones below the last window
        while last is not None and len(last.messages) == PAGE and scan.lowest > 1:
            last = await self._page(peer, scan.lowest, 0, min_id)
            scan.take(last)
        if len(scan.ids) < count:
            await self._between_pages(peer, scan)
        scan.report(True)
        return scan.found

    async def _between_pages(self, peer, scan: "_Scan") -> None:
        """Read every message between the pages read so far (a gap between the oldest id of one
        page and the newest of the next older one), by id: offset_id = the upper page's oldest id,
        min_id = the lower page's newest; a full answer is followed by the next page below it."""
        gaps, floor = [], None
        for newest, oldest in sorted(scan.pages, reverse=True):
            if floor is not None and newest < floor - 1:
                gaps.append((newest, floor))
            floor = oldest if floor is None else min(floor, oldest)
        slots = asyncio.Semaphore(self._parallel)

        async def fill(below: int, above: int) -> None:
            async with slots:
                while True:
                    page = await self._page(peer, above, 0, below)
                    scan.take(page)
                    if len(page.messages) < PAGE:
                        return
                    above = min(m.id for m in page.messages)
        await asyncio.gather(*(fill(below, above) for below, above in gaps))

    async def _pages_in_parallel(self, peer, top: int, count: int, scan: "_Scan"):
        """Pages 1.. of a history of `count` messages whose newest id is `top`, `parallel` in flight.
        Returns the oldest page."""
        offsets = iter(range(PAGE, count, PAGE))
        last = PAGE * ((count - 1) // PAGE)      # the oldest page's offset: the one page kept
        oldest = []

        async def worker() -> None:
            for add_offset in offsets:
                page = await self._page(peer, top + 1, add_offset, 0)
                scan.take(page)
                scan.report(False)
                if add_offset == last:
                    oldest.append(page)
        workers = [asyncio.ensure_future(worker()) for _ in range(self._parallel)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
        return oldest[0] if oldest else None

    async def _page(self, peer, offset_id: int, add_offset: int, min_id: int):
        if self._pace is not None:
            await self._pace.take()
        return await self._call(functions.messages.GetHistoryRequest(
            peer=peer, offset_id=offset_id, offset_date=None, add_offset=add_offset, limit=PAGE,
            max_id=0, min_id=min_id, hash=0), "reading a channel's history", invoke=self._invoke)

    async def _bot_scan(self, channel: _Channel, since: int) -> dict[int, tree.Record]:
        peer = types.InputChannel(channel.folder.channel_id, channel.access_hash)
        found: dict[int, tree.Record] = {}
        newest, first = since, since + 1
        while first <= newest + self._bot_gap:
            ids = list(range(first, first + PAGE))
            page = await self._call(functions.channels.GetMessagesRequest(peer, [types.InputMessageID(i) for i in ids]),
                                    f"reading messages of {channel.folder.name}")
            for m in page.messages:
                if isinstance(m, (types.Message, types.MessageService)):
                    newest = max(newest, m.id)
                    record = record_for(m, channel.folder.channel_id, channel.access_hash)
                    if record:
                        found[m.id] = record
            first += PAGE
        return found

    async def refresh_location(self, loc: Location) -> Location:
        """Fetch the message again for a fresh file reference (FILE_REFERENCE_EXPIRED)."""
        result = await self._call(functions.channels.GetMessagesRequest(
            types.InputChannel(loc.channel_id, loc.channel_access_hash), [types.InputMessageID(loc.message_id)]),
            f"reading message {loc.message_id} again")
        message = next((m for m in result.messages if isinstance(m, types.Message)), None)
        entry = entry_for(message, loc.channel_id, loc.channel_access_hash) if message else None
        if entry is None or entry.location.id != loc.id:
            raise NotFound(f"message {loc.message_id} no longer holds file {loc.file_key}")
        return entry.location

    async def _call(self, request, what: str, invoke=None):
        return await rpc.call(invoke or self._client, request, what)

    def _lock(self, key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())


class SyncCatalog:
    """model.Catalog for WSGI threads: runs TelegramCatalog on the bridge's loop."""

    def __init__(self, bridge, catalog: TelegramCatalog, timeout: float = 120.0) -> None:
        self._bridge = bridge
        self._catalog = catalog
        self._timeout = timeout
        self._late = lambda: UpstreamUnavailable(f"Telegram did not answer within {timeout:.0f} s")

    def _run(self, coro):
        return self._bridge.call(coro, self._timeout, on_timeout=self._late)

    def folders(self) -> list[Folder]:
        return self._run(self._catalog.folders())

    def folder(self, name: str) -> Folder | None:
        return self._run(self._catalog.folder(name))

    def entries(self, folder: Folder) -> list[FileEntry]:
        return self._run(self._catalog.entries(folder))

    def entry(self, folder: Folder, name: str) -> FileEntry | None:
        return self._run(self._catalog.entry(folder, name))

    def node(self, folder: Folder, path: tuple[str, ...]):
        """A tree.Dir, a FileEntry or None for `path` inside the channel."""
        return self._run(self._catalog.node(folder, tuple(path)))

    def resolve(self, names: tuple[str, ...]):
        """(folder(names[0]), node(it, names[1:])) in one trip to the loop (model.Catalog.resolve)."""
        async def both():
            folder = await self._catalog.folder(names[0])
            return folder, (await self._catalog.node(folder, tuple(names[1:])) if folder is not None else None)
        return self._run(both())
