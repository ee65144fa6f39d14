"""Metrics and the reserved pages on a real `tgdav serve` over a seeded sandbox: /:tgdav/metrics is
scraped with prometheus_client's own parser and its counters are held against what really happened
(the requests we made, and the sandbox's own counters for what reached Telegram).

The read-path counters (getFile bytes, floods, exports, cache; migrations are in test_browser.py, on
the demo world) are reported by the pool, fetcher and reader through tgdav.metrics.Metrics."""

from __future__ import annotations

import hashlib
import random
import re
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from tests.e2e.conftest import free_port
from tests.helpers import wait_until
from tests.visible.conftest import metric_sum, start_live, stop_live

MiB = 1 << 20
DAV = "{DAV:}"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("visible-live")
    seed = root / "seed"
    rnd = random.Random(10)
    files = {}
    for channel, name, size in ((":tgdav", "status", 100), ("status", "metrics.txt", 200),
                                ("Media", "first.bin", 3 * MiB + 5), ("Media", "second.bin", 2 * MiB + 7),
                                ("Media", "third.bin", 2 * MiB + 11)):
        (seed / channel).mkdir(parents=True, exist_ok=True)
        data = rnd.randbytes(size)
        (seed / channel / name).write_bytes(data)
        files[f"{channel}/{name}"] = data
    metrics_port = free_port()
    live = start_live(root / "run", seed=seed, config=f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
    live.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    live.files = files
    try:
        yield live
    finally:
        stop_live(live)


def read(live, path: str, start: int, length: int) -> bytes:
    status, headers, body = live.get(urllib.parse.quote(path), {"Range": f"bytes={start}-{start + length - 1}"})
    assert status == 206, (status, body[:200])
    return body


def check(live, path: str, start: int, length: int) -> None:
    body = read(live, path, start, length)
    want = live.files[path][start:start + length]
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(want).hexdigest()


def test_reserved_prefix_wins_over_channel_names(live):
    status, headers, body = live.get(":tgdav/status")
    assert status == 200 and b"<h1>tgdav status</h1>" in body
    # the channel titled ":tgdav" is a folder of its own, under the name the catalog gives it
    req = urllib.request.Request(live.url, method="PROPFIND", headers={"Depth": "1"})
    with urllib.request.urlopen(req, timeout=30) as r:
        shown = {e.text for e in ET.fromstring(r.read()).iter(DAV + "displayname")}
    assert {"_tgdav", "status", "Media"} <= shown and ":tgdav" not in shown
    assert live.get("_tgdav/status")[2] == live.files[":tgdav/status"]
    listing = live.get("status/")[2].decode()
    assert '<span class="name">metrics.txt</span>' in listing
    assert live.get(":tgdav/metrics")[2].startswith(b"# HELP")


def test_http_metrics_count_real_requests(live):
    before = live.scrape()
    check(live, "Media/first.bin", 1000, 4096)
    assert live.get("Media/nothing-here.bin")[0] == 404
    # a request is counted when the server has finished it, which may be just after the client
    # has its answer: scrape until both are in (or the wait fails), then check the exact counts
    def scraped_with_both():
        scrape = live.scrape()
        counted = all(metric_sum(scrape, "tgdav_http_requests_total", method="GET", status=status)
                      > metric_sum(before, "tgdav_http_requests_total", method="GET", status=status)
                      for status in ("206", "404"))
        return scrape if counted else None
    after = wait_until(scraped_with_both, 30, "the 206 and the 404 counted in the metrics")

    def delta(name, **labels):
        return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)

    assert delta("tgdav_http_requests_total", method="GET", status="206") == 1
    assert delta("tgdav_http_requests_total", method="GET", status="404") == 1
    assert delta("tgdav_http_sent_bytes_total", method="GET") >= 4096
    assert delta("tgdav_http_first_byte_seconds_count", method="GET") >= 2
    # the separate listener serves the same registry, without the share in front
    direct = live.scrape(live.metrics_url)
    assert metric_sum(direct, "tgdav_http_requests_total", status="206") >= 1
    assert metric_sum(direct, "tgdav_cache_limit_bytes") == 2 * 2**30   # the store, read at scrape


