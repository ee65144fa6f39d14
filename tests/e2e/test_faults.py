"""Reads that survive the sandbox's injected faults, and concurrent readers.

These run against a second `tgdav serve` of their own (own state dir, login, pool and cache) on the
shared sandbox, so its pool has no connection to the file's DC yet when the first fault is set, and
each test reads its own never-read region of Gamma/faults.bin: the cache cannot answer for Telegram."""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request

import pytest

from tests.e2e.conftest import CHANNEL_C, FAULTS_NAME, sha256, start_server, stop

MiB = 1024 * 1024
DCS = ("1", "2", "3", "4", "5")


def post(e2e, path: str, body: dict) -> None:
    req = urllib.request.Request(e2e.admin + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


@pytest.fixture(scope="module")
def server(e2e):
    url, proc = start_server(e2e.root / "faults", e2e.root / "sandbox.json", e2e.sandbox,
                             e2e.root / "logs" / "faults-serve")
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture
def faults(e2e, server):
    yield lambda body: post(e2e, "/faults", body)
    post(e2e, "/faults", {"clear": True})


def read(e2e, server: str, offset: int, length: int) -> bytes:
    url = server + urllib.parse.quote(CHANNEL_C) + "/" + FAULTS_NAME
    req = urllib.request.Request(url, headers={"Range": f"bytes={offset}-{offset + length - 1}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 206
        return r.read()


def check(e2e, server: str, offset: int, length: int) -> None:
    src = e2e.source(CHANNEL_C, FAULTS_NAME).read_bytes()[offset:offset + length]
    got = read(e2e, server, offset, length)
    assert len(got) == length and sha256(got) == sha256(src)


def test_dropped_connection_is_retried(e2e, server, faults):
    # first test of the module: the fresh server has no connection to the file's DC yet
    before = e2e.total("dropped")
    faults({"drop_after_bytes": {dc: {"bytes": 50_000, "count": 1} for dc in DCS}})
    check(e2e, server, 7 * MiB + 9, 1 * MiB)
    assert e2e.total("dropped") > before                   # the fault fired and was survived


def test_flood_wait_is_waited_out(e2e, server, faults):
    before = e2e.total("errors:FLOOD_WAIT_X")
    faults({"flood_wait": [{"dc": int(dc), "method": "GetFile", "seconds": 1, "count": 1} for dc in DCS]})
    check(e2e, server, 1 * MiB + 3, 1 * MiB)
    assert e2e.total("errors:FLOOD_WAIT_X") > before       # the fault fired and was survived


def test_expired_file_references_are_refreshed(e2e, server, faults):
    check(e2e, server, 0, 4096)          # the server holds a reference now
    before = e2e.total("errors:FILE_REFERENCE_EXPIRED")
    faults({"expire_file_references": True})
    check(e2e, server, 4 * MiB + 100, 1 * MiB)
    assert e2e.total("errors:FILE_REFERENCE_EXPIRED") > before


def test_concurrent_range_readers(e2e, server):
    results: dict[int, BaseException | None] = {}

    def worker(i: int) -> None:
        try:
            check(e2e, server, 10 * MiB + i * 1_300_000 + i, 1_200_000)
            results[i] = None
        except BaseException as e:     # reported by the main thread
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {i: None for i in range(4)}
