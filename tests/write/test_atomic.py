"""No file is ever half there: overwrites under disconnects, kill -9, FLOOD_WAIT, lost parts and
concurrent PUTs; what Telegram holds is what a second tgdav (or a plain Telethon client) sees."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import shutil
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.helpers import wait_until
from tests.e2e.conftest import stop
from tests.write.conftest import (PART, PIECE_PARTS, WRITABLE, hrefs, http as request, module_server, random_bytes,
                                  sha256, serve)

MiB = 1024 * 1024


class Looker:
    """Calls self.look() in a loop in a thread, from construction until halt()."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.look()

    def look(self) -> None:
        raise NotImplementedError

    def halt(self) -> None:
        self._stop.set()
        self._thread.join(120)


class Watcher(Looker):
    """Reads `url` in a loop in a thread; every whole body's SHA-256 is recorded."""

    def __init__(self, url: str) -> None:
        self.url, self.seen, self.statuses = url, set(), set()
        super().__init__()

    def look(self) -> None:
        try:
            status, _, body = request("GET", self.url, timeout=60)
        except Exception as e:      # a body cut short is a reader that saw half a file
            self.seen.add(f"broken: {e!r}")
            return
        self.statuses.add(status)
        if status == 200:
            self.seen.add(sha256(body))

    def stop(self) -> set[str]:
        self.halt()
        return self.seen


