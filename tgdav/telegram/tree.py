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

Which message owns a path (one rule, `claims`, used by `build` and by the writer):
- Only trusted posters' tags count (`trusted`, see build): in a broadcast channel every poster is an
  admin, so every tag; in a group, the account itself and the admins, or whom `[write] trust` names.
  Any other post is an untagged post, even with a tag line: it never hides or replaces a tagged file.
- A path's key is its folder (exact) and its name compared case-insensitively (as Finder and Explorer
  compare): README.TXT and readme.txt are one file. Everything that claims a key is ranked: tagged
  claims by their rank (edit date, else post date; then message id), newest first, then untagged posts
  of that name at the root. The first is shown under its own spelling; the others are superseded.
- An overwrite sends the new message first and then deletes only the claims ranked BELOW it, never a
  newer one (a concurrent writer's): so concurrent writers leave exactly the newest version, and a
  reader sees the whole old file or the whole new one; if tgdav dies in between, the new one already
  wins. Untagged posts of the name are superseded by any tagged claim (overwriting a post).
- A folder hides a file of the same path; folders exist when a marker or anything below them does.
- Messages without a valid tag (every post made outside tgdav) are shown exactly as before: at the
  root, named by names.unique over their document names.

Changes that span several messages are all-or-nothing for every reader (one message decides):
- A file in pieces is shown only when its last piece (the one with "/N") and pieces 1..N exist; the
  last piece is sent last, so a half-uploaded big file is never visible. The set's path is the one
  in its LAST piece only (the other pieces' paths are for people reading the channel): a MOVE edits
  the other pieces first (nothing visible changes) and the last piece last, the one edit that moves
  the whole file.
- A folder MOVE first posts one journal, a text message of two tag lines:
      #tgdav move /old/folder
      #tgdav to /new/place
  From then on every tagged message below /old/folder that is older than the journal (smaller id,
  not edited after it) is read as if it were below /new/place: the whole folder moves in one post;
  and what was below /new/place before the journal is gone (a MOVE onto an existing folder,
  Overwrite: T, replaces it in the same post).
  The writer then edits the messages one by one (each edit is already where the journal puts it;
  the first in a later second than the journal's date, so no edited message is taken for an older
  one), deletes the replaced ones, and deletes the journal last. Any step after the journal may fail (FLOOD_WAIT, a crash): readers still
  see the folder moved, whole, and the next write in that channel finishes what is left (`journals`).
- A folder DELETE of more than one deleteMessages call (Telegram takes 100 ids a call) first posts
  one journal, a text message `#tgdav delete /folder`: every tagged message at or below /folder that is
  older than it (as for a move) is gone from then on. The writer then deletes them, 100 a call, and the
  journal last; whatever is left after a failure is deleted by the next write in that channel.
- A folder COPY (and a MOVE to another channel) first posts `#tgdav hold /dest` in the destination
  channel: every tagged message at or below /dest NEWER than the hold is hidden (the copies, sent one by
  one, none of them visible yet), while what was at /dest before still shows. When every copy is sent,
  ONE edit turns the hold into `#tgdav delete /dest`: the copies show and the old /dest is gone, at
  once; then the old messages and the journal go as for a delete. A hold left behind (a failure, a
  crash) is rolled back: its hidden copies and the hold are deleted (`held`), and nobody ever saw them.
- Every tag tgdav writes must fit a caption (`fits`: 1024 UTF-16 code units, as Telegram counts
  them); the writer checks every caption a change makes before it sends anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from tgdav.model import FileEntry, Location
from tgdav.telegram import names

TAG = "#tgdav"
_LINE = re.compile(r"#tgdav (file|empty|dir|piece (\d{1,6})(?:/(\d{1,6}))? ([0-9a-f]{1,32})) (/.*)\Z")
_MOVE = re.compile(r"#tgdav move (/.*)\Z")
_TO = re.compile(r"#tgdav to (/.*)\Z")
_SWEEP = re.compile(r"#tgdav (delete|hold) (/.*)\Z")
JOURNALS = ("move", "delete", "hold")    # the kinds of journal messages (tree rules, not files)
CAPTION_MAX = 1024        # UTF-16 code units Telegram allows in a media caption (help.config)
MESSAGE_MAX = 4096        # ... and in a text message


@dataclass(frozen=True)
class Tag:
    kind: str                         # "file", "empty", "dir", "piece", or a journal: "move", "delete", "hold"
    path: tuple[str, ...]             # names from the channel's root; () is the root itself (dir only)
    piece: int = 0                    # pieces: 1-based number
    pieces: int = 0                   # pieces: the count, on the last piece only
    set_id: str = ""                  # pieces: what ties the pieces of one upload together
    source: tuple[str, ...] = ()      # move: the folder that moves (to `path`)

    def line(self) -> str:
        path = "/" + "/".join(self.path)
        if self.kind == "piece":
            count = f"/{self.pieces}" if self.pieces else ""
            return f"{TAG} piece {self.piece}{count} {self.set_id} {path}"
        if self.kind == "move":
            return f"{TAG} move /{'/'.join(self.source)}\n{TAG} to {path}"
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
    journal = _TO.match(last.strip())
    if journal is not None:
        above, _, move = body.rpartition("\n")
        source, dest = _MOVE.match(move.strip()), split_path(journal.group(1))
        source = split_path(source.group(1)) if source else None
        if source and dest and dest[:len(source)] != source:
            return Tag("move", dest, source=source), above
        return None, text or ""
    sweep = _SWEEP.match(last.strip())
    if sweep is not None:
        path = split_path(sweep.group(2))
        return (Tag(sweep.group(1), path), body) if path else (None, text or "")
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


def text_length(text: str) -> int:
    """Telegram counts caption and message lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def fits(tag: Tag, text: str = "", limit: int = CAPTION_MAX) -> bool:
    """Whether the user's `text` and `tag` fit one caption (or, with MESSAGE_MAX, one text message)."""
    return text_length(compose(text, tag)) <= limit


def upload_tag(path: tuple[str, ...]) -> Tag:
    """The longest tag an upload to `path` may carry (a piece of a huge file): checked before a byte goes."""
    return Tag("piece", tuple(path), 99999, 99999, "f" * 8)


def key(path: tuple[str, ...]) -> tuple:
    """What two paths of one file share: the folder as it is, the name compared case-insensitively."""
    return (tuple(path[:-1]), path[-1].casefold()) if path else ((), "")


@dataclass(frozen=True)
class Record:
    """One message as the tree sees it (what the catalog keeps per message id)."""
    message_id: int
    date: float                       # post date
    edited: float                     # edit date, else post date
    tag: Tag | None
    text: str                         # the user's text, without the tag line
    entry: FileEntry | None = None    # media messages: the file it carries (name from the document)
    sender: int = 0                   # the user who posted it (groups); 0: not named (channel posts)
    own: bool = False                 # posted by this account (Telegram's `out`): the janitor's to clean

    @property
    def rank(self) -> tuple[float, int]:
        return (self.edited, self.message_id)


Trusted = Callable[[Record], bool] | None    # whose tags count; None: everyone's


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


@dataclass(frozen=True)
class Claim:
    """One version claiming a path: a tagged file, an empty file, a whole piece set, or an untagged post."""
    rank: tuple[float, int]
    message_ids: tuple[int, ...]
    entry: FileEntry
    tagged: bool = True


def _etag(first: Location, size: int, edited: float) -> str:
    return f"{first.id:x}-{size:x}-{int(edited):x}"


def _valid(r: Record, trusted: Trusted) -> bool:
    """A tag that counts: from a trusted poster, on the kind of message it names."""
    tag = r.tag
    if tag is None or (trusted is not None and not trusted(r)):
        return False
    if tag.kind in ("file", "piece"):
        return r.entry is not None
    return r.entry is None


def journals(records: Iterable[Record], trusted: Trusted = None) -> list[Record]:
    """Folder moves, deletes and holds not finished yet (their journal messages), oldest first."""
    return sorted((r for r in records if _valid(r, trusted) and r.tag.kind in JOURNALS),
                  key=lambda r: r.message_id)


def _moved(r: Record, moves: list[Record]) -> tuple[str, ...] | None:
    """r's own tag path, moved by every move journal younger than r (and not older than its last
    edit); None when such a journal moved a folder onto the one r was in (it replaced it: r is gone)
    or deleted a folder r was in. Holds do not apply here (`_held`)."""
    path = r.tag.path
    for j in moves:
        if r.message_id < j.message_id and r.edited <= j.date and j.tag.kind != "hold":
            n = len(j.tag.source)
            if j.tag.kind == "move" and path[:n] == j.tag.source:
                path = j.tag.path + path[n:]
            elif path[:len(j.tag.path)] == j.tag.path:
                return None
    return path


def _held(r: Record, moves: list[Record]) -> Record | None:
    """The hold that hides r (a copy not committed yet): one older than r, over r's tag path."""
    return next((j for j in moves if j.tag.kind == "hold" and j.message_id < r.message_id
                 and r.tag.path[:len(j.tag.path)] == j.tag.path), None)


def unfinished(records: Iterable[Record], trusted: Trusted = None) -> list[tuple[Record, tuple[str, ...] | None]]:
    """(message, path its tag must get) for what the pending move journals still move, (message,
    None) for what they replaced or a delete journal deleted: once those are edited and these
    deleted, the move and delete journals can go and the tree is the same. What a hold hides is not
    here (`held`), nor pieces of a set without its last piece (`_open_sets`)."""
    records = [r for r in records if _valid(r, trusted)]
    moves = journals(records)
    open_sets = _open_sets(records)
    out = []
    for r in records:
        if r.tag.kind not in JOURNALS and _held(r, moves) is None:
            path = _moved(r, moves)
            if path != r.tag.path and (path is not None or r.tag.set_id not in open_sets):
                out.append((r, path))
    return out


def _open_sets(records: list[Record]) -> set[str]:
    """Piece sets without their last piece: never shown, and maybe an upload under way (its last
    piece, sent later, decides where it goes): a journal never deletes them (the janitor does)."""
    sets = {r.tag.set_id for r in records if r.tag.kind == "piece"}
    return sets - {r.tag.set_id for r in records if r.tag.kind == "piece" and r.tag.pieces}


def held(records: Iterable[Record], trusted: Trusted = None) -> dict[int, list[Record]]:
    """{hold's message id: the messages it hides}, for every hold (a copy not committed): rolling
    one back deletes these, then the hold; nobody ever saw them. Piece sets without their last piece
    are not among them (`_open_sets`)."""
    records = [r for r in records if _valid(r, trusted)]
    moves = journals(records)
    open_sets = _open_sets(records)
    out: dict[int, list[Record]] = {j.message_id: [] for j in moves if j.tag.kind == "hold"}
    for r in records:
        if r.tag.kind not in JOURNALS and r.tag.set_id not in open_sets:
            hold = _held(r, moves)
            if hold is not None:
                out[hold.message_id].append(r)
    return out


def placed(records: Iterable[Record], trusted: Trusted = None) -> dict[int, tuple[str, ...]]:
    """Where each trusted tagged message is, by the rules above: its tag's path moved by the journals
    that apply to it; a piece where its set's last piece is (once there is one)."""
    return {mid: path for mid, path in _placement(records, trusted).items() if path is not None}


def _placement(records: Iterable[Record], trusted: Trusted) -> dict[int, tuple[str, ...] | None]:
    """placed(), with None for the messages a journal replaced (gone for readers)."""
    records = [r for r in records if _valid(r, trusted)]
    moves = journals(records)
    out = {r.message_id: None if _held(r, moves) else _moved(r, moves)
           for r in records if r.tag.kind not in JOURNALS}
    last: dict[str, Record] = {}
    for r in records:
        if r.tag.kind == "piece" and r.tag.pieces:
            held = last.get(r.tag.set_id)
            if held is None or held.rank < r.rank:
                last[r.tag.set_id] = r
    for r in records:
        if r.tag.kind == "piece" and r.tag.set_id in last:
            out[r.message_id] = out[last[r.tag.set_id].message_id]
    return out


def below(records: Iterable[Record], path: tuple[str, ...], trusted: Trusted = None) -> list[Record]:
    """Every trusted tagged message at or below folder `path` (shown or not: uploads under way too)."""
    records = list(records)
    where = placed(records, trusted)
    n = len(path)
    return [r for r in records if r.message_id in where and where[r.message_id][:n] == tuple(path)]


def claims(records: Iterable[Record], channel_id: int = 0, channel_access_hash: int = 0,
           trusted: Trusted = None) -> tuple[dict[tuple, list[Claim]], dict[tuple[str, ...], list[Record]]]:
    """({path key: its claims, best first}, {folder path: its markers}): THE rule for which message
    owns a path, used by build() to show and by the writer to replace."""
    records = list(records)
    placement = _placement(records, trusted)
    where = {mid: path for mid, path in placement.items() if path is not None}
    found: dict[tuple, list[Claim]] = {}
    folders: dict[tuple[str, ...], list[Record]] = {(): []}
    sets: dict[str, dict[int, Record]] = {}
    untagged: list[Record] = []

    def claim(path: tuple[str, ...], rank, ids, entry: FileEntry, tagged: bool = True) -> None:
        found.setdefault(key(path), []).append(Claim(rank, tuple(ids), entry, tagged))

    for r in records:
        if r.message_id not in where:      # untagged (or an untrusted or invalid tag): a post
            if r.entry is not None and r.message_id not in placement:
                untagged.append(r)
            continue
        tag, path = r.tag, where[r.message_id]
        if tag.kind == "dir":
            folders.setdefault(path, []).append(r)
        elif tag.kind == "file":
            claim(path, r.rank, [r.message_id],
                  replace(r.entry, name=path[-1], dir=path[:-1], caption=r.text))
        elif tag.kind == "empty":
            loc = Location("empty", 0, 0, b"", 0, 0, channel_id, channel_access_hash, r.message_id)
            claim(path, r.rank, [r.message_id],
                  FileEntry(name=path[-1], size=0, mime=_mime(path[-1]), modified=r.edited, created=r.date,
                            etag=f"e{r.message_id:x}-0-{int(r.edited):x}", location=loc, dir=path[:-1],
                            caption=r.text))
        else:
            held = sets.setdefault(tag.set_id, {}).get(tag.piece)
            if held is None or held.rank < r.rank:
                sets[tag.set_id][tag.piece] = r
    for pieces in sets.values():
        last = max((r for r in pieces.values() if r.tag.pieces), key=lambda r: r.rank, default=None)
        if last is None or any(n not in pieces for n in range(1, last.tag.pieces + 1)):
            continue            # not (yet) complete: never shown
        ordered = [pieces[n] for n in range(1, last.tag.pieces + 1)]
        path = where[last.message_id]
        locs = tuple(r.entry.location for r in ordered)
        size = sum(loc.size for loc in locs)
        entry = replace(ordered[0].entry, name=path[-1], dir=path[:-1], caption=last.text, size=size,
                        modified=last.edited, created=ordered[0].date, etag=_etag(locs[0], size, last.edited),
                        location=locs[0], pieces=locs)
        claim(path, last.rank, [r.message_id for r in ordered], entry)
    for ranked in found.values():
        ranked.sort(key=lambda c: c.rank, reverse=True)
    for r in untagged:          # below every tagged claim of the name, never instead of one
        claim((r.entry.name,), r.rank, [r.message_id], replace(r.entry, caption=r.text), tagged=False)
    return found, folders


def claimants(records: Iterable[Record], path: tuple[str, ...], trusted: Trusted = None) -> list[Claim]:
    """Everything that claims `path` (case-insensitively), best first: [0] is what readers see."""
    return claims(records, trusted=trusted)[0].get(key(tuple(path)), [])


def superseded(records: Iterable[Record], path: tuple[str, ...], mine, trusted: Trusted = None,
               older=()) -> list[int]:
    """The messages of the claims to `path` ranked below the claim made of `mine` (message ids): what an
    overwrite deletes once its own claim is sent. Nothing when `mine` is not (or no longer) a claim.
    `older`: message ids known to be older whatever their rank (the writer's own earlier claims,
    made under the same lock: whole-second dates cannot order two changes in one second); None:
    every other claim is older (every writer of the path holds the same lock)."""
    ranked = claimants(records, path, trusted)
    mine = set(mine)
    at = next((i for i, c in enumerate(ranked) if mine & set(c.message_ids)), None)
    if at is None:
        return []
    known = None if older is None else set(older)
    return [mid for i, c in enumerate(ranked) if i != at
            and (i > at or known is None or known & set(c.message_ids))
            for mid in c.message_ids if mid not in mine]


def build(records: list[Record], channel_id: int, channel_access_hash: int, trusted: Trusted = None) -> Dir:
    """The channel's tree from its records (see the module docstring for the rules)."""
    found, folders = claims(records, channel_id, channel_access_hash, trusted)
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
    shown: list[Claim] = []
    for (where, _), ranked in found.items():
        folder(where)
        shown += ranked[:1] if ranked[0].tagged else ranked    # untagged posts of one name all show
    pool: dict[tuple[str, ...], list[tuple[int, FileEntry]]] = {}
    for c in shown:
        path = c.entry.dir + (c.entry.name,) if c.tagged else (c.entry.name,)
        if path in index:          # a folder hides a file of the same path
            continue
        pool.setdefault(path[:-1], []).append((c.entry.location.message_id, c.entry))
    for path, entries in pool.items():
        d = index[path]
        taken = {n.casefold() for n in d.dirs}
        unique = names.unique((mid, e.name) for mid, e in entries)
        files: dict[str, FileEntry] = {}
        for mid, e in sorted(entries, key=lambda p: p[0]):
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
    """The folder or file at `path` below `root`, or None. A file is found under any spelling of its
    name (key): README.TXT finds readme.txt, the one file of that name (its entry says how it is shown)."""
    d = root
    for i, name in enumerate(path):
        if name in d.dirs:
            d = d.dirs[name]
        elif i == len(path) - 1:
            if name in d.files:
                return d.files[name]
            folded = name.casefold()
            return next((e for n, e in d.files.items() if n.casefold() == folded), None)
        else:
            return None
    return d


def _mime(name: str) -> str:
    import mimetypes
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
