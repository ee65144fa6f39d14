"""Real clients writing to a writable sandbox channel: litmus, rclone, cadaver, and the exact request
sequences Finder and Windows Explorer send when a file is dropped on the drive."""

from __future__ import annotations

import http.client
import re
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.write.conftest import PART, PIECE_PARTS, http as request, random_bytes, sha256

MiB = 1024 * 1024


def test_litmus_all_suites_pass(folder, tmp_path):
    done = subprocess.run(["litmus", folder], capture_output=True, text=True, timeout=900,
                          cwd=tmp_path)      # litmus writes debug.log and child.log where it runs
    summaries = re.findall(r"<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed", done.stdout)
    assert [s[0] for s in summaries] == ["basic", "copymove", "props", "locks", "http"], done.stdout[-3000:]
    for suite, run, passed, failed in summaries:
        assert int(failed) == 0 and run == passed, f"litmus {suite}: {done.stdout[-3000:]}"


def _tree(root: Path) -> dict[str, bytes | None]:
    """A nested tree with a file over 10 MB, one over a message's limit, unicode names, an empty file
    and an empty folder. Values: bytes, or None for a folder."""
    files = {
        "top.txt": b"hello from the top\n",
        "empty file.txt": b"",
        "Fotos ünï/日本語 – 写真.bin": random_bytes(700_001, 1),
        "Fotos ünï/deeper/still deeper/note.md": b"# deep\n" * 100,
        "big/eleven MB.bin": random_bytes(11 * MiB + 3, 2),
        "big/over one message.bin": random_bytes(PIECE_PARTS * PART + 5 * MiB + 11, 3),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "an empty folder").mkdir()
    return files


def _rclone(*args: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["rclone", "--config", str(config), *args, "--webdav-vendor", "other",
                           "--low-level-retries", "2", "--retries", "1"],
                          capture_output=True, text=True, timeout=900)


def test_rclone_copy_then_check_download(folder, tmp_path):
    src = tmp_path / "src"
    _tree(src)
    config = tmp_path / "rclone.conf"
    config.write_text("")
    url = ["--webdav-url", folder]
    done = _rclone("copy", "--create-empty-src-dirs", str(src), ":webdav:", *url, config=config)
    assert done.returncode == 0, done.stderr[-3000:]
    check = _rclone("check", "--download", str(src), ":webdav:", *url, config=config)
    assert check.returncode == 0, check.stderr[-3000:]
    dirs = _rclone("lsf", "-R", "--dirs-only", ":webdav:", *url, config=config)
    assert "an empty folder/" in dirs.stdout.splitlines()
    # and back down into a fresh folder: byte-identical
    back = tmp_path / "back"
    done = _rclone("copy", "--create-empty-src-dirs", ":webdav:", str(back), *url, config=config)
    assert done.returncode == 0, done.stderr[-3000:]
    for p in src.rglob("*"):
        q = back / p.relative_to(src)
        assert q.exists(), q
        if p.is_file():
            assert sha256(q.read_bytes()) == sha256(p.read_bytes()), p


def test_rclone_sync_deletes_and_replaces(folder, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.txt").write_bytes(b"keep")
    (src / "change.txt").write_bytes(b"version one")
    (src / "drop.txt").write_bytes(b"drop me")
    config = tmp_path / "rclone.conf"
    config.write_text("")
    url = ["--webdav-url", folder]
    assert _rclone("sync", str(src), ":webdav:", *url, config=config).returncode == 0
    (src / "drop.txt").unlink()
    (src / "change.txt").write_bytes(b"version two, longer")
    (src / "new.txt").write_bytes(b"new")
    done = _rclone("sync", str(src), ":webdav:", *url, config=config)
    assert done.returncode == 0, done.stderr[-3000:]
    check = _rclone("check", "--download", str(src), ":webdav:", *url, config=config)
    assert check.returncode == 0, check.stderr[-3000:]


def test_cadaver_put_mkcol_move_delete(folder, tmp_path):
    local = tmp_path / "local.bin"
    data = random_bytes(300_000, 4)
    local.write_bytes(data)
    script = "\n".join([
        f"put {local} uploaded.bin",
        "mkcol sub",
        "move uploaded.bin sub/moved.bin",
        "ls sub",
        "put " + str(local) + " gone.bin",
        "delete gone.bin",
        "quit",
    ]) + "\n"
    done = subprocess.run(["cadaver", folder], input=script, capture_output=True, text=True, timeout=300)
    assert "moved.bin" in done.stdout, done.stdout + done.stderr
    assert request("GET", folder + "sub/moved.bin")[2] == data
    assert request("GET", folder + "uploaded.bin")[0] == 404
    assert request("GET", folder + "gone.bin")[0] == 404


def _raw(url: str):
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=300), parts.path


