"""Promise 4, fuzzed: any name or title Telegram can hold (all of Unicode: noncharacters, lone
surrogates, controls, bidi overrides) yields a valid multistatus and valid HTML. Hypothesis posts
random file names into a new channel with a random title in a real sandbox; tgdav serve lists it;
every PROPFIND is parsed by a strict XML parser (expat), every page (root, channel, viewer, status)
by html5lib in strict mode, and no bidi control reaches a listing."""

from __future__ import annotations

import html
import itertools
import json
import re
import subprocess
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import html5lib
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from tests.helpers import wait_until
from tests.visible.conftest import running

DAV = "{DAV:}"
BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), min_size=1, max_size=24)
serial = itertools.count(1)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with running(tmp_path_factory.mktemp("hostile-names"), config="[cache]\nlisting_refresh = 0.3\n") as live:
        yield live


def request(live, method: str, path: str, depth: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(live.url + path.lstrip("/"), method=method,
                                 headers={"Depth": depth} if depth else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def propfind(live, path: str) -> ET.Element:
    status, body = request(live, "PROPFIND", path, "1")
    assert status == 207, (path, status, body[:300])
    return ET.fromstring(body)          # expat: a character XML forbids fails here


def page(live, path: str) -> str:
    status, body = request(live, "GET", path)
    assert status == 200, (path, status)
    html5lib.HTMLParser(strict=True).parse(body)   # raises ParseError on any parse error
    text = body.decode("utf-8")
    assert not BIDI & set(text), path
    return text


def responses(doc: ET.Element) -> list[tuple[str, str]]:
    return [(urllib.parse.unquote(r.findtext(f"{DAV}href")), r.findtext(f".//{DAV}displayname") or "")
            for r in doc.iter(f"{DAV}response")]


def post_channel(live, title: str, names: list[str]) -> tuple[str, str]:
    """A new channel titled `title` holding a file of each name; its (href, displayname) once
    tgdav's channel list (refreshed in the background) has it."""
    before = {href for href, _ in responses(propfind(live, "/"))}
    for name in names:
        live.publish(title, name, b"some bytes", mime="video/mp4")
    new = wait_until(lambda: [(href, shown) for href, shown in responses(propfind(live, "/"))
                              if href not in before], 30, "the new channel listed", interval=0.2)
    return new[0]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(title=TEXT, names=st.lists(TEXT, min_size=1, max_size=6))
@example(title="T\uffff\ufffe\u202e", names=["a\uffffb.txt", "vid\u202e4pm.html", "\ufffe", "x\udcff\ud800.bin",
                                               "\x1b[31m\r\n.mp4", "\ufdd0\U0010ffff\x85.jpg"])
def test_any_name_telegram_can_hold_lists_as_valid_xml_and_html(live, title, names):
    href, shown = post_channel(live, f"fuzz {next(serial)} {title}", names)
    assert not BIDI & set(shown + href)
    channel = propfind(live, urllib.parse.quote(href))
    files = [(h, s) for h, s in responses(channel) if h != href]
    assert len(files) == len(names)
    assert all(not BIDI & set(h + s) and s == h.rsplit("/", 1)[-1] for h, s in files)
    page(live, "/")
    listing = page(live, urllib.parse.quote(href))
    first = files[0][1]
    page(live, urllib.parse.quote(href) + "?view=" + urllib.parse.quote(first, safe=""))
    page(live, "/:tgdav/status")
    assert all(f'<span class="name">{html.escape(s)}</span>' in listing for _, s in files)   # same names


def test_rclone_walks_a_share_with_such_names(live):
    """rclone (which failed with "illegal character code U+FFFF") walks the whole share."""
    post_channel(live, "rclone \uffff\ufffe", ["a\uffff.txt", "b\ufffe\u202e.bin"])
    out = subprocess.run(["rclone", "lsjson", "-R", "--max-depth", "2", ":webdav:", "--webdav-url", live.url,
                          "--webdav-vendor", "other", "--config", str(live.root / "rclone.conf")],
                         capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    listed = json.loads(out.stdout)
    assert {"rclone \ufffd\ufffd/a\ufffd.txt", "rclone \ufffd\ufffd/b\ufffd\ufffd.bin"} <= {i["Path"] for i in listed}


def test_and_the_log_stayed_one_line_per_record(live):
    """After the names above were listed and served: every line of serve's log starts a record
    (no name broke a line), and no terminal control from a name reached it."""
    for line in (live.root / "logs" / "serve.err").read_bytes().split(b"\n"):
        if line:
            assert re.match(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", line), line
            assert b"\r" not in line and b"\x1b" not in line and "\u202e".encode() not in line, line
