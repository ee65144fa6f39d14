"""The sandbox's Telegram: accounts, channels, messages, documents and photos. Pure data, no I/O
beyond reading a file-backed document's bytes.

Who may write where: in a broadcast channel, its creator and its admins (with Telegram's admin right
names, e.g. post_messages) post, other members only read, and posts name no sender. In a supergroup
(megagroup) every member posts, each message names its sender (from_id), only the sender edits a
message, and the sender or an admin with delete_messages deletes it. Writes made by clients
(writes.py) go through the `post` / `edit` / `delete` / `restore_channel` methods here, which keep message ids increasing and never
reused, and the channel's pts counting every change, as on Telegram.

Every id and access hash is derived from the world's seed and a stable name (a phone, a channel
title, a channel id and message id), so a sandbox restarted with the same inputs has the same world
and clients keep working with what they cached. Messages are kept in id order and added in date order,
so paging is bisection and a channel of 10,000 messages builds in a few tens of milliseconds.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from tgdav.sandbox.content import pattern

DEFAULT_DCS = (1, 2, 3, 4, 5)
EPOCH = 1_700_000_000          # default date of the first message of a channel (Nov 2023)


def derive(seed: int, *parts: object) -> int:
    """A stable positive 63-bit number from the seed and a name."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# --- where bytes come from ------------------------------------------------------------------------
@dataclass(frozen=True)
class PatternSource:
    """Synthetic bytes of any size from content.pattern: no disk, exact bytes known to every test."""
    seed: int

    def read(self, offset: int, length: int) -> bytes:
        return pattern(self.seed, offset, length)


@dataclass(frozen=True)
class PartsSource:
    """An uploaded file kept as its upload parts (files 000000, 000001, ... in `folder`), all
    `part_size` bytes but the last, so a multi-GiB upload is never copied or held in memory."""
    folder: Path
    part_size: int
    size: int

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        out = bytearray()
        while length > 0:
            index, within = divmod(offset, self.part_size)
            with open(self.folder / f"{index:06d}", "rb") as f:
                f.seek(within)
                chunk = f.read(min(length, self.part_size - within))
            if not chunk:
                raise OSError(f"part {index} of {self.folder} is shorter than its document says")
            out += chunk
            offset += len(chunk)
            length -= len(chunk)
        return bytes(out)


@dataclass(frozen=True)
class FileSource:
    """A real file on disk (seeded folders, demo media)."""
    path: Path

    def read(self, offset: int, length: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)


@dataclass(frozen=True)
class BytesSource:
    """Small media generated in memory (the demo's WAV and PNG)."""
    data: bytes = field(repr=False)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]


Source = PatternSource | FileSource | BytesSource | PartsSource


# --- the model ------------------------------------------------------------------------------------
@dataclass
class Account:
    id: int
    access_hash: int
    first_name: str
    home_dc: int
    username: str | None = None
    phone: str | None = None          # digits only; users
    bot_token: str | None = None      # "<id>:<secret>"; bots
    password: str | None = None       # cloud password (2FA), users only
    premium: bool = False             # premium accounts may upload twice as many parts

    @property
    def is_bot(self) -> bool:
        return self.bot_token is not None


@dataclass(frozen=True)
class Video:
    duration: float
    w: int
    h: int
    supports_streaming: bool = True


@dataclass(frozen=True)
class Audio:
    duration: int
    title: str | None = None
    performer: str | None = None


@dataclass
class Document:
    id: int
    access_hash: int
    date: int
    mime: str
    size: int
    name: str
    dc_id: int                        # the DC the message advertises
    true_dc: int                      # the DC that really holds the bytes (differs when stale)
    source: Source
    video: Video | None = None
    audio: Audio | None = None


@dataclass(frozen=True)
class PhotoSize:
    type: str                         # "s", "m", "x", "y", ...
    w: int
    h: int
    size: int
    source: Source


@dataclass
class Photo:
    id: int
    access_hash: int
    date: int
    mime: str                         # "image/jpeg" or "image/png": the storage type of getFile
    sizes: list[PhotoSize]            # smallest first, as Telegram lists them
    dc_id: int
    true_dc: int

    def size(self, type_: str) -> PhotoSize | None:
        return next((s for s in self.sizes if s.type == type_), None)


@dataclass(slots=True)
class Message:
    id: int
    date: int
    text: str = ""
    media: Document | Photo | None = None
    edit_date: int | None = None
    fwd_from: tuple[int, int, int] | None = None     # (channel id, message id, date) of a forward's origin
    author: int = 0           # the account that posted it (0: seeded, no one in particular); groups
                              # name it (from_id), channel posts do not; `out` for its own account


