"""The folder tree inside a channel, kept in Telegram itself: one tag line per message. Pure code.

The representation (and why)
----------------------------
Every message tgdav writes ends its text or caption with ONE line that says where it belongs:

    #tgdav file /Photos/2024/IMG 0001.jpg        a document: the file at that path
    #tgdav empty /notes/todo.txt                  a text message: an empty file (Telegram stores
                                                  no 0-byte documents)
    #tgdav dir /Photos/empty album                a text message: a folder (so empty ones exist)
    #tgdav piece 1 5f3a9c /films/long.mkv         a document: piece 1 of a file too big for one
    #tgdav piece 2/2 5f3a9c /films/long.mkv       message; the last piece says how many there are

The path is everything after the fixed words up to the end of the line (spaces allowed: names never
hold '/' or control characters). Why a tag per message and not an index message per channel:

- the place of a file travels with the file: nothing to re-upload on every change (tgfs keeps one
  metadata.json and loses the tree when it breaks), no single message to contend for, and a second
  tgdav with an empty cache rebuilds the same tree from the history it reads anyway;
- renames and moves inside a channel are caption edits (messages.editMessage): no bytes move;
- a caption is what people read in Telegram apps: the user's own text stays above the tag, the tag
  is one short human-readable line (and "#tgdav" becomes a tappable hashtag that finds them all);
- edits made in Telegram apps cannot corrupt anything: a message whose last line is not a valid tag
  is simply an untagged post, shown as before (at the channel's root, under its document name); a
  user who edits the path in the tag moves the file, which is what they asked for.

Rules that make overwrites atomic and repairs automatic:
- Several messages claiming one path: the latest (edit date, else post date; then message id) wins
  and the others are not shown. An overwrite sends the new message first and deletes the old one
  after, so a reader sees the whole old file or the whole new one; if tgdav dies in between, the new
  one already wins. A tagged file also hides an untagged post of the same name at the root (that is
  what overwriting an existing post does).
- A file in pieces is shown only when its last piece (the one with "/N") and pieces 1..N exist, and
  the last piece is sent last: a half-uploaded big file is never visible.
- A folder hides a file of the same path; folders exist when a marker or anything below them does.
- Messages without a valid tag (every post made outside tgdav) are shown exactly as before: at the
  root, named by names.unique over their document names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from tgdav.model import FileEntry, Location
from tgdav.telegram import names

TAG = "#tgdav"
_LINE = re.compile(r"#tgdav (file|empty|dir|piece (\d{1,6})(?:/(\d{1,6}))? ([0-9a-f]{1,32})) (/.*)\Z")


@dataclass(frozen=True)
class Tag:
    kind: str                         # "file", "empty", "dir" or "piece"
    path: tuple[str, ...]             # names from the channel's root; () is the root itself (dir only)
    piece: int = 0                    # pieces: 1-based number
    pieces: int = 0                   # pieces: the count, on the last piece only
    set_id: str = ""                  # pieces: what ties the pieces of one upload together

    def line(self) -> str:
        path = "/" + "/".join(self.path)
        if self.kind == "piece":
            count = f"/{self.pieces}" if self.pieces else ""
            return f"{TAG} piece {self.piece}{count} {self.set_id} {path}"
        return f"{TAG} {self.kind} {path}"


def split_path(text: str) -> tuple[str, ...] | None:
    """'/a/b' -> ('a', 'b'); None when a name is not one tgdav would store (names.unstorable: names
    as the user sent them, ':' '?' '*' included; untagged posts keep names.clean's Windows-safe names)."""
    if not text.startswith("/"):
        return None
    parts = tuple(p for p in text[1:].split("/"))
    if parts == ("",):
        return ()
    if any(not p or names.unstorable(p) for p in parts):
        return None
    return parts


def parse(text: str) -> tuple[Tag | None, str]:
    """(the tag on the last line, the user's text above it); (None, text) when there is none."""
    body, _, last = (text or "").rpartition("\n")
    m = _LINE.match(last.strip())
    if m is None:
        return None, text or ""
    path = split_path(m.group(5))
    if path is None:
        return None, text or ""
    kind = m.group(1).split(" ")[0]
    if kind != "dir" and not path:
        return None, text or ""
    if kind == "piece":
        number, count = int(m.group(2)), int(m.group(3) or 0)
        if number < 1 or (count and number != count):
            return None, text or ""
        return Tag("piece", path, number, count, m.group(4)), body
    return Tag(kind, path), body


def compose(text: str, tag: Tag) -> str:
    """The caption for a message: the user's text, then the tag line."""
    text = (text or "").rstrip("\n")
    return f"{text}\n{tag.line()}" if text else tag.line()


@dataclass(frozen=True)
class Record:
    """One message as the tree sees it (what the catalog keeps per message id)."""
    message_id: int
    date: float                       # post date
    edited: float                     # edit date, else post date
    tag: Tag | None
    text: str                         # the user's text, without the tag line
    entry: FileEntry | None = None    # media messages: the file it carries (name from the document)

    @property
    def rank(self) -> tuple[float, int]:
        return (self.edited, self.message_id)


@dataclass
class Dir:
    path: tuple[str, ...]
    modified: float = 0.0
    files: dict[str, FileEntry] = field(default_factory=dict)
    dirs: dict[str, "Dir"] = field(default_factory=dict)
    markers: list[int] = field(default_factory=list)     # message ids of "#tgdav dir" markers

    def walk(self):
        """This folder and every folder below it, parents first."""
        yield self
        for child in self.dirs.values():
            yield from child.walk()

    def message_ids(self) -> list[int]:
        """Every message that makes up this folder and everything in it."""
        out: list[int] = []
        for d in self.walk():
            out += d.markers
            for entry in d.files.values():
                out += entry.message_ids
        return out


def _etag(first: Location, size: int, edited: float) -> str:
    return f"{first.id:x}-{size:x}-{int(edited):x}"


def build(records: list[Record], channel_id: int, channel_access_hash: int) -> Dir:
    """The channel's tree from its records (see the module docstring for the rules)."""
    claims: dict[tuple[str, ...], tuple[tuple[float, int], FileEntry]] = {}
    folders: dict[tuple[str, ...], list[Record]] = {(): []}
    untagged: list[Record] = []
    sets: dict[str, dict[int, Record]] = {}

    def claim(path: tuple[str, ...], rank: tuple[float, int], entry: FileEntry) -> None:
        held = claims.get(path)
        if held is None or held[0] < rank:
            claims[path] = (rank, entry)

    for r in records:
        tag = r.tag
        if tag is None or (tag.kind in ("file", "piece") and r.entry is None) \
                or (tag.kind in ("empty", "dir") and r.entry is not None):
            if r.entry is not None:
                untagged.append(r)
            continue
        if tag.kind == "dir":
            folders.setdefault(tag.path, []).append(r)
        elif tag.kind == "file":
            claim(tag.path, r.rank, replace(r.entry, name=tag.path[-1], dir=tag.path[:-1], caption=r.text))
        elif tag.kind == "empty":
            loc = Location("empty", 0, 0, b"", 0, 0, channel_id, channel_access_hash, r.message_id)
            entry = FileEntry(name=tag.path[-1], size=0, mime=_mime(tag.path[-1]), modified=r.edited,
                              created=r.date, etag=f"e{r.message_id:x}-0-{int(r.edited):x}", location=loc,
                              dir=tag.path[:-1], caption=r.text)
            claim(tag.path, r.rank, entry)
        else:
            held = sets.setdefault(tag.set_id, {}).get(tag.piece)
            if held is None or held.rank < r.rank:
                sets[tag.set_id][tag.piece] = r
    for pieces in sets.values():
        last = next((r for r in pieces.values() if r.tag.pieces), None)
        if last is None or any(n not in pieces for n in range(1, last.tag.pieces + 1)):
            continue            # not (yet) complete: never shown
        ordered = [pieces[n] for n in range(1, last.tag.pieces + 1)]
        if any(r.tag.path != last.tag.path for r in ordered):
            continue
        locs = tuple(r.entry.location for r in ordered)
        size = sum(loc.size for loc in locs)
        first = ordered[0].entry
        entry = replace(first, name=last.tag.path[-1], dir=last.tag.path[:-1], caption=last.text,
                        size=size, modified=last.edited, created=ordered[0].date,
                        etag=_etag(locs[0], size, last.edited), location=locs[0], pieces=locs)
        claim(last.tag.path, last.rank, entry)

    root = Dir(())
    index: dict[tuple[str, ...], Dir] = {(): root}

    def folder(path: tuple[str, ...]) -> Dir:
        d = index.get(path)
        if d is None:
            parent = folder(path[:-1])
            d = index[path] = parent.dirs.setdefault(path[-1], Dir(path))
        return d

    for path, markers in folders.items():
        d = folder(path)
        d.markers += sorted(r.message_id for r in markers)
        d.modified = max([d.modified, *(r.edited for r in markers)])
    for path in claims:
        folder(path[:-1])
    for path, (_, entry) in claims.items():
        if path in index:          # a folder hides a file of the same path
            continue
        index[path[:-1]].files[path[-1]] = entry
    for d in index.values():
        taken = {n.casefold() for n in d.dirs}
        extra = untagged if d is root else []
        tagged = {n.casefold() for n in d.files}
        pool = [(e.location.message_id, e) for e in d.files.values()]
        pool += [(r.message_id, replace(r.entry, caption=r.text)) for r in extra
                 if r.entry.name.casefold() not in tagged]
        unique = names.unique((mid, e.name) for mid, e in pool)
        files: dict[str, FileEntry] = {}
        for mid, e in sorted(pool, key=lambda p: p[0]):
            name = unique[mid]
            if name.casefold() in taken:
                name = names.with_suffix(name, mid)
            files[name] = replace(e, name=name) if name != e.name else e
        d.files = files
    for d in sorted(index.values(), key=lambda d: -len(d.path)):   # children before parents
        d.modified = max([d.modified, *(e.modified for e in d.files.values()),
                          *(c.modified for c in d.dirs.values())])
    return root


def find(root: Dir, path: tuple[str, ...]) -> Dir | FileEntry | None:
    """The folder or file at `path` below `root`, or None."""
    d = root
    for i, name in enumerate(path):
        if name in d.dirs:
            d = d.dirs[name]
        elif i == len(path) - 1 and name in d.files:
            return d.files[name]
        else:
            return None
    return d


def _mime(name: str) -> str:
    import mimetypes
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
