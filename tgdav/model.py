"""The vocabulary shared by the layers: folders, files, where their bytes live, and the narrow
interfaces the WebDAV face uses. Plain data, no Telethon, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol


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


class Catalog(Protocol):
    def folders(self) -> list[Folder]: ...

    def folder(self, name: str) -> Folder | None: ...

    def entries(self, folder: Folder) -> list[FileEntry]: ...

    def entry(self, folder: Folder, name: str) -> FileEntry | None: ...


class Reader(Protocol):
    def open(self, location: Location, start: int, end: int) -> ByteStream:
        """Stream bytes start..end inclusive (0 <= start <= end < size). Raises tgdav.errors types."""
        ...