def _partial_put(url: str, total: int, data: bytes, chunked: bool = False) -> socket.socket:
    """Start a PUT of `total` bytes, send `data` of it, and return the socket (still open)."""
    parts = urllib.parse.urlsplit(url)
    s = socket.create_connection((parts.hostname, parts.port))
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    s.sendall(f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{length}\r\n\r\n".encode())
    if chunked:
        for i in range(0, len(data), 65536):
            block = data[i:i + 65536]
            s.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
    else:
        s.sendall(data)
    return s


def _one_entry(folder: str, name: str) -> None:
    listed = hrefs(request("PROPFIND", folder, headers={"Depth": "1"})[2])
    assert sum(h.endswith("/" + name) for h in listed) == 1, listed


def test_disconnect_mid_put_keeps_the_old_version(folder, sandbox):
    old = random_bytes(3 * MiB + 5, 10)
    url = folder + "overwrite.bin"
    assert request("PUT", url, old)[0] == 201
    watcher = Watcher(url)
    for chunked in (False, True):
        sent = sandbox.total("messages_sent")
        parts = sandbox.total("upload_parts")
        new = random_bytes(6 * MiB, 11)
        s = _partial_put(url, len(new), new[:4 * MiB], chunked=chunked)
        wait_until(lambda: sandbox.total("upload_parts") >= parts + 4, 60)    # parts reached Telegram
        s.close()                                                         # the client goes away
        time.sleep(1.0)
        assert sha256(request("GET", url)[2]) == sha256(old)
        assert sandbox.total("messages_sent") == sent                     # nothing was posted
    assert watcher.stop() == {sha256(old)}
    _one_entry(folder, "overwrite.bin")
    new = random_bytes(6 * MiB, 12)
    assert request("PUT", url, new)[0] == 204
    assert sha256(request("GET", url)[2]) == sha256(new)
    _one_entry(folder, "overwrite.bin")


def test_concurrent_puts_to_one_name(folder):
    url = folder + "contended.bin"
    versions = [random_bytes(2 * MiB + i, 20 + i) for i in range(3)]
    assert request("PUT", url, versions[0])[0] == 201
    watcher = Watcher(url)
    threads = [threading.Thread(target=request, args=("PUT", url, v)) for v in versions[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    seen = watcher.stop()
    hashes = {sha256(v) for v in versions}
    assert seen <= hashes
    assert sha256(request("GET", url)[2]) in {sha256(v) for v in versions[1:]}
    _one_entry(folder, "contended.bin")


def test_lost_part_is_sent_again(folder, sandbox):
    """FILE_PART_3_MISSING at sendMedia: the part is re-sent and the file arrives whole."""
    sandbox.post("/faults", {"file_part_missing": [{"part": 3, "count": 1}]})
    before = sandbox.total("errors:FILE_PART_X_MISSING")
    data = random_bytes(4 * MiB + 99, 30)
    try:
        assert request("PUT", folder + "lost%20part.bin", data)[0] == 201
    finally:
        sandbox.post("/faults", {"clear": True,
                                 "upload_max_fileparts": {"default": PIECE_PARTS, "premium": 2 * PIECE_PARTS}})
    assert sandbox.total("errors:FILE_PART_X_MISSING") == before + 1
    assert sha256(request("GET", folder + urllib.parse.quote("lost part.bin"))[2]) == sha256(data)


@pytest.fixture(scope="module")
def flood_server(sandbox) -> Iterator[str]:
    """A server of its own: a long FLOOD_WAIT gates its pool's home-DC senders for a while (the pool
    gates senders, not methods), which must not slow the other tests down."""
    with module_server(sandbox, "flood") as url:
        yield url


def test_long_flood_wait_on_upload_is_503_and_keeps_the_old_file(flood_server, sandbox, tmp_path):
    old = random_bytes(MiB, 40)
    folder = f"{flood_server}{WRITABLE}/long flood/".replace(" ", "%20")
    assert request("MKCOL", folder)[0] == 201
    url = folder + "flooded.bin"
    assert request("PUT", url, old)[0] == 201
    body = tmp_path / "new.bin"
    body.write_bytes(random_bytes(11 * MiB, 41))
    sandbox.post("/faults", {"upload_rate_limit": {"per_second": 2, "seconds": 15}})
    try:   # curl stops sending when the answer comes early, as a good client does
        done = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null", "-T", str(body), url],
                              capture_output=True, text=True, timeout=300)
    finally:
        sandbox.post("/faults", {"clear": True,
                                 "upload_max_fileparts": {"default": PIECE_PARTS, "premium": 2 * PIECE_PARTS}})
    assert "HTTP/1.1 503 Service Unavailable" in done.stdout, done.stdout
    retry = re.search(r"Retry-After: (\d+)", done.stdout)
    assert retry and int(retry.group(1)) > 10
    assert sandbox.total("errors:FLOOD_WAIT_X") >= 1
    _one_entry(folder, "flooded.bin")
    # what Telegram holds, read by another tgdav (whose pool is not gated): the old file
    other, _, _ = sandbox.server("flood-check")
    assert sha256(request("GET", f"{other}{WRITABLE}/long%20flood/flooded.bin")[2]) == sha256(old)
    # the account stays flooded for uploads until the deadline: let it pass before the next test
    sandbox.post("/faults", {"upload_rate_limit": {"per_second": 1000, "seconds": 15}})
    try:
        wait_until(lambda: request("PUT", f"{other}{WRITABLE}/long%20flood/after.txt", b"after")[0] != 503, 60,
                   "a PUT after the flood's deadline", interval=1)
    finally:
        sandbox.post("/faults", {"clear": True,
                                 "upload_max_fileparts": {"default": PIECE_PARTS, "premium": 2 * PIECE_PARTS}})


def test_short_flood_wait_on_upload_is_waited_out(folder, sandbox):
    before = sandbox.total("errors:FLOOD_WAIT_X")
    sandbox.post("/faults", {"upload_rate_limit": {"per_second": 4, "seconds": 1}})
    data = random_bytes(11 * MiB, 42)
    try:
        assert request("PUT", folder + "gated.bin", data)[0] == 201
    finally:
        sandbox.post("/faults", {"clear": True,
                                 "upload_max_fileparts": {"default": PIECE_PARTS, "premium": 2 * PIECE_PARTS}})
    assert sandbox.total("errors:FLOOD_WAIT_X") > before
    assert sha256(request("GET", folder + "gated.bin")[2]) == sha256(data)


def test_kill_9_mid_upload_then_restart(sandbox):
    """tgdav killed while a big overwrite is under way (one piece already posted): after a restart,
    and for a second tgdav with an empty state, the old version is the file, whole."""
    url, proc, config = sandbox.server("killed")
    folder = f"{url}{WRITABLE}/killed/"
    assert request("MKCOL", folder)[0] == 201
    old = random_bytes(2 * MiB + 1, 50)
    assert request("PUT", folder + "film.bin", old)[0] == 201
    sent = sandbox.total("messages_sent")
    new = random_bytes(PIECE_PARTS * PART * 2 + 3, 51)
    s = _partial_put(folder + "film.bin", len(new), new[:PIECE_PARTS * PART + 2 * MiB])
    wait_until(lambda: sandbox.total("messages_sent") > sent, 60)       # the first piece is posted
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    s.close()
    url2, proc2 = serve(config, sandbox.root / "logs" / "killed-again")
    sandbox.procs.append(proc2)
    folder2 = f"{url2}{WRITABLE}/killed/"
    assert sha256(request("GET", folder2 + "film.bin")[2]) == sha256(old)
    _one_entry(folder2, "film.bin")
    fresh, _, _ = sandbox.server("killed-fresh")
    assert sha256(request("GET", f"{fresh}{WRITABLE}/killed/film.bin")[2]) == sha256(old)
    _one_entry(f"{fresh}{WRITABLE}/killed/", "film.bin")


def test_a_second_tgdav_with_an_empty_state_sees_the_same_tree(folder, sandbox):
    files = {"a.txt": b"a", "sub/b.bin": random_bytes(700_000, 60), "sub/deep/c ü.txt": b"c" * 10,
             "zero.txt": b""}
    assert request("MKCOL", folder + "sub")[0] == 201
    assert request("MKCOL", folder + "sub/deep")[0] == 201
    assert request("MKCOL", folder + "empty%20dir")[0] == 201
    for rel, data in files.items():
        assert request("PUT", folder + urllib.parse.quote(rel), data)[0] == 201
    assert request("MOVE", folder + "a.txt", headers={"Destination": folder + "sub/renamed.txt"})[0] == 201
    files["sub/renamed.txt"] = files.pop("a.txt")
    fresh, _, _ = sandbox.server("fresh")
    rel_folder = urllib.parse.urlsplit(folder).path
    other = fresh.rstrip("/") + rel_folder
    for rel, data in files.items():
        assert request("GET", other + urllib.parse.quote(rel))[2] == data, rel
    assert request("PROPFIND", other + "empty%20dir/", headers={"Depth": "0"})[0] == 207
    assert request("GET", other + "a.txt")[0] == 404

    def listing(base: str, sub: str) -> list[str]:
        body = request("PROPFIND", base + sub, headers={"Depth": "1"})[2]
        return sorted(h.split("/")[-1] or h.split("/")[-2] for h in hrefs(body))

    for sub in ("", "sub/", "sub/deep/"):
        assert listing(folder, sub) == listing(other, sub)


def test_rename_edits_and_never_uploads(folder, sandbox):
    data = random_bytes(3 * MiB, 70)
    assert request("PUT", folder + "before.bin", data)[0] == 201
    assert request("MKCOL", folder + "dir")[0] == 201
    parts, media = sandbox.total("upload_parts"), sandbox.total("requests:SendMedia")
    edits = sandbox.total("messages_edited")
    assert request("MOVE", folder + "before.bin", headers={"Destination": folder + "dir/after.bin"})[0] == 201
    assert request("MOVE", folder + "dir/", headers={"Destination": folder + "dir2/"})[0] == 201
    assert request("COPY", folder + "dir2/after.bin", headers={"Destination": folder + "copy.bin"})[0] == 201
    assert sandbox.total("upload_parts") == parts
    assert sandbox.total("requests:SendMedia") == media + 1           # the copy: the same document again
    assert sandbox.total("messages_edited") >= edits + 2
    assert sha256(request("GET", folder + "dir2/after.bin")[2]) == sha256(data)
    assert sha256(request("GET", folder + "copy.bin")[2]) == sha256(data)
    assert request("GET", folder + "before.bin")[0] == 404


def test_new_channel_and_moves_across_channels(dav, folder, sandbox):
    name = f"Made by MKCOL {int(time.time() * 1000) % 100000}"
    assert request("MKCOL", dav + urllib.parse.quote(name))[0] == 201
    other = dav + urllib.parse.quote(name) + "/"
    assert request("OPTIONS", other)[0] == 200
    data = random_bytes(PIECE_PARTS * PART + 100, 80)                 # two pieces
    assert request("PUT", folder + "travel.bin", data)[0] == 201
    parts = sandbox.total("upload_parts")
    assert request("COPY", folder + "travel.bin", headers={"Destination": other + "copied.bin"})[0] == 201
    assert request("MOVE", folder + "travel.bin", headers={"Destination": other + "moved.bin"})[0] == 201
    assert sandbox.total("upload_parts") == parts                     # nothing uploaded again
    for n in ("copied.bin", "moved.bin"):
        assert sha256(request("GET", other + n)[2]) == sha256(data)
    assert request("GET", folder + "travel.bin")[0] == 404


def test_read_only_channel_answers_403_with_a_reason(dav):
    status, _, body = request("PUT", dav + "ReadOnly/nope.txt", b"x")
    assert status == 403 and b"read-only" in body
    assert request("MKCOL", dav + "ReadOnly/dir")[0] == 403
    assert request("DELETE", dav + "ReadOnly/" + urllib.parse.quote("posted elsewhere.txt"))[0] == 403
    assert request("GET", dav + "ReadOnly/" + urllib.parse.quote("posted elsewhere.txt"))[0] == 200


def test_writes_switched_off(sandbox):
    url, _, _ = sandbox.server("readonly", "\n[write]\nenabled = false\n")
    status, headers, _ = request("OPTIONS", url)
    assert headers["DAV"] == "1"
    assert request("PUT", url + WRITABLE + "/x.txt", b"x")[0] == 405
    url2, _, _ = sandbox.server("nochannels", "\n[write]\ncreate_channels = false\n")
    assert request("OPTIONS", url2)[1]["DAV"] == "1, 2"
    status, _, body = request("MKCOL", url2 + "Not%20allowed")
    assert status == 403 and b"create_channels" in body


def test_locks_and_dead_properties_survive_a_restart(sandbox):
    url, proc, config = sandbox.server("locks")
    file = f"{url}{WRITABLE}/locked.txt"
    assert request("PUT", file, b"locked")[0] in (201, 204)
    lock = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            b'<D:locktype><D:write/></D:locktype><D:owner>me</D:owner></D:lockinfo>')
    status, headers, _ = request("LOCK", file, lock, {"Timeout": "Second-3600"})
    assert status == 200
    token = headers["Lock-Token"]
    prop = (b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:X="urn:x-tgdav-test:"><D:set>'
            b'<D:prop><X:colour>blue</X:colour></D:prop></D:set></D:propertyupdate>')
    assert request("PROPPATCH", file, prop, {"If": f"({token})"})[0] == 207
    stop(proc)
    url2, proc2 = serve(config, sandbox.root / "logs" / "locks-again")
    sandbox.procs.append(proc2)
    file2 = f"{url2}{WRITABLE}/locked.txt"
    assert request("PUT", file2, b"no token")[0] == 423
    body = request("PROPFIND", file2, headers={"Depth": "0"})[2]
    assert token.strip("<>").encode() in body
    ask = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:X="urn:x-tgdav-test:"><D:prop><X:colour/>'
           b'</D:prop></D:propfind>')
    assert b"blue" in request("PROPFIND", file2, ask, {"Depth": "0"})[2]
    assert request("UNLOCK", file2, headers={"Lock-Token": token})[0] == 204
    assert request("DELETE", file2)[0] == 204


