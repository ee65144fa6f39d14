"""Promise 4 in the logs: ESC sequences, bare CR and other control characters in the path, query,
Range header or credentials of a request are escaped in its access log line; one request is one
line, whatever it holds (and the formatter keeps any other logger's message on one line too)."""

from __future__ import annotations

import base64
import logging
import socket

import pytest

from tests.helpers import wait_until
from tgdav.logs import OneLineFormatter

HOSTILE = [
    b"GET /Films/\x1b[2J\x1b[31mred HTTP/1.1",
    b"GET /Films/small.txt?\x1b]0;title\x07x=1 HTTP/1.1",
    b"GET /Films/a\rINFO\x1b[1mforged HTTP/1.1",
    b"PROPFIND /Films/%C2%85%E2%80%AE\x1b[0m\x7f HTTP/1.1",
]
RANGES = [b"bytes=0-1\rINFO tgdav.access: forged", b"bytes=0-\x1b[8m", b"bytes=\xe2\x80\xa8\x00-1"]


def send(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


def one_printable_line(message: str) -> bool:
    return len(message.splitlines()) == 1 and not any(
        ord(c) < 32 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029\u202e" for c in message)


@pytest.mark.parametrize("auth", [None, b"alice:pw", b"mallory\x1b[2J:x\ry"])
def test_control_characters_in_a_request_are_escaped_in_its_one_log_line(serve, caplog, auth):
    dav = serve(users={"alice": "pw"}, auth="basic")
    creds = b"Authorization: Basic " + base64.b64encode(auth) + b"\r\n" if auth else b""
    requests = [line + b"\r\nHost: x\r\n" + creds + b"Connection: close\r\n\r\n" for line in HOSTILE]
    requests += [b"GET /Films/small.txt HTTP/1.1\r\nHost: x\r\nRange: " + r + b"\r\n" + creds
                 + b"Connection: close\r\n\r\n" for r in RANGES]
    with caplog.at_level("DEBUG", logger="tgdav.access"):
        for head in requests:
            assert send(dav.port, head).startswith(b"HTTP/1.1 ")
        wait_until(lambda: len([r for r in caplog.records if r.name == "tgdav.access"]) >= len(requests),
                   what="an access line for every request")
    lines = [r.getMessage() for r in caplog.records if r.name == "tgdav.access"]
    assert len(lines) == len(requests), lines
    assert all(one_printable_line(line) for line in lines), lines
    assert any("\\x1b[2J\\x1b[31mred" in line for line in lines)
    assert any('range="bytes=0-1\\rINFO tgdav.access: forged"' in line for line in lines)
    assert any('"PROPFIND /Films/%C2%85%E2%80%AE\\x1b[0m\\x7f"' in line for line in lines)


def test_every_logged_message_is_one_line():
    record = logging.LogRecord("tgdav.catalog", logging.WARNING, __file__, 1,
                               "refreshing %s failed: %s", ("Chan\rnel\u2028x\x1b[1m", "boom\nINFO forged"), None)
    out = OneLineFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert out == "WARNING tgdav.catalog: refreshing Chan\\rnel\\u2028x\\x1b[1m failed: boom\\nINFO forged"
