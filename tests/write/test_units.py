"""Pure pieces of the write path, without processes: the tag line and tree rules (tree.py) and the
part/piece logic of the streamed upload (upload.py) against a fake that checks Telegram's rules."""

from __future__ import annotations

import asyncio
import random

import pytest
from telethon.tl import functions, types

from dataclasses import replace

from tgdav.errors import UpstreamUnavailable
from tgdav.model import FileEntry, Location
from tgdav.telegram import tree
from tgdav.telegram.upload import BIG, PART, StreamUpload

# --- tree --------------------------------------------------------------------------------------------


def test_tag_lines_round_trip_and_keep_the_users_text():
    for tag in (tree.Tag("file", ("a b", "c ü.txt")), tree.Tag("dir", ("x",)), tree.Tag("dir", ()),
                tree.Tag("empty", ("e",)), tree.Tag("piece", ("f",), 2, 0, "ab12"),
                tree.Tag("piece", ("f",), 3, 3, "ab12")):
        text = tree.compose("my caption\nsecond line", tag)
        assert tree.parse(text) == (tag, "my caption\nsecond line")
        assert tree.parse(tag.line()) == (tag, "")


@pytest.mark.parametrize("text", [
    "just a caption", "#tgdav file", "#tgdav file a/b", "#tgdav file /a//b", "#tgdav file /a/../b",
    "#tgdav file /", "#tgdav nonsense /a", "#tgdav piece 2/3 ab /a", "#tgdav piece 0/0 ab /a",
    "#tgdav file /a/b\x01c", "#tgdav file /a/\u202eevil", "x\n#tgdav file /a\nmore text after",
])
def test_anything_that_is_not_a_valid_tag_is_an_untagged_post(text):
    assert tree.parse(text) == (None, text)


def _loc(mid: int, size: int, doc: int | None = None) -> Location:
    return Location("document", doc or mid * 10, 1, b"r", 2, size, 77, 5, mid)


def _file(mid: int, name: str, size: int = 10, date: float | None = None) -> FileEntry:
    date = float(mid) if date is None else date
    return FileEntry(name, size, "application/octet-stream", date, date, f"e{mid}", _loc(mid, size))


def _rec(mid: int, text: str = "", name: str | None = None, size: int = 10, edited: float | None = None):
    tag, body = tree.parse(text)
    entry = _file(mid, name, size) if name else None
    return tree.Record(mid, float(mid), float(mid if edited is None else edited), tag, body, entry)


def test_untagged_posts_show_as_before_and_tagged_files_build_folders():
    records = [_rec(1, "hello", "film.mkv"), _rec(2, "", "film.mkv"), _rec(3, "#tgdav dir /empty"),
               _rec(4, "note\n#tgdav file /a/b/deep.bin", "upload-name.bin"), _rec(5, "#tgdav empty /a/zero.txt")]
    root = tree.build(records, 77, 5)
    assert sorted(root.files) == ["film (2).mkv", "film.mkv"]
    assert root.files["film.mkv"].caption == "hello"
    assert sorted(root.dirs) == ["a", "empty"]
    deep = tree.find(root, ("a", "b", "deep.bin"))
    assert deep.name == "deep.bin" and deep.caption == "note" and deep.dir == ("a", "b")
    zero = tree.find(root, ("a", "zero.txt"))
    assert zero.size == 0 and zero.location.kind == "empty"
    assert sorted(root.message_ids()) == [1, 2, 3, 4, 5]


def test_the_latest_claim_wins_and_a_tag_hides_an_untagged_post_of_that_name():
    records = [_rec(1, "", "x.bin", size=1), _rec(2, "#tgdav file /x.bin", "x.bin", size=2),
               _rec(3, "#tgdav file /x.bin", "x.bin", size=3)]
    root = tree.build(records, 77, 5)
    assert list(root.files) == ["x.bin"] and root.files["x.bin"].size == 3
    # an older message renamed onto the path now (edited later) wins over a newer one
    records.append(_rec(0, "#tgdav file /x.bin", "other.bin", size=4, edited=100.0))
    assert tree.build(records, 77, 5).files["x.bin"].size == 4


