"""A replica never loses its own acknowledged write to an older listing another replica stored in
Redis (DESIGN.md, promise 1; catalog.reread_kept merges through catalog._merged).

Two `tgdav serve` replicas A and B of one account share Redis ([state] redis) over their own sandbox.
B's getHistory pages are paced one every five seconds, so the whole read its janitor makes at start
(catalog.reread) spans seconds, and stores, when it ends, the listing as it was when it began. A PUT
through A is acknowledged between B's pages (its pushed update lost: only Redis could tell B). Then a
DELETE through B stores B's listing and announces it, and A takes it from Redis (it stops listing the
deleted file). A must still serve its own file byte for byte, list it, and a LOCK of it must lock that
file, not make an empty one over it (RFC 4918 9.10.4: a LOCK of an unmapped URL creates an empty
resource). On the code before the merge, A's GET answered 404.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.e2e.conftest import stop
from tests.helpers import wait_until
from tests.scale.conftest import login, replica_config, serve, start_redis, start_sandbox
from tests.scale.test_live_replicas import listed, request

POSTS = 320         # four pages of history: B's whole read spans three paced waits (15 s)
LOCK_BODY = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope>'
             b'<D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>')


def admin(sb, path: str, body: dict) -> dict:
    req = urllib.request.Request(sb.admin + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


@pytest.fixture
def replicas(tmp_path):
    """The sandbox (posts of its own), Redis, replica A serving, and a function starting replica B."""
    sb = start_sandbox(tmp_path / "sandbox")
    procs = [sb.proc]

    def replica(name: str, pace: str) -> str:
        config, port = replica_config(tmp_path / name, sb.admin_json, redis_url=redis_url, extra=pace)
        login(config, sb.info)
        config.write_text(config.read_text() + "\n[cache]\nlisting_refresh = 3600\n")
        url, proc = serve(config, port, tmp_path / f"serve-{name}")
        procs.append(proc)
        return url + "Uploads/"
    try:
        sb.faults({"history_rate_limit": None})     # its own sandbox: B's own pace is the only one
        for n in range(POSTS):
            admin(sb, "/publish", {"channel": "Uploads", "text": f"post {n}"})
        redis_url, redis_proc = start_redis(tmp_path / "redis")
        procs.append(redis_proc)
        a = replica("a", "history_burst = 100\nhistory_per_second = 100")
        yield sb, a, lambda: replica("b", "history_burst = 1\nhistory_per_second = 0.2")
    finally:
        for proc in reversed(procs):
            stop(proc)


def total(sb, name: str) -> int:
    return sum(int(c.get(name, 0)) for c in sb.counters().values())


def test_a_listing_b_read_before_as_put_never_loses_that_file_on_a(replicas):
    sb, a, start_b = replicas
    assert request("PUT", a + "first.bin", b"first")[0] == 201     # A reads the channel whole, stores it
    pages = total(sb, "requests:GetHistory")
    b = start_b()         # its janitor reads the channel whole at once (catalog.reread), paced
    assert wait_until(lambda: total(sb, "requests:GetHistory") > pages, 60)   # B's first page is read
    sb.faults({"drop_updates": 1_000_000})      # from now on only Redis tells one replica the other's writes
    data = b"acknowledged through A\n" * 5000
    assert request("PUT", a + "mine.bin", data)[0] == 201       # between B's pages
    # B's catalog.forget waits for its whole read to end, then stores its listing and announces it
    assert request("DELETE", b + "first.bin")[0] == 204
    assert wait_until(lambda: "first.bin" not in listed(a), 60)  # A has taken it from Redis

    status, body = request("GET", a + "mine.bin")
    assert status == 200 and body == data, f"GET through A answered {status} ({len(body)} bytes)"
    assert "mine.bin" in listed(a)
    status, _ = request("LOCK", a + "mine.bin", LOCK_BODY, {"Timeout": "Second-60", "Depth": "0",
                                                           "Content-Type": "application/xml"})
    assert status == 200, f"LOCK through A answered {status} (201: an empty file over the acknowledged one)"
    status, body = request("GET", a + "mine.bin")
    assert status == 200 and body == data, f"after the LOCK: {status}, {len(body)} bytes"
    assert request("PUT", a + "later.bin", b"later")[0] == 201  # and B learns it from Redis again
    assert wait_until(lambda: "mine.bin" in listed(b), 60)
    assert request("GET", b + "mine.bin") == (200, data)


def test_a_stored_listing_is_merged_never_taken_back():
    """catalog._merged alone: what the stored copy lacks stays (and is named for writing back), a
    deletion named in its head goes (and is remembered), a newer edit is taken, an older one or a
    same-second one is not; what the stored copy lacks or holds older, or holds though deleted here,
    is named for writing back."""
    from tgdav.model import Folder
    from tgdav.telegram.catalog import _Channel, _merged
    from tgdav.telegram.tree import Record

    def rec(mid: int, edited: float, text: str) -> Record:
        return Record(mid, 100.0, edited, None, text)
    channel = _Channel(Folder("c", 1, "c", None, 0.0), 2)
    channel.records = {1: rec(1, 100, "kept"), 2: rec(2, 100, "deleted by B"), 3: rec(3, 300, "mine, newer"),
                       4: rec(4, 100, "edited by B"), 5: rec(5, 200, "tie"), 6: rec(6, 100, "mine, unstored")}
    channel.gone = {9}
    stored = {1: rec(1, 100, "kept"), 3: rec(3, 200, "B's older"), 4: rec(4, 150, "B's edit"),
              5: rec(5, 200, "B's same second"), 7: rec(7, 100, "B's new"), 9: rec(9, 100, "deleted by A")}
    lacking = _merged(channel, {"gone": [2]}, stored)
    assert {mid: r.text for mid, r in channel.records.items()} == {
        1: "kept", 3: "mine, newer", 4: "B's edit", 5: "tie", 6: "mine, unstored", 7: "B's new"}
    # 9: deleted here, held by the stored copy (another replica's write-back from an older read):
    # stored again without it, or every replica merging that copy would list it again
    assert sorted(lacking) == [3, 6, 9] and channel.gone == {2, 9}
