"""The browser face, the reserved /:tgdav/ pages and the access log, on a real cheroot server over the
fakes, driven by curl and raw sockets."""

from __future__ import annotations

import html
import re
import socket
import xml.etree.ElementTree as ET

from prometheus_client.parser import text_string_to_metric_families

from tests.dav.fakes import FakeCatalog, FakeReader, Plan, make_entry, sample_tree
from tests.helpers import wait_until
from tgdav.errors import RetryLater, UpstreamUnavailable
from tgdav.metrics import Metrics
from tgdav.sandbox.content import pattern

DAV = "{DAV:}"


def scrape(curl, url: str, *args: str) -> dict[tuple[str, frozenset], float]:
    r = curl(url + "/:tgdav/metrics", *args)
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain; version=")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.body.decode()) for s in family.samples}


def access_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tgdav.access"]


def names_in(page: bytes) -> list[str]:
    return [html.unescape(n) for n in re.findall(r'<span class="name">(.*?)</span>', page.decode())]


def test_folder_listing_for_a_person(dav, curl):
    r = curl(dav.url + "/Films/", "-H", "Accept: text/html")
    assert r.status == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    page = r.body.decode()
    assert 'name="viewport"' in page and "<script src" not in page and "<link" not in page   # no assets
    # newest first by default; every file with its size, date and kind
    films = sample_tree()["Films"]
    assert names_in(r.body) == [f.name for f in sorted(films, key=lambda f: -f.modified)]
    assert "5.0 MiB · 2024-05-01 21:00 · video" in page
    assert "0 bytes" in page and "1000 bytes" in page
    by_name = curl(dav.url + "/Films/?sort=name&order=asc")
    assert names_in(by_name.body) == sorted((f.name for f in films), key=str.casefold)
    by_size = curl(dav.url + "/Films/?sort=size&order=desc")
    assert names_in(by_size.body) == [f.name for f in sorted(films, key=lambda f: -f.size)]


def test_root_lists_channels_and_names_are_escaped(serve, curl):
    tree = sample_tree()
    tree['<b>"tricky" & co'] = [make_entry(41, "<img src=x onerror=alert(1)>.mp4", 10, "video/mp4")]
    dav = serve(FakeCatalog(tree))
    root = curl(dav.url + "/")
    assert sorted(names_in(root.body)) == sorted(tree)
    assert b"<b>" not in root.body and b"&lt;b&gt;" in root.body
    folder = curl(dav.url + "/" + "%3Cb%3E%22tricky%22%20%26%20co/")
    assert folder.status == 200 and b"<img src=x" not in folder.body


def test_video_opens_in_a_player_that_reads_the_file_by_range(dav, curl):
    listing = curl(dav.url + "/Films/").body.decode()
    link = re.search(r'<a class="item video" href="([^"]+)"', listing).group(1)
    viewer = curl(dav.url + "/Films/" + html.unescape(link))
    src = re.search(r'<video id="player"[^>]* src="([^"]+)"', viewer.body.decode()).group(1)
    assert src == "/Films/clip%20%231%20100%25%20what%3F.mp4"
    part = curl(dav.url + html.unescape(src), "-r", "1000-1999")
    assert (part.status, part.body) == (206, pattern(11, 1000, 1000))
    audio = curl(dav.url + "/M%C3%BAsica%20%C3%BCn%C3%AF/?view=canci%C3%B3n%20%E2%80%93%20%C3%B1.mp3")
    assert re.search(r'<audio id="player"[^>]* src="/M%C3%BAsica%20%C3%BCn%C3%AF/', audio.body.decode())
    # other files are plain links (download), never a viewer
    assert re.search(r'<a class="item file" href="/Films/empty.bin"', listing)