def test_pieces_show_only_when_complete_and_read_as_one_file():
    parts = [_rec(10, "#tgdav piece 1 aa /big.bin", "big.bin.001", size=100),
             _rec(11, "#tgdav piece 2 aa /big.bin", "big.bin.002", size=100)]
    assert tree.build(parts, 77, 5).files == {}
    parts.append(_rec(12, "#tgdav piece 3/3 aa /big.bin", "big.bin.003", size=7))
    big = tree.build(parts, 77, 5).files["big.bin"]
    assert big.size == 207 and big.message_ids == (10, 11, 12)
    assert [off for off, _ in big.spans] == [0, 100, 200]
    # a piece missing in the middle: not shown
    assert tree.build([parts[0], parts[2]], 77, 5).files == {}


def test_a_folder_hides_a_file_of_the_same_path_and_case_variants_are_one_file():
    """Issue 14: PUT README.TXT then readme.txt: the newer claim is THE file, under its own spelling."""
    records = [_rec(1, "#tgdav file /a", "a"), _rec(2, "#tgdav dir /a"), _rec(3, "#tgdav file /B.txt", "B.txt"),
               _rec(4, "#tgdav file /b.txt", "b.txt"), _rec(5, "", "c.txt"), _rec(6, "", "C.TXT")]
    root = tree.build(records, 77, 5)
    assert list(root.dirs) == ["a"] and "a" not in root.files
    assert sorted(root.files) == ["C (6).TXT", "b.txt", "c.txt"]    # untagged posts all show, as before
    assert [c.message_ids for c in tree.claimants(records, ("B.TXT",))] == [(4,), (3,)]
    assert tree.superseded(records, ("b.txt",), {4}) == [3]


def test_piece_spans_cross_pieces_exactly():
    from tgdav.dav.stream import piece_spans
    pieces = (_loc(1, 100), _loc(2, 100), _loc(3, 7))
    entry = FileEntry("f", 207, "x/y", 0, 0, "e", pieces[0], pieces=pieces)
    rnd = random.Random(5)
    for _ in range(300):
        start = rnd.randrange(207)
        end = rnd.randrange(start, 207)
        spans = piece_spans(entry, start, end)
        got = [(loc.message_id, a, b) for loc, a, b in spans]
        want = []
        for i, off in enumerate((0, 100, 200)):
            size = pieces[i].size
            lo, hi = max(start, off), min(end, off + size - 1)
            if lo <= hi:
                want.append((i + 1, lo - off, hi - off))
        assert got == want
        assert sum(b - a + 1 for _, a, b in spans) == end - start + 1


# --- upload ------------------------------------------------------------------------------------------


class FakeTelegram:
    """Keeps saved parts and checks Telegram's rules for one account; `in_flight` peaks are recorded."""

    def __init__(self, max_parts: int, lose: set[tuple[int, int]] = frozenset()) -> None:
        self.max_parts = max_parts
        self.files: dict[int, dict[int, bytes]] = {}
        self.totals: dict[int, int] = {}
        self.big: dict[int, bool] = {}
        self.in_flight = self.peak = 0
        self.lose = set(lose)

    async def invoke(self, request):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            big = isinstance(request, functions.upload.SaveBigFilePartRequest)
            fid, part, data = request.file_id, request.file_part, request.bytes
            assert 0 < len(data) <= PART and 0 <= part < self.max_parts
            self.big.setdefault(fid, big)
            assert self.big[fid] == big
            if big:
                total = request.file_total_parts
                assert total == -1 or part < total
                if total != -1:
                    assert self.totals.setdefault(fid, total) == total
            if (fid, part) in self.lose:
                self.lose.discard((fid, part))
                return True
            self.files.setdefault(fid, {})[part] = data
            return True
        finally:
            self.in_flight -= 1

    def assemble(self, input_file) -> bytes:
        parts = self.files[input_file.id]
        assert sorted(parts) == list(range(input_file.parts))
        if isinstance(input_file, types.InputFileBig):
            assert self.totals[input_file.id] == input_file.parts
        sizes = [len(parts[i]) for i in range(input_file.parts)]
        assert all(s == PART for s in sizes[:-1])
        return b"".join(parts[i] for i in range(input_file.parts))


async def _upload(data: bytes, *, known: bool, max_parts: int, chunk: int, fake: FakeTelegram):
    pieces = []

    async def on_piece(input_file, number, size, last):
        assert number == len(pieces) + 1
        pieces.append((input_file, size, last))

    up = StreamUpload(fake.invoke, "f.bin", on_piece, size=len(data) if known else None,
                      parallel=4, max_parts=max_parts)
    buf = bytearray()
    for i in range(0, len(data), chunk):
        buf += data[i:i + chunk]
        while len(buf) >= PART:
            await up.add_part(bytes(buf[:PART]))
            del buf[:PART]
    await up.close(bytes(buf))
    return pieces


