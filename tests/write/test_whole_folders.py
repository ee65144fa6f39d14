"""Promise 2 (DESIGN.md) for changes of many messages: a DELETE of a folder of 250 files (three
channels.deleteMessages calls: Telegram takes 100 ids a call) and a folder COPY or MOVE to another
channel (one message per file), with a FLOOD_WAIT between two calls or a kill -9 of the server in
the middle. Every reader (the same server, one reading all along, a restarted one, a fresh one)
sees the whole folder or none of it, by SHA-256 of every file, and a retry finishes it; what is left
in Telegram is checked with a plain Telethon client (tgdav/telegram/tree.py: the delete and hold
journals that make each change one message's decision)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import wait_until
from tests.write.conftest import WRITABLE, hrefs, http as request, random_bytes, serve, sha256
from tests.write.test_atomic import Looker
from tests.write.test_whole import (_clear, _flood, _fresh, _rel, _tags, _until_not_503,
                                    race_without_overwrite)

N_DELETE = 250      # files: with the folders' markers, three deleteMessages calls
N_COPY = 120        # files: more than one deleteMessages call for a moved source, too
FLOOD = 3           # seconds of each injected FLOOD_WAIT


def _fill(base: str, n: int, seed: int) -> dict[str, bytes]:
    """MKCOL `base` and base/sub/, then PUT n small files (every tenth in sub/), 8 at a time."""
    assert request("MKCOL", base)[0] == 201
    assert request("MKCOL", base + "sub/")[0] == 201
    files = {(f"sub/f{i:03d}.bin" if i % 10 == 0 else f"f{i:03d}.bin"): random_bytes(100 + i, seed + i)
             for i in range(n)}
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda item: request("PUT", base + item[0], item[1])[0], files.items()))
    assert set(statuses) == {201}
    return files


def _members(url: str) -> list[str] | None:
    """The names a Depth 1 PROPFIND lists in the folder at `url` (folders end with '/'); None: no folder."""
    status, _, body = request("PROPFIND", url, headers={"Depth": "1"})
    if status == 404:
        return None
    assert status == 207, (url, status)
    own = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return sorted(h[len(own):] for h in hrefs(body) if h != own)


def _whole_or_none(base: str, files: dict[str, bytes]) -> str:
    """'whole' when the folder at `base` holds exactly `files` (SHA-256 of each), 'none' when it
    is not there; anything else fails the test: a reader saw half a folder."""
    top = _members(base)
    if top is None:
        return "none"
    seen = {}
    for sub, names in (("", top), ("sub/", _members(base + "sub/") if "sub/" in top else [])):
        for name in names or []:
            if not name.endswith("/"):
                status, _, data = request("GET", base + sub + urllib.parse.quote(name))
                seen[sub + name] = sha256(data) if status == 200 else f"GET {status}"
    expected = {rel: sha256(data) for rel, data in files.items()}
    assert seen == expected, f"{base}: half a folder ({len(seen)} of {len(files)} files, {top[:5]}...)"
    return "whole"


def _top(files: dict[str, bytes]) -> list[str]:
    """What a listing of the whole folder holds at its top."""
    return sorted([rel for rel in files if "/" not in rel] + ["sub/"])


def _until_listed(url: str, files: dict[str, bytes], want: str) -> None:
    """Wait until a server that learns of a change by pushed updates lists the whole folder at `url`
    (want 'whole') or none (want 'none'); every listing until then must be one of the two. Then
    every file's bytes are checked once."""
    def there() -> bool:
        listed = _members(url)
        assert listed in (None, _top(files)), f"a reader listed half a folder: {listed!r:.300}"
        return (listed is not None) == (want == "whole")
    wait_until(there, 60, lambda: f"{url} {want}; that server's live listings: {_live(url)}", interval=0.2)
    assert _whole_or_none(url, files) == want


def _live(url: str) -> str:
    """What a server says of its live listings (per channel: pts, updates, gaps healed) and its
    last errors, for a failure's message: which update it missed, or which call failed."""
    base = "{0.scheme}://{0.netloc}/".format(urllib.parse.urlsplit(url))
    status, _, body = request("GET", base + ":tgdav/status.json")
    if status != 200:
        return f"status.json {status}"
    data = json.loads(body)
    return json.dumps({"live": data.get("live"), "errors": data.get("errors", [])[-5:]})


