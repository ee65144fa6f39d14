"""A person in a browser: headless Chromium opens a channel of the demo world, clicks the video, seeks,
watches it play, and sees the stream on the status page. Screenshots are kept in the test's tmp dir.

Also here, on the demo world because it has a file whose message names the wrong DC (Archive/moved.bin):
the migration counter held against the sandbox's own count."""

from __future__ import annotations

import urllib.request
import xml.etree.ElementTree as ET

import pytest

from tests.helpers import wait_until
from tests.visible.conftest import metric_sum, start_live, stop_live
from tgdav.sandbox.content import pattern

DAV = "{DAV:}"
SEEK_TO = 3.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    live = start_live(tmp_path_factory.mktemp("visible-demo"), config="[pool]\nsenders_per_dc = 2\n")
    try:
        yield live
    finally:
        stop_live(live)


def test_migrations_are_counted_as_the_sandbox_answered_them(demo):
    req = urllib.request.Request(demo.url + "Archive/moved.bin", method="PROPFIND", headers={"Depth": "0"})
    with urllib.request.urlopen(req, timeout=30) as r:
        doc_id = int(ET.fromstring(r.read()).find(f".//{DAV}getetag").text.strip('"').split("-")[0], 16)
    before, migrated = demo.scrape(), demo.total("errors:FILE_MIGRATE_X")
    status, _, body = demo.get("Archive/moved.bin", {"Range": "bytes=1000-200999"})
    assert status == 206 and body == pattern(doc_id, 1000, 200_000)
    after = demo.scrape()
    fired = demo.total("errors:FILE_MIGRATE_X") - migrated
    assert fired >= 1
    assert metric_sum(after, "tgdav_file_migrations_total") - metric_sum(before, "tgdav_file_migrations_total") \
        == fired


def test_click_the_demo_video_seek_and_watch_it_on_the_status_page(demo, browser, tmp_path):
    # Telegram's side slowed (2 connections of 12 KB/s for a 50 KB/s video) so the stream is still
    # running while the player plays; the cache is empty, so every byte comes through it
    demo.post("/link", {"latency_ms": 0, "bandwidth": 12_000})
    try:
        page = browser.tab()
        page.goto(demo.url + "Videos/")
        assert page.js("document.querySelector('a.item.video .name').textContent") == "clip.mp4"
        page.screenshot(tmp_path / "1-listing.png")

        page.click("a.item.video")
        page.wait("document.getElementById('player') !== null && location.search.includes('view=clip.mp4')",
                  "the viewer page after the click")
        assert page.js("document.getElementById('player').tagName") == "VIDEO"
        assert page.js("new URL(document.getElementById('player').src).pathname") == "/Videos/clip.mp4"
        page.wait("document.getElementById('player').readyState >= 1", "the video's metadata")
        assert abs(page.js("document.getElementById('player').duration") - 6.0) < 0.2

        status = browser.tab()
        status.goto(demo.url + ":tgdav/status")

        page.js(f"document.getElementById('player').currentTime = {SEEK_TO}")
        page.wait(f"!document.getElementById('player').seeking && "
                  f"document.getElementById('player').currentTime >= {SEEK_TO}", "the seek")
        page.js("document.getElementById('player').play().then(() => true)", gesture=True)

        # while it plays: the position moves past the seek point and the status page shows the stream
        seen: dict = {}

        def playing_and_listed() -> bool:
            state = page.js("(() => { const v = document.getElementById('player');"
                            " return {t: v.currentTime, paused: v.paused, error: v.error && v.error.code}; })()")
            assert state["error"] is None, f"the player failed: MediaError {state['error']}"
            rows = status.js("[...document.querySelectorAll('#streams tr.stream')].map(r => r.textContent)")
            playing = not state["paused"] and state["t"] > SEEK_TO + 0.2
            if playing and "playing" not in seen:
                seen["playing"] = state["t"]
                page.screenshot(tmp_path / "2-playing.png")
            if playing and any("/Videos/clip.mp4" in row for row in rows):
                seen["stream"] = rows
                status.screenshot(tmp_path / "3-status-with-stream.png")
            return "stream" in seen and "playing" in seen
        wait_until(playing_and_listed, 90, lambda: f"stream on status page: {seen.get('stream')}, "
                                                   f"playing: {seen.get('playing')}", interval=0.1)
        seen_stream, seen_playing = seen["stream"], seen["playing"]
        later = page.wait(f"document.getElementById('player').currentTime > {seen_playing + 0.3}"
                          " && document.getElementById('player').currentTime", "playing on")
        assert later > SEEK_TO + 0.5
        assert any("/Videos/clip.mp4" in row and "298684" in row for row in seen_stream), seen_stream
        assert status.js("document.getElementById('stream-count') !== null")
    finally:
        demo.post("/link", {"latency_ms": 0, "bandwidth": 0})
    assert (tmp_path / "3-status-with-stream.png").stat().st_size > 1000


def test_listing_is_readable_on_a_phone(demo, browser, tmp_path):
    page = browser.tab()
    page.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
    page.goto(demo.url + "Pictures/")
    # nothing wider than the screen, every name on it
    assert page.js("document.documentElement.scrollWidth") <= 390
    names = page.js("[...document.querySelectorAll('a.item .name')].map(n => n.textContent)")
    assert "testcard.png" in names and "mandelbrot.jpg" in names
    page.click("a.item.image[href*='testcard.png']")
    page.wait("document.getElementById('player') && document.getElementById('player').complete"
              " && document.getElementById('player').naturalWidth", "the image shown")
    assert page.js("document.getElementById('player').naturalWidth") == 256
    page.screenshot(tmp_path / "phone-image.png")