@pytest.mark.parametrize("known", [True, False])
@pytest.mark.parametrize("size", [1, PART - 1, PART, PART + 1, 3 * PART, 7 * PART + 5, 8 * PART,
                                  BIG - 1, BIG, BIG + PART])
def test_stream_upload_pieces_and_parts_obey_the_rules(size, known):
    data = random.Random(size).randbytes(size)
    fake = FakeTelegram(max_parts=8)
    pieces = asyncio.run(_upload(data, known=known, max_parts=8, chunk=100_003, fake=fake))
    assert [last for _, _, last in pieces] == [False] * (len(pieces) - 1) + [True]
    assert b"".join(fake.assemble(f) for f, _, _ in pieces) == data
    assert [s for _, s, _ in pieces] == [min(8 * PART, size - i * 8 * PART) for i in range(len(pieces))]
    for f, s, _ in pieces:
        assert isinstance(f, types.InputFileBig) == (not known or s >= BIG)
    assert fake.peak <= 4


def test_a_lost_small_part_is_sent_again():
    async def run():
        fake = FakeTelegram(max_parts=100)
        data = random.Random(1).randbytes(3 * PART + 10)
        pieces = []

        async def on_piece(input_file, number, size, last):
            pieces.append(input_file)

        up = StreamUpload(fake.invoke, "f", on_piece, size=len(data), parallel=2)
        fake.lose = {(None, 1)}
        for i in range(3):
            await up.add_part(data[i * PART:(i + 1) * PART])
        await up.close(data[3 * PART:])
        fid = pieces[0].id
        fake.files[fid].pop(1)                         # Telegram lost part 1
        assert await up.pieces[0].resend(1)
        assert fake.assemble(pieces[0]) == data
    asyncio.run(run())


def test_a_failed_part_fails_the_upload():
    async def run():
        async def broken(request):
            raise ConnectionError("gone")

        async def on_piece(*args):
            raise AssertionError("nothing may be sent")

        up = StreamUpload(broken, "f", on_piece, size=None, parallel=2)
        with pytest.raises(UpstreamUnavailable, match="saving part"):    # telegram/rpc.py's table
            for _ in range(10):
                await up.add_part(b"x" * PART)
            await up.close(b"tail")
    asyncio.run(run())