class Lister(Looker):
    """Lists `url` (Depth 1) in a loop in a thread, from before a change until after it: every
    listing must be the whole folder's or none."""

    def __init__(self, url: str) -> None:
        self.url, self.seen = url, []
        super().__init__()

    def look(self) -> None:
        try:
            self.seen.append(_members(self.url))
        except Exception as e:       # noqa: BLE001  (an answer that is no listing is a finding)
            self.seen.append(repr(e))

    def stop(self, files: dict[str, bytes]) -> set[str]:
        self.halt()
        whole = _top(files)
        half = [s for s in self.seen if s is not None and s != whole]
        assert not half, f"a reader listed half a folder: {half[0]!r:.300}"
        return {"none" if s is None else "whole" for s in self.seen}


@pytest.fixture(scope="module")
def elsewhere(dav) -> tuple[str, str]:
    """A second writable channel (made by MKCOL): (its title, its URL)."""
    title = f"Elsewhere {int(time.time() * 1000) % 100000}"
    assert request("MKCOL", dav + urllib.parse.quote(title))[0] == 201
    return title, dav + urllib.parse.quote(title) + "/"


def _killed(sandbox, proc, counter: str, at_least: int, request_args: tuple) -> threading.Thread:
    """Send the request in a thread and kill -9 the server once the sandbox's `counter` reached
    `at_least`: mid-way through the change."""
    def send() -> None:
        try:
            request(*request_args, timeout=120)
        except Exception:       # noqa: BLE001  (the server dies under it)
            pass
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    wait_until(lambda: sandbox.total(counter) >= at_least, 120, f"{counter} >= {at_least}", interval=0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    sender.join(30)
    return sender


def _restart(sandbox, config, name: str) -> str:
    url, proc = serve(config, sandbox.root / "logs" / name)
    sandbox.procs.append(proc)
    return url


# --- DELETE of a folder of 250 files: FLOOD_WAIT on the second deleteMessages call --------------------
def test_a_folder_delete_under_flood_wait_between_calls_is_whole_or_none_and_a_retry_finishes(
        folder, sandbox, tmp_path):
    base = folder + "big/"
    files = _fill(base, N_DELETE, 1000)
    other = _fresh(sandbox, "delete-watch", folder)
    assert _whole_or_none(other + "big/", files) == "whole"
    lister = Lister(other + "big/")
    _flood(sandbox, "DeleteMessages", after=1, seconds=FLOOD)
    try:
        status = request("DELETE", base)[0]
    finally:
        _clear(sandbox)
    listed = lister.stop(files)
    assert status == 204, status                     # done for every reader, from the first call on
    fresh = _fresh(sandbox, "delete-after", folder)
    assert [_whole_or_none(url, files) for url in (base, fresh + "big/")] == ["none"] * 2
    assert listed <= {"whole", "none"}
    _until_listed(other + "big/", files, "none")     # the watching server learns of it by pushed updates
    time.sleep(FLOOD)                                # the flood's deadline
    assert request("DELETE", base)[0] in (204, 404)  # a retry: nothing left to see
    assert request("PUT", folder + "after-delete.txt", b"next")[0] == 201   # the next write in the
    assert _tags(sandbox, tmp_path, _rel(folder) + "big") == []             # channel tidies the rest


# --- DELETE of a folder of 250 files: kill -9 between the deleteMessages calls ------------------------
def test_a_folder_delete_killed_between_calls_is_whole_or_none_and_a_retry_finishes(dav, sandbox, tmp_path):
    url, proc, config = sandbox.server("delete-killed")
    folder = f"{url}{WRITABLE}/delete-killed/"
    assert request("MKCOL", folder)[0] == 201
    files = _fill(folder + "big/", N_DELETE, 2000)
    before = sandbox.total("messages_deleted")
    sandbox.post("/link", {"latency_ms": 400})       # answers take 0.4 s: the kill lands between calls
    try:
        _killed(sandbox, proc, "messages_deleted", before + 100, ("DELETE", folder + "big/"))
    finally:
        sandbox.post("/link", {"latency_ms": 0})
    assert sandbox.total("messages_deleted") - before < N_DELETE          # killed mid-way
    again = _restart(sandbox, config, "delete-killed-again")
    fresh, _, _ = sandbox.server("delete-killed-fresh")
    for reader in (again, fresh):
        assert _whole_or_none(f"{reader}{WRITABLE}/delete-killed/big/", files) == "none"
    assert request("DELETE", f"{again}{WRITABLE}/delete-killed/big/")[0] in (204, 404)    # a retry
    assert _tags(sandbox, tmp_path, "delete-killed/big") == []


# --- a folder COPY or MOVE to another channel: FLOOD_WAIT on a sendMedia half-way -----------------------
@pytest.mark.parametrize("method", ["COPY", "MOVE"])
def test_a_folder_copy_or_move_to_another_channel_under_flood_wait_is_whole_or_none(
        folder, sandbox, tmp_path, elsewhere, method):
    title, other_channel = elsewhere
    src = folder + "src/"
    files = _fill(src, N_COPY, 3000 if method == "COPY" else 4000)
    dst_rel = f"{method.lower()}-flood"
    dst = other_channel + dst_rel + "/"
    watch = _fresh(sandbox, f"{method}-flood-watch", folder)
    watch_dst = watch.split(urllib.parse.quote(WRITABLE))[0] + urllib.parse.quote(title) + f"/{dst_rel}/"
    listers = (Lister(watch + "src/"), Lister(watch_dst))
    _flood(sandbox, "SendMedia", after=N_COPY // 2, seconds=FLOOD)
    try:
        status = request(method, src, headers={"Destination": dst})[0]
    finally:
        _clear(sandbox)
    assert listers[0].stop(files) == {"whole"} and listers[1].stop(files) == {"none"}
    assert status == 503, status                     # refused half-way: nothing changed, for anyone
    fresh = _fresh(sandbox, f"{method}-flood-fresh", folder)
    fresh_dst = fresh.split(urllib.parse.quote(WRITABLE))[0] + urllib.parse.quote(title) + f"/{dst_rel}/"
    for reader_src, reader_dst in ((src, dst), (watch + "src/", watch_dst), (fresh + "src/", fresh_dst)):
        assert (_whole_or_none(reader_src, files), _whole_or_none(reader_dst, files)) == ("whole", "none")
    time.sleep(FLOOD)
    assert _until_not_503(method, src, headers={"Destination": dst})[0] == 201      # a retry finishes it
    for reader_src, reader_dst in ((src, dst), (fresh + "src/", fresh_dst)):   # never half, meanwhile
        _until_listed(reader_dst, files, "whole")
        _until_listed(reader_src, files, "whole" if method == "COPY" else "none")
    _only_the_copies_left(sandbox, tmp_path, title, dst_rel)


def _only_the_copies_left(sandbox, tmp_path, title: str, dst_rel: str) -> None:
    """In the destination channel: one file tag per file, the two folders' markers (the source's
    were made by MKCOL), no journal (the rolled-back copies and the hold are gone)."""
    tags = _tags(sandbox, tmp_path, dst_rel, title)
    files = [t for t in tags if t.startswith("#tgdav file ")]
    assert len(files) == N_COPY and sorted(set(tags) - set(files)) == [
        f"#tgdav dir /{dst_rel}", f"#tgdav dir /{dst_rel}/sub"], tags[:5]


# --- a folder COPY or MOVE to another channel: kill -9 half-way ---------------------------------------
@pytest.mark.parametrize("method", ["COPY", "MOVE"])
def test_a_folder_copy_or_move_to_another_channel_killed_half_way_is_whole_or_none(
        sandbox, tmp_path, elsewhere, method):
    title, _ = elsewhere
    name = f"{method.lower()}-killed"
    url, proc, config = sandbox.server(name)
    folder = f"{url}{WRITABLE}/{name}/"
    assert request("MKCOL", folder)[0] == 201
    files = _fill(folder + "src/", N_COPY, 5000 if method == "COPY" else 6000)
    dst_rel = f"{name}-dst"
    dst = f"{url}{urllib.parse.quote(title)}/{dst_rel}/"
    before = sandbox.total("messages_sent")
    _killed(sandbox, proc, "messages_sent", before + N_COPY // 2, (method, folder + "src/", None,
                                                                     {"Destination": dst}))
    assert sandbox.total("messages_sent") - before < N_COPY                # killed mid-way
    again = _restart(sandbox, config, f"{name}-again")
    fresh, _, _ = sandbox.server(f"{name}-fresh")
    for reader in (again, fresh):
        assert _whole_or_none(f"{reader}{WRITABLE}/{name}/src/", files) == "whole"
        assert _whole_or_none(f"{reader}{urllib.parse.quote(title)}/{dst_rel}/", files) == "none"
    retry = request(method, f"{again}{WRITABLE}/{name}/src/",
                    headers={"Destination": f"{again}{urllib.parse.quote(title)}/{dst_rel}/"})
    assert retry[0] == 201, retry
    for reader in (again, fresh):       # the other server learns of it by pushed updates: never half
        _until_listed(f"{reader}{urllib.parse.quote(title)}/{dst_rel}/", files, "whole")
        _until_listed(f"{reader}{WRITABLE}/{name}/src/", files, "whole" if method == "COPY" else "none")
    _only_the_copies_left(sandbox, tmp_path, title, dst_rel)


# --- a folder COPY onto an existing folder of the same channel: the old one until one edit, then the new
def test_a_folder_copy_onto_an_existing_folder_replaces_it_whole_under_flood_wait(folder, sandbox, tmp_path):
    src, dst = folder + "src/", folder + "dst/"
    files, old = _fill(src, 30, 7000), _fill(dst, 12, 8000)
    watch = _fresh(sandbox, "copy-over-watch", folder)
    lister = Lister(watch + "dst/")
    _flood(sandbox, "SendMedia", after=15, seconds=FLOOD)
    try:
        assert request("COPY", src, headers={"Destination": dst, "Overwrite": "T"})[0] == 503
    finally:
        _clear(sandbox)
    assert _whole_or_none(dst, old) == "whole" and _whole_or_none(watch + "dst/", old) == "whole"
    time.sleep(FLOOD)
    assert _until_not_503("COPY", src, headers={"Destination": dst, "Overwrite": "T"})[0] == 204
    lister.halt()
    seen = [s for s in lister.seen if s is not None]
    assert {tuple(s) for s in seen} <= {tuple(_top(old)), tuple(_top(files))}, "a reader saw half a folder"
    for reader in (dst, _fresh(sandbox, "copy-over-fresh", folder) + "dst/"):
        assert _whole_or_none(reader, files) == "whole" and _whole_or_none(reader.replace("dst/", "src/"), files) == "whole"
    tags = _tags(sandbox, tmp_path, _rel(folder) + "dst")       # the old folder's messages went
    assert sorted(t for t in tags if not t.startswith("#tgdav file ")) == [
        f"#tgdav dir /{_rel(folder)}dst", f"#tgdav dir /{_rel(folder)}dst/sub"]
    assert len(tags) == len(files) + 2


# --- two folder COPYs (or MOVEs to another channel) without overwrite onto one new name ---------------
@pytest.mark.parametrize("method", ["COPY", "MOVE"])
def test_two_folder_writes_without_overwrite_onto_one_new_name_one_wins_one_is_412(
        folder, elsewhere, method):
    """Two clients COPY (inside the channel) or MOVE (to another channel) a folder each onto one new
    name with Overwrite: F at once. WsgiDAV finds the name free for both; the writer looks again
    under the name's lock, so one wins (201) and the other is 412 with its folder untouched, never
    both 201 with one folder replacing the other (RFC 4918 9.8.5, 9.9.3)."""
    _, other_channel = elsewhere
    target = folder if method == "COPY" else other_channel
    for round_ in range(3):
        sources = {f"{method}-s{round_}-{i}/": _fill(folder + f"{method}-s{round_}-{i}/", 3, 9000 + 10 * round_ + i)
                   for i in range(2)}
        dest = target + f"{method}-d{round_}/"
        winner, loser = race_without_overwrite(method, folder, list(sources), dest)
        assert _whole_or_none(dest, sources[winner]) == "whole"
        assert _whole_or_none(folder + loser, sources[loser]) == "whole"
        assert _whole_or_none(folder + winner, sources[winner]) == ("whole" if method == "COPY" else "none")


# --- a copied folder made by MKCOL stays a folder when emptied, as its source would -----------------
@pytest.mark.parametrize("method", ["COPY", "MOVE"])
def test_a_copied_folder_stays_a_folder_when_its_last_file_is_deleted(folder, elsewhere, method):
    """The write-history checker's seed 604: COPY d3 -> d2 (201), then the one file in d2 deleted,
    and d2 was gone (404, and a PUT into it 409): the copy had sent the files but not the folder's
    marker. A folder made by MKCOL keeps its marker in a COPY and in a MOVE to another channel."""
    _, other_channel = elsewhere
    src = folder + f"{method}-marked/"
    assert request("MKCOL", src)[0] == 201
    assert request("MKCOL", src + "sub/")[0] == 201
    assert request("PUT", src + "one.bin", b"one")[0] == 201
    assert request("PUT", src + "sub/two.bin", b"two")[0] == 201
    dest = (folder if method == "COPY" else other_channel) + f"{method}-marked-copy/"
    assert request(method, src, headers={"Destination": dest})[0] == 201
    assert request("DELETE", dest + "one.bin")[0] == 204
    assert request("DELETE", dest + "sub/two.bin")[0] == 204
    assert _members(dest) == ["sub/"]
    assert _members(dest + "sub/") == []
