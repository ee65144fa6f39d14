"""Two `tgdav serve` replicas of one account sharing Redis ([state] redis), against one sandbox:
what one replica learned (a file's DC, a DC's authorisation, a FLOOD_WAIT) the other does not pay
for again. Assertions on SHA-256 of the bytes and on the sandbox's counters."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import redis

from tests.e2e.conftest import sha256
from tests.scale.conftest import delta


def get(url: str, byte_range: str | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers={"Range": f"bytes={byte_range}"} if byte_range else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_a_file_opened_through_a_costs_b_no_migrate_and_no_export(fleet):
    sb = fleet.sandbox
    before = sb.counters()
    status, body, _ = get(fleet.file_url(0, "stale.bin"))
    assert status == 200 and sha256(body) == sb.sha("stale.bin")
    after_a = sb.counters()
    # replica A paid for the stale DC and the foreign DC's authorisation (so the test means something)
    assert delta(before, after_a, "errors:FILE_MIGRATE_X") == 1
    assert delta(before, after_a, "exports") == 1 and delta(before, after_a, "imports", dc=5) == 1

    status, body, _ = get(fleet.file_url(1, "stale.bin"))
    assert status == 200 and sha256(body) == sb.sha("stale.bin")
    after_b = sb.counters()
    assert delta(after_a, after_b, "requests:GetFile", dc=5) > 0       # B really read it, from DC 5
    assert delta(after_a, after_b, "requests:GetFile", dc=2) == 0      # without asking the stale DC
    assert delta(after_a, after_b, "errors:FILE_MIGRATE_X") == 0
    assert delta(after_a, after_b, "exports") == 0
    assert delta(after_a, after_b, "imports") == 0

    # a range of another file on DC 5: B uses the shared authorisation again, still no export
    status, body, _ = get(fleet.file_url(1, "next.bin"), "1000-300000")
    assert status == 206 and sha256(body) == sb.sha("next.bin", 1000, 300000)
    assert delta(after_b, sb.counters(), "exports") == 0


def test_the_shared_state_is_in_redis(fleet):
    r = redis.Redis.from_url(fleet.redis_url)
    keys = {k.decode() for k in r.keys("tgdav:*")}
    user = fleet.sandbox.info["user_id"]
    assert f"tgdav:acct:{user}:auth:5" in keys
    assert any(k.startswith("tgdav:dc:") for k in keys)
    assert any(k.startswith(f"tgdav:acct:{user}:listing:") for k in keys)


def test_a_flood_wait_seen_by_a_keeps_b_off_that_dc_until_it_ends(fleet):
    sb = fleet.sandbox
    seconds = 4
    sb.faults({"flood_wait": [{"dc": 3, "method": "GetFile", "seconds": seconds, "count": 1}]})
    before = sb.counters()
    status, body, _ = get(fleet.file_url(0, "flood.bin"), "0-99999")
    flooded_at = time.monotonic()
    mid = sb.counters()
    assert delta(before, mid, "errors:FLOOD_WAIT_X", dc=3) == 1          # A met the flood, once
    assert delta(before, mid, "requests:GetFile", dc=3) == 1             # and sent nothing after it
    assert status == 503, body[:300]                                    # (promise 7: no other sender)

    status, body, headers = get(fleet.file_url(1, "flood.bin"), "200000-299999")
    after = sb.counters()
    assert status == 503, body[:300]
    assert int(headers["Retry-After"]) >= 1
    assert delta(mid, after, "requests:GetFile", dc=3) == 0              # B never asked the gated DC

    time.sleep(max(0.0, flooded_at + seconds + 0.5 - time.monotonic()))     # the flood is over
    status, body, _ = get(fleet.file_url(1, "flood.bin"), "200000-299999")
    assert status == 206 and sha256(body) == sb.sha("flood.bin", 200000, 299999)
    assert delta(after, sb.counters(), "requests:GetFile", dc=3) > 0


LOCK_BODY = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
             b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>alice</D:owner></D:lockinfo>')


def dav(url: str, method: str, headers: dict | None = None, body: bytes | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_a_lock_taken_through_a_is_seen_through_b(fleet):
    # a file of the channel the user may write in (LOCK is a write: refused in a read-only channel)
    a, b = (f"{url}Uploads/entry-00.bin" for url in fleet.urls[:2])
    status, _, headers = dav(a, "LOCK", {"Content-Type": "application/xml", "Timeout": "Second-600"},
                             LOCK_BODY)
    assert status == 200, status
    token = headers["Lock-Token"]
    try:
        status, body, _ = dav(b, "PROPFIND", {"Depth": "0", "Content-Type": "application/xml"},
                              b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/>'
                              b'</D:prop></D:propfind>')
        assert status == 207 and token.strip("<>").encode() in body
        status, _, _ = dav(b, "LOCK", {"Content-Type": "application/xml"}, LOCK_BODY)
        assert status == 423                       # B refuses a second exclusive lock
    finally:
        status, _, _ = dav(b, "UNLOCK", {"Lock-Token": token})
    assert status == 204                           # and B can release A's lock by its token
    status, _, headers = dav(a, "LOCK", {"Content-Type": "application/xml"}, LOCK_BODY)
    assert status == 200                           # released for A too
    dav(a, "UNLOCK", {"Lock-Token": headers["Lock-Token"]})