def test_mime_type_from_the_name_else_from_the_first_bytes():
    from tgdav.telegram.writer import mime_for
    assert mime_for("a.pdf") == "application/pdf"
    assert mime_for("film.mp4", b"anything") == "video/mp4"
    assert mime_for("noext", b"%PDF-1.7 ...") == "application/pdf"
    assert mime_for("noext", b"\x00\x00\x00\x20ftypisom") == "video/mp4"
    assert mime_for("noext", b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert mime_for("noext", b"plain bytes") == "application/octet-stream"


def test_a_part_lost_with_its_connection_is_sent_again():
    async def run():
        fake = FakeTelegram(max_parts=100)
        failures = {2: 1}           # part 2's first send dies with its connection

        async def flaky(request):
            if failures.get(request.file_part):
                failures[request.file_part] -= 1
                raise ConnectionError("connection reset")
            return await fake.invoke(request)

        pieces = []

        async def on_piece(input_file, number, size, last):
            pieces.append(input_file)

        data = random.Random(3).randbytes(4 * PART + 3)
        up = StreamUpload(flaky, "f", on_piece, size=None, parallel=3)
        for i in range(4):
            await up.add_part(data[i * PART:(i + 1) * PART])
        await up.close(data[4 * PART:])
        assert fake.assemble(pieces[0]) == data
    asyncio.run(run())


class FakeChannel:
    """Telegram's channel 77 and the catalog over it, for a Writer: sendMedia / sendMessage post a
    message (its file's bytes assembled from `parts`), deleteMessages deletes; `records` is the tree's
    view. Sends and deletes are counted per kind."""

    def __init__(self, parts: FakeTelegram, records=()) -> None:
        self.parts, self.recs = parts, {r.message_id: r for r in records}
        self.next_id = max(self.recs, default=0) + 1
        self.data: dict[int, bytes] = {}
        self.deleted: list[int] = []

    async def __call__(self, request):             # the client
        if isinstance(request, functions.channels.DeleteMessagesRequest):
            self.deleted += request.id
            return True
        mid, self.next_id = self.next_id, self.next_id + 1
        text = getattr(request, "message", None)
        if isinstance(request, functions.messages.SendMediaRequest):
            self.data[mid] = self.parts.assemble(request.media.file)
            text = request.message
        m = types.Message(id=mid, peer_id=types.PeerChannel(77), date=None, message=text)
        return types.Updates([types.UpdateNewChannelMessage(m, 0, 0)], [], [], 0, 0)

    async def apply(self, folder, messages, versions=None):       # the catalog from here on
        for m in messages:
            tag, text = tree.parse(m.message)
            entry = _file(m.id, "x", len(self.data[m.id])) if m.id in self.data else None
            self.recs[m.id] = tree.Record(m.id, float(m.id), float(m.id), tag, text, entry)

    async def forget(self, folder, ids):
        for i in ids:
            self.recs.pop(i, None)

    async def records(self, folder):
        return list(self.recs.values())

    async def node(self, folder, path):
        return tree.find(tree.build(list(self.recs.values()), 77, 5), tuple(path))

    def access_hash(self, folder):
        return 5

    def bytes_of(self, entry: FileEntry) -> bytes:
        return b"".join(self.data[loc.message_id] for loc in (entry.pieces or (entry.location,)))


def test_uploads_at_once_send_their_own_pieces_and_an_abort_deletes_only_its_own():
    """Writer and Upload through their public methods: two uploads of several pieces each run at
    once; every piece reaches its own upload (its set id, its path), the one committed replaces the
    old version, the one abandoned deletes what it sent, and neither is under way afterwards."""
    from tgdav.model import Folder
    from tgdav.telegram.writer import Writer

    async def run():
        parts = FakeTelegram(max_parts=2)
        channel = FakeChannel(parts, [_rec(1, "#tgdav file /a.bin", "a.bin")])
        writer = Writer(channel, parts.invoke, channel, max_parts=2)
        folder = Folder("Up", 77, "Up", None, 0, writable=True)
        a_data, b_data = random.Random(1).randbytes(5 * PART + 7), random.Random(2).randbytes(5 * PART)
        a = await writer.begin_upload(folder, ("a.bin",), len(a_data))     # Content-Length
        b = await writer.begin_upload(folder, ("b.bin",), None)            # chunked
        assert writer.running_sets() == {a.set_id, b.set_id}
        for i in range(5):
            await asyncio.gather(a.add_part(a_data[i * PART:(i + 1) * PART]),
                                 b.add_part(b_data[i * PART:(i + 1) * PART]))
        assert len(b.sent) == 1        # b: piece 1 sent; piece 2 full, waiting to learn if it is the last
        await asyncio.gather(a.commit(a_data[5 * PART:]), b.abort())
        assert writer.running_sets() == set()
        assert sorted(channel.deleted) == sorted([1] + b.sent)
        tags = [channel.recs[mid].tag for mid in a.sent]
        assert {(t.kind, t.path, t.set_id) for t in tags} == {("piece", ("a.bin",), a.set_id)}
        assert [(t.piece, t.pieces) for t in tags] == [(1, 0), (2, 0), (3, 3)]
        root = tree.build(list(channel.recs.values()), 77, 5)
        assert list(root.files) == ["a.bin"] and channel.bytes_of(root.files["a.bin"]) == a_data
    asyncio.run(run())


def test_mp4_video_info_only_from_a_fast_start_head():
    import struct
    from tgdav.telegram.mediainfo import mp4_video_info

    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(body), kind) + body
    mvhd = box(b"mvhd", bytes(4) + bytes(8) + struct.pack(">II", 1000, 6500) + bytes(80))
    tkhd = box(b"tkhd", bytes(76) + struct.pack(">II", 1280 << 16, 720 << 16))
    head = box(b"ftyp", b"isom\x00\x00\x02\x00") + box(b"moov", mvhd + box(b"trak", tkhd))
    info = mp4_video_info(head + b"\x00" * 100)
    assert (info.duration, info.width, info.height) == (6.5, 1280, 720)
    assert mp4_video_info(head[:40]) is None                          # the index is not in the head
    assert mp4_video_info(box(b"ftyp", b"isom") + box(b"mdat", b"x" * 50)) is None
    assert mp4_video_info(b"\x00\x00\x00\x08ftyp" + b"\xff" * 20) is None


