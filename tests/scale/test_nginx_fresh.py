"""Promise 6 for the nginx cache: nginx from config/nginx.conf in front of a writable replica
(auth = none, so it caches), files written through it in the sandbox's Uploads channel. After an
overwrite, a delete or a move, every byte nginx serves is the current version's (SHA-256), a deleted
or moved-away path is 404, and no body is cut short, even when some slices of the old version are
still in nginx's cache. A slice nginx holds costs tgdav a conditional GET it answers 304 from
metadata: no getFile reaches Telegram (the sandbox's counters).

nginx sits in front of ONE replica here: a replica learns what another wrote when it refreshes its
listing ([cache] listing_refresh), whatever nginx does."""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import sha256, stop
from tests.scale.conftest import delta
from tests.scale.test_nginx import start_nginx

MIB = 1 << 20
SIZE = 2 * MIB + 500_000        # 2.5 MB: three slices, the last one short


def call(url: str, method: str = "GET", headers: dict | None = None,
         body: bytes | None = None) -> tuple[int, bytes, dict]:
    """One request; a body cut short comes back as what arrived (its length then tells)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            try:
                data = r.read()
            except http.client.IncompleteRead as e:
                data = e.partial
            return r.status, data, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@pytest.fixture(scope="module")
def front(fleet):
    """nginx (config/nginx.conf) in front of replica A only; its own cache."""
    url, proc = start_nginx(fleet.root / "nginx-fresh", [fleet.urls[0].removeprefix("http://").rstrip("/")])
    yield f"{url}{fleet.sandbox.info['uploads']}/"
    stop(proc)


def put(url: str, data: bytes) -> None:
    status, body, _ = call(url, "PUT", {"Content-Type": "application/octet-stream"}, data)
    assert status in (201, 204), (status, body[:300])


def assert_serves(url: str, data: bytes) -> None:
    """The whole file and ranges in each slice, through nginx: exactly `data`."""
    status, body, headers = call(url)
    assert status == 200 and len(body) == len(data) and sha256(body) == sha256(data)
    assert int(headers["Content-Length"]) == len(data)
    assert "X-Accel-Expires" not in headers          # meant for nginx only; it never reaches clients
    for first, last in ((0, 99), (MIB - 10, MIB + 10), (2 * MIB + 1000, len(data) - 1)):
        status, body, _ = call(url, headers={"Range": f"bytes={first}-{last}"})
        assert status == 206 and sha256(body) == sha256(data[first:last + 1])


def test_an_overwrite_is_served_at_once(front):
    url = front + "over.bin"
    old, new = os.urandom(SIZE), os.urandom(SIZE)
    put(url, old)
    assert_serves(url, old)                      # every slice of the old version is in nginx's cache
    put(url, new)
    assert_serves(url, new)


def test_a_whole_get_with_one_old_slice_cached_is_whole_and_new(front):
    url = front + "one-slice.bin"
    old, new = os.urandom(SIZE), os.urandom(SIZE)
    put(url, old)
    status, body, _ = call(url, headers={"Range": "bytes=0-99"})       # only slice 0 is cached
    assert status == 206 and body == old[:100]
    put(url, new)
    status, body, headers = call(url)
    assert status == 200 and len(body) == SIZE and sha256(body) == sha256(new)


def test_a_deleted_file_is_404(front):
    url = front + "gone.bin"
    data = os.urandom(SIZE)
    put(url, data)
    assert_serves(url, data)
    status, _, _ = call(url, "DELETE")
    assert status == 204
    assert call(url)[0] == 404
    assert call(url, headers={"Range": "bytes=0-99"})[0] == 404
    assert call(url, "HEAD")[0] == 404


def test_a_move_leaves_404_behind_and_the_new_path_serves_the_file(front):
    a, b = front + "moved-from.bin", front + "moved-to.bin"
    data, later = os.urandom(SIZE), os.urandom(SIZE)
    put(a, data)
    assert_serves(a, data)
    status, body, _ = call(a, "MOVE", {"Destination": b})
    assert status in (201, 204), body[:300]
    assert call(a)[0] == 404
    assert_serves(b, data)
    put(a, later)                                # the old path holds something else now
    assert_serves(a, later)


def test_a_cached_slice_costs_a_304_and_no_getfile(fleet, front):
    sb = fleet.sandbox
    url = front + "hot-upload.bin"
    data = os.urandom(SIZE)
    put(url, data)
    assert_serves(url, data)
    before = sb.counters()
    status, body, headers = call(url, headers={"Range": f"bytes={MIB - 5}-{MIB + 5}"})
    assert status == 206 and body == data[MIB - 5:MIB + 6]
    assert headers.get("X-Cache-Status") == "REVALIDATED"    # nginx asked tgdav, which said 304
    status, body, _ = call(url)
    assert status == 200 and sha256(body) == sha256(data)
    assert delta(before, sb.counters(), "requests:GetFile") == 0


def test_tgdav_answers_a_conditional_range_get_from_metadata(fleet):
    """What nginx's revalidation asks: If-None-Match with the ETag, a slice's Range -> 304, no getFile."""
    sb = fleet.sandbox
    url = fleet.file_url(0, "far.bin")
    status, _, headers = call(url, "HEAD")
    assert status == 200
    before = sb.counters()
    status, body, answer = call(url, headers={"Range": f"bytes={MIB}-{2 * MIB - 1}",
                                              "If-None-Match": headers["ETag"],
                                              "If-Modified-Since": headers["Last-Modified"]})
    assert status == 304 and body == b"" and answer["ETag"] == headers["ETag"]
    assert delta(before, sb.counters(), "requests:GetFile") == 0


def test_an_empty_file_is_200_and_empty_and_then_its_new_bytes(front):
    """nginx asks for an empty file's first slice (Range: bytes=0-1048575), which no byte of it can
    satisfy: the file is still served, 200 and empty, from tgdav and then from nginx's cache, and
    bytes written to it later are served at once."""
    url = front + "empty.txt"
    put(url, b"")
    for _ in range(2):                    # a miss, then what nginx holds
        status, body, headers = call(url)
        assert (status, body, headers.get("Content-Length")) == (200, b"", "0"), (status, body, headers)
    status, body, headers = call(url, "HEAD")
    assert (status, body, headers.get("Content-Length")) == (200, b"", "0"), (status, headers)
    data = os.urandom(SIZE)
    put(url, data)
    assert_serves(url, data)
    put(url, b"")
    status, body, headers = call(url)
    assert (status, body, headers.get("Content-Length")) == (200, b"", "0"), (status, body, headers)
