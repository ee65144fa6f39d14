"""The README's one-liner: `tgdav demo --port P --state DIR` comes up, serves the demo world, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.helpers import wait_until
from tests.e2e.conftest import TGDAV, free_port, stop
from tgdav.sandbox.content import pattern

DAV = "{DAV:}"


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stops_cleanly(proc: subprocess.Popen, signum: int, children: set[int]) -> None:
    """`signum` ends the demo with status 0, and its sandbox child with it."""
    proc.send_signal(signum)
    assert proc.wait(30) == 0
    wait_until(lambda: not any(_alive(c) for c in children), 10, "the sandbox child ends with the demo",
               interval=0.1)


def _propfind(url: str, depth: str) -> ET.Element:
    req = urllib.request.Request(url, method="PROPFIND", headers={"Depth": depth})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 207
        return ET.fromstring(r.read())


def _read_until(proc: subprocess.Popen, needle: bytes, timeout: float = 90) -> list[bytes]:
    """The lines the process printed up to the one holding `needle`. Reads the pipe's fd itself:
    select() cannot see lines a buffered reader has already taken off the pipe."""
    out = b""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
            if needle in out:
                return out.splitlines(keepends=True)
        elif proc.poll() is not None:
            break
    raise AssertionError(f"no {needle!r} from demo (exit {proc.poll()}): {out[-2000:]!r}")


def test_demo_serves_and_stops_cleanly(tmp_path):
    port = free_port()
    err = open(tmp_path / "demo.err", "wb")
    proc = subprocess.Popen(TGDAV + ["demo", "--port", str(port), "--state", str(tmp_path / "state")],
                            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        lines = _read_until(proc, b"serving WebDAV")
        sandbox_line = next(l for l in lines if l.startswith(b"sandbox: "))
        info = json.loads(sandbox_line[len(b"sandbox: "):])
        assert info["admin"].startswith("http://127.0.0.1:")
        children = _children(proc.pid)
        assert children, "the demo runs its sandbox as a child process"
        url = f"http://127.0.0.1:{port}/"

        root = _propfind(url, "1")
        names = {r.find(f".//{DAV}displayname").text for r in root.iter(DAV + "response")}
        assert {"Archive", "Pictures", "Welcome", "Music", "Videos"} <= names

        big = _propfind(url + "Archive/big.bin", "0")
        size = int(big.find(f".//{DAV}getcontentlength").text)
        assert size == 8 * 2**30
        etag = big.find(f".//{DAV}getetag").text.strip('"')
        doc_id = int(etag.split("-")[0], 16)        # catalog etag: "<document id>-<size>-<date>" in hex

        for offset, length in ((5 * 2**30 + 12345, 200_000), (size - 70_000, 70_000)):
            req = urllib.request.Request(url + "Archive/big.bin",
                                         headers={"Range": f"bytes={offset}-{offset + length - 1}"})
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status == 206
                assert r.headers["Content-Range"] == f"bytes {offset}-{offset + length - 1}/{size}"
                body = r.read()
            assert len(body) == length
            assert body == pattern(doc_id, offset, length)

        with urllib.request.urlopen(info["admin"] + "/counters", timeout=10) as r:
            counters = json.loads(r.read())
        assert sum(int(c.get("getfile_bytes", 0)) for c in counters.values()) >= 270_000

        _stops_cleanly(proc, signal.SIGTERM, children)
    finally:
        stop(proc)


def test_closing_the_terminal_stops_the_demo_and_leaves_nothing_behind(tmp_path):
    """SIGHUP (the terminal closed) ends the demo as Ctrl-C does: its temporary state and its
    sandbox child go. On the way, what a newcomer reads: the banner and the Welcome channel say
    where to start and that Uploads is the writable channel."""
    port = free_port()
    proc = subprocess.Popen(TGDAV + ["demo", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "demo.err", "wb"), stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        lines = _read_until(proc, b"serving WebDAV")
        banner = b"".join(lines).decode()
        state = Path(next(l for l in banner.splitlines() if l.strip().startswith("state")).split()[1])
        assert state.is_dir() and "temporary" in banner
        assert "Uploads is the writable channel" in banner
        children = _children(proc.pid)
        assert children
        url = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url + "Welcome/", timeout=30) as r:
            listing = r.read().decode()
        assert "README.txt" in listing and "No files in this channel" not in listing
        with urllib.request.urlopen(url + "Welcome/README.txt", timeout=30) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            assert "Uploads is the one channel you can write to" in r.read().decode()

        _stops_cleanly(proc, signal.SIGHUP, children)
        assert not state.exists(), "the demo's temporary state was left behind"
    finally:
        stop(proc)