def test_reserved_prefix_cannot_be_shadowed_by_a_channel(serve, curl):
    tree = sample_tree()
    tree[":tgdav"] = [make_entry(51, "status", 10)]
    tree[":TGDAV"] = [make_entry(52, "metrics", 10)]
    dav = serve(FakeCatalog(tree))
    status = curl(dav.url + "/:tgdav/status")
    assert status.status == 200 and b"<h1>tgdav status</h1>" in status.body
    assert curl(dav.url + "/:TGDAV/metrics").body.startswith(b"# HELP")
    assert curl(dav.url + "/:tgdav/nothing").status == 404
    assert b"<h1>tgdav status</h1>" in curl(dav.url + "/:tgdav/", "-L").body
    req = curl(dav.url + "/", "-X", "PROPFIND", "-H", "Depth: 1")
    shown = {r.find(f".//{DAV}displayname").text for r in ET.fromstring(req.body).iter(DAV + "response")
             if r.find(f".//{DAV}displayname") is not None}
    assert ":tgdav" not in shown and ":TGDAV" not in shown and "Films" in shown
    assert ":tgdav" not in names_in(curl(dav.url + "/").body)
    assert curl(dav.url + "/:tgdav/status", "-X", "PROPFIND", "-H", "Depth: 0").status == 405


def test_status_and_metrics_need_the_share_credentials(serve, curl):
    dav = serve(users={"alice": "pw"}, auth="basic")
    for path in ("/:tgdav/status", "/:tgdav/metrics", "/:tgdav/status.json", "/Films/"):
        assert curl(dav.url + path).status == 401
        assert curl(dav.url + path, "-u", "alice:pw").status == 200