def test_plain_telethon_sees_documents_with_names_and_sizes(folder, sandbox, tmp_path):
    from telethon import types
    from tgdav.telegram.login import SandboxInfo, make_client

    data = random_bytes(1_234_567, 90)
    assert request("PUT", folder + urllib.parse.quote("for telethon ü.pdf"), data)[0] == 201
    state = tmp_path / "state"
    (state / "sessions").mkdir(parents=True)
    shutil.copy(sandbox.root / "main" / "state" / "sessions" / "w.session", state / "sessions" / "w.session")
    info = SandboxInfo.load(sandbox.json_path)

    async def look():
        client = make_client(state, "w", info.api_id, info.api_hash, info)
        client.flood_sleep_threshold = 60     # as plain Telethon: wait out the getHistory pace's floods
        await client.connect()
        try:
            channel = next(d.entity for d in await client.get_dialogs() if d.name == WRITABLE)
            async for m in client.iter_messages(channel, limit=50):
                doc = m.document
                if doc is None:
                    continue
                name = next((a.file_name for a in doc.attributes
                             if isinstance(a, types.DocumentAttributeFilename)), None)
                if name == "for telethon ü.pdf":
                    return doc.size, doc.mime_type, m.message, await client.download_media(m, bytes)
        finally:
            await client.disconnect()

    size, mime, caption, body = asyncio.run(look())
    assert (size, mime) == (len(data), "application/pdf")
    assert caption.endswith("/for telethon ü.pdf") and caption.startswith("#tgdav file /")
    assert body == data


