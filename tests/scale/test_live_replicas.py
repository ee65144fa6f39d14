"""Two replicas of one account sharing Redis keep each other's listings current (issue 18): a
channel created and a file written through replica A are listed by replica B at once. With the
sandbox told to lose its updates, B learns of the PUT only from A's announcement in Redis
(cache/announce.py) and reads the listing from Redis, asking Telegram nothing."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

from tests.helpers import wait_until
from tests.scale.conftest import delta

DAV = "{DAV:}"


def request(method: str, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def listed(url: str) -> set[str]:
    status, body = request("PROPFIND", url, headers={"Depth": "1"})
    if status != 207:
        return set()
    return {e.text for e in ET.fromstring(body).iter(DAV + "displayname") if e.text}


def test_a_put_through_a_is_listed_by_b_from_the_announcement(fleet):
    a, b = fleet.urls
    sb = fleet.sandbox
    folder = "Live replicas"
    quoted = urllib.parse.quote(folder)
    assert request("MKCOL", f"{a}{quoted}/")[0] == 201
    assert wait_until(lambda: folder in listed(a) and folder in listed(b))   # updateChannel reached B
    assert request("PUT", f"{a}{quoted}/first.bin", b"one")[0] == 201
    assert wait_until(lambda: "first.bin" in listed(f"{b}{quoted}/"))

    sb.faults({"drop_updates": 1000})           # from now on only Redis can tell B
    try:
        before = sb.counters()
        assert request("PUT", f"{a}{quoted}/second.bin", b"two" * 1000)[0] == 201
        assert wait_until(lambda: "second.bin" in listed(f"{b}{quoted}/"))
        after = sb.counters()
    finally:
        sb.faults({"drop_updates": 0})
    assert delta(before, after, "updates_dropped") >= 1
    # one getHistory at most: A's own catch-up before its write decides what it replaces (the writer
    # does it with [state] redis: promise 1); B takes the change from the announcement alone
    assert delta(before, after, "requests:GetHistory") <= 1
    assert delta(before, after, "requests:GetChannelDifference") == 0
    status, body = request("GET", f"{b}{quoted}/second.bin")
    assert status == 200 and body == b"two" * 1000
