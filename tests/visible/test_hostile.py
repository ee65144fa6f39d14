"""Promise 4 in a real browser: a file someone posted (HTML, SVG, XHTML, or a .jpg sent as text/html)
opened from the browser listing never runs script in the share's origin. The share has a password;
the browser sends the user's credentials with every request (as it does once logged in). Each
exploit tries, while the page loads (synchronous XHR), a PROPFIND, a PUT and a DELETE; the assertion
is on tgdav's side: its request counters by method (read from the password-free metrics listener)
do not move and the writable channel gains nothing. The listing keeps its strict CSP and still
looks like itself."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from tests.e2e.conftest import free_port
from tests.helpers import wait_until
from tests.visible.conftest import metric_sum, running

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
CREDENTIALS = {"Authorization": "Basic " + base64.b64encode(b"alice:a long password").decode()}
WRITES = ("PROPFIND", "PUT", "DELETE", "MKCOL", "MOVE", "COPY", "PROPPATCH", "LOCK", "other")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    metrics = free_port()
    auth = 'mode = "basic"\nusers = { alice = "a long password" }'
    with running(tmp_path_factory.mktemp("visible-hostile"), auth=auth,
                 config=f'[cache]\nlisting_refresh = 0.5\n[metrics]\nlisten = "127.0.0.1:{metrics}"\n') as live:
        live.metrics_url = f"http://127.0.0.1:{metrics}/metrics"
        for name, (mime, body) in EXPLOITS.items():
            live.publish(CHANNEL, name, body.encode(), mime=mime)
        path = urllib.parse.quote(CHANNEL) + "/"       # tgdav's channel list is read again every 0.5 s here
        wait_until(lambda: live.get(path, CREDENTIALS)[0] == 200, 30, f"{path} listed", interval=0.2)
        yield live


def attempts(live) -> dict[str, float]:
    samples = live.scrape(live.metrics_url)
    return {m: metric_sum(samples, "tgdav_http_requests_total", method=m) for m in WRITES}


@pytest.mark.parametrize("name", sorted(EXPLOITS))
def test_a_posted_page_never_runs_script_in_the_shares_origin(live, browser, name):
    page = browser.tab()
    page.call("Network.enable")
    page.call("Network.setExtraHTTPHeaders", headers=CREDENTIALS)    # logged in: every request has them
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
    shown = page.js("document.documentElement.tagName + ' ' + document.documentElement.textContent")
    assert ("hello" in shown or "a photo" in shown or shown.lower().startswith("svg")), shown   # shown, inert
    after = attempts(live)
    assert after == before, f"{name}'s script reached the server: {before} -> {after}"
    status, headers, _ = live.get(urllib.parse.quote(CHANNEL) + "/" + urllib.parse.quote(name), CREDENTIALS)
    assert status == 200 and "sandbox" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert live.get("Uploads/pwned.txt", CREDENTIALS)[0] == 404