@pytest.mark.parametrize("size, part", [(4 * MiB + 99, 0), (11 * MiB, 3), (11 * MiB, 0),
                                        (PIECE_PARTS * PART + 3 * MiB, 1)])
def test_a_lost_part_is_sent_again_whatever_its_number_and_the_files_size(folder, sandbox, tmp_path, size, part):
    """FILE_PART_X_MISSING (FILE_PART_0_MISSING too) at sendMedia, for files under and over 10 MB and
    for a piece of a file in pieces: the part is sent again from the spool, the PUT succeeds, the
    file reads back whole, and the spool holds nothing afterwards."""
    old = random_bytes(MiB, 31)
    url = folder + f"lost {part} of {size}.bin".replace(" ", "%20")
    assert request("PUT", url, old)[0] == 201
    body = tmp_path / "new.bin"
    data = random_bytes(size, 32 + part)
    body.write_bytes(data)
    lost = sandbox.total("upload_parts_lost")
    sandbox.post("/faults", {"file_part_missing": [{"part": part, "count": 1}]})
    try:
        done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(body), url],
                              capture_output=True, text=True, timeout=300)
    finally:
        sandbox.post("/faults", {"clear": True,
                                 "upload_max_fileparts": {"default": PIECE_PARTS, "premium": 2 * PIECE_PARTS}})
    assert done.stdout == "204"
    assert sandbox.total("upload_parts_lost") == lost + 1
    assert sha256(request("GET", url)[2]) == sha256(data)
    assert list((sandbox.root / "main" / "state" / "spool").iterdir()) == []


