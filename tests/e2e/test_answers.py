"""Every body is tgdav's own (issue 15): PUT, MKCOL, COPY and MOVE answers, writes refused in a
read-only channel, a MOVE that fails upstream and a 207 multistatus all say in words what happened,
in one style, without a software name, a version, a timestamp or an exception's repr."""

from __future__ import annotations

import re
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from tests.helpers import wait_until
from tests.visible.conftest import running

LEAKS = ("WsgiDAV", "wsgidav", "4.4", "Source exception", "Error condition", "Traceback", "Forbidden(",
         "DAVError", "<html", "<!DOCTYPE")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with running(tmp_path_factory.mktemp("answers")) as live:
        yield live


def curl(live, method: str, path: str, *args: str) -> tuple[int, dict, str]:
    out = subprocess.run(["curl", "-sS", "-i", "-X", method, *args, live.url + path], capture_output=True,
                         timeout=60, check=True).stdout.decode("utf-8", "replace")
    head, _, body = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def own(status: int, headers: dict, body: str) -> None:
    assert headers.get("server") == "tgdav"
    assert not any(leak in body for leak in LEAKS), body
    if body and status != 207:
        assert headers["content-type"] == "text/plain; charset=utf-8" and body.endswith("\n"), (headers, body)
        assert body.strip() and "\n" not in body.strip(), body


def test_writes_are_answered_in_tgdavs_words(live):
    dest = lambda p: ("-H", f"Destination: {live.url}{p}")   # noqa: E731
    steps = [
        ("PUT", "Uploads/a.txt", ("--data-binary", "hello"), 201, "Created"),
        ("MKCOL", "Uploads/dir", (), 201, "Created"),
        ("COPY", "Uploads/a.txt", dest("Uploads/b.txt"), 201, "Created"),
        ("MOVE", "Uploads/b.txt", dest("Uploads/dir/c.txt"), 201, "Created"),
        ("DELETE", "Welcome/", (), 403, "channels are never deleted"),
        ("MOVE", "Welcome/", dest("Uploads/x"), 403, "channels are never deleted, moved"),
        ("COPY", "Uploads/a.txt", dest("Welcome/a.txt"), 403, "read-only"),
        ("MOVE", "Uploads/a.txt", dest("Welcome/a.txt"), 403, "read-only"),
        ("COPY", "Uploads/dir", dest("Welcome/dir"), 403, "read-only"),
        ("PUT", "Welcome/a.txt", ("--data-binary", "x"), 403, "read-only"),
        # a name the listing would show otherwise (U+FFFF, U+202E): refused, never acknowledged
        ("PUT", "Uploads/vid%E2%80%AE4pm.html", ("--data-binary", "x"), 403, "cannot be stored"),
        ("MKCOL", "Uploads/d%EF%BF%BF", (), 403, "cannot be stored"),
    ]
    for method, path, args, status, words in steps:
        got = curl(live, method, path, *args)
        assert got[0] == status, (method, path, got)
        assert words in got[2], (method, path, got)
        own(*got)


def test_a_multistatus_describes_each_failure_in_words(live):
    body = ('<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>'
            "<D:getetag>x</D:getetag></D:prop></D:set></D:propertyupdate>")
    assert curl(live, "PUT", "Uploads/p.txt", "--data-binary", "p")[0] == 201
    status, headers, text = curl(live, "PROPPATCH", "Uploads/p.txt", "-H", "Content-Type: application/xml",
                                 "--data-binary", body)
    assert status == 207
    own(status, headers, text)
    doc = ET.fromstring(text.encode())
    failed = [r for r in doc.iter("{DAV:}propstat") if " 200 " not in r.findtext("{DAV:}status")]
    assert failed
    descriptions = [d.text or "" for d in doc.iter("{DAV:}responsedescription")]
    assert descriptions and all(d.strip() for d in descriptions)
    for d in descriptions:      # words, once each; no "403 Forbidden: Access denied ..." boilerplate
        lines = d.splitlines()
        assert len(set(lines)) == len(lines) and not any(re.match(r"\d{3} ", line) for line in lines), d


def test_an_upload_the_client_abandons_is_logged_as_one(live):
    import socket
    host, port = live.url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"PUT /Uploads/abandoned.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
        time.sleep(0.5)
    log = live.root / "logs" / "serve.err"
    wait_until(lambda: "/Uploads/abandoned.bin" in log.read_text(errors="replace"), 30,
               "an access line for the abandoned upload", interval=0.1)
    line = next(x for x in log.read_text(errors="replace").splitlines() if "/Uploads/abandoned.bin" in x)
    assert "client went away during the upload after 1000 of 100000 bytes: nothing was stored" in line, line
    assert "seek or stop" not in line
    assert live.get("Uploads/abandoned.bin")[0] == 404


def test_a_move_that_fails_upstream_says_so(live):
    assert curl(live, "PUT", "Uploads/m.txt", "--data-binary", "m")[0] == 201
    live.post("/faults", {"flood_wait": [{"dc": 0, "method": "EditMessage", "seconds": 30, "count": 1}]})
    try:
        status, headers, body = curl(live, "MOVE", "Uploads/m.txt", "-H", f"Destination: {live.url}Uploads/n.txt")
    finally:
        live.post("/faults", {"clear": True})
    assert status == 503 and headers.get("retry-after", "").isdigit(), (status, headers, body)
    own(status, headers, body)