def test_status_json_has_the_cache_and_no_streams_at_rest(live):
    status, headers, body = live.get(":tgdav/status.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    data = __import__("json").loads(body)
    assert data["streams"] == [] and data["cache"]["limit"] == 2 * 2**30


def test_getfile_bytes_and_exports_match_the_sandbox(live):
    before, sandbox_before = live.scrape(), live.counters()
    check(live, "Media/second.bin", 12345, MiB + 3)          # never read before: fetched from its DC
    after, sandbox_after = live.scrape(), live.counters()
    for dc in sandbox_after:
        if not isinstance(sandbox_after[dc], dict):
            continue
        got = metric_sum(after, "tgdav_getfile_bytes_total", dc=dc) \
            - metric_sum(before, "tgdav_getfile_bytes_total", dc=dc)
        sent = sandbox_after[dc].get("getfile_bytes", 0) - sandbox_before.get(dc, {}).get("getfile_bytes", 0)
        assert got == sent, f"DC {dc}: metrics say {got} bytes, the sandbox sent {sent}"
    assert metric_sum(after, "tgdav_getfile_bytes_total") - metric_sum(before, "tgdav_getfile_bytes_total") \
        >= MiB + 3
    exports = sum(c.get("exports", 0) for c in sandbox_after.values() if isinstance(c, dict)) \
        - sum(c.get("exports", 0) for c in sandbox_before.values() if isinstance(c, dict))
    assert metric_sum(after, "tgdav_exports_total") - metric_sum(before, "tgdav_exports_total") == exports
    assert metric_sum(after, "tgdav_getfile_seconds_count") > metric_sum(before, "tgdav_getfile_seconds_count")


def test_cache_hits_are_counted_by_bytes(live):
    check(live, "Media/third.bin", 0, 300_000)
    before, fetched = live.scrape(), live.total("getfile_bytes")
    check(live, "Media/third.bin", 0, 300_000)               # the same bytes again: all from the cache
    after = live.scrape()
    assert live.total("getfile_bytes") == fetched
    hit = metric_sum(after, "tgdav_cache_read_bytes_total", result="hit") \
        - metric_sum(before, "tgdav_cache_read_bytes_total", result="hit")
    miss = metric_sum(after, "tgdav_cache_read_bytes_total", result="miss") \
        - metric_sum(before, "tgdav_cache_read_bytes_total", result="miss")
    assert hit >= 300_000 and miss == 0


def test_injected_flood_waits_are_counted_with_their_seconds(live):
    before, floods = live.scrape(), live.total("errors:FLOOD_WAIT_X")
    live.post("/faults", {"flood_wait": [{"dc": dc, "method": "GetFile", "seconds": 1, "count": 1}
                                         for dc in range(1, 6)]})
    try:
        check(live, "Media/first.bin", 2 * MiB + 1, 500_000)
    finally:
        live.post("/faults", {"clear": True})
    after = live.scrape()
    fired = live.total("errors:FLOOD_WAIT_X") - floods
    assert fired >= 1
    assert metric_sum(after, "tgdav_flood_wait_seconds_count", scope="sender") \
        - metric_sum(before, "tgdav_flood_wait_seconds_count", scope="sender") == fired
    assert metric_sum(after, "tgdav_flood_wait_seconds_sum") - metric_sum(before, "tgdav_flood_wait_seconds_sum") \
        == fired * 1
    status = live.get(":tgdav/status")[2].decode()
    assert re.search(r"FLOOD_WAIT 1 s — Telegram asked tgdav to slow down", status)


def test_status_page_shows_the_data_centers_in_use(live):
    check(live, "Media/first.bin", 0, 70_000)
    page = live.get(":tgdav/status")[2].decode()
    assert "No connections to Telegram's data centers yet" not in page
    samples = live.scrape()
    assert metric_sum(samples, "tgdav_senders") >= 1