def test_http_counters_move_with_real_requests(serve, curl):
    metrics = Metrics()
    dav = serve(metrics=metrics)
    before = scrape(curl, dav.url)
    ok = curl(dav.url + "/Films/small.txt", "-r", "10-109")
    assert (ok.status, ok.body) == (206, pattern(14, 10, 100))
    assert curl(dav.url + "/Films/nothing.bin").status == 404
    wait_until(lambda: metrics.value("tgdav_http_requests_total", method="GET", status="404") == 1
               and metrics.value("tgdav_http_requests_total", method="GET", status="200") == 1, what="the 404")
    after = scrape(curl, dav.url)

    def delta(name, **labels):
        key = (name, frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("tgdav_http_requests_total", method="GET", status="206") == 1
    assert delta("tgdav_http_requests_total", method="GET", status="404") == 1
    assert delta("tgdav_http_requests_total", method="GET", status="200") == 1     # the first scrape
    assert delta("tgdav_http_first_byte_seconds_count", method="GET") == 3
    assert delta("tgdav_http_sent_bytes_total", method="GET") > 100     # the range and the first scrape
    assert delta("tgdav_http_client_closed_total", method="GET") == 0


def test_a_client_leaving_early_is_logged_plainly(serve, caplog):
    metrics = Metrics()
    dav = serve(metrics=metrics)
    with caplog.at_level("INFO", logger="tgdav.access"):
        with socket.create_connection(("127.0.0.1", dav.port)) as s:
            s.sendall(b"GET /Big/huge%20movie.mkv HTTP/1.1\r\nHost: x\r\nRange: bytes=1000000-\r\n"
                      b"User-Agent: player\r\n\r\n")
            got = b""
            while len(got) < 300_000:
                got += s.recv(65536)
            s.shutdown(socket.SHUT_RDWR)
        wait_until(lambda: metrics.value("tgdav_http_client_closed_total", method="GET") >= 1,
                   what="noticing that the client left")
    assert got.startswith(b"HTTP/1.1 206 ")
    line = next(r.getMessage() for r in caplog.records if r.name == "tgdav.access"
                and "huge%20movie.mkv" in r.getMessage())
    assert line.startswith('127.0.0.1 - "GET /Big/huge%20movie.mkv" 206 range="bytes=1000000-" sent=')
    assert "client closed after" in line and "(seek or stop)" in line
    assert "aborted" not in line and caplog.records[-1].levelname == "INFO"
    assert metrics.value("tgdav_active_streams") == 0 and metrics.activity.streams() == []


def test_access_log_keeps_the_path_as_sent_and_the_user(serve, curl, caplog):
    dav = serve(users={"alice": "pw"}, auth="basic")
    with caplog.at_level("INFO", logger="tgdav.access"):
        curl(dav.url + "/M%C3%BAsica%20%C3%BCn%C3%AF/?sort=name", "-u", "alice:pw")
        curl(dav.url + "/Films/small.txt", "-u", "alice:pw", "-r", "0-9")
        wait_until(lambda: len(access_lines(caplog)) >= 2, what="two access log lines")
    lines = access_lines(caplog)
    assert any(line.startswith('127.0.0.1 alice "GET /M%C3%BAsica%20%C3%BCn%C3%AF/?sort=name" 200 range=- ')
               for line in lines), lines
    assert any(line.startswith('127.0.0.1 alice "GET /Films/small.txt" 206 range="bytes=0-9" sent=10 ttfb=')
               for line in lines), lines


def test_status_shows_a_stream_while_it_runs(serve, curl):
    metrics = Metrics()
    dav = serve(metrics=metrics)
    with socket.create_connection(("127.0.0.1", dav.port)) as s:
        s.sendall(b"GET /Big/huge%20movie.mkv HTTP/1.1\r\nHost: x\r\nRange: bytes=5000-\r\n\r\n")
        s.recv(65536)
        wait_until(metrics.activity.streams, what="a stream in the activity")
        page = curl(dav.url + "/:tgdav/status?fragment=1").body.decode()
        data = curl(dav.url + "/:tgdav/status.json").body.decode()
    assert '<tr class="stream"><td>/Big/huge movie.mkv</td><td>bytes 5000-3221237816 of 3221237817</td>' in page
    assert '"path": "/Big/huge movie.mkv"' in data


def test_errors_reach_the_status_page_in_words(serve, curl):
    metrics = Metrics()
    reader = FakeReader(plans={14: Plan(at_open=RetryLater(30, "Telegram DC 2 asked tgdav to wait 30 s"))})
    dav = serve(reader=reader, metrics=metrics)
    r = curl(dav.url + "/Films/small.txt")
    assert (r.status, r.headers["retry-after"]) == (503, "30")
    wait_until(lambda: metrics.activity.errors(), what="the 503 on the status page")
    page = curl(dav.url + "/:tgdav/status").body.decode()
    assert "GET /Films/small.txt: 503 Telegram DC 2 asked tgdav to wait 30 s" in page
    assert '"text": "GET /Films/small.txt: 503 Telegram DC 2 asked tgdav to wait 30 s"' in \
        curl(dav.url + "/:tgdav/status.json").body.decode()


def test_a_body_broken_by_telegram_is_a_warning_not_a_client_leaving(serve, caplog):
    metrics = Metrics()
    reader = FakeReader(plans={11: Plan(after_bytes=200_000, after=UpstreamUnavailable("DC 4 went away"))})
    dav = serve(reader=reader, metrics=metrics)
    with caplog.at_level("INFO", logger="tgdav.access"):
        with socket.create_connection(("127.0.0.1", dav.port)) as s:
            s.sendall(b"GET /Films/clip%20%231%20100%25%20what%3F.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        wait_until(lambda: metrics.activity.errors(), what="the broken body on the status page")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == pattern(11, 0, 200_000)
    record = next(r for r in caplog.records if r.name == "tgdav.access" and "clip" in r.getMessage())
    assert record.levelname == "WARNING"
    assert record.getMessage().endswith(f"failed after 200000 of {5 * 2**20 + 17} bytes: DC 4 went away")
    assert "DC 4 went away" in metrics.activity.errors()[0][1]
    assert metrics.value("tgdav_http_client_closed_total", method="GET") == 0
