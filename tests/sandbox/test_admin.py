"""The admin HTTP API over a real socket: reads counters and faults, applies faults and link
settings, and answers bad input with 400 while staying up."""

from __future__ import annotations

import base64
import http.client
import json

import pytest

from tests.sandbox.conftest import FakeClock
from tgdav.sandbox.admin import AdminServer
from tgdav.sandbox.controls import Controls, Link
from tgdav.sandbox.counters import Counters
from tgdav.sandbox.world import World


@pytest.fixture
def admin():
    counters, controls, clock = Counters(), Controls(), FakeClock(500.0)
    with AdminServer(counters, controls, World(seed=1), clock=clock) as server:
        yield server


def request(server: AdminServer, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_get_counters_and_login_code(admin):
    admin.counters.inc(2, "requests:GetFile", 3)
    admin.counters.inc(4, "imports")
    assert request(admin, "GET", "/counters") == (200, {"2": {"requests:GetFile": 3}, "4": {"imports": 1}})
    assert request(admin, "GET", "/login-code") == (200, {"code": admin.world.login_code})


def test_post_faults_applies_them_with_the_services_clock(admin):
    body = {"flood_wait": [{"dc": 2, "method": "GetFile", "seconds": 5}], "expire_file_references": True,
            "getfile_rate_limit": {"per_second": 10, "seconds": 3}}
    assert request(admin, "POST", "/faults", json.dumps(body).encode()) == (200, {"ok": True})
    assert admin.controls.reference_policy() == (None, 500.0)
    status, snapshot = request(admin, "GET", "/faults")
    assert status == 200 and snapshot["faults"]["getfile_rate_limit"] == {"per_second": 10, "seconds": 3}
    assert admin.controls.take_flood(2, "GetFile").seconds == 5


def test_post_faults_for_uploads(admin):
    body = {"upload_rate_limit": {"per_second": 20, "seconds": 5}, "upload_part_ttl": 60,
            "expire_upload_parts": True, "file_part_missing": [{"part": 3, "count": 2}],
            "upload_max_fileparts": {"default": 10}}
    assert request(admin, "POST", "/faults", json.dumps(body).encode()) == (200, {"ok": True})
    assert admin.controls.upload_rate_rule() == (20, 5)
    assert admin.controls.upload_part_policy() == (60.0, 500.0)
    assert (admin.controls.max_file_parts(False), admin.controls.max_file_parts(True)) == (10, 20)
    status, snapshot = request(admin, "GET", "/faults")
    assert snapshot["faults"]["file_part_missing"] == [{"part": 3, "count": 2}]
    assert [admin.controls.take_lost_part(3) for _ in range(3)] == [True, True, False]
    assert request(admin, "POST", "/faults", b'{"clear": true}')[0] == 200
    assert admin.controls.max_file_parts(False) == 4000 and admin.controls.upload_rate_rule()[0] == 0


def test_post_link(admin):
    assert request(admin, "POST", "/link", b'{"latency_ms": 50, "bandwidth": 1000, "dc": 3}')[0] == 200
    assert admin.controls.link_for(3) == Link(50.0, 1000)
    assert request(admin, "POST", "/link", b'{"profile": "telegram-like"}')[0] == 200
    assert admin.controls.link_for(3).latency_ms == 100.0
    assert admin.controls.link_for(3).upload_bandwidth == 2 * 1024 * 1024
    assert request(admin, "POST", "/link", b'{"dc": 2, "upload_bandwidth": 2097152}')[0] == 200
    assert admin.controls.link_for(2) == Link(upload_bandwidth=2097152)


@pytest.mark.parametrize("method,path,body,status", [
    ("POST", "/faults", b"{not json", 400),
    ("POST", "/faults", b'{"flood_wait": [{"dc": 2}]}', 400),
    ("POST", "/faults", b"[1, 2]", 400),
    ("POST", "/faults", b"\xff\xfe", 400),
    ("POST", "/link", b'{"profile": "moon"}', 400),
    ("POST", "/link", b'{"latency_ms": -1}', 400),
    ("POST", "/link", b'{"upload_bandwidth": -5}', 400),
    ("POST", "/faults", b'{"file_part_missing": [{"count": 1}]}', 400),
    ("POST", "/faults", b'{"upload_max_fileparts": {"default": 0}}', 400),
    ("GET", "/nothing", None, 404),
    ("POST", "/counters", b"{}", 404),
])
def test_bad_requests_get_clear_errors_and_the_server_stays_up(admin, method, path, body, status):
    got, answer = request(admin, method, path, body)
    assert got == status and answer["error"]
    assert request(admin, "GET", "/counters") == (200, {})
    assert admin.controls.snapshot()["faults"]["flood_wait"] == []


def test_publish_a_hostile_document_and_a_text_post(admin):
    """POST /publish: what some poster sends, however hostile, lands in the world as given."""
    body = {"channel": "T\uffff", "create": True, "name": "vid\u202e4pm.html\udcff", "mime": "text/html",
            "data": base64.b64encode(b"<script>1</script>").decode(), "text": "caption"}
    status, answer = request(admin, "POST", "/publish", json.dumps(body).encode())
    assert status == 200 and answer["ok"]
    channel = admin.world.channels[answer["channel"]]
    doc = channel.message(answer["message"]).media
    assert (channel.title, doc.name, doc.mime, doc.size) == ("T\uffff", "vid\u202e4pm.html\udcff", "text/html", 18)
    assert doc.source.read(0, 100) == b"<script>1</script>"
    status, answer = request(admin, "POST", "/publish", json.dumps({"channel": "T\uffff", "text": "hi"}).encode())
    assert status == 200 and channel.message(answer["message"]).media is None
    for bad in ({"channel": "nope", "text": "x"}, {"channel": "T\uffff", "name": 3},
                {"channel": "T\uffff", "data": "%%"}, {"name": "x"}):
        assert request(admin, "POST", "/publish", json.dumps(bad).encode())[0] == 400, bad


def test_a_name_that_is_not_utf8_goes_out_as_the_bytes_it_stands_for():
    from telethon.extensions import BinaryReader
    from telethon.tl import types

    from tgdav.sandbox.services.tl import wire
    attr = types.DocumentAttributeFilename(wire("a\udcff\ud800.txt"))
    decoded = BinaryReader(bytes(attr)).tgread_object()
    assert decoded.file_name.startswith("a\ufffd") and decoded.file_name.endswith("\ufffd.txt")
    assert set(decoded.file_name[1:-4]) == {"\ufffd"}        # Telethon replaces what is not UTF-8