def test_a_reader_of_the_old_version_finishes_it(folder):
    """A download of the old version that is under way when the new one lands gets the whole old file."""
    old, new = random_bytes(40 * MiB + 1, 110), random_bytes(3 * MiB, 111)   # longer than read-ahead
    url = folder + "read while replaced.bin".replace(" ", "%20")
    assert request("PUT", url, old)[0] == 201
    parts = urllib.parse.urlsplit(url)
    conn = __import__("http.client").client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    conn.request("GET", parts.path)
    r = conn.getresponse()
    first = r.read(MiB)                              # the reader has started ...
    assert request("PUT", url, new)[0] == 204        # ... the new version lands ...
    assert sha256(request("GET", url)[2]) == sha256(new)
    rest = r.read()                                  # ... and the reader still gets the old one, whole
    assert sha256(first + rest) == sha256(old)


def test_a_read_only_share_still_shows_the_folders(sandbox):
    """[write] enabled = false: the tree written before is browsable and readable, deep paths too."""
    url, _, _ = sandbox.server("writer-for-ro")
    base = f"{url}{WRITABLE}/ro tree/".replace(" ", "%20")
    assert request("MKCOL", base)[0] == 201
    assert request("MKCOL", base + "a")[0] == 201
    assert request("MKCOL", base + "a/b")[0] == 201
    assert request("PUT", base + "a/b/deep.txt", b"deep")[0] == 201
    ro, _, _ = sandbox.server("ro-reader", "\n[write]\nenabled = false\n")
    ro_base = f"{ro}{WRITABLE}/ro%20tree/"
    assert request("GET", ro_base + "a/b/deep.txt")[2] == b"deep"
    assert request("PROPFIND", ro_base + "a/b/", headers={"Depth": "1"})[0] == 207
    assert request("GET", ro_base + "a/b/._deep.txt")[0] == 404
    assert request("PUT", ro_base + "a/b/new.txt", b"x")[0] == 405


def test_a_body_shorter_than_its_content_length_is_400_and_stores_nothing(folder, sandbox):
    sent = sandbox.total("messages_sent")
    s = _partial_put(folder + "short.bin", 2 * MiB, b"x" * MiB)
    s.shutdown(socket.SHUT_WR)
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    s.close()
    assert answer.startswith(b"HTTP/1.1 400 ") and b"nothing was stored" in answer
    assert request("GET", folder + "short.bin")[0] == 404
    assert sandbox.total("messages_sent") == sent


def _telethon(sandbox, tmp_path, work, title: str = WRITABLE):
    """Run `work(client, channel)` with a plain Telethon client of the same account (channel: the
    one titled `title`)."""
    from tgdav.telegram.login import SandboxInfo, make_client

    state = tmp_path / "telethon-state"
    (state / "sessions").mkdir(parents=True, exist_ok=True)
    shutil.copy(sandbox.root / "main" / "state" / "sessions" / "w.session", state / "sessions" / "w.session")
    info = SandboxInfo.load(sandbox.json_path)

    async def run():
        client = make_client(state, "w", info.api_id, info.api_hash, info)
        client.flood_sleep_threshold = 60     # as plain Telethon: wait out the getHistory pace's floods
        await client.connect()
        try:
            channel = next(d.entity for d in await client.get_dialogs() if d.name == title)
            return await work(client, channel)
        finally:
            await client.disconnect()
    return asyncio.run(run())


