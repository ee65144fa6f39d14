"""Promise 6 for Redis: two writable `tgdav serve` replicas share a real redis-server ([state] redis);
it is killed, and later frozen (SIGSTOP). While it is away, listings and reads go on from each
replica's own state, byte-exact; writes (which need the shared WebDAV locks) answer 503 with
Retry-After at once and change nothing; the status page and the metrics say Redis is away, and Redis
is not asked again on every request (the breaker). When it comes back, everything works again
without a restart. Assertions on SHA-256 of bytes, on listings and on the replicas' own counters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.e2e.conftest import sha256, stop
from tests.scale.conftest import Sandbox, login, replica_config, serve, start_redis
from tests.scale.test_replicas import LOCK_BODY

ENTRIES = [f"entry-{i:02d}.bin" for i in range(40)]


def dav(url: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None,
        timeout: float = 30) -> tuple[int, bytes, dict]:
    """One request; the timeout only bounds a hang (the old code's PUT waited on a frozen Redis)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def listed(url: str, body: bytes | None = None) -> set[str]:
    """The names a PROPFIND Depth 1 of a folder returns (allprop, lock discovery included, without body)."""
    status, xml, _ = dav(url, "PROPFIND", {"Depth": "1", **({"Content-Type": "application/xml"} if body else {})},
                         body)
    assert status == 207, xml[:300]
    hrefs = [h.text for h in ET.fromstring(xml).iter("{DAV:}href")]
    return {urllib.parse.unquote(h.rstrip("/").rsplit("/", 1)[-1]) for h in hrefs}


def status_json(base: str) -> dict:
    status, body, _ = dav(base + ":tgdav/status.json")
    assert status == 200
    return json.loads(body)


def metric(base: str, name: str) -> float:
    status, body, _ = dav(base + ":tgdav/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in the metrics")


@dataclass
class Pair:
    sandbox: Sandbox
    root: Path
    redis_url: str
    redis: subprocess.Popen
    urls: list[str]

    def folder(self, replica: int) -> str:
        return f"{self.urls[replica]}{self.sandbox.info['uploads']}/"

    def entry(self, name: str) -> bytes:
        return self.sandbox.content(f"{self.sandbox.info['uploads']}/{name}")

    def kill_redis(self) -> None:
        os.killpg(self.redis.pid, signal.SIGKILL)
        self.redis.wait(10)

    def start_redis_again(self) -> None:
        port = int(urllib.parse.urlsplit(self.redis_url).port)
        url, self.redis = start_redis(self.root / "redis", port=port)
        assert url == self.redis_url

    def wait_until_redis_is_back(self) -> None:
        """Each replica notices by itself (its background PING); nobody restarts anything."""
        wait_until(lambda: all(status_json(u)["redis"]["up"] for u in self.urls), 60,
                   "every replica saw Redis come back", interval=0.5)


@pytest.fixture(scope="module")
def pair(scale_sandbox: Sandbox, tmp_path_factory) -> Pair:
    root = tmp_path_factory.mktemp("redis-away")
    redis_url, redis_proc = start_redis(root / "redis")
    procs = []
    p = Pair(scale_sandbox, root, redis_url, redis_proc, [])
    try:
        for name in ("a", "b"):
            config, port = replica_config(root / name, scale_sandbox.admin_json, redis_url=redis_url)
            login(config, scale_sandbox.info)
            url, proc = serve(config, port, root / f"serve-{name}")
            procs.append(proc)
            p.urls.append(url)
        for i in range(2):        # both replicas know the channel and have read one of its files
            assert set(ENTRIES) <= listed(p.folder(i))
            status, body, _ = dav(p.folder(i) + "entry-01.bin")
            assert status == 200 and body == p.entry("entry-01.bin")
        yield p
    finally:
        for proc in procs:
            stop(proc)
        stop(p.redis)


def assert_reads_go_on(p: Pair, name: str) -> None:
    """Listings (lock discovery included) and reads, old and new, on both replicas."""
    for i in range(2):
        assert set(ENTRIES) <= listed(p.folder(i))
        status, body, _ = dav(p.folder(i) + "entry-01.bin", headers={"Range": "bytes=100-2099"})
        assert status == 206 and sha256(body) == sha256(p.entry("entry-01.bin")[100:2100])
        status, body, _ = dav(p.folder(i) + name)       # never read before by this replica
        assert status == 200 and sha256(body) == sha256(p.entry(name))


def assert_writes_wait(p: Pair, name: str) -> None:
    """Every write answers 503 with Retry-After and changes nothing."""
    for i in range(2):
        target = p.folder(i) + f"away-{i}.bin"
        status, body, headers = dav(target, "PUT", {"Content-Type": "application/octet-stream"}, b"x" * 5000)
        assert status == 503, (status, body[:300])
        assert int(headers["Retry-After"]) >= 1
        assert b"Traceback" not in body and b"Redis" in body
        assert dav(target)[0] == 404                     # the refused PUT left nothing behind
        status, _, headers = dav(p.folder(i) + name, "DELETE")
        assert status == 503 and int(headers["Retry-After"]) >= 1
        status, _, headers = dav(p.folder(i) + name, "LOCK", {"Content-Type": "application/xml"}, LOCK_BODY)
        assert status == 503 and int(headers["Retry-After"]) >= 1
        assert dav(p.folder(i) + name)[0] == 200         # the refused DELETE deleted nothing


def assert_said_away(p: Pair) -> None:
    for base in p.urls:
        state = status_json(base)["redis"]
        assert state["up"] is False and state["failures"] >= 1
        assert metric(base, "tgdav_redis_up") == 0
        status, page, _ = dav(base + ":tgdav/status")
        assert status == 200 and b"Shared state (Redis)" in page and b"away for" in page


def assert_redis_is_not_asked_again(p: Pair) -> None:
    """The breaker: once Redis is known to be away, requests do not try it (and wait) again."""
    before = [metric(u, "tgdav_redis_failures_total") for u in p.urls]
    for i in range(2):
        for _ in range(5):
            listed(p.folder(i))
            assert dav(p.folder(i) + "more.bin", "PUT", body=b"y")[0] == 503
    assert [metric(u, "tgdav_redis_failures_total") for u in p.urls] == before


def assert_everything_is_back(p: Pair, name: str) -> None:
    p.wait_until_redis_is_back()
    for i in range(2):
        data = os.urandom(3000) + name.encode()
        target = p.folder(i) + f"back-{name}-{i}"
        status, body, _ = dav(target, "PUT", {"Content-Type": "application/octet-stream"}, data)
        assert status in (201, 204), body[:300]
        status, body, _ = dav(target)
        assert status == 200 and sha256(body) == sha256(data)
        assert dav(target, "DELETE")[0] == 204
        assert metric(p.urls[i], "tgdav_redis_up") == 1
    # locks are shared again: a LOCK through A conflicts through B
    status, _, headers = dav(p.folder(0) + name, "LOCK", {"Content-Type": "application/xml"}, LOCK_BODY)
    assert status == 200
    try:
        assert dav(p.folder(1) + name, "LOCK", {"Content-Type": "application/xml"}, LOCK_BODY)[0] == 423
    finally:
        assert dav(p.folder(1) + name, "UNLOCK", {"Lock-Token": headers["Lock-Token"]})[0] == 204


def test_redis_killed_reads_go_on_writes_wait_and_it_comes_back(pair):
    pair.kill_redis()
    assert_reads_go_on(pair, "entry-02.bin")
    assert_writes_wait(pair, "entry-03.bin")
    assert_said_away(pair)
    assert_redis_is_not_asked_again(pair)
    pair.start_redis_again()
    assert_everything_is_back(pair, "entry-04.bin")


def test_redis_frozen_reads_go_on_writes_wait_and_it_comes_back(pair):
    os.kill(pair.redis.pid, signal.SIGSTOP)
    try:
        assert_reads_go_on(pair, "entry-05.bin")
        assert_writes_wait(pair, "entry-06.bin")
        assert_said_away(pair)
        assert_redis_is_not_asked_again(pair)
    finally:
        os.kill(pair.redis.pid, signal.SIGCONT)
    assert_everything_is_back(pair, "entry-07.bin")