@dataclass
class Channel:
    id: int
    access_hash: int
    title: str
    date: int
    username: str | None = None
    members: set[int] = field(default_factory=set)
    messages: list[Message] = field(default_factory=list, repr=False)   # ascending ids and dates
    creator_id: int | None = None
    admins: dict[int, frozenset[str]] = field(default_factory=dict)    # account id -> admin right names
    last_id: int = 0          # the highest message id ever given (ids are never reused)
    changes: int = 0          # edits and deletions, which move pts as new messages do
    # the channel's update box: (pts after, pts_count, "new" | "edit" | "delete", message ids, unix time)
    # per change, oldest first; updates.getChannelDifference answers from it
    box: list[tuple[int, int, str, tuple[int, ...], int]] = field(default_factory=list, repr=False)
    megagroup: bool = False   # a supergroup: every member posts, messages name their sender

    @property
    def top(self) -> Message | None:
        return self.messages[-1] if self.messages else None

    @property
    def pts(self) -> int:
        return self.last_id + self.changes + 1

    def rights_of(self, account: Account) -> frozenset[str]:
        """The admin rights `account` holds here: every right for the creator, none for a reader."""
        if account.id == self.creator_id:
            return ADMIN_RIGHTS
        return self.admins.get(account.id, frozenset())

    def may_post(self, account: Account) -> bool:
        if self.megagroup:
            return account.id in self.members
        return "post_messages" in self.rights_of(account)

    def may_edit(self, account: Account, message: Message | None = None) -> bool:
        if self.megagroup:       # a group's messages are edited by their sender only
            return message is not None and message.author == account.id
        return bool({"edit_messages", "post_messages"} & self.rights_of(account))

    def may_delete(self, account: Account, message: Message | None = None) -> bool:
        if self.megagroup and message is not None and message.author == account.id:
            return True
        return "delete_messages" in self.rights_of(account)

    def message(self, message_id: int) -> Message | None:
        i = bisect.bisect_left(self.messages, message_id, key=_id)
        if i < len(self.messages) and self.messages[i].id == message_id:
            return self.messages[i]
        return None

    def count_from_id(self, message_id: int) -> int:
        """How many messages have an id >= message_id."""
        return len(self.messages) - bisect.bisect_left(self.messages, message_id, key=_id)

    def count_from_date(self, date: int) -> int:
        """How many messages have a date >= date."""
        return len(self.messages) - bisect.bisect_left(self.messages, date, key=_date)

    def readable_by(self, account: Account) -> bool:
        """Members read any channel; anyone reads a public one."""
        return account.id in self.members or self.username is not None


# Telegram's chatAdminRights flags a broadcast channel's creator holds (all of them).
ADMIN_RIGHTS = frozenset({"change_info", "post_messages", "edit_messages", "delete_messages", "ban_users",
                          "invite_users", "pin_messages", "add_admins", "manage_call", "other",
                          "post_stories", "edit_stories", "delete_stories"})
# What an ordinary channel admin who posts files gets.
POSTER_RIGHTS = frozenset({"post_messages", "edit_messages", "delete_messages"})


def _id(m: Message) -> int:
    return m.id


def _date(m: Message) -> int:
    return m.date


