"""A catalog and a reader for the WebDAV tests: bytes come from sandbox.content.pattern (seed =
location.id), every call is counted, and failures can be planted per file."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from tgdav.model import FileEntry, Folder, Location
from tgdav.sandbox.content import pattern

MiB, GiB = 2**20, 2**30
T0 = 1714557600.0  # 2024-05-01 10:00:00 UTC


def make_entry(seed: int, name: str, size: int, mime: str = "application/octet-stream") -> FileEntry:
    location = Location(kind="document", id=seed, access_hash=seed * 7, file_reference=b"ref", dc_id=2,
                        size=size, channel_id=1000 + seed, channel_access_hash=1, message_id=seed)
    return FileEntry(name=name, size=size, mime=mime, modified=T0 + seed * 3600, created=T0 + seed * 60,
                     etag=f"doc{seed}-{size}", location=location)


def sample_tree() -> dict[str, list[FileEntry]]:
    return {
        "Films": [
            make_entry(11, "clip #1 100% what?.mp4", 5 * MiB + 17, "video/mp4"),
            make_entry(12, "empty.bin", 0),
            make_entry(13, "one.byte", 1),
            make_entry(14, "small.txt", 1000, "text/plain"),
        ],
        "Música ünï": [
            make_entry(21, "canción – ñ.mp3", 300_001, "audio/mpeg"),
            make_entry(22, "日本語 file.flac", 70_000, "audio/flac"),
        ],
        "Big": [make_entry(31, "huge movie.mkv", 3 * GiB + 12345, "video/x-matroska")],
        "Empty folder": [],
    }


class FakeCatalog:
    """Folders and entries from a dict; `calls` counts every method call by name."""

    def __init__(self, tree: dict[str, list[FileEntry]] | None = None) -> None:
        self.tree = sample_tree() if tree is None else tree
        self._folders = {name: Folder(name=name, channel_id=i, title=name.upper(), username=None,
                                      modified=max([e.modified for e in files], default=T0))
                         for i, (name, files) in enumerate(self.tree.items(), 1)}
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1

    def folders(self) -> list[Folder]:
        self._count("folders")
        return list(self._folders.values())

    def folder(self, name: str) -> Folder | None:
        self._count("folder")
        return self._folders.get(name)

    def entries(self, folder: Folder) -> list[FileEntry]:
        self._count("entries")
        return list(self.tree[folder.name])

    def entry(self, folder: Folder, name: str) -> FileEntry | None:
        self._count("entry")
        return next((e for e in self.tree[folder.name] if e.name == name), None)

    def node(self, folder: Folder, path: tuple[str, ...]) -> "FakeDir | FileEntry | None":
        """Channels without folders: () is the channel's files (read with entries(), as the real
        catalog reads the listing), (name,) one of them."""
        self._count("node")
        files = {e.name: e for e in self.entries(folder)}
        if not path:
            return FakeDir(files=files, modified=max([e.modified for e in files.values()], default=0.0))
        return files.get(path[0]) if len(path) == 1 else None

    def resolve(self, names: tuple[str, ...]) -> tuple[Folder | None, "FakeDir | FileEntry | None"]:
        folder = self.folder(names[0])
        return folder, (self.node(folder, tuple(names[1:])) if folder is not None else None)

    def file(self, folder: str, name: str) -> FileEntry:
        """Test helper (not counted)."""
        return next(e for e in self.tree[folder] if e.name == name)


@dataclass
class FakeDir:
    """model.Dir: a channel's files, no folders inside."""
    files: dict[str, FileEntry] = field(default_factory=dict)
    dirs: dict[str, "FakeDir"] = field(default_factory=dict)
    modified: float = 0.0


@dataclass
class Plan:
    """Failures planted for one file: raise `at_open` on open, or `after` once `after_bytes` were read."""
    at_open: Exception | None = None
    after_bytes: int | None = None
    after: Exception | None = None


@dataclass
class FakeReader:
    """Streams pattern(location.id, ...) and counts opens, bytes and closes."""
    chunk: int = 64 * 1024                      # the longest single read() answer (short reads happen)
    plans: dict[int, Plan] = field(default_factory=dict)
    opens: list[tuple[int, int, int]] = field(default_factory=list)
    bytes_read: int = 0
    closed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, location: Location, start: int, end: int) -> FakeStream:
        assert 0 <= start <= end < location.size, (start, end, location.size)
        with self._lock:
            self.opens.append((location.id, start, end))
        plan = self.plans.get(location.id, Plan())
        if plan.at_open is not None:
            raise plan.at_open
        return FakeStream(self, location.id, start, end, plan)

    def _add(self, n: int = 0, closed: int = 0) -> None:
        with self._lock:
            self.bytes_read += n
            self.closed += closed


class FakeStream:
    def __init__(self, reader: FakeReader, seed: int, start: int, end: int, plan: Plan) -> None:
        self.reader, self.seed, self.pos, self.end, self.plan = reader, seed, start, end, plan
        self.served = 0

    def read(self, n: int = -1) -> bytes:
        if self.plan.after is not None and self.served >= self.plan.after_bytes:
            raise self.plan.after
        left = self.end + 1 - self.pos
        n = left if n < 0 else min(n, left)
        n = min(n, self.reader.chunk)
        if self.plan.after is not None:
            n = min(n, self.plan.after_bytes - self.served)
        data = pattern(self.seed, self.pos, n)
        self.pos += n
        self.served += n
        self.reader._add(n)
        return data

    def close(self) -> None:
        self.reader._add(closed=1)
