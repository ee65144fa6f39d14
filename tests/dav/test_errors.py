"""Errors to HTTP: one table (dav.policy.ERRORS) for what tgdav answers itself and for what WsgiDAV
answers with the provider's errors; a 503 carries Retry-After wherever it comes from (a 207 that
holds one too), and a 207 whose one failure is the request's own resource is a plain answer."""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from tgdav.dav.policy import ERRORS, OUTAGE_RETRY_AFTER, BadPath, DavBodies, dav_error, error_reply
from tgdav.errors import (Conflict, ConnectionsLost, Forbidden, NotFound, RetryLater, SharedStateAway,
                          TgdavError, UpstreamUnavailable)

TYPED = [Forbidden("read-only channel"), NotFound("gone"), Conflict("moved meanwhile"), RetryLater(7),
         SharedStateAway(4), UpstreamUnavailable("DC 2 down"), ConnectionsLost("every sender lost"),
         TgdavError("bad name"), BadPath("dot segments")]


def _retry_after(headers) -> str | None:
    return next((v for k, v in headers or () if k.lower() == "retry-after"), None)


@pytest.mark.parametrize("exc", TYPED, ids=lambda e: type(e).__name__)
def test_what_wsgidav_answers_and_what_tgdav_answers_come_from_one_row(exc):
    reply, raised = error_reply(exc), dav_error(exc)
    assert int(reply.status[:3]) == raised.value
    assert _retry_after(reply.headers) == _retry_after(raised.add_headers)
    assert error_reply(raised).body == reply.body          # the same words, whichever way it goes out
    assert any(isinstance(exc, kind) for kind, _ in ERRORS)


@pytest.mark.parametrize("exc", [e for e in TYPED if isinstance(e, (RetryLater, UpstreamUnavailable))],
                         ids=lambda e: type(e).__name__)
def test_every_503_carries_retry_after(exc):
    want = str(exc.seconds) if isinstance(exc, RetryLater) else str(OUTAGE_RETRY_AFTER)
    assert error_reply(exc).status.startswith("503") and _retry_after(error_reply(exc).headers) == want
    assert dav_error(exc).value == 503 and _retry_after(dav_error(exc).add_headers) == want


def _multistatus(*members: tuple[str, int]) -> bytes:
    body = "".join(f"<ns0:response><ns0:href>{href}</ns0:href><ns0:status>HTTP/1.1 {code} Status"
                   f"</ns0:status></ns0:response>" for href, code in members)
    return (f'<?xml version="1.0" encoding="utf-8" ?>\n<ns0:multistatus xmlns:ns0="DAV:">{body}'
            f"</ns0:multistatus>").encode()


def _through_bodies(method: str, path: str, members, raised=()) -> tuple[str, dict, bytes]:
    """DavBodies around a stand-in for WsgiDAV that meets `raised` (as the provider raises them,
    inside its handlers) and answers a 207 of `members`, as WsgiDAV's _send_response does."""
    def wsgidav(environ, start_response):
        environ["PATH_INFO"] = environ["PATH_INFO"].encode("latin-1").decode("utf-8")   # as WsgiDAV does
        for exc in raised:
            dav_error(exc)
        data = _multistatus(*members)
        start_response("207 Multi-Status", [("Content-Type", "application/xml; charset=utf-8"),
                                            ("Content-Length", str(len(data)))])
        yield data

    got = {}
    body = b"".join(DavBodies(wsgidav)({"REQUEST_METHOD": method, "PATH_INFO": path},
                                       lambda s, h: got.update(status=s, headers=dict(h))))
    return got["status"], got["headers"], body


def test_a_multistatus_holding_a_503_says_when_to_come_back():
    status, headers, body = _through_bodies("COPY", "/Uploads/src/", [("/Uploads/src/a.bin", 503),
                                                                     ("/Uploads/src/b.bin", 503)],
                                            raised=[RetryLater(12), RetryLater(20)])
    assert status == "207 Multi-Status" and headers["Retry-After"] == "20"
    statuses = [s.text for s in ET.fromstring(body).iter("{DAV:}status")]
    assert statuses == ["HTTP/1.1 503 Service Unavailable"] * 2        # not WsgiDAV's "503 Status"
    # an outage (no flood deadline known): the outage's own wait
    status, headers, _ = _through_bodies("DELETE", "/Uploads/dir/", [("/Uploads/dir/a.bin", 503),
                                                                     ("/Uploads/dir/b.bin", 204)])
    assert status == "207 Multi-Status" and headers["Retry-After"] == str(OUTAGE_RETRY_AFTER)


def test_a_multistatus_without_a_503_has_no_retry_after():
    status, headers, _ = _through_bodies("DELETE", "/Uploads/dir/", [("/Uploads/dir/a.bin", 423),
                                                                     ("/Uploads/dir/b.bin", 403)])
    assert status == "207 Multi-Status" and "Retry-After" not in headers


def test_a_multistatus_whose_one_failure_is_the_request_itself_is_a_plain_503():
    path = "/Uploads/dir ü/"
    status, headers, body = _through_bodies("DELETE", path.encode().decode("latin-1"),
                                            [(urllib.parse.quote(path.rstrip("/")), 503)],
                                            raised=[RetryLater(9)])
    assert status == "503 Service Unavailable" and headers["Retry-After"] == "9"
    assert headers["Content-Type"].startswith("text/plain") and body.strip()


# --- through a real `tgdav serve` on the sandbox --------------------------------------------------
@pytest.fixture(scope="module")
def writable(tmp_path_factory):
    """A sandbox with a writable channel and a server of its own (a flood wait gates its senders)."""
    from tests.write.conftest import WRITABLE, running_sandbox
    with running_sandbox(tmp_path_factory.mktemp("errors")) as sb:
        url, _, _ = sb.server("errors")
        yield sb, f"{url}{WRITABLE}/"


def test_a_copy_whose_members_meet_a_flood_wait_says_when_to_come_back(writable):
    from tests.write.conftest import http
    sb, base = writable
    src, dst = base + "src/", base + "dst/"
    assert http("MKCOL", src)[0] == 201
    for name in ("a.txt", "b.txt"):
        assert http("PUT", src + name, name.encode() * 100)[0] == 201
    sb.post("/faults", {"flood_wait": [{"method": "SendMedia", "seconds": 40, "count": 10}]})
    try:
        # a folder is copied whole or not at all (writer.copy_folder): one plain 503, nothing at dst
        status, headers, body = http("COPY", src, headers={"Destination": dst, "Depth": "infinity"})
        assert status == 503 and int(headers["Retry-After"]) > 10 and b"wait" in body, (status, body)
        assert http("PROPFIND", dst, headers={"Depth": "0"})[0] == 404
        # one file: WsgiDAV answers the error itself, plainly, with Retry-After
        status, headers, body = http("COPY", src + "a.txt", headers={"Destination": base + "a copy.txt"})
        assert status == 503 and int(headers["Retry-After"]) > 10 and b"wait" in body
        assert sb.total("errors:FLOOD_WAIT_X") >= 1
    finally:
        sb.post("/faults", {"clear": True})
