"""The vocabulary shared by the layers: folders, files, where their bytes live, and the narrow
interfaces the WebDAV face uses. Plain data, no Telethon, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Location:
    """Everything needed to fetch a file's bytes with upload.getFile and to refresh its reference."""
    kind: str                 # "document", "photo", or "empty" (a 0-byte file: a text message, no bytes)
    id: int                   # document id or photo id
    access_hash: int
    file_reference: bytes
    dc_id: int                # the DC the message says holds the bytes (may be stale)
    size: int
    channel_id: int           # to refetch the message (channels.getMessages) when the reference expires
    channel_access_hash: int
    message_id: int
    thumb_size: str = ""      # photos: the size type of the largest size ("y", "w", ...)

    @property
    def file_key(self) -> str:
        """Stable key of the bytes, for the DC map and the chunk cache."""
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Folder:
    name: str                 # cleaned, unique, stable folder name
    channel_id: int
    title: str
    username: str | None
    modified: float           # unix time of the newest message known
    writable: bool = False    # the account may post here (creator, or admin with post_messages)


@dataclass(frozen=True)
class FileEntry:
    name: str                 # cleaned, unique within its folder, stable across restarts
    size: int
    mime: str
    modified: float           # unix time: edit date, else post date
    created: float            # unix time: post date
    etag: str                 # from document id, size and edit date
    location: Location = field(repr=False)
    # written by tgdav (see tgdav/telegram/tree.py): the file's directory inside its channel, the
    # user's caption text above tgdav's tag line, and every message holding its bytes in order
    # (a file larger than one message can hold is stored as several "pieces", all the same size but
    # the last; `location` is then the first piece and `pieces` all of them).
    dir: tuple[str, ...] = ()
    caption: str = ""
    pieces: tuple[Location, ...] = field(default=(), repr=False)

    @property
    def spans(self) -> tuple[tuple[int, Location], ...]:
        """(offset of the piece in the file, piece) for each message holding the bytes."""
        out, offset = [], 0
        for loc in self.pieces or (self.location,):
            out.append((offset, loc))
            offset += loc.size
        return tuple(out)

    @property
    def message_ids(self) -> tuple[int, ...]:
        return tuple(loc.message_id for loc in self.pieces or (self.location,))


class ByteStream(Protocol):
    """Bytes [start, end] of one file, in order. read(n) returns up to n bytes, b"" only at the end."""

    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...


class Dir(Protocol):
    """A folder inside a channel (the channel itself at path ()): tgdav/telegram/tree.py's Dir."""
    modified: float                   # unix time of its newest change known (0: not known)

    @property
    def dirs(self) -> Mapping[str, "Dir"]: ...

    @property
    def files(self) -> Mapping[str, FileEntry]: ...


@runtime_checkable
class Catalog(Protocol):
    """Channels as folders, what they hold as folders and files (the WebDAV face's only view of
    Telegram; every method may raise tgdav.errors types)."""

    def folders(self) -> list[Folder]: ...

    def folder(self, name: str) -> Folder | None: ...

    def entries(self, folder: Folder) -> list[FileEntry]:
        """Every file of the channel, in every folder."""
        ...

    def entry(self, folder: Folder, name: str) -> FileEntry | None:
        """A file at the top of the channel."""
        ...

    def node(self, folder: Folder, path: tuple[str, ...]) -> Dir | FileEntry | None:
        """The folder or file at `path` inside the channel (() is the channel itself), or None."""
        ...

    def resolve(self, names: tuple[str, ...]) -> tuple[Folder | None, Dir | FileEntry | None]:
        """folder(names[0]) and then node(that folder, names[1:]) in one step (one trip to the
        loop that owns Telegram); (None, None) when there is no such channel."""
        ...


class Target:
    """What one request path names, looked up in `catalog` at most once each (the channel, then
    the folder or file inside it), when first asked: the WebDAV layers share one per request
    (tgdav.dav.policy.target), so a GET asks the catalog once for the channel and once for the
    file however many layers look."""

    def __init__(self, catalog: Catalog, names: Sequence[str]) -> None:
        self.catalog, self.names = catalog, tuple(names)

    @cached_property
    def folder(self) -> Folder | None:
        """The channel (None: the root, or no such channel)."""
        return self.catalog.folder(self.names[0]) if self.names else None

    @cached_property
    def node(self) -> Dir | FileEntry | None:
        """The channel's root Dir, a Dir or FileEntry inside it, or None (nothing there); with the
        channel in the same step (Catalog.resolve) when it was not looked up yet."""
        if not self.names:
            return None
        if "folder" in self.__dict__:       # the channel is known already
            return self.catalog.node(self.folder, self.names[1:]) if self.folder is not None else None
        self.__dict__["folder"], node = self.catalog.resolve(self.names)
        return node

    @property
    def entry(self) -> FileEntry | None:
        """The file the path names (None: a folder, or nothing)."""
        node = self.node if len(self.names) >= 2 else None
        return node if isinstance(node, FileEntry) else None


@runtime_checkable
class ChunkStore(Protocol):
    """What the reader (cache/reader.py) asks of the store: the bytes of parts, and per file the
    index of the parts stored (a part the index names may be gone: chunk() answers None)."""

    def chunk_index(self, file_key: str) -> list[tuple[int, int]]: ...

    def remember_chunk_index(self, file_key: str, chunks: list[tuple[int, int]]) -> None: ...

    def chunk(self, file_key: str, offset: int, size: int) -> bytes | None: ...

    def put_chunk(self, file_key: str, offset: int, size: int, data: bytes) -> None: ...


@runtime_checkable
class ListingStore(Protocol):
    """What the catalog (telegram/catalog.py) asks of the store: its listings, kept over restarts."""

    def listing(self, key: Any) -> Any: ...

    def remember_listing(self, key: Any, value: Any) -> None: ...


@runtime_checkable
class AccountStore(Protocol):
    """What one account's senders and fetcher ask of the store: the DC that holds each file (every
    account's), the auth keys its DCs accepted (its own) and the flood deadlines its replicas share
    (None: no replicas)."""

    def dc_for(self, file_key: str) -> int | None: ...

    def remember_dc(self, file_key: str, dc: int) -> None: ...

    def dc_auth(self, dc: int) -> bytes | None: ...

    def remember_dc_auth(self, dc: int, key: bytes) -> None: ...

    def forget_dc_auth(self, dc: int) -> None: ...

    def flood_board(self) -> Any: ...


@runtime_checkable
class StateStore(ChunkStore, ListingStore, AccountStore, Protocol):
    """The whole store (cache/store.py's Store, or cache/shared.py's RedisStore with replicas): it
    is the main account's AccountStore once bind_account() named it, and for_account() gives a
    helper account's."""

    def bind_account(self, account_id: int) -> None: ...

    def for_account(self, account_id: int) -> AccountStore: ...

    def shared_state(self) -> dict: ...

    def chunk_stats(self) -> dict: ...

    def close(self) -> None: ...


class Reader(Protocol):
    def open(self, location: Location, start: int, end: int) -> ByteStream:
        """Stream bytes start..end inclusive (0 <= start <= end < size). Raises tgdav.errors types."""
        ...
