"""Promise 4 in a real browser: a file someone posted (HTML, SVG, XHTML, or a .jpg sent as text/html)
opened from the browser listing never runs script in the share's origin. Each exploit tries, while
the page loads (synchronous XHR), a PROPFIND, a PUT and a DELETE with the user's credentials; the
assertion is on tgdav's side: its request counters by method do not move and the writable channel
gains nothing. The listing itself keeps its strict CSP and still looks like itself."""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest

from tests.visible.cdp import Browser
from tests.visible.conftest import metric_sum, start_live, stop_live

CHANNEL = "Posted by anyone"
ATTACK = """
for (const [method, path] of [["PROPFIND", "/"], ["PUT", "/Uploads/pwned.txt"], ["DELETE", "/Welcome/"]]) {
  try { const x = new XMLHttpRequest(); x.open(method, path, false); x.setRequestHeader("Depth", "1");
        x.send(method === "PUT" ? "owned" : null); } catch (e) {}
}
"""
EXPLOITS = {
    "exploit.html": ("text/html", f"<!doctype html><title>x</title><p>hello<script>{ATTACK}</script>"),
    "exploit.svg": ("image/svg+xml", '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                    f"<script><![CDATA[{ATTACK}]]></script><rect width='10' height='10'/></svg>"),
    "exploit.xhtml": ("application/xhtml+xml", '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>x'
                      f"</title></head><body><p>hello</p><script><![CDATA[{ATTACK}]]></script></body></html>"),
    "innocent.jpg": ("text/html", f"<!doctype html><title>x</title><p>a photo<script>{ATTACK}</script>"),
}
WRITES = ("PROPFIND", "PUT", "DELETE", "MKCOL", "MOVE", "COPY", "PROPPATCH", "LOCK", "other")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    live = start_live(tmp_path_factory.mktemp("visible-hostile"), config="[cache]\nlisting_refresh = 0.5\n")
    try:
        for name, (mime, body) in EXPLOITS.items():
            live.publish(CHANNEL, name, body.encode(), mime=mime)
        wait_listed(live, urllib.parse.quote(CHANNEL) + "/")
        yield live
    finally:
        stop_live(live)


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "chromium-profile")
    try:
        yield b
    finally:
        b.close()


def wait_listed(live, path: str, timeout: float = 30) -> None:
    """Until tgdav's channel list (refreshed every half second here) has the new channel."""
    deadline = time.monotonic() + timeout
    while live.get(path)[0] != 200:
        assert time.monotonic() < deadline, f"{path} not listed within {timeout} s"
        time.sleep(0.2)


def attempts(live) -> dict[str, float]:
    samples = live.scrape()
    return {m: metric_sum(samples, "tgdav_http_requests_total", method=m) for m in WRITES}


@pytest.mark.parametrize("name", sorted(EXPLOITS))
def test_a_posted_page_never_runs_script_in_the_shares_origin(live, browser, name):
    page = browser.tab()
    listing = live.url + urllib.parse.quote(CHANNEL) + "/"
    page.goto(listing)
    assert name in page.js("[...document.querySelectorAll('a.item .name')].map(n => n.textContent)")
    # the listing's own style applies under its CSP
    assert page.js("getComputedStyle(document.querySelector('main')).maxWidth") == "960px"
    before = attempts(live)
    file_url = live.url + urllib.parse.quote(CHANNEL) + "/" + urllib.parse.quote(name)
    link = f"a.item[href$={json.dumps(urllib.parse.quote(name))}]"
    if page.js(f"document.querySelector({json.dumps(link)}) !== null"):
        page.click(link)                     # the user clicks it in the listing
        page.wait(f"location.href === {json.dumps(file_url)} && document.readyState === 'complete'",
                  "the file opened")
    else:                                    # an image: shown in the viewer, then opened on its own
        page.goto(file_url)
    assert page.js("document.readyState") == "complete"     # every synchronous XHR would have been sent
    after = attempts(live)
    assert after == before, f"{name}'s script reached the server: {before} -> {after}"
    status, headers, _ = live.get(urllib.parse.quote(CHANNEL) + "/" + urllib.parse.quote(name))
    assert status == 200 and "sandbox" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert live.get("Uploads/pwned.txt")[0] == 404