def test_deleting_or_moving_never_brings_a_superseded_version_back():
    """A writer against a fake catalog/Telegram: the old version left behind by a crash (both claims
    present) must go with a DELETE or a MOVE of the path, never reappear."""
    from tgdav.model import Folder
    from tgdav.telegram.writer import Writer

    class FakeCatalog:
        def __init__(self, records):
            self.recs = {r.message_id: r for r in records}

        async def node(self, folder, path):
            return tree.find(tree.build(list(self.recs.values()), 77, 5), tuple(path))

        async def records(self, folder):
            return list(self.recs.values())

        async def forget(self, folder, ids):
            for i in ids:
                self.recs.pop(i, None)

        async def apply(self, folder, messages, versions=None):
            for m in messages:
                tag, text = tree.parse(m.message)
                old = self.recs[m.id]
                self.recs[m.id] = tree.Record(m.id, old.date, 1e9, tag, text, old.entry)

        def access_hash(self, folder):
            return 5

    class FakeClient:
        async def __call__(self, request):
            if isinstance(request, functions.messages.EditMessageRequest):
                m = types.Message(id=request.id, peer_id=types.PeerChannel(77), date=None, message=request.message)
                return types.Updates([types.UpdateEditChannelMessage(m, 0, 0)], [], [], 0, 0)
            return True

    folder = Folder("Up", 77, "Up", None, 0, writable=True)
    for action in ("delete", "move"):
        catalog = FakeCatalog([_rec(1, "#tgdav file /a.bin", "a.bin", size=1),
                               _rec(2, "#tgdav file /a.bin", "a.bin", size=2)])
        writer = Writer(FakeClient(), None, catalog)
        if action == "delete":
            asyncio.run(writer.delete(folder, ("a.bin",)))
        else:
            asyncio.run(writer.move(folder, ("a.bin",), ("b.bin",)))
        root = tree.build(list(catalog.recs.values()), 77, 5)
        assert "a.bin" not in root.files, action
        if action == "move":
            assert root.files["b.bin"].size == 2


# --- issue 14: one rule for which message owns a path ------------------------------------------------
def test_an_overwrite_deletes_only_claims_ranked_below_its_own():
    records = [_rec(1, "#tgdav file /x.bin", "x.bin"), _rec(2, "#tgdav file /x.bin", "x.bin"),
               _rec(3, "#tgdav file /X.BIN", "X.BIN"), _rec(4, "", "x.bin")]
    assert tree.superseded(records, ("x.bin",), {2}) == [1, 4]     # 3 is newer: never deleted
    assert tree.superseded(records, ("x.bin",), {3}) == [2, 1, 4]
    assert tree.superseded(records, ("x.bin",), {99}) == []        # not a claim: deletes nothing
    assert list(tree.build(records, 77, 5).files) == ["X.BIN"]


def test_a_piece_set_is_where_its_last_piece_says_and_claims_as_one():
    parts = [_rec(10, "#tgdav piece 1 aa /old.bin", "old.bin.001", size=100),
             _rec(11, "#tgdav piece 2/2 aa /new.bin", "old.bin.002", size=5),
             _rec(12, "#tgdav file /new.bin", "new.bin", size=1, edited=5.0)]   # older than the set
    root = tree.build(parts, 77, 5)
    assert list(root.files) == ["new.bin"] and root.files["new.bin"].size == 105
    assert [c.message_ids for c in tree.claimants(parts, ("new.bin",))] == [(10, 11), (12,)]
    assert tree.superseded(parts, ("new.bin",), {10, 11}) == [12]
    assert sorted(r.message_id for r in tree.below(parts, ())) == [10, 11, 12]