class World:
    """The whole sandboxed Telegram. Build it first, then serve it (services read it, and change it
    only through writes.py, which journals every change to the state dir)."""

    def __init__(self, seed: int = 0, dc_ids: tuple[int, ...] = DEFAULT_DCS) -> None:
        if not dc_ids:
            raise ValueError("a world needs at least one DC")
        self.seed = seed
        self.dc_ids = tuple(sorted(dc_ids))
        self.dcs: dict[int, tuple[str, int]] = {}     # dc -> (host, port), filled by whoever starts the cluster
        self.login_code = f"{derive(seed, 'login-code') % 100000:05d}"
        self.accounts: dict[int, Account] = {}
        self.channels: dict[int, Channel] = {}
        self.documents: dict[int, Document] = {}
        self.photos: dict[int, Photo] = {}
        self._phones: dict[str, Account] = {}
        self._tokens: dict[str, Account] = {}
        self._usernames: dict[str, Account | Channel] = {}

    # --- lookups ---------------------------------------------------------------------------------
    def account_by_phone(self, phone: str) -> Account | None:
        return self._phones.get(normalize_phone(phone))

    def account_by_token(self, token: str) -> Account | None:
        return self._tokens.get(token)

    def by_username(self, username: str) -> Account | Channel | None:
        return self._usernames.get(username.lower())

    def users(self) -> list[Account]:
        return [a for a in self.accounts.values() if not a.is_bot]

    def bots(self) -> list[Account]:
        return [a for a in self.accounts.values() if a.is_bot]

    def dialogs_of(self, account: Account) -> list[Channel]:
        """The account's channels, newest activity first (Telegram's dialog order)."""
        mine = [c for c in self.channels.values() if account.id in c.members]
        return sorted(mine, key=lambda c: (c.top.date if c.top else c.date, c.id), reverse=True)

    # --- building: accounts and channels ---------------------------------------------------------
    def add_user(self, phone: str, first_name: str, *, username: str | None = None,
                 home_dc: int = 2, password: str | None = None, premium: bool = False) -> Account:
        phone = normalize_phone(phone)
        if phone in self._phones:
            raise ValueError(f"phone {phone} is already taken")
        account = Account(self._user_id("user", phone), derive(self.seed, "user-hash", phone),
                          first_name, self._dc(home_dc), username=username, phone=phone,
                          password=password, premium=premium)
        self._phones[phone] = account
        return self._add_account(account)

    def add_bot(self, first_name: str, username: str, *, home_dc: int = 2) -> Account:
        uid = self._user_id("bot", username.lower())
        secret = hashlib.blake2b(repr((self.seed, "bot-token", uid)).encode(), digest_size=26).digest()
        token = f"{uid}:{base64.urlsafe_b64encode(secret).decode().rstrip('=')}"
        account = Account(uid, derive(self.seed, "user-hash", uid), first_name, self._dc(home_dc),
                          username=username, bot_token=token)
        self._tokens[token] = account
        return self._add_account(account)

    def add_channel(self, title: str, *, username: str | None = None, members=(),
                    date: int = EPOCH, creator: Account | None = None, admins=None,
                    megagroup: bool = False) -> Channel:
        """`members` read (and, in a megagroup, post); `creator` (a member) holds every admin right;
        `admins` maps accounts to their admin right names (default POSTER_RIGHTS when given as a plain
        list of accounts)."""
        n = 0
        while (cid := self.new_channel_id(title, n)) in self.channels:
            n += 1
        channel = Channel(cid, derive(self.seed, "channel-hash", cid), title, date, username=username,
                          members={_account_id(m) for m in members}, megagroup=megagroup)
        if creator is not None:
            channel.creator_id = _account_id(creator)
            channel.members.add(channel.creator_id)
        if admins:
            pairs = admins.items() if isinstance(admins, dict) else ((a, POSTER_RIGHTS) for a in admins)
            for account, rights in pairs:
                unknown = set(rights) - ADMIN_RIGHTS
                if unknown:
                    raise ValueError(f"unknown admin rights {sorted(unknown)}")
                channel.admins[_account_id(account)] = frozenset(rights)
                channel.members.add(_account_id(account))
        self._claim_username(username, channel)
        self.channels[cid] = channel
        return channel

    def new_channel_id(self, title: str, n: int = 0) -> int:
        return 1_000_000_000 + derive(self.seed, "channel", title, n) % 1_000_000_000

    def restore_channel(self, cid: int, access_hash: int, title: str, date: int,
                        creator_id: int | None, megagroup: bool = False) -> Channel:
        """A channel a client created (channels.createChannel), with the id and hash it was given."""
        if cid in self.channels:
            raise ValueError(f"channel {cid} already exists")
        channel = Channel(cid, access_hash, title, date, creator_id=creator_id, megagroup=megagroup)
        if creator_id is not None:
            channel.members.add(creator_id)
        self.channels[cid] = channel
        return channel

    # --- building: messages ----------------------------------------------------------------------
    def add_text(self, channel: Channel, text: str, *, date: int | None = None) -> Message:
        return self._append(channel, text, None, date)

    def add_document(self, channel: Channel, *, name: str, size: int, mime: str,
                     source: Source | None = None, dc: int | None = None, text: str = "",
                     date: int | None = None, video: Video | None = None,
                     audio: Audio | None = None) -> Message:
        """A document message. Without `source` its bytes are the pattern of the document's id."""
        if size < 0:
            raise ValueError("size must be >= 0")
        mid = self._next_id(channel)
        doc_id = derive(self.seed, "document", channel.id, mid)
        dc = self._dc(dc) if dc is not None else self.spread_dc(doc_id)
        doc = Document(doc_id, derive(self.seed, "document-hash", doc_id), 0, mime, size, name, dc, dc,
                       source or PatternSource(doc_id), video=video, audio=audio)
        message = self._append(channel, text, doc, date)
        doc.date = message.date
        self.documents[doc_id] = doc
        return message

    def add_photo(self, channel: Channel, sizes: list[PhotoSize], *, mime: str = "image/jpeg",
                  dc: int | None = None, text: str = "", date: int | None = None) -> Message:
        if not sizes:
            raise ValueError("a photo needs at least one size")
        mid = self._next_id(channel)
        photo_id = derive(self.seed, "photo", channel.id, mid)
        dc = self._dc(dc) if dc is not None else self.spread_dc(photo_id)
        photo = Photo(photo_id, derive(self.seed, "photo-hash", photo_id), 0, mime,
                      sorted(sizes, key=lambda s: s.size), dc, dc)
        message = self._append(channel, text, photo, date)
        photo.date = message.date
        self.photos[photo_id] = photo
        return message

    # --- writes made by clients (see writes.py, which journals them) --------------------------
    def upload_dc(self, account: Account) -> int:
        """Where a file a client uploads is stored: the uploader's home DC, as on Telegram."""
        return account.home_dc

    def post(self, channel: Channel, text: str, media: Document | Photo | None, date: int, *,
             message_id: int | None = None, fwd_from: tuple[int, int, int] | None = None,
             author: int = 0) -> Message:
        """A new message at the end of the channel (a date earlier than the last one's is moved up).
        `author`: who posted it (a megagroup names it in from_id, a channel post does not)."""
        last = channel.messages[-1] if channel.messages else None
        date = max(int(date), last.date if last else 0)
        message = self._append(channel, text, media, date, message_id)
        message.fwd_from = fwd_from
        message.author = author
        if isinstance(media, Document):
            self.documents.setdefault(media.id, media)
        return message

    def edit(self, channel: Channel, message: Message, date: int, text: str | None = None,
             media: Document | Photo | None = None) -> None:
        if text is not None:
            message.text = text
        if media is not None:
            message.media = media
        message.edit_date = int(date)
        channel.changes += 1
        channel.box.append((channel.pts, 1, "edit", (message.id,), int(date)))

    def retitle(self, channel: Channel, title: str) -> None:
        """A new title moves no pts: clients learn it from updateChannel, which carries none."""
        channel.title = title

    def drop_channel(self, channel: Channel) -> None:
        """channels.deleteChannel: the channel and its messages go (documents stay for other copies)."""
        del self.channels[channel.id]
        if channel.username:
            self._usernames.pop(channel.username.lower(), None)

    def delete(self, channel: Channel, ids) -> list[int]:
        """Remove these message ids (unknown ones are ignored); returns the ids removed."""
        wanted = set(ids)
        gone = [m.id for m in channel.messages if m.id in wanted]
        if gone:
            channel.messages[:] = [m for m in channel.messages if m.id not in wanted]
            channel.changes += len(gone)
            channel.box.append((channel.pts, len(gone), "delete", tuple(gone), int(time.time())))
        return gone

    def spread_dc(self, file_id: int) -> int:
        """The DC a file lands on when none is asked for: spread evenly and stably."""
        return self.dc_ids[derive(self.seed, "dc", file_id) % len(self.dc_ids)]

    def make_stale(self, media: Document | Photo, true_dc: int | None = None) -> int:
        """Move the bytes to another DC while messages keep advertising the old one; returns the new DC."""
        others = [d for d in self.dc_ids if d != media.dc_id]
        if true_dc is None:
            if not others:
                raise ValueError("a stale dc_id needs at least two DCs")
            true_dc = others[derive(self.seed, "stale", media.id) % len(others)]
        media.true_dc = self._dc(true_dc)
        return media.true_dc

    # --- internals -------------------------------------------------------------------------------
    def _dc(self, dc: int) -> int:
        if dc not in self.dc_ids:
            raise ValueError(f"DC {dc} is not one of this world's DCs {self.dc_ids}")
        return dc

    def _user_id(self, kind: str, name: str) -> int:
        n = 0
        while (uid := 1_000_000_000 + derive(self.seed, kind, name, n) % 1_000_000_000) in self.accounts:
            n += 1
        return uid

    def _add_account(self, account: Account) -> Account:
        self._claim_username(account.username, account)
        self.accounts[account.id] = account
        return account

    def _claim_username(self, username: str | None, owner: Account | Channel) -> None:
        if username is None:
            return
        if username.lower() in self._usernames:
            raise ValueError(f"username @{username} is already taken")
        self._usernames[username.lower()] = owner

    @staticmethod
    def _next_id(channel: Channel) -> int:
        return channel.last_id + 1

    def _append(self, channel: Channel, text: str, media, date: int | None,
                message_id: int | None = None) -> Message:
        last = channel.messages[-1] if channel.messages else None
        if date is None:
            date = last.date + 60 if last else channel.date
        elif last and date < last.date:
            raise ValueError("messages must be added in date order")
        mid = self._next_id(channel) if message_id is None else message_id
        if mid <= channel.last_id:
            raise ValueError(f"message id {mid} of channel {channel.id} was already given")
        message = Message(mid, int(date), text, media)
        channel.messages.append(message)
        channel.last_id = mid
        channel.box.append((channel.pts, 1, "new", (mid,), int(time.time())))
        return message


def _account_id(account: Account | int) -> int:
    return account.id if isinstance(account, Account) else int(account)


def normalize_phone(phone: str) -> str:
    """Telegram's form of a phone number: digits only."""
    digits = "".join(ch for ch in str(phone) if ch.isdigit())
    if not digits:
        raise ValueError(f"not a phone number: {phone!r}")
    return digits