def test_caption_edits_in_a_telegram_app_move_files_and_never_corrupt(folder, sandbox, tmp_path):
    data = random_bytes(100_000, 120)
    assert request("PUT", folder + "edited.bin", data)[0] == 201
    rel = urllib.parse.unquote(urllib.parse.urlsplit(folder).path)[len(WRITABLE) + 2:]

    # someone writes a note above the tag and moves the file by editing the path in the tag
    note = f"a note from my phone\n#tgdav file /{rel}moved/edited.bin"
    assert _telethon(sandbox, tmp_path, _editor(rel + "edited.bin", note))
    fresh, _, _ = sandbox.server("after-edit")
    base = fresh + urllib.parse.quote(f"{WRITABLE}/{rel}")
    assert request("GET", base + "moved/edited.bin")[2] == data
    assert request("GET", base + "edited.bin")[0] == 404
    # someone removes the tag line: the file is an ordinary post again, at the channel's root
    _telethon(sandbox, tmp_path, _editor(rel + "moved/edited.bin", "just a note, no tag"))
    fresh2, _, _ = sandbox.server("after-untag")
    assert request("GET", f"{fresh2}{WRITABLE}/edited.bin")[2] == data
    assert request("GET", fresh2 + urllib.parse.quote(f"{WRITABLE}/{rel}moved/edited.bin"))[0] == 404


def _editor(path_suffix: str, text: str):
    """Edit the caption of the newest message whose tag ends with `path_suffix` to `text`."""
    async def work(client, channel):
        async for m in client.iter_messages(channel, limit=50):
            if m.message and m.message.endswith("/" + path_suffix):
                await client.edit_message(channel, m, text, parse_mode=None)
                return m.id
    return work


def test_a_fast_start_mp4_is_a_streamable_video_in_telegram(folder, sandbox, tmp_path):
    from telethon import types

    mp4 = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc=duration=4:size=320x240:rate=25", "-g", "25", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(mp4)], check=True, timeout=120)
    data = mp4.read_bytes()
    assert request("PUT", folder + "clip.mp4", data)[0] == 201
    assert request("GET", folder + "clip.mp4")[2] == data
    rel = urllib.parse.unquote(urllib.parse.urlsplit(folder).path)[len(WRITABLE) + 1:]

    async def look(client, channel):
        async for m in client.iter_messages(channel, limit=30):
            if m.message == f"#tgdav file {rel}clip.mp4":
                return m.document
    doc = _telethon(sandbox, tmp_path, look)
    video = next(a for a in doc.attributes if isinstance(a, types.DocumentAttributeVideo))
    assert (round(video.duration), video.w, video.h, video.supports_streaming) == (4, 320, 240, True)
    assert doc.mime_type == "video/mp4"


def test_move_onto_an_existing_file_replaces_it_in_one_step(folder, sandbox):
    """MOVE with Overwrite: T inside a channel (an editor's safe save): the name always holds a whole
    file, the old one or the moved one; no bytes are uploaded."""
    old, moved = random_bytes(2 * MiB, 130), random_bytes(MiB + 7, 131)
    assert request("PUT", folder + "doc.bin", old)[0] == 201
    assert request("PUT", folder + "tmp.bin", moved)[0] == 201
    parts = sandbox.total("upload_parts")
    watcher = Watcher(folder + "doc.bin")
    status, _, _ = request("MOVE", folder + "tmp.bin", headers={"Destination": folder + "doc.bin",
                                                                "Overwrite": "T"})
    seen = watcher.stop()
    assert status == 204
    assert seen <= {sha256(old), sha256(moved)}
    assert watcher.statuses <= {200}
    assert sha256(request("GET", folder + "doc.bin")[2]) == sha256(moved)
    assert request("GET", folder + "tmp.bin")[0] == 404
    assert sandbox.total("upload_parts") == parts
    _one_entry(folder, "doc.bin")
    fresh, _, _ = sandbox.server("after-move")
    rel = urllib.parse.urlsplit(folder).path
    assert sha256(request("GET", fresh.rstrip("/") + rel + "doc.bin")[2]) == sha256(moved)
    assert request("GET", fresh.rstrip("/") + rel + "tmp.bin")[0] == 404