def test_a_folder_move_journal_moves_everything_older_at_once_and_edits_finish_it():
    records = [_rec(1, "#tgdav dir /a"), _rec(2, "#tgdav file /a/f.bin", "f.bin"),
               _rec(3, "#tgdav piece 1 bb /a/b/p.bin", "p.001"), _rec(4, "#tgdav piece 2/2 bb /a/b/p.bin", "p.002")]
    before = tree.build(records, 77, 5)
    journal = tree.Tag("move", ("z", "a2"), source=("a",))
    assert tree.parse(journal.line()) == (journal, "")
    records.append(_rec(5, journal.line()))
    records.append(_rec(6, "#tgdav file /a/new.bin", "new.bin"))     # posted after the journal: stays
    root = tree.build(records, 77, 5)
    assert sorted(root.dirs) == ["a", "z"] and list(root.dirs["a"].files) == ["new.bin"]
    moved = tree.find(root, ("z", "a2"))
    assert list(moved.files) == ["f.bin"] and list(moved.dirs["b"].files) == ["p.bin"]
    assert moved.dirs["b"].files["p.bin"].pieces == before.dirs["a"].dirs["b"].files["p.bin"].pieces
    # the edits one by one (each already where the journal puts it), then the journal goes
    todo = tree.unfinished(records)
    assert sorted((r.message_id, p) for r, p in todo) == [
        (1, ("z", "a2")), (2, ("z", "a2", "f.bin")), (3, ("z", "a2", "b", "p.bin")), (4, ("z", "a2", "b", "p.bin"))]
    for n, (r, path) in enumerate(todo):
        records = [x for x in records if x.message_id != r.message_id]
        records.append(_rec(r.message_id, tree.compose(r.text, tree.Tag(**{**vars(r.tag), "path": path})),
                            r.entry.name if r.entry else None, edited=10.0 + n))
        assert _shape(tree.build(records, 77, 5)) == _shape(root)
    records = [x for x in records if x.message_id != 5]
    assert _shape(tree.build(records, 77, 5)) == _shape(root) and tree.unfinished(records) == []


def _shape(root):
    return sorted((d.path, tuple(sorted((n, e.size) for n, e in d.files.items()))) for d in root.walk())


@pytest.mark.parametrize("text", ["#tgdav move /a\n#tgdav to /a/b", "#tgdav to /b", "#tgdav move /a\n#tgdav to /",
                                  "#tgdav move /\n#tgdav to /b"])
def test_a_journal_into_itself_or_without_a_source_is_no_journal(text):
    assert tree.parse(text)[0] is None


def test_caption_fits_counts_utf16_units():
    assert tree.fits(tree.Tag("file", ("a" * 1011,)))                # "#tgdav file /" is 13: 1024
    assert not tree.fits(tree.Tag("file", ("a" * 1012,)))
    assert not tree.fits(tree.Tag("file", ("a" * 1011,)), "x")
    assert not tree.fits(tree.Tag("file", ("😀" * 506,)))            # 2 units each
    assert tree.fits(tree.Tag("file", ("😀" * 505,)))
    assert not tree.fits(tree.upload_tag(("a" * 1000,)))


def test_only_trusted_posters_tags_count_and_others_are_posts_that_never_hide_a_tagged_file():
    def rec(mid, text, name=None, sender=0):
        return replace(_rec(mid, text, name), sender=sender)
    records = [rec(1, "#tgdav file /doc.txt", "doc.txt", sender=7),
               rec(2, "#tgdav file /doc.txt", "evil.txt", sender=666),      # a newer claim by a stranger
               rec(3, "#tgdav dir /doc.txt", sender=666),                   # a folder over the file
               rec(4, "#tgdav file /DOC.TXT", "x.txt", sender=666)]
    trusted = lambda r: r.sender == 7                                       # noqa: E731
    root = tree.build(records, 77, 5, trusted)
    assert root.dirs == {} and root.files["doc.txt"].location.message_id == 1
    assert sorted(root.files) == ["doc.txt", "evil.txt", "x.txt"]          # shown as the posts they are
    assert tree.superseded(records, ("doc.txt",), {1}, trusted) == []
    assert list(tree.build(records, 77, 5).dirs) == ["doc.txt"]      # everyone's tags: hijacked


def test_an_unreachable_redis_for_path_locks_is_503_at_once():
    from tgdav.errors import RetryLater
    from tgdav.model import Folder
    from tgdav.telegram.writer import Writer
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                          # nothing listens there
    writer = Writer(None, None, None, lock_redis=f"redis://127.0.0.1:{port}/0")

    async def put():
        async with writer._locked(Folder("Up", 77, "Up", None, 0, writable=True), ("a",)):
            raise AssertionError("the lock was given without Redis")
    with pytest.raises(RetryLater) as e:
        asyncio.run(put())
    assert e.value.seconds >= 1 and writer._paths == {}


