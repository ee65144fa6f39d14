"""A refused request changes nothing: the root and the channels are never deleted (promise 5), a
write that touches a read-only channel anywhere is refused before its first change (promise 2), a
locked resource changes only with its token whichever parent the request names (promise 3), a body
over [write] max_file_size is 413 before it is read, and desktop clients' own files are capped."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

from tests.e2e.conftest import stop
from tests.write.conftest import READONLY, WRITABLE, hrefs, http as request, random_bytes, redis_replica, sha256
from tests.helpers import wait_until

MiB = 1024 * 1024
POSTED = "posted%20elsewhere.txt"       # the read-only channel's one file
LOCK_BODY = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
             b'<D:locktype><D:write/></D:locktype><D:owner>%s</D:owner></D:lockinfo>')


def _snapshot(sandbox) -> tuple[int, int, int]:
    """What reached Telegram: messages sent, edited, deleted."""
    return (sandbox.total("messages_sent"), sandbox.total("messages_edited"),
            sandbox.total("messages_deleted"))


def _files(folder: str, names: dict[str, bytes]) -> None:
    for name, data in names.items():
        assert request("PUT", folder + urllib.parse.quote(name), data)[0] == 201, name


def _intact(folder: str, names: dict[str, bytes]) -> None:
    for name, data in names.items():
        status, _, body = request("GET", folder + urllib.parse.quote(name))
        assert (status, sha256(body)) == (200, sha256(data)), name


# --- promise 5: the root and the channels -------------------------------------------------------
def test_delete_of_the_root_or_a_channel_is_403_and_touches_nothing(dav, folder, sandbox, tmp_path):
    files = {"keep.txt": b"keep me", "sub/deep.bin": random_bytes(100_000, 1)}
    assert request("MKCOL", folder + "sub")[0] == 201
    _files(folder, files)
    before = _snapshot(sandbox)
    for url in (dav, dav + WRITABLE, dav + WRITABLE + "/", dav + READONLY + "/"):
        status, _, body = request("DELETE", url)
        assert status == 403 and b"never deleted" in body, (url, status, body)
    # rclone purge of the whole remote (DELETE of the root)
    config = tmp_path / "rclone.conf"
    config.write_text("")
    done = subprocess.run(["rclone", "--config", str(config), "purge", ":webdav:", "--webdav-url", dav,
                           "--webdav-vendor", "other", "--low-level-retries", "1", "--retries", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    # a channel moved, or overwritten by a MOVE/COPY
    assert request("MOVE", dav + WRITABLE + "/", headers={"Destination": dav + "Renamed/"})[0] == 403
    for method in ("MOVE", "COPY"):
        status, _, body = request(method, folder + "keep.txt",
                                  headers={"Destination": dav + READONLY, "Overwrite": "T"})
        assert status == 403, (method, status, body)
    assert _snapshot(sandbox) == before
    _intact(folder, files)
    assert request("GET", dav + READONLY + "/" + POSTED)[0] == 200


# --- promise 2: a refused request changes nothing ------------------------------------------------
def test_move_out_of_or_into_a_read_only_channel_changes_nothing(dav, folder, sandbox):
    _files(folder, {"mine.txt": b"mine", "taken.txt": b"taken"})
    before = _snapshot(sandbox)
    status, _, body = request("MOVE", dav + READONLY + "/" + POSTED, headers={"Destination": folder + "stolen.txt"})
    assert status == 403 and b"read-only" in body
    status, _, body = request("MOVE", dav + READONLY + "/" + POSTED,
                              headers={"Destination": folder + "taken.txt", "Overwrite": "T"})
    assert status == 403 and b"read-only" in body
    status, _, body = request("MOVE", folder + "mine.txt", headers={"Destination": dav + READONLY + "/mine.txt"})
    assert status == 403 and b"read-only" in body
    assert _snapshot(sandbox) == before
    assert request("GET", folder + "stolen.txt")[0] == 404
    _intact(folder, {"mine.txt": b"mine", "taken.txt": b"taken"})
    assert request("GET", dav + READONLY + "/mine.txt")[0] == 404
    # reading from it is fine: a COPY out of the read-only channel works
    assert request("COPY", dav + READONLY + "/" + POSTED, headers={"Destination": folder + "copied.txt"})[0] == 201
    assert request("GET", folder + "copied.txt")[2] == b"a post the user may only read\n"


def test_a_read_only_channel_refuses_lock_proppatch_and_desktop_files(dav, sandbox):
    before = _snapshot(sandbox)
    file = dav + READONLY + "/" + POSTED
    status, _, body = request("LOCK", file, LOCK_BODY % b"me", {"Timeout": "Second-60"})
    assert status == 403 and b"read-only" in body
    status, _, body = request("LOCK", dav + READONLY + "/new.txt", LOCK_BODY % b"me")
    assert status == 403 and b"read-only" in body
    prop = (b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:X="urn:x-tgdav-test:"><D:set>'
            b'<D:prop><X:colour>blue</X:colour></D:prop></D:set></D:propertyupdate>')
    status, _, body = request("PROPPATCH", file, prop)
    assert status == 403 and b"read-only" in body
    for name in ("._x", "desktop.ini", ".DS_Store"):
        status, _, body = request("PUT", dav + READONLY + "/" + name, b"x" * 1000)
        assert status == 403 and b"read-only" in body, name
        assert request("GET", dav + READONLY + "/" + name)[0] == 404
    assert request("PROPFIND", file, b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" '
                   b'xmlns:X="urn:x-tgdav-test:"><D:prop><X:colour/></D:prop></D:propfind>',
                   {"Depth": "0"})[2].count(b"blue") == 0
    assert _snapshot(sandbox) == before


def test_desktop_files_are_capped_in_size(folder):
    from tgdav.dav.provider import LOCAL_FILE_LIMIT
    assert request("PUT", folder + "._small", b"apple double")[0] == 201
    answer = _raw_put(folder + "._big", length=LOCAL_FILE_LIMIT + 1, body=b"x" * (LOCAL_FILE_LIMIT + 1))
    assert answer.startswith(b"HTTP/1.1 413 ") and b"limited" in answer, answer[:300]
    assert request("GET", folder + "._big")[0] == 404
    # chunked, as Finder sends: cut when it grows past the limit, nothing kept
    answer = _raw_put(folder + "Thumbs.db", chunks=[b"y" * MiB] * (LOCAL_FILE_LIMIT // MiB + 2))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert request("GET", folder + "Thumbs.db")[0] == 404
    assert request("GET", folder + "._small")[2] == b"apple double"


# --- promise 3: locks, whichever parent the request names -----------------------------------------
def _lock(url: str, who: bytes, depth: str = "0") -> str:
    status, headers, body = request("LOCK", url, LOCK_BODY % who, {"Timeout": "Second-600", "Depth": depth})
    assert status in (200, 201), (status, body)
    return headers["Lock-Token"]


def _locked_tree_is_kept(base: str, other: str, sandbox) -> None:
    """`base` and `other` name the same folder through two servers (or one): a lock taken through
    `base` holds against DELETE, MOVE and COPY-onto through `other`, naming any parent."""
    files = {"sub/child.txt": b"locked child", "sibling.txt": b"sibling", "sub/other.txt": b"other"}
    assert request("MKCOL", base + "sub")[0] == 201
    _files(base, files)
    token = _lock(base + "sub/child.txt", b"client A")
    before = _snapshot(sandbox)
    assert request("DELETE", other)[0] == 423
    assert request("DELETE", other + "sub/")[0] == 423
    assert request("MOVE", other + "sub/", headers={"Destination": other + "moved/"})[0] == 423
    assert request("MKCOL", base + "src")[0] == 201
    assert request("PUT", base + "src/child.txt", b"intruder")[0] == 201
    wait_until(lambda: request("GET", other + "src/child.txt")[0] == 200, 60)   # a replica's listing catches up
    before = _snapshot(sandbox)
    assert request("COPY", other + "src/", headers={"Destination": other + "sub/", "Overwrite": "T"})[0] == 423
    assert request("MOVE", other + "src/", headers={"Destination": other + "sub/", "Overwrite": "T"})[0] == 423
    assert _snapshot(sandbox) == before
    _intact(other, files)
    # with the token, the owner deletes it
    assert request("DELETE", base + "sub/", headers={"If": f"<{base}sub/child.txt> ({token})"})[0] == 204
    assert request("GET", base + "sub/child.txt")[0] == 404


def test_a_locked_child_is_never_deleted_or_replaced(folder, sandbox):
    _locked_tree_is_kept(folder, folder, sandbox)


def test_a_locked_subfolder_depth_0_keeps_its_members(folder, sandbox):
    files = {"box/a.txt": b"a", "box/b.txt": b"b"}
    assert request("MKCOL", folder + "box")[0] == 201
    _files(folder, files)
    token = _lock(folder + "box/", b"client A", depth="0")
    before = _snapshot(sandbox)
    assert request("DELETE", folder)[0] == 423
    assert _snapshot(sandbox) == before
    _intact(folder, files)
    assert request("UNLOCK", folder + "box/", headers={"Lock-Token": token})[0] == 204


def test_locks_in_redis_hold_across_replicas(sandbox, tmp_path_factory):
    from tests.scale.conftest import start_redis
    redis_url, redis = start_redis(tmp_path_factory.mktemp("guard-redis"))
    try:
        urls = [redis_replica(sandbox, name, redis_url) for name in ("redis-a", "redis-b")]
        a, b = (f"{u}{WRITABLE}/redis%20locks/" for u in urls)
        assert request("MKCOL", a)[0] == 201
        _locked_tree_is_kept(a, b, sandbox)
    finally:
        stop(redis)


# --- [write] max_file_size ---------------------------------------------------------------------
def _raw_put(url: str, *, length: int | None = None, chunks=(), expect: bool = False,
             body: bytes = b"") -> bytes:
    """A PUT over a plain socket; the answer's bytes (whatever came before the server closed or
    5 s of silence)."""
    parts = urllib.parse.urlsplit(url)
    s = socket.create_connection((parts.hostname, parts.port), timeout=60)
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    head = f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{framing}\r\n"
    s.sendall((head + ("Expect: 100-continue\r\n" if expect else "") + "\r\n").encode())
    answer = b""
    try:
        if expect:
            return s.recv(65536)
        if length is not None:
            s.sendall(body)
        else:
            for chunk in chunks:
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            s.sendall(b"0\r\n\r\n")
    except OSError:
        pass                           # the server answered and closed while we were sending
    s.settimeout(5)
    try:
        while data := s.recv(65536):
            answer += data
    except OSError:
        pass
    finally:
        s.close()
    return answer


def test_a_body_over_max_file_size_is_413_before_100_continue(folder):
    answer = _raw_put(folder + "ten%20TB.bin", length=10995116277760, expect=True)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"max_file_size" in answer, answer[:300]
    assert request("GET", folder + "ten%20TB.bin")[0] == 404


def test_a_chunked_body_growing_past_max_file_size_is_cut_and_leaves_nothing(sandbox):
    url, _, _ = sandbox.server("small-max", "\n[write]\nmax_file_size = \"3 MiB\"\n")
    folder = f"{url}{WRITABLE}/max%20size/"
    assert request("MKCOL", folder)[0] == 201
    old = random_bytes(MiB, 7)
    assert request("PUT", folder + "grows.bin", old)[0] == 201
    sent, deleted = sandbox.total("messages_sent"), sandbox.total("messages_deleted")
    answer = _raw_put(folder + "grows.bin", chunks=[random_bytes(256 * 1024, i) for i in range(16)])
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert sandbox.total("messages_sent") == sent          # nothing was posted ...
    assert sha256(request("GET", folder + "grows.bin")[2]) == sha256(old)   # ... the old file stays
    assert request("PUT", folder + "fits.bin", random_bytes(3 * MiB, 8))[0] == 201
    answer = _raw_put(folder + "over.bin", length=3 * MiB + 1, body=random_bytes(3 * MiB + 1, 9))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert request("GET", folder + "over.bin")[0] == 404
    assert sandbox.total("messages_deleted") == deleted


# --- names: what Linux or macOS allows is stored as sent; a refusal says why ------------------------
NAMES = ["Screenshot 12:30:00.png", "a?b.txt", "x*.txt", 'say "hi" <now> | later.txt', "back\\slash.txt",
         "CON", "trailing dot.", "ünï: 日本語?.bin"]


def test_names_linux_and_macos_allow_are_stored_as_sent(folder, sandbox, tmp_path):
    for i, name in enumerate(NAMES):
        data = random_bytes(1000 + i, 200 + i)
        assert request("PUT", folder + urllib.parse.quote(name), data)[0] == 201, name
        assert sha256(request("GET", folder + urllib.parse.quote(name))[2]) == sha256(data), name
    assert request("MKCOL", folder + urllib.parse.quote("dir: *"))[0] == 201
    assert request("MOVE", folder + urllib.parse.quote("x*.txt"),
                   headers={"Destination": folder + urllib.parse.quote("dir: */y|*.txt")})[0] == 201
    # WsgiDAV reads a Destination's '?' and ';' as URL syntax: refused in words, nothing moves
    status, _, body = request("MOVE", folder + urllib.parse.quote("a?b.txt"),
                              headers={"Destination": folder + urllib.parse.quote("dir: *|a?c.txt")})
    assert status == 403 and b"Destination" in body, body
    listed = {h.rstrip("/").rsplit("/", 1)[-1] for h in hrefs(request("PROPFIND", folder, headers={"Depth": "1"})[2])}
    assert listed >= (set(NAMES) - {"x*.txt"}) | {"dir: *"}, listed
    # a second tgdav with an empty state reads the same names from the tags
    fresh, _, _ = sandbox.server("names-fresh")
    other = fresh.rstrip("/") + urllib.parse.urlsplit(folder).path
    assert request("GET", other + urllib.parse.quote("Screenshot 12:30:00.png"))[0] == 200
    assert request("GET", other + urllib.parse.quote("dir: */y|*.txt"))[0] == 200
    # rclone copies such a name up and back without retrying
    src = tmp_path / "src"
    src.mkdir()
    (src / "Screenshot 13:45:00.png").write_bytes(b"png")
    config = tmp_path / "rclone.conf"
    config.write_text("")
    done = subprocess.run(["rclone", "--config", str(config), "copy", str(src), ":webdav:",
                           "--webdav-url", folder, "--webdav-vendor", "other", "--retries", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert request("GET", folder + urllib.parse.quote("Screenshot 13:45:00.png"))[2] == b"png"


def test_a_refused_name_says_why(dav, folder, sandbox):
    before = _snapshot(sandbox)
    status, _, body = request("PUT", folder + urllib.parse.quote("ends with space "), b"x")
    assert status == 403 and b"cannot end with a space" in body, body
    status, _, body = request("PUT", folder + urllib.parse.quote("x" * 256), b"x")
    assert status == 403 and b"at most 255 bytes" in body, body
    status, _, body = request("MKCOL", folder + urllib.parse.quote("bidi\u202eevil"))
    assert status == 403 and b"bidi" in body, body
    status, _, body = request("MKCOL", dav + urllib.parse.quote("new: channel"))
    assert status == 403 and b"cannot name a channel" in body, body
    assert _snapshot(sandbox) == before


# --- a failed COPY/MOVE onto an existing file leaves it -------------------------------------------
def test_a_copy_or_move_onto_a_file_that_fails_leaves_the_destination(sandbox):
    """WsgiDAV deletes an existing destination first, then copies: a copy that fails (FLOOD_WAIT
    on sendMedia) or a crash in between lost it. The copy now replaces it in one step. (A server
    of its own: Telethon remembers a FLOOD_WAIT per method for its client.)"""
    dav, _, _ = sandbox.server("copy-fails")
    folder = f"{dav}{WRITABLE}/copy%20fails/"
    other = dav + "Second%20channel/"
    assert request("MKCOL", folder)[0] == 201
    assert request("MKCOL", other)[0] == 201
    _files(folder, {"src.bin": b"source", "dst.bin": b"destination"})
    assert request("PUT", other + "dst.bin", b"elsewhere")[0] == 201
    for method, dest in (("COPY", folder + "dst.bin"), ("MOVE", other + "dst.bin")):
        sandbox.post("/faults", {"flood_wait": [{"method": "SendMedia", "seconds": 2, "count": 1}]})
        try:
            status, _, _ = request(method, folder + "src.bin", headers={"Destination": dest, "Overwrite": "T"})
        finally:
            sandbox.post("/faults", {"clear": True, "upload_max_fileparts": {"default": 24, "premium": 48}})
        assert status == 503, (method, status)
        time.sleep(3)            # the flood's deadline passes
    _intact(folder, {"src.bin": b"source", "dst.bin": b"destination"})
    assert request("GET", other + "dst.bin")[2] == b"elsewhere"
    # and when it works, it replaces
    assert request("COPY", folder + "src.bin", headers={"Destination": folder + "dst.bin"})[0] == 204
    assert request("MOVE", folder + "src.bin", headers={"Destination": other + "dst.bin"})[0] == 204
    assert request("GET", folder + "dst.bin")[2] == b"source"
    assert request("GET", other + "dst.bin")[2] == b"source"
    assert request("GET", folder + "src.bin")[0] == 404


def test_a_lock_holds_every_spelling_and_a_refused_lock_makes_nothing(folder, sandbox):
    assert request("PUT", folder + "Readme.txt", b"locked body")[0] == 201
    token = _lock(folder + "Readme.txt", b"client A")
    before = _snapshot(sandbox)
    for method, body in (("PUT", b"other spelling"), ("LOCK", LOCK_BODY % b"client B")):
        status, _, answer = request(method, folder + "readme.txt", body)
        assert status == 423, (method, status, answer)
    assert request("DELETE", folder + "README.TXT")[0] in (404, 423)
    assert request("MOVE", folder + "README.TXT", headers={"Destination": folder + "x.txt"})[0] in (404, 423)
    assert _snapshot(sandbox) == before
    assert request("GET", folder + "Readme.txt", headers={"If": f"({token})"})[2] == b"locked body"
    # a LOCK of an unmapped URL inside a folder someone else locked: 423, and no empty file
    assert request("MKCOL", folder + "box")[0] == 201
    _lock(folder + "box/", b"client A", depth="infinity")
    before = _snapshot(sandbox)
    status, _, _ = request("LOCK", folder + "box/new.txt", LOCK_BODY % b"client B")
    assert status == 423
    assert request("GET", folder + "box/new.txt")[0] == 404
    assert _snapshot(sandbox) == before


def test_locks_of_one_missing_file_at_once_grant_one_and_make_one_file(folder, sandbox):
    """i14c F15: the check and WsgiDAV's make-then-lock are one step: of 6 LOCKs of one missing file
    sent at once, one makes it (201), the others are 423, and one message was sent."""
    import threading
    sent = sandbox.total("messages_sent")
    statuses: list[int] = []
    go = threading.Barrier(6)

    def lock() -> None:
        go.wait()
        statuses.append(request("LOCK", folder + "contested.txt", LOCK_BODY % b"someone")[0])
    threads = [threading.Thread(target=lock) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(statuses) == [201] + [423] * 5, statuses
    assert sandbox.total("messages_sent") == sent + 1


def test_a_put_begun_while_a_lock_makes_the_file_never_leaves_a_refused_lock_s_empty_file(folder, sandbox):
    """A LOCK of a missing file makes it empty first (RFC 4918 9.10.4), then WsgiDAV looks for
    conflicts, including PUTs under way. A PUT of that file begun while the LOCK's empty file was
    being posted (a slow link) made the LOCK's look fail: 423, yet its empty file stayed, and
    readers saw an empty file no request had made (the write-history checker, seeds 1 and 844).
    Now a PUT waits for a LOCK under way in its channel: one of the two wins, and a refused LOCK
    posted nothing."""
    sandbox.post("/link", {"latency_ms": 400})       # the LOCK's post of the empty file takes 0.4 s+
    try:
        for round_ in range(3):
            name = f"lock-then-put-{round_}.txt"
            data = random_bytes(3000 + round_, 880 + round_)
            sent = sandbox.total("messages_sent")
            statuses: dict[str, int] = {}
            lock = threading.Thread(target=lambda: statuses.__setitem__(
                "LOCK", request("LOCK", folder + name, LOCK_BODY % b"locker")[0]))
            lock.start()
            wait_until(lambda: sandbox.total("messages_sent") > sent or not lock.is_alive(), 10,
                       interval=0.005)                 # the LOCK is posting its empty file
            statuses["PUT"] = request("PUT", folder + name, data)[0]
            lock.join(30)
            status, _, body = request("GET", folder + name)
            if statuses["LOCK"] == 423:                # the PUT won: nothing of the LOCK's is left
                assert statuses["PUT"] == 201 and sha256(body) == sha256(data), (statuses, body[:20])
                assert sandbox.total("messages_sent") == sent + 1
            else:                                      # the LOCK won: the PUT, without its token, is 423
                assert (statuses["LOCK"], statuses["PUT"]) == (201, 423) and body == b"", statuses
    finally:
        sandbox.post("/link", {"latency_ms": 0})


def test_a_lock_refused_during_a_put_of_a_new_file_makes_nothing(folder, sandbox):
    """i14c F22: a LOCK of a file whose PUT is still receiving its body is 423 (WsgiDAV's write
    transaction), and it must not make the empty lock-null file readers would see meanwhile."""
    parts = urllib.parse.urlsplit(folder + "readme.txt")
    s = socket.create_connection((parts.hostname, parts.port), timeout=60)
    s.sendall(f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    data = random_bytes(1200 * 1024, 77)
    parts_before = sandbox.total("upload_parts")
    s.sendall(f"{1100 * 1024:x}\r\n".encode() + data[:1100 * 1024] + b"\r\n")
    wait_until(lambda: sandbox.total("upload_parts") > parts_before, 60)     # the PUT is taking its body
    assert request("LOCK", folder + "readme.txt", LOCK_BODY % b"client B")[0] == 423
    assert request("LOCK", folder + "Readme.txt", LOCK_BODY % b"client C")[0] == 423
    assert request("GET", folder + "readme.txt")[0] == 404
    rest = data[1100 * 1024:]
    s.sendall(f"{len(rest):x}\r\n".encode() + rest + b"\r\n0\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 201")
    s.close()
    assert sha256(request("GET", folder + "readme.txt")[2]) == sha256(data)