def test_finder_put_zero_then_chunked_put(folder, sandbox):
    """Finder: PUT of 0 bytes, then the content with Transfer-Encoding: chunked, no Content-Length."""
    data = random_bytes(3 * MiB + 1234, 5)
    conn, base = _raw(folder)
    path = base + urllib.parse.quote("Finder drop ü.bin")
    conn.request("PUT", path, body=b"", headers={"Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    assert r.status == 201

    def chunks():
        for i in range(0, len(data), 65536 + 7):
            yield data[i:i + 65536 + 7]

    conn.request("PUT", path, body=chunks(), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    r = conn.getresponse()
    r.read()
    assert r.status in (200, 204)
    assert sha256(request("GET", folder + urllib.parse.quote("Finder drop ü.bin"))[2]) == sha256(data)
    # the 0-byte version is gone: exactly one entry of that name
    status, _, body = request("PROPFIND", folder, headers={"Depth": "1"})
    assert body.decode().count("Finder%20drop%20%C3%BC.bin") == 1


def test_finder_files_stay_local(folder, sandbox):
    before = sandbox.total("messages_sent")
    for name in ("._Finder drop.bin", ".DS_Store"):
        status, _, _ = request("PUT", folder + urllib.parse.quote(name), b"apple double " + name.encode())
        assert status == 201
        assert request("GET", folder + urllib.parse.quote(name))[2] == b"apple double " + name.encode()
    assert sandbox.total("messages_sent") == before
    listing = request("PROPFIND", folder, headers={"Depth": "1"})[2].decode()
    assert "DS_Store" not in listing


def test_explorer_sequence(folder):
    """Explorer saving a file: PUT 0, LOCK, PROPPATCH (Win32 times), HEAD, PUT, PROPPATCH, UNLOCK."""
    data = random_bytes(1_500_000, 6)
    url = folder + "Report.docx"
    assert request("PUT", url, b"")[0] == 201
    lock_body = (b'<?xml version="1.0" encoding="utf-8" ?><D:lockinfo xmlns:D="DAV:"><D:lockscope>'
                 b'<D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>'
                 b'<D:href>WIN\\user</D:href></D:owner></D:lockinfo>')
    status, headers, _ = request("LOCK", url, lock_body, {"Timeout": "Second-3600", "Depth": "0",
                                                          "Content-Type": "text/xml"})
    assert status == 200
    token = headers["Lock-Token"]
    win32 = (b'<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" '
             b'xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>'
             b'<Z:Win32CreationTime>Mon, 01 Apr 2024 10:00:00 GMT</Z:Win32CreationTime>'
             b'<Z:Win32LastAccessTime>Mon, 01 Apr 2024 10:00:00 GMT</Z:Win32LastAccessTime>'
             b'<Z:Win32LastModifiedTime>Mon, 01 Apr 2024 10:00:00 GMT</Z:Win32LastModifiedTime>'
             b'<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes>'
             b'</D:prop></D:set></D:propertyupdate>')
    if_header = {"If": f"({token})", "Content-Type": "text/xml"}
    status, _, body = request("PROPPATCH", url, win32, if_header)
    assert status == 207 and b"200 OK" in body and b"403" not in body and b"424" not in body
    assert request("HEAD", url)[0] == 200
    assert request("PUT", url, data, {"If": f"({token})"})[0] == 204
    status, _, body = request("PROPPATCH", url, win32, if_header)
    assert status == 207 and b"200 OK" in body
    assert request("UNLOCK", url, headers={"Lock-Token": token})[0] == 204
    assert sha256(request("GET", url)[2]) == sha256(data)
    ask = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:prop>'
           b'<Z:Win32LastModifiedTime/></D:prop></D:propfind>')
    status, _, body = request("PROPFIND", url, ask, {"Depth": "0"})
    assert status == 207 and b"Mon, 01 Apr 2024 10:00:00 GMT" in body
    assert request("PUT", url, b"x")[0] == 204      # no lock left


def test_unicode_and_nested_put_get_with_ranges(folder):
    data = random_bytes(PIECE_PARTS * PART * 2 + 777, 7)         # three messages
    url = folder + urllib.parse.quote("Ordner ü/sub/film – 1.mkv")
    assert request("MKCOL", folder + urllib.parse.quote("Ordner ü"))[0] == 201
    assert request("MKCOL", folder + urllib.parse.quote("Ordner ü/sub"))[0] == 201
    assert request("PUT", url, data)[0] == 201
    assert sha256(request("GET", url)[2]) == sha256(data)
    piece = PIECE_PARTS * PART
    for start, end in ((piece - 10, piece + 10), (0, 0), (2 * piece - 1, 2 * piece), (len(data) - 5, len(data) - 1),
                       (piece - 1, 2 * piece + 1)):
        status, headers, body = request("GET", url, headers={"Range": f"bytes={start}-{end}"})
        assert status == 206 and body == data[start:end + 1], (start, end)
        assert headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"


@pytest.mark.parametrize("size", [1, PART, PART + 1, 10 * MiB, 10 * MiB - 1])
def test_sizes_round_trip(folder, size):
    """Edges of the part and small/big boundaries, with Content-Length and chunked."""
    data = random_bytes(size, size)
    assert request("PUT", folder + "len.bin", data)[0] == 201
    assert sha256(request("GET", folder + "len.bin")[2]) == sha256(data)
    conn, base = _raw(folder)
    conn.request("PUT", base + "chunked.bin", body=iter([data[i:i + 100_000] for i in range(0, size, 100_000)]),
                 encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    r = conn.getresponse()
    r.read()
    assert r.status == 201
    assert sha256(request("GET", folder + "chunked.bin")[2]) == sha256(data)


def test_the_browser_face_shows_folders_inside_a_channel(folder):
    assert request("MKCOL", folder + urllib.parse.quote("Ordner ü"))[0] == 201
    assert request("PUT", folder + urllib.parse.quote("Ordner ü/inside.txt"), b"inside")[0] == 201
    status, headers, body = request("GET", folder)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert urllib.parse.quote("Ordner ü", safe="").encode() + b'/"' in body
    status, _, body = request("GET", folder + urllib.parse.quote("Ordner ü") + "/")
    assert status == 200 and b"inside.txt" in body
    link = (urllib.parse.urlsplit(folder).path + urllib.parse.quote("Ordner ü", safe="") + "/inside.txt").encode()
    assert link in body
    host = folder[:len(folder) - len(urllib.parse.urlsplit(folder).path)]
    assert request("GET", host + link.decode())[2] == b"inside"


def test_tgdav_ls_shows_folders_inside_a_channel(folder, sandbox):
    from tests.e2e.conftest import TGDAV
    from tests.write.conftest import login
    assert request("MKCOL", folder + "sub")[0] == 201
    assert request("PUT", folder + "sub/in.txt", b"12345")[0] == 201
    config = login(sandbox.root / "ls", sandbox.json_path, sandbox.info)
    rel = urllib.parse.unquote(urllib.parse.urlsplit(folder).path)
    done = subprocess.run(TGDAV + ["--config", str(config), "ls", rel], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["sub/"]
    done = subprocess.run(TGDAV + ["--config", str(config), "ls", rel + "sub"], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["5", "in.txt"], done.stderr
    done = subprocess.run(TGDAV + ["--config", str(config), "ls", rel + "nothing"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "no file or folder" in done.stderr and "Traceback" not in done.stderr


def test_depth_1_shows_members_dead_properties_and_locks(folder):
    """A folder listing on the writable share: lockdiscovery and supportedlock for every member; a
    member's dead property and its lock are in the Depth 1 answer (dav.listing leaves such a folder
    to WsgiDAV), and once they are gone the rendered answer says so."""
    import xml.etree.ElementTree as ET
    assert request("PUT", folder + "a.txt", b"a")[0] in (200, 201, 204)
    assert request("PUT", folder + "b.txt", b"bb")[0] in (200, 201, 204)

    def members() -> dict[str, ET.Element]:
        status, _, body = request("PROPFIND", folder, headers={"Depth": "1"})
        assert status == 207
        return {r.find("{DAV:}href").text.rsplit("/", 1)[-1]: r for r in ET.fromstring(body).iter("{DAV:}response")}

    plain = members()
    assert plain["a.txt"].find(".//{DAV:}supportedlock/{DAV:}lockentry") is not None
    assert plain["a.txt"].find(".//{DAV:}lockdiscovery") is not None
    patch = ('<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:tgdav-test"><D:set><D:prop>'
             '<Z:colour>teal</Z:colour></D:prop></D:set></D:propertyupdate>')
    assert request("PROPPATCH", folder + "a.txt", patch.encode(), {"Content-Type": "application/xml"})[0] == 207
    lock = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            '<D:locktype><D:write/></D:locktype><D:owner>tester</D:owner></D:lockinfo>')
    status, headers, _ = request("LOCK", folder + "b.txt", lock.encode(),
                                 {"Content-Type": "application/xml", "Timeout": "Second-600"})
    assert status == 200
    token = headers["Lock-Token"]
    found = members()
    assert found["a.txt"].find(".//{urn:tgdav-test}colour").text == "teal"
    assert found["b.txt"].find(".//{DAV:}lockdiscovery/{DAV:}activelock/{DAV:}locktoken/{DAV:}href").text \
        == token.strip("<>")
    assert request("UNLOCK", folder + "b.txt", headers={"Lock-Token": token})[0] == 204
    remove = patch.replace("<D:set>", "<D:remove>").replace("</D:set>", "</D:remove>").replace(">teal<", "><")
    assert request("PROPPATCH", folder + "a.txt", remove.encode(), {"Content-Type": "application/xml"})[0] == 207
    found = members()
    assert found["b.txt"].find(".//{DAV:}activelock") is None
    assert found["a.txt"].find(".//{urn:tgdav-test}colour") is None