def test_a_folder_move_onto_an_existing_folder_replaces_it_in_the_same_post():
    records = [_rec(1, "#tgdav dir /t"), _rec(2, "#tgdav file /t/old.bin", "old.bin"),
               _rec(3, "#tgdav file /t/same.bin", "same.bin", size=1), _rec(4, "#tgdav dir /s"),
               _rec(5, "#tgdav file /s/same.bin", "same.bin", size=2), _rec(6, "#tgdav file /t2/x.bin", "x.bin")]
    records.append(_rec(7, tree.Tag("move", ("t",), source=("s",)).line()))
    root = tree.build(records, 77, 5)
    assert sorted(root.dirs) == ["t", "t2"] and list(root.dirs["t"].files) == ["same.bin"]
    assert root.dirs["t"].files["same.bin"].size == 2 and root.files == {}    # nothing replaced shows as a post
    todo = sorted((r.message_id, p) for r, p in tree.unfinished(records))
    assert todo == [(1, None), (2, None), (3, None), (4, ("t",)), (5, ("t", "same.bin"))]


# --- a folder DELETE in several calls, a folder COPY in many posts: one journal decides ---------------
def test_a_delete_journal_removes_everything_older_below_it_at_once_and_deletions_finish_it():
    records = [_rec(1, "#tgdav dir /a"), _rec(2, "#tgdav file /a/f.bin", "f.bin"),
               _rec(3, "#tgdav piece 1 bb /a/b/p.bin", "p.001"), _rec(4, "#tgdav piece 2/2 bb /a/b/p.bin", "p.002"),
               _rec(5, "#tgdav file /ab.bin", "ab.bin"), _rec(6, "#tgdav file /a2/g.bin", "g.bin"),
               _rec(0, "#tgdav piece 1 ee /a/up.bin", "up.001")]   # an upload under way: its last piece decides
    journal = tree.Tag("delete", ("a",))
    assert tree.parse(journal.line()) == (journal, "")
    records.append(_rec(7, journal.line()))
    records.append(_rec(8, "#tgdav file /a/new.bin", "new.bin"))     # posted after the journal: stays
    root = tree.build(records, 77, 5)
    assert sorted(root.dirs) == ["a", "a2"] and list(root.dirs["a"].files) == ["new.bin"]
    assert root.dirs["a"].dirs == {} and list(root.files) == ["ab.bin"]
    todo = sorted((r.message_id, p) for r, p in tree.unfinished(records))
    assert todo == [(1, None), (2, None), (3, None), (4, None)]
    for n in (3, 1, 4, 2):               # deleted in any order, 100 a call: the tree never changes
        records = [x for x in records if x.message_id != n]
        assert _shape(tree.build(records, 77, 5)) == _shape(root)
    records = [x for x in records if x.message_id != 7]
    assert _shape(tree.build(records, 77, 5)) == _shape(root) and tree.journals(records) == []
    records.append(_rec(20, "#tgdav piece 2/2 ee /a/up.bin", "up.002"))     # the upload ends: it shows
    assert tree.find(tree.build(records, 77, 5), ("a", "up.bin")).size == 20


@pytest.mark.parametrize("text", ["#tgdav delete /", "#tgdav hold /", "#tgdav delete a", "#tgdav hold /a//b"])
def test_a_delete_or_hold_of_the_root_or_of_no_path_is_no_journal(text):
    assert tree.parse(text)[0] is None


