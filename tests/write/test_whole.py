"""Issue 14, the tree and the writer: which message owns a path, concurrent writers, changes that span
several messages under FLOOD_WAIT at each step, caption limits checked before anything is sent, case
variants, and a channel created by MKCOL used at once. Promises 1, 2 and 4 (DESIGN.md).

What Telegram holds is checked with a plain Telethon client of the same account (every tag line at a
path) and with a second tgdav whose state is empty (what any other reader sees)."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import urllib.parse

import pytest
from telethon.errors import FloodWaitError

from tests.helpers import wait_until
from tests.write.conftest import PIECE_PARTS, WRITABLE, hrefs, http as request, random_bytes, sha256
from tests.write.test_atomic import MiB, Watcher, _one_entry, _telethon

PIECES = 2 * PIECE_PARTS * 512 * 1024 - 3 * 512 * 1024 + 17     # two messages: 12 MiB + 10.5 MiB


def _rel(folder: str) -> str:
    """'<test folder>/' inside Uploads, unquoted."""
    return urllib.parse.unquote(urllib.parse.urlsplit(folder).path)[len(WRITABLE) + 2:]


def _tags(sandbox, tmp_path, prefix: str, title: str = WRITABLE) -> list[str]:
    """Every tag line in Uploads (or the channel titled `title`) whose path starts with /<prefix>,
    as Telegram holds them. A FLOOD_WAIT that Telethon's own retries did not wait out (the sandbox
    paces getHistory as Telegram does, and these channels grow long) is waited out and the read
    started again, as a user of plain Telethon would."""
    async def look(client, channel):
        for _ in range(5):
            out = []
            try:
                async for m in client.iter_messages(channel, limit=None):
                    lines = (m.message or "").splitlines()
                    out += [line for line in lines[-2:] if line.startswith("#tgdav") and f" /{prefix}" in line]
                return out
            except FloodWaitError as e:
                await asyncio.sleep(e.seconds + 1)
        raise AssertionError("getHistory stayed in FLOOD_WAIT through 5 waits")
    return _telethon(sandbox, tmp_path, look, title)


def _fresh(sandbox, name: str, folder: str) -> str:
    """`folder` through a second tgdav with an empty state: what Telegram holds, read by anyone."""
    url, _, _ = sandbox.server(name)
    return url.rstrip("/") + urllib.parse.urlsplit(folder).path


def _fresh_get(sandbox, name: str, folder: str, path: str) -> tuple[int, bytes]:
    status, _, body = request("GET", _fresh(sandbox, name, folder) + path)
    return status, body


def _flood(sandbox, method: str, after: int, seconds: int = 2) -> None:
    sandbox.post("/faults", {"flood_wait": [{"method": method, "seconds": seconds, "after": after}]})


def _clear(sandbox) -> None:
    sandbox.post("/faults", {"clear": True,
                             "upload_max_fileparts": {"default": PIECE_PARTS, "premium": 2 * PIECE_PARTS}})


def _until_not_503(method: str, url: str, **kw) -> tuple[int, dict, bytes]:
    """A client that retries a 503 after its Retry-After (bounded: the floods here last 2 s)."""
    for _ in range(30):
        answer = request(method, url, **kw)
        if answer[0] != 503:
            return answer
        time.sleep(min(5, int(answer[1].get("Retry-After", "1"))))
    raise AssertionError(f"{method} {url} stayed 503")


# --- row: 3 to 20 clients PUT the same path at once ----------------------------------------------------
@pytest.mark.parametrize("clients", [3, 8, 20])
def test_concurrent_puts_leave_exactly_one_whole_version_and_no_losers(folder, sandbox, tmp_path, clients):
    url = folder + "same.bin"
    for round_ in range(5 if clients < 20 else 2):
        bodies = [random_bytes(200_000 + 1000 * i + round_, 1000 * clients + 10 * round_ + i) for i in range(clients)]
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda b=b: statuses.append(request("PUT", url, b)[0])) for b in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert set(statuses) <= {201, 204} and len(statuses) == clients
        status, _, got = request("GET", url)
        assert status == 200, f"round {round_}: the path is {status} after {clients} PUTs answered {statuses}"
        assert sha256(got) in {sha256(b) for b in bodies}
        _one_entry(folder, "same.bin")
    # the losers are gone from Telegram: one message holds the path
    assert len(_tags(sandbox, tmp_path, _rel(folder) + "same.bin")) == 1


def test_concurrent_puts_of_files_in_pieces(folder, sandbox, tmp_path):
    url = folder + "big.bin"
    bodies = [random_bytes(PIECES + i, 500 + i) for i in range(3)]
    threads = [threading.Thread(target=request, args=("PUT", url, b)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert sha256(request("GET", url)[2]) in {sha256(b) for b in bodies}
    tags = _tags(sandbox, tmp_path, _rel(folder) + "big.bin")
    assert len(tags) == 2 and sum("piece 2/2" in t for t in tags) == 1, tags


# --- row: MOVE of a file in pieces when Telegram answers FLOOD_WAIT on the second caption edit ---------
@pytest.mark.parametrize("step", [0, 1])
def test_move_of_a_file_in_pieces_is_all_or_nothing_under_flood_wait(folder, sandbox, tmp_path, step):
    data = random_bytes(PIECES, 600 + step)
    assert request("PUT", folder + "film.bin", data)[0] == 201
    watcher = Watcher(folder + "film.bin")
    _flood(sandbox, "EditMessage", after=step)
    try:
        status, headers, _ = request("MOVE", folder + "film.bin", headers={"Destination": folder + "moved.bin"})
    finally:
        _clear(sandbox)
    assert watcher.stop() == {sha256(data)} and watcher.statuses == {200}
    assert status == 503 and int(headers["Retry-After"]) >= 1
    # nothing moved, for this tgdav and for any other reader
    assert sha256(request("GET", folder + "film.bin")[2]) == sha256(data)
    assert request("GET", folder + "moved.bin")[0] == 404
    status, body = _fresh_get(sandbox, f"pieces-flood-{step}", folder, "film.bin")
    assert status == 200 and sha256(body) == sha256(data)
    # a retry finishes it
    assert _until_not_503("MOVE", folder + "film.bin", headers={"Destination": folder + "moved.bin"})[0] == 201
    assert sha256(request("GET", folder + "moved.bin")[2]) == sha256(data)
    assert request("GET", folder + "film.bin")[0] == 404
    tags = _tags(sandbox, tmp_path, _rel(folder))
    assert len(tags) == 2 and all(t.endswith("/moved.bin") for t in tags), tags


# --- a folder MOVE under FLOOD_WAIT at each step: the journal, each edit, the journal's deletion ------
FOLDER_STEPS = [("SendMessage", 0), ("EditMessage", 0), ("EditMessage", 1), ("EditMessage", 3),
                ("DeleteMessages", 0)]


@pytest.mark.parametrize("method,after", FOLDER_STEPS)
def test_folder_move_is_all_or_nothing_under_flood_wait_and_finished_later(folder, sandbox, tmp_path,
                                                                          method, after):
    files = {f"sub/f{i}.bin": random_bytes(50_000 + i, 700 + i) for i in range(3)}
    assert request("MKCOL", folder + "sub/")[0] == 201
    for name, data in files.items():
        assert request("PUT", folder + name, data)[0] == 201
    _flood(sandbox, method, after)
    try:
        status, _, _ = request("MOVE", folder + "sub/", headers={"Destination": folder + "new/"})
    finally:
        _clear(sandbox)
    fresh = _fresh(sandbox, f"folder-flood-{method}-{after}", folder)
    if method == "SendMessage":          # the journal could not be posted: nothing changed, 503
        assert status == 503
        gone, there = "new/", "sub/"
    else:                                # posted: the folder moved for every reader, at once
        assert status == 201
        gone, there = "sub/", "new/"
    for name, data in files.items():
        moved = there + name[len("sub/"):]
        assert sha256(request("GET", folder + moved)[2]) == sha256(data)
        assert request("GET", folder + gone + name[len("sub/"):])[0] == 404
        status, _, body = request("GET", fresh + moved)
        assert status == 200 and sha256(body) == sha256(data)
    time.sleep(2.5)                       # the flood's deadline: Telethon refuses that method until then
    if method == "SendMessage":
        assert _until_not_503("MOVE", folder + "sub/", headers={"Destination": folder + "new/"})[0] == 201
    else:                                 # the next write in the channel finishes the tidying
        assert request("PUT", folder + "other.txt", b"x")[0] == 201
    tags = [t for t in _tags(sandbox, tmp_path, _rel(folder)) if not t.endswith("/other.txt")]
    assert not [t for t in tags if t.startswith(("#tgdav move", "#tgdav to"))], tags   # the journal went
    assert len(tags) == 4 and all(f" /{_rel(folder)}new" in t for t in tags), tags


def test_a_journal_finished_in_its_own_second_never_loses_the_folder_it_moved(folder, sandbox, tmp_path):
    """A tgdav died just after posting a folder move's journal (posted here by hand, at the start of
    a second); another tgdav's next write finishes the move at once, and dies (FLOOD_WAIT) before the
    journal goes. Whole-second dates: an edit in the journal's own second would be taken for a
    message the journal replaces (it sits in the folder moved onto), gone for readers, then deleted
    by the next finisher. The moved files stay readable all along and after (promises 1 and 2)."""
    from tgdav.telegram import tree

    files = {name: random_bytes(40_000 + i, 900 + i) for i, name in enumerate(("a.bin", "b.bin"))}
    for sub in ("src/", "dst/"):
        assert request("MKCOL", folder + sub)[0] == 201
    for name, data in files.items():
        assert request("PUT", folder + "src/" + name, data)[0] == 201
    assert request("PUT", folder + "dst/old.bin", b"replaced by the move")[0] == 201
    other = _fresh(sandbox, "journal-second", folder)
    assert request("PUT", other + "warm.txt", b"its first write reads the channel whole")[0] == 201
    rel = tuple(_rel(folder).strip("/").split("/"))
    journal = tree.Tag("move", rel + ("dst",), source=rel + ("src",)).line()

    async def post_then_write(client, channel):
        while time.time() % 1 > 0.05:          # at the start of a second: the finisher runs within it
            await asyncio.sleep(0.01)
        posted = await client.send_message(channel, journal, parse_mode=None)
        _flood(sandbox, "DeleteMessages", 0, seconds=1)     # the finisher stops before the journal goes
        assert request("MKCOL", other + "trigger/")[0] == 201
        return posted.date.timestamp()

    posted = _telethon(sandbox, tmp_path, post_then_write)
    for name, data in files.items():                          # moved at once, for every reader
        status, _, body = request("GET", other + "dst/" + name)
        assert status == 200 and sha256(body) == sha256(data), (name, status, posted)
    time.sleep(1.5)                                           # the flood's deadline
    _clear(sandbox)
    assert request("MKCOL", other + "trigger2/")[0] == 201    # the next write finishes the move
    fresh = _fresh(sandbox, "journal-second-after", folder)
    for base in (other, fresh, folder):
        for name, data in files.items():
            status, _, body = request("GET", base + "dst/" + name)
            assert status == 200 and sha256(body) == sha256(data), (base, name, status)
        assert request("GET", base + "src/a.bin")[0] == 404
        assert request("GET", base + "dst/old.bin")[0] == 404
    tags = _tags(sandbox, tmp_path, _rel(folder))
    assert not [t for t in tags if t.startswith(("#tgdav move", "#tgdav to"))], tags


def test_a_move_onto_a_file_written_in_the_same_second_wins_even_if_the_old_one_stays(folder, sandbox):
    """MOVE onto a file PUT just before, in the same second, and Telegram refuses the deletion of
    the replaced version (FLOOD_WAIT): the moved file must still be what every reader sees. An edit
    ranks by its date, then its id; the PUT's message is newer by id, so an edit within its second
    ranked below it, and the old file came back for every reader once the MOVE had answered 204
    (the write-history checker's CI failure on seed 1). Promise 1."""
    moved, old = random_bytes(30_000, 950), random_bytes(20_000, 951)
    assert request("PUT", folder + "src.bin", moved)[0] == 201
    while time.time() % 1 > 0.05:              # at the start of a second: PUT and MOVE share it
        time.sleep(0.01)
    assert request("PUT", folder + "dest.bin", old)[0] == 201
    _flood(sandbox, "DeleteMessages", 0, seconds=1)
    try:
        status, _, _ = request("MOVE", folder + "src.bin",
                               headers={"Destination": folder + "dest.bin", "Overwrite": "T"})
    finally:
        time.sleep(1.5)
        _clear(sandbox)
    assert status == 204
    for base in (folder, _fresh(sandbox, "move-same-second", folder)):
        status, _, body = request("GET", base + "dest.bin")
        assert status == 200 and sha256(body) == sha256(moved), base
        assert request("GET", base + "src.bin")[0] == 404


@pytest.mark.parametrize("method", ["MOVE", "COPY"])
def test_two_writes_without_overwrite_onto_one_new_name_one_wins_one_is_412(folder, method):
    """Two clients MOVE (or COPY) a file each onto one new name with Overwrite: F at the same time.
    WsgiDAV finds the name free for both before either writes; the writer looks again under the
    name's lock, so exactly one wins (201) and the other is 412 with its source untouched; never
    both 201 with the first file replaced by the second (RFC 4918 9.9.3, 9.8.5). Promise 1."""
    for round_ in range(4):
        sources = {f"s{round_}-{i}.bin": random_bytes(20_000 + i, 960 + 10 * round_ + i) for i in range(2)}
        for name, data in sources.items():
            assert request("PUT", folder + name, data)[0] == 201
        dest = f"d{round_}.bin"
        winner, loser = race_without_overwrite(method, folder, list(sources), folder + dest)
        status, _, body = request("GET", folder + dest)
        assert status == 200 and sha256(body) == sha256(sources[winner])
        status, _, body = request("GET", folder + loser)
        assert status == 200 and sha256(body) == sha256(sources[loser])


def race_without_overwrite(method: str, folder: str, names: list[str], dest: str) -> tuple[str, str]:
    """Two clients send `method` of folder+name (one name each) onto the URL `dest` with Overwrite:
    F at the same moment: exactly one is 201, the other 412. Returns (the winner's name, the loser's)."""
    statuses: dict[str, int] = {}
    go = threading.Barrier(len(names))

    def send(name: str) -> None:
        go.wait()
        statuses[name] = request(method, folder + name, headers={"Destination": dest, "Overwrite": "F"})[0]
    threads = [threading.Thread(target=send, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses.values()) == [201, 412], statuses
    return (next(name for name, status in statuses.items() if status == 201),
            next(name for name, status in statuses.items() if status == 412))


# --- caption limits: checked before the first edit, before the first byte ------------------------------
def _deep(folder: str, total: int) -> tuple[str, str]:
    """MKCOL folders below `folder` until the path inside the channel is `total` characters long
    (with the slash before it); returns (the deepest folder's URL, its path inside the channel)."""
    path = "/" + _rel(folder).rstrip("/")
    url = folder.rstrip("/")
    while len(path) < total:
        name = "d" * min(150, total - len(path) - 1)
        path += "/" + name
        url += "/" + name
        assert request("MKCOL", url + "/")[0] == 201, path
    return url + "/", path


def test_move_whose_piece_caption_would_be_too_long_moves_nothing(folder, sandbox):
    data = random_bytes(PIECES, 800)
    assert request("PUT", folder + "f.bin", data)[0] == 201
    # "#tgdav piece 1 <8 hex> " is 24 characters: piece 1's caption fits in 1024, piece 2/2's (26) not
    parent, path = _deep(folder, 1000 - len("/moved.bin"))
    edits = sandbox.total("messages_edited")
    status, _, body = request("MOVE", folder + "f.bin", headers={"Destination": parent + "moved.bin"})
    assert status == 400 and b"too long" in body
    assert sandbox.total("messages_edited") == edits
    assert sha256(request("GET", folder + "f.bin")[2]) == sha256(data)
    assert request("GET", parent + "moved.bin")[0] == 404
    status, got = _fresh_get(sandbox, "caption-move", folder, "f.bin")
    assert status == 200 and sha256(got) == sha256(data)


def test_put_mkcol_and_folder_move_too_long_for_a_caption_are_refused_before_anything_is_sent(folder, sandbox, tmp_path):
    parent, path = _deep(folder, 990)
    body = tmp_path / "body.bin"
    body.write_bytes(random_bytes(6 * MiB, 801))
    parts, sent = sandbox.total("upload_parts"), sandbox.total("messages_sent")
    done = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null", "-T", str(body), parent + "x.bin"],
                          capture_output=True, text=True, timeout=300)
    assert "HTTP/1.1 400" in done.stdout, done.stdout
    assert sandbox.total("upload_parts") == parts              # not one byte went to Telegram
    assert request("MKCOL", parent + "e" * 40 + "/")[0] == 400
    assert sandbox.total("messages_sent") == sent
    # a folder MOVE that would put a caption over the limit: nothing moves
    assert request("MKCOL", folder + "small/")[0] == 201
    assert request("PUT", folder + "small/a-file-with-a-long-name.txt", b"a")[0] == 201
    edits = sandbox.total("messages_edited")
    status, _, _ = request("MOVE", folder + "small/", headers={"Destination": parent + "s/"})
    assert status == 400
    assert sandbox.total("messages_edited") == edits and sandbox.total("messages_sent") == sent + 2
    assert request("GET", folder + "small/a-file-with-a-long-name.txt")[2] == b"a"


# --- case variants ----------------------------------------------------------------------------------
def test_a_put_to_a_case_variant_lists_and_reads_back_under_exactly_that_name(folder, sandbox, tmp_path):
    assert request("PUT", folder + "README.TXT", b"upper")[0] == 201
    assert request("PUT", folder + "readme.txt", b"lower")[0] in (201, 204)
    assert request("GET", folder + "readme.txt")[2] == b"lower"
    listed = hrefs(request("PROPFIND", folder, headers={"Depth": "1"})[2])
    assert any(h.endswith("/readme.txt") for h in listed), listed
    assert not any("README" in h or "(" in h for h in listed), listed
    assert request("GET", folder + "README.TXT")[2] == b"lower"     # one file, any spelling finds it
    assert len(_tags(sandbox, tmp_path, _rel(folder))) == 1     # the older version is gone
    status, body = _fresh_get(sandbox, "case", folder, "readme.txt")
    assert (status, body) == (200, b"lower")


# --- MKCOL of a channel, then PUT into it at once ---------------------------------------------------
def test_a_channel_made_by_mkcol_takes_a_put_at_once(dav):
    channel = dav + urllib.parse.quote("Fresh channel 14") + "/"
    assert request("MKCOL", channel)[0] == 201
    assert request("PUT", channel + "first.txt", b"at once")[0] == 201      # rclone and Finder do this
    assert request("GET", channel + "first.txt")[2] == b"at once"
    assert request("MKCOL", channel + "sub/")[0] == 201


# --- trust: only trusted posters' tags shape the tree ------------------------------------------------
@pytest.fixture(scope="module")
def club(tmp_path_factory):
    """A sandbox of its own with a supergroup `Club`: the user a member, @group_owner its creator,
    @stranger another member; posts by those two go through the admin API."""
    from tests.write.conftest import running_sandbox
    with running_sandbox(tmp_path_factory.mktemp("club"), ("--group", "Club")) as sb:
        yield sb


def _post_as(sb, channel: str, who: str, text: str, name: str | None = None, data: bytes = b"") -> int:
    import base64
    import json
    import urllib.request
    body = {"channel": channel, "from": who, "text": text,
            "file": {"name": name, "data": base64.b64encode(data).decode()} if name else None}
    req = urllib.request.Request(sb.admin + "/post", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["id"]


def _names(url: str) -> set[str]:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return {h[len(path):].rstrip("/")
            for h in hrefs(request("PROPFIND", url, headers={"Depth": "1"})[2]) if h != path} - {""}


def test_in_a_group_only_the_account_admins_and_trusted_senders_tags_count(club):
    """Promise 4: only trusted posters' tags shape the tree; others' posts never hide or replace."""
    dav, _, _ = club.server("mine")
    assert request("PUT", dav + "Club/docs/a.txt", b"mine")[0] == 409      # no folder yet
    assert request("MKCOL", dav + "Club/docs/")[0] == 201
    assert request("PUT", dav + "Club/docs/a.txt", b"mine")[0] == 201
    # a stranger takes the path over with a newer tag, makes a folder, names a case variant
    _post_as(club, "Club", "stranger", "#tgdav file /docs/a.txt", "evil.txt", b"evil")
    _post_as(club, "Club", "stranger", "#tgdav dir /hijack")
    _post_as(club, "Club", "stranger", "#tgdav file /docs/A.TXT", "case.txt", b"case")
    # the group's creator (an admin) places a file
    _post_as(club, "Club", "group_owner", "#tgdav file /docs/admin.txt", "admin.txt", b"admin")
    fresh, _, _ = club.server("fresh")          # a tgdav reading the group from the start
    assert request("GET", fresh + "Club/docs/a.txt")[2] == b"mine"
    assert request("GET", fresh + "Club/docs/admin.txt")[2] == b"admin"
    assert _names(fresh + "Club/") == {"docs", "evil.txt", "case.txt"}     # the strangers' posts
    assert request("GET", fresh + "Club/evil.txt")[2] == b"evil"
    # an overwrite of the path never deletes a stranger's post (it claims nothing)
    assert request("PUT", fresh + "Club/docs/a.txt", b"mine 2")[0] == 204
    assert request("GET", fresh + "Club/evil.txt")[2] == b"evil"
    # [write] trust names the stranger: now the stranger's tags count
    trusting, _, _ = club.server("trusting", '\n[write]\ntrust = ["@stranger"]\n')
    assert _names(trusting + "Club/") == {"docs", "hijack"}
    assert request("GET", trusting + "Club/docs/a.txt")[2] == b"mine 2"   # the newest of the name
    assert _names(trusting + "Club/docs/") == {"a.txt", "admin.txt"}


def test_in_a_broadcast_channel_every_admins_tag_counts(club):
    dav, _, _ = club.server("broadcast")
    assert request("MKCOL", dav + f"{WRITABLE}/bc/")[0] == 201
    _post_as(club, WRITABLE, "tgdav_sandbox_bot", "#tgdav file /bc/x.txt", "x.bin", b"by the bot")   # another admin
    fresh, _, _ = club.server("broadcast-fresh")
    assert request("GET", fresh + f"{WRITABLE}/bc/x.txt")[2] == b"by the bot"


def test_a_move_onto_a_file_right_after_its_overwrite_wins(folder, sandbox, tmp_path):
    """i14c's F9: both changes in one second (Telegram's dates are whole seconds): the later
    acknowledged one is the file, whatever the message ids say."""
    for n in range(3):
        assert request("PUT", folder + "a.bin", b"first %d" % n)[0] in (201, 204)
        assert request("PUT", folder + "src.bin", b"moved %d" % n)[0] == 201
        assert request("PUT", folder + "a.bin", b"second %d" % n)[0] == 204
        assert request("MOVE", folder + "src.bin", headers={"Destination": folder + "a.bin"})[0] == 204
        assert request("GET", folder + "a.bin")[2] == b"moved %d" % n
    assert len(_tags(sandbox, tmp_path, _rel(folder))) == 1


@pytest.mark.parametrize("method", ["COPY", "MOVE"])
def test_a_failed_copy_or_move_onto_a_file_keeps_it(dav, folder, sandbox, method):
    """i14c's F2: WsgiDAV deletes the destination before it copies; a COPY (or a MOVE from another
    channel) onto a file must replace it in one step: refused half-way, the file is as it was."""
    other = dav + urllib.parse.quote(f"Other {method}") + "/"
    assert request("MKCOL", other)[0] == 201
    assert request("PUT", folder + "a.bin", b"old")[0] == 201
    source = folder + "b.bin" if method == "COPY" else other + "b.bin"
    assert request("PUT", source, b"new")[0] == 201
    _flood(sandbox, "SendMedia", after=0)
    try:
        status, _, _ = request(method, source, headers={"Destination": folder + "a.bin", "Overwrite": "T"})
    finally:
        _clear(sandbox)
    assert status == 503
    assert request("GET", folder + "a.bin")[2] == b"old" and request("GET", source)[2] == b"new"
    assert _until_not_503(method, source, headers={"Destination": folder + "a.bin", "Overwrite": "T"})[0] == 204
    assert request("GET", folder + "a.bin")[2] == b"new"
    assert request("GET", source)[0] == (200 if method == "COPY" else 404)


def _lock(url: str) -> str:
    body = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            '<D:locktype><D:write/></D:locktype></D:lockinfo>').encode()
    status, headers, _ = request("LOCK", url, body, {"Content-Type": "application/xml", "Timeout": "Second-60"})
    assert status in (200, 201), status
    return headers["Lock-Token"]


def test_a_lock_holds_every_spelling_of_its_name(folder):
    """Promise 3 with case-insensitive names (i14c's F7, F13): Readme.txt and readme.txt are one
    file, so a lock on one spelling holds the other; a LOCK of another spelling never empties it."""
    assert request("PUT", folder + "readme.txt", b"locked body")[0] == 201
    token = _lock(folder + "readme.txt")
    assert request("PUT", folder + "Readme.txt", b"intruder")[0] == 423
    assert request("LOCK", folder + "README.TXT", b"", {"Timeout": "Second-60"})[0] in (423, 400, 412)
    assert request("MOVE", folder + "readme.txt", headers={"Destination": folder + "x.txt"})[0] == 423
    assert request("GET", folder + "readme.txt")[2] == b"locked body"
    assert request("PUT", folder + "Readme.txt", b"with the token", {"If": f"({token})"})[0] in (201, 204)
    assert request("GET", folder + "Readme.txt")[2] == b"with the token"
    assert request("UNLOCK", folder + "readme.txt", headers={"Lock-Token": token})[0] == 204
    second = _lock(folder + "README.TXT")                 # the file, locked under another spelling
    assert request("GET", folder + "Readme.txt")[2] == b"with the token"
    assert request("PUT", folder + "readme.txt", b"intruder")[0] == 423
    assert request("UNLOCK", folder + "README.TXT", headers={"Lock-Token": second})[0] == 204


def test_concurrent_puts_through_two_replicas_sharing_redis_leave_one_version(dav, sandbox, tmp_path,
                                                                               tmp_path_factory):
    """Row 2 across replicas: [state] redis set, 4 PUTs through each of two tgdav at once."""
    from tests.e2e.conftest import stop
    from tests.scale.conftest import start_redis
    from tests.write.conftest import redis_replica
    redis_url, redis = start_redis(tmp_path_factory.mktemp("write-redis"))
    try:
        urls = [f"{redis_replica(sandbox, name, redis_url)}{WRITABLE}/replicas/"
                for name in ("replica-a", "replica-b")]
        assert request("MKCOL", urls[0])[0] == 201
        wait_until(lambda: request("PROPFIND", urls[1], headers={"Depth": "0"})[0] == 207, 20,
                   "B sees the new folder at its next listing refresh", interval=0.2)
        for round_ in range(3):
            bodies = [random_bytes(150_000 + i, 900 + 10 * round_ + i) for i in range(8)]
            threads = [threading.Thread(target=request, args=("PUT", urls[i % 2] + "same.bin", b))
                       for i, b in enumerate(bodies)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            assert sha256(request("GET", urls[0] + "same.bin")[2]) in {sha256(b) for b in bodies}
        assert len(_tags(sandbox, tmp_path, "replicas/same.bin")) == 1      # the losers are gone
    finally:
        stop(redis)


@pytest.mark.parametrize("flood", [None, "EditMessage", "DeleteMessages"])
def test_a_folder_moved_onto_another_replaces_it_in_one_step(folder, sandbox, flood):
    """i14c's F16: MOVE d3 onto d2 (Overwrite: T): readers see the old d2 or the new one, never none;
    with Telegram asking to wait after the journal, the move is still whole, and tidied later."""
    for name, n in (("d2", 3), ("d3", 2)):
        assert request("MKCOL", folder + name + "/")[0] == 201
        for i in range(n):
            assert request("PUT", folder + f"{name}/f{i}.bin", f"{name} {i}".encode())[0] == 201
    statuses: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            statuses.add(request("PROPFIND", folder + "d2/", headers={"Depth": "0"})[0])
    watcher = threading.Thread(target=watch)
    watcher.start()
    if flood:
        _flood(sandbox, flood, after=0)
    try:
        status = request("MOVE", folder + "d3/", headers={"Destination": folder + "d2/", "Overwrite": "T"})[0]
    finally:
        _clear(sandbox)
        done.set()
        watcher.join(60)
    assert status == 204 and statuses == {207}
    assert _names(folder + "d2/") == {"f0.bin", "f1.bin"} and request("GET", folder + "d3/")[0] == 404
    assert request("GET", folder + "d2/f1.bin")[2] == b"d3 1"
    fresh = _fresh(sandbox, f"onto-{flood}", folder)
    assert _names(fresh + "d2/") == {"f0.bin", "f1.bin"} and request("GET", fresh + "d2/f0.bin")[2] == b"d3 0"
    time.sleep(2.5)
    assert request("PUT", folder + "later.txt", b"x")[0] == 201        # the next write tidies up
    assert request("GET", fresh + "d2/f0.bin")[2] == b"d3 0"
