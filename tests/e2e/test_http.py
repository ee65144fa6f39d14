"""WebDAV over HTTP against the running server: listings, Range reads, free probes, the cache."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from tests.e2e.conftest import (BIG_NAME, CHANNEL_A, CHANNEL_B, CHANNEL_C, FAULTS_NAME, serve_config, sha256,
                                start_server, stop)
from tests.helpers import wait_until

DAV = "{DAV:}"


def href(env, channel: str, name: str | None = None) -> str:
    path = urllib.parse.quote(channel) + "/"
    if name is not None:
        path += urllib.parse.quote(name)
    return env.url + path


def propfind(url: str, depth: str = "1") -> tuple[int, dict[str, int | None]]:
    """PROPFIND -> (status, {decoded path: size or None for collections})."""
    req = urllib.request.Request(url, method="PROPFIND", headers={"Depth": depth})
    with urllib.request.urlopen(req, timeout=30) as r:
        status, body = r.status, r.read()
    out: dict[str, int | None] = {}
    for resp in ET.fromstring(body).iter(DAV + "response"):
        path = urllib.parse.unquote(urllib.parse.urlparse(resp.find(DAV + "href").text).path)
        length = resp.find(f".//{DAV}getcontentlength")
        collection = resp.find(f".//{DAV}resourcetype/{DAV}collection")
        out[path] = None if collection is not None else int(length.text)
    return status, out


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-g", *args], capture_output=True, timeout=60)


def curl_range(url: str, spec: str) -> tuple[int, bytes]:
    """GET with Range: bytes=<spec> -> (status, body). -w prints the status after the body."""
    p = curl("-H", f"Range: bytes={spec}", "-w", "\n%{http_code}", url)
    assert p.returncode == 0, p.stderr
    body, _, status = p.stdout.rpartition(b"\n")
    return int(status), body


# ---- 1. listings -----------------------------------------------------------------------------

def test_propfind_root_lists_the_channels(e2e):
    status, entries = propfind(e2e.url)
    assert status == 207
    children = {p.strip("/") for p in entries if p != "/"}
    assert children == set(e2e.files)
    assert all(entries[p] is None for p in entries)


@pytest.mark.parametrize("channel", [CHANNEL_A, CHANNEL_B, CHANNEL_C])
def test_propfind_channel_names_and_sizes(e2e, channel):
    status, entries = propfind(href(e2e, channel))
    assert status == 207
    got = {p.rsplit("/", 1)[1]: size for p, size in entries.items() if not p.endswith("/")}
    want = {name: path.stat().st_size for name, path in e2e.files[channel].items()}
    assert got == want


# ---- 2. Range reads with curl ----------------------------------------------------------------

def test_range_reads_match_the_source(e2e):
    src = e2e.source(CHANNEL_A, BIG_NAME).read_bytes()
    url = href(e2e, CHANNEL_A, BIG_NAME)
    n = len(src)
    cases = {
        "0-0": src[0:1],
        "100-199": src[100:200],
        "1048570-2097160": src[1048570:2097161],     # across 1 MiB boundaries
        f"{n - 70000}-": src[n - 70000:],             # open-ended
        "-12345": src[-12345:],                       # suffix
        f"{n - 1}-{n - 1}": src[-1:],                 # last byte
        f"{n - 10}-{n + 1000}": src[-10:],            # end clamped to the size
        "0-": src,                                    # whole file
    }
    for spec, want in cases.items():
        status, body = curl_range(url, spec)
        assert status == 206, spec
        assert len(body) == len(want) and sha256(body) == sha256(want), spec


def test_whole_file_without_range(e2e):
    src = e2e.source(CHANNEL_A, "five-thousand.bin").read_bytes()
    p = curl("-w", "\n%{http_code}", href(e2e, CHANNEL_A, "five-thousand.bin"))
    body, _, status = p.stdout.rpartition(b"\n")
    assert int(status) == 200 and body == src


def test_range_beyond_the_end_is_416(e2e):
    path = e2e.source(CHANNEL_A, BIG_NAME)
    status, _ = curl_range(href(e2e, CHANNEL_A, BIG_NAME), f"{path.stat().st_size}-")
    assert status == 416
    status, _ = curl_range(href(e2e, CHANNEL_A, BIG_NAME), f"{path.stat().st_size + 5}-{path.stat().st_size + 9}")
    assert status == 416


def test_one_byte_and_empty_files(e2e):
    one = e2e.source(CHANNEL_A, "one.bin").read_bytes()
    p = curl(href(e2e, CHANNEL_A, "one.bin"))
    assert p.returncode == 0 and p.stdout == one
    p = curl("-w", "%{http_code}", href(e2e, CHANNEL_B, "empty.txt"))
    assert p.returncode == 0 and p.stdout == b"200"


# ---- 3. metadata and probes cost no file bytes -----------------------------------------------

def test_head_propfind_and_probes_fetch_no_file_bytes(e2e):
    # warm listings so the checks below cost only what they themselves cause
    propfind(e2e.url)
    for ch in (CHANNEL_A, CHANNEL_B):
        propfind(href(e2e, ch))
    before = e2e.total("getfile_bytes")
    before_calls = e2e.total("requests:GetFile")

    for ch, files in e2e.files.items():
        for name in files:
            p = curl("-I", "-w", "%{http_code}", "-o", "/dev/null", href(e2e, ch, name))
            assert p.stdout == b"200", (name, p.stdout)
            propfind(href(e2e, ch, name), depth="0")
        propfind(href(e2e, ch), depth="1")
    statuses = {}
    for probe in ("/.DS_Store", f"/{urllib.parse.quote(CHANNEL_A)}/._{urllib.parse.quote(BIG_NAME)}",
                  "/desktop.ini", f"/{urllib.parse.quote(CHANNEL_B)}/desktop.ini",
                  f"/{urllib.parse.quote(CHANNEL_A)}/.DS_Store", "/Thumbs.db"):
        for method in ("GET", "PROPFIND", "HEAD"):
            p = curl("-X", method, "-H", "Depth: 0", "-o", "/dev/null", "-w", "%{http_code}",
                     e2e.url.rstrip("/") + probe) if method != "HEAD" else \
                curl("-I", "-o", "/dev/null", "-w", "%{http_code}", e2e.url.rstrip("/") + probe)
            statuses[(probe, method)] = int(p.stdout)
    assert all(s == 404 for s in statuses.values()), statuses
    assert e2e.total("getfile_bytes") == before
    assert e2e.total("requests:GetFile") == before_calls


# ---- 10. the cache: a second full read costs no getFile --------------------------------------

def test_second_full_read_sends_no_new_getfile(e2e):
    name = BIG_NAME
    src_sha = sha256(e2e.source(CHANNEL_A, name).read_bytes())
    url = href(e2e, CHANNEL_A, name)
    first = curl(url)
    assert first.returncode == 0 and sha256(first.stdout) == src_sha
    calls = e2e.total("requests:GetFile")
    nbytes = e2e.total("getfile_bytes")
    assert calls > 0 and nbytes >= len(first.stdout)    # the counters are the ones we think they are
    second = curl(url)
    assert second.returncode == 0 and sha256(second.stdout) == src_sha
    assert e2e.total("requests:GetFile") == calls
    assert e2e.total("getfile_bytes") == nbytes


@pytest.mark.timeout(240)
def test_a_serve_killed_mid_file_leaves_a_cache_that_serves_exact_bytes(e2e):
    """kill -9 while a file streams (chunks being written, its index behind them): the next serve on
    the same state serves the exact bytes, fetching each byte at most once, and then none."""
    src = e2e.source(CHANNEL_C, FAULTS_NAME).read_bytes()
    where = e2e.root / "killed"
    url, proc = start_server(where, e2e.root / "sandbox.json", e2e.sandbox, e2e.root / "killed")
    file_url = url + urllib.parse.quote(CHANNEL_C) + "/" + urllib.parse.quote(FAULTS_NAME)
    part = where / "part"
    try:
        slow = subprocess.Popen(["curl", "-sS", "-g", "--limit-rate", "2M", "-o", str(part), file_url])
        wait_until(lambda: part.exists() and part.stat().st_size >= len(src) // 3, 60, "a third read")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        slow.wait(30)
    finally:
        stop(proc)
    got = part.read_bytes()         # (the socket's buffers may already hold the rest when tgdav dies)
    assert len(src) // 3 <= len(got) <= len(src) and got == src[:len(got)]
    _, proc = serve_config(where / "tgdav.toml", int(urllib.parse.urlparse(url).port), e2e.root / "killed")
    try:
        before = e2e.total("getfile_bytes")
        again = curl(file_url)
        assert again.returncode == 0 and sha256(again.stdout) == sha256(src)
        fetched = e2e.total("getfile_bytes") - before
        assert fetched <= len(src), fetched              # each byte fetched at most once
        third = curl(file_url)
        assert third.returncode == 0 and sha256(third.stdout) == sha256(src)
        assert e2e.total("getfile_bytes") - before == fetched   # and then from the cache alone
    finally:
        stop(proc)


# ---- the pool's connections: MTProto's intermediate transport (no CRC32 to compute) -----------

def test_file_bytes_come_over_intermediate_transport_connections(e2e):
    """serve's pool senders speak the intermediate transport (mtproto._Intermediate: each big
    answer received into its own buffer, no TcpFull CRC32); the main client keeps Telethon's
    TcpFull. Counted by the sandbox per connection, from the bytes it received."""
    before = e2e.total("transport:intermediate")
    url = href(e2e, CHANNEL_A, BIG_NAME)
    # a range nobody asked for before (a new sender may or may not be needed: count connections)
    connections = e2e.total("connections")
    code, body = curl_range(url, "0-99")
    assert code == 206 and body == e2e.source(CHANNEL_A, BIG_NAME).read_bytes()[:100]
    counters = e2e.counters()
    full = sum(int(dc.get("transport:full", 0)) for dc in counters.values() if isinstance(dc, dict))
    intermediate = e2e.total("transport:intermediate")
    assert full >= 1                                  # the main client (login, listings)
    assert intermediate >= 1                          # the pool's senders
    assert intermediate - before == e2e.total("connections") - connections   # every new one