def test_a_hold_hides_the_copies_until_one_edit_shows_them_and_replaces_the_old_folder():
    old = [_rec(1, "#tgdav dir /d"), _rec(2, "#tgdav file /d/old.bin", "old.bin", size=1),
           _rec(3, "#tgdav file /d/same.bin", "same.bin", size=1), _rec(4, "#tgdav file /e.bin", "e.bin")]
    before = tree.build(old, 77, 5)
    hold = tree.Tag("hold", ("d",))
    assert tree.parse(hold.line()) == (hold, "")
    copies = [_rec(6, "#tgdav file /d/same.bin", "same.bin", size=2),
              _rec(7, "#tgdav piece 1 cc /d/s/p.bin", "p.001", size=3), _rec(8, "#tgdav piece 2/2 cc /d/s/p.bin", "p.002"),
              _rec(9, "#tgdav dir /d/empty")]
    records = old + [_rec(5, hold.line())]
    for n in range(len(copies) + 1):     # every copy sent so far is hidden: the old folder shows, whole
        now = records + copies[:n]
        assert _shape(tree.build(now, 77, 5)) == _shape(before)
        assert tree.build(now, 77, 5).files.keys() == {"e.bin"}           # never an untagged post
        assert tree.unfinished(now) == []                                  # nothing for a finish to touch
        sent = [c.message_id for c in copies[:n]]
        rolled_back = [m for m in sent if m != 7 or 8 in sent]    # a piece set without its last: the janitor's
        assert sorted(r.message_id for r in tree.held(now)[5]) == rolled_back
        assert sorted(r.message_id for r in tree.below(now, ("d",))) == [1, 2, 3]
    records += copies
    committed = [x for x in records if x.message_id != 5] + [_rec(5, tree.Tag("delete", ("d",)).line(), edited=20.0)]
    root = tree.build(committed, 77, 5)
    d = root.dirs["d"]
    assert sorted(d.files) == ["same.bin"] and d.files["same.bin"].size == 2
    assert sorted(d.dirs) == ["empty", "s"] and d.dirs["s"].files["p.bin"].size == 13
    assert tree.held(committed) == {}
    assert sorted((r.message_id, p) for r, p in tree.unfinished(committed)) == [(1, None), (2, None), (3, None)]
    # rolled back instead (a failure, a crash): the hidden copies and the hold go; nothing changed
    rolled = [x for x in records if x.message_id not in {5, *(c.message_id for c in copies)}]
    assert _shape(tree.build(rolled, 77, 5)) == _shape(before)


def test_a_write_under_a_copy_left_uncommitted_rolls_it_back_first_and_the_janitor_only_after_grace():
    """A hold left by a crash would hide what a later write sends below it: the write rolls it back
    first (its copies, then the hold), and a write elsewhere in the channel leaves it alone."""
    from tgdav.model import Folder
    from tgdav.telegram.writer import Writer

    deleted: list[list[int]] = []
    records = {r.message_id: r for r in [
        _rec(1, "#tgdav dir /d"), _rec(2, "#tgdav file /d/old.bin", "old.bin"),
        _rec(5, "#tgdav hold /d"), _rec(6, "#tgdav file /d/new.bin", "new.bin"), _rec(7, "#tgdav dir /d/e"),
        _rec(8, "#tgdav piece 1 ab /d/up.bin", "up.001"),         # an upload's first piece: not a copy's
        _rec(3, "#tgdav file /x.bin", "x.bin")]}

    class Catalog:
        async def records(self, folder):
            return list(records.values())

        async def node(self, folder, path):
            return tree.find(tree.build(list(records.values()), 77, 5), tuple(path))

        async def forget(self, folder, ids):
            for i in ids:
                records.pop(i, None)

        async def apply(self, folder, messages, versions=None):
            for m in messages:
                tag, text = tree.parse(m.message)
                records[m.id] = tree.Record(m.id, 1e9, 1e9, tag, text, None)

        def access_hash(self, folder):
            return 5

    class Client:
        async def __call__(self, request):
            if isinstance(request, functions.channels.DeleteMessagesRequest):
                deleted.append(list(request.id))
                return True
            m = types.Message(id=100 + len(records), peer_id=types.PeerChannel(77), date=None,
                              message=request.message)
            return types.Updates([types.UpdateNewChannelMessage(m, 0, 0)], [], [], 0, 0)

    folder = Folder("Up", 77, "Up", None, 0, writable=True)
    writer = Writer(Client(), None, Catalog())
    asyncio.run(writer.mkdir(folder, ("y",)))                  # elsewhere: the hold stays
    asyncio.run(writer.finish(folder, holds_before=5.0))       # the janitor: not older than its grace
    assert deleted == [] and 5 in records
    asyncio.run(writer.mkdir(folder, ("d", "f")))              # below it: rolled back, then written
    assert deleted == [[6, 7], [5]]
    root = tree.build(list(records.values()), 77, 5)
    assert sorted(root.dirs["d"].files) == ["old.bin"] and sorted(root.dirs["d"].dirs) == ["f"]
    records[9] = _rec(9, "#tgdav hold /d")
    asyncio.run(writer.finish(folder, holds_before=10.0))      # the janitor: older than its grace
    assert deleted[-1] == [9] and 9 not in records
