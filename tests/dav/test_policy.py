"""Read-only methods, OPTIONS, hostile paths, and errors mapped to HTTP (before and after the body)."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import quote

import pytest

from tests.dav.fakes import FakeCatalog, FakeReader, Plan
from tests.helpers import wait_until
from tgdav.errors import NotFound, RetryLater, UpstreamUnavailable
from tgdav.sandbox.content import pattern

CLIP = "/Films/" + quote("clip #1 100% what?.mp4")
CLIP_SIZE = 5 * 2**20 + 17
READ_ONLY_ALLOW = {"OPTIONS", "GET", "HEAD", "PROPFIND"}


def allow_set(value: str) -> set[str]:
    return {m.strip() for m in value.split(",")}


def still_up(dav, curl) -> None:
    r = curl(dav.url + "/Films/small.txt", "-r", "0-3")
    assert (r.status, r.body) == (206, pattern(14, 0, 4))


@pytest.mark.parametrize("method", ["PUT", "DELETE", "MKCOL", "MOVE", "COPY", "PROPPATCH", "LOCK", "UNLOCK",
                                    "POST", "TRACE", "BREW"])
def test_writes_are_405_with_allow(dav, curl, method):
    r = curl(dav.url + "/Films/small.txt", "-X", method, "--data-binary", "x", "-H", "Destination: /Films/y")
    assert r.status == 405
    assert allow_set(r.headers["allow"]) == READ_ONLY_ALLOW
    assert sum(dav.catalog.calls.values()) == 0 and dav.reader.opens == []


@pytest.mark.parametrize("path", ["/", "/Films/", "/Films/small.txt"])
def test_options_announces_dav_and_read_methods_only(dav, curl, path):
    r = curl(dav.url + path, "-X", "OPTIONS")
    assert r.status == 200
    assert r.headers["dav"] == "1"
    assert allow_set(r.headers["allow"]) == READ_ONLY_ALLOW


@pytest.mark.parametrize("path, status", [
    ("/../etc/passwd", 400), ("/Films/../../etc/passwd", 400), ("/Films/%2e%2e/%2e%2e/x", 400),
    ("/Films/small.txt%00.jpg", 400), ("/Films/%0d%0aSet-Cookie:x", 400), ("/%ff%fe", 400),
    ("/Films/" + "a" * 100_000, 414), ("/" + "b" * 5000 + "/" + "c" * 5000, 404),
    ("/Films%2fsmall.txt", 404), ("/Films/small.txt/../small.txt", 400), ("/Films/./../small.txt", 400),
])
def test_hostile_paths_get_a_clear_error_and_the_server_lives(dav, curl, path, status):
    for args in ([], ["-X", "PROPFIND", "-H", "Depth: 1"]):
        r = curl(dav.url + path, *args)
        assert r.status == status, (path, args)
        assert b"Traceback" not in r.body
    assert dav.reader.opens == []
    still_up(dav, curl)


def test_a_dot_segment_is_dropped_as_rfc_3986_says(dav, curl):
    """rclone sends "./" before a name holding ':' (so that it is not read as a URL scheme)."""
    plain, dotted = curl(dav.url + "/Films/small.txt"), curl(dav.url + "/Films/./small.txt")
    assert (dotted.status, dotted.body) == (plain.status, plain.body) == (200, plain.body)


def test_an_oversized_propfind_body_is_refused(dav, curl, tmp_path):
    body = tmp_path / "big.xml"
    body.write_bytes(b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/>' + b" " * 2**21 + b"</D:propfind>")
    r = curl(dav.url + "/Films/", "-X", "PROPFIND", "-H", "Depth: 1", "--data-binary", f"@{body}")
    assert r.status == 413
    still_up(dav, curl)


def test_garbage_on_the_socket_does_not_kill_the_server(dav, curl):
    for junk in (b"\x00\xff garbage\r\n\r\n", b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n",
                 b"GET /Films/small.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=\xff\xfe-\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", dav.port), timeout=30) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
    still_up(dav, curl)


@pytest.mark.parametrize("error, status, retry_after, text", [
    (RetryLater(7), 503, "7", b"7 s"),
    (RetryLater(0.2), 503, "1", b"wait"),
    (UpstreamUnavailable("DC 4 keeps failing"), 503, "15", b"DC 4 keeps failing"),   # an outage too
    (NotFound("the message was deleted"), 404, None, b"deleted"),
])
def test_errors_at_open_map_to_http(serve, curl, error, status, retry_after, text):
    dav = serve(reader=FakeReader(plans={11: Plan(at_open=error)}))
    r = curl(dav.url + CLIP, "-r", "100-")
    assert r.status == status
    assert r.headers.get("retry-after") == retry_after
    assert r.headers["content-type"].startswith("text/plain")
    assert text in r.body
    still_up(dav, curl)


def test_a_failure_at_the_first_read_is_still_a_clean_503(serve, curl):
    dav = serve(reader=FakeReader(plans={11: Plan(after_bytes=0, after=RetryLater(3))}))
    r = curl(dav.url + CLIP)
    assert (r.status, r.headers["retry-after"]) == (503, "3")
    assert wait_until(lambda: dav.reader.closed == 1)


def test_a_bug_is_a_generic_500_without_traceback(serve, curl, caplog):
    dav = serve(reader=FakeReader(plans={11: Plan(at_open=RuntimeError("secret internals"))}))
    r = curl(dav.url + CLIP)
    assert r.status == 500
    assert b"secret" not in r.body and b"Traceback" not in r.body and b"RuntimeError" not in r.body
    assert any(rec.exc_info and rec.exc_info[0] is RuntimeError for rec in caplog.records)
    still_up(dav, curl)


def test_failure_mid_body_closes_the_connection_and_the_server_lives(serve, curl):
    cut = 300_000
    dav = serve(reader=FakeReader(plans={11: Plan(after_bytes=cut, after=UpstreamUnavailable("gone"))}),
                block_size=64 * 1024)
    conn = http.client.HTTPConnection("127.0.0.1", dav.port, timeout=30)
    conn.request("GET", CLIP)
    r = conn.getresponse()
    assert (r.status, r.getheader("Content-Length")) == (200, str(CLIP_SIZE))
    with pytest.raises(http.client.IncompleteRead) as short:
        r.read()
    assert short.value.partial == pattern(11, 0, cut)
    conn.close()
    assert wait_until(lambda: dav.reader.closed == 1)
    still_up(dav, curl)


def test_catalog_failures_during_listing_map_to_503(serve, curl):
    class Flaky(FakeCatalog):
        def entries(self, folder):
            raise UpstreamUnavailable("channel history unavailable")

        def folders(self):
            raise RetryLater(42)

    dav = serve(Flaky())
    r = curl(dav.url + "/Films/", "-X", "PROPFIND", "-H", "Depth: 1")
    assert (r.status, r.headers["content-type"]) == (503, "text/plain; charset=utf-8")
    assert b"channel history unavailable" in r.body
    r = curl(dav.url + "/", "-X", "PROPFIND", "-H", "Depth: 1")
    assert (r.status, r.headers["retry-after"]) == (503, "42")


def test_a_client_that_goes_away_closes_the_stream(dav):
    with socket.create_connection(("127.0.0.1", dav.port), timeout=30) as sock:
        sock.sendall(b"GET /Big/huge%20movie.mkv HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while len(got) < 1_000_000:
            got += sock.recv(65536)
    assert wait_until(lambda: dav.reader.closed == 1)
    assert dav.reader.opens == [(31, 0, 3 * 2**30 + 12344)]
    assert dav.reader.bytes_read < 64 * 2**20
