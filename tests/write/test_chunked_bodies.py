"""Chunked request bodies on the writable server (Finder sends PUT chunked): the body arrives whole
through wsgi.input, is stored byte for byte, and a smuggled request inside it is never answered."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import urllib.parse

from tests.write.conftest import http, random_bytes


def test_a_chunked_put_is_stored_byte_for_byte(folder, tmp_path):
    data = random_bytes(3 * 1024 * 1024 + 123, seed=99)
    (tmp_path / "in.bin").write_bytes(data)
    # curl sends a body from standard input with Transfer-Encoding: chunked
    proc = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", "-",
                           "-H", "Transfer-Encoding: chunked", folder + "chunked.bin"],
                          stdin=open(tmp_path / "in.bin", "rb"), capture_output=True, text=True, timeout=300)
    assert proc.stdout in ("201", "204"), proc.stderr
    status, _, body = http("GET", folder + "chunked.bin")
    assert status == 200 and hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_request_inside_a_chunked_body_is_never_answered(folder):
    url = urllib.parse.urlsplit(folder)
    inner = f"DELETE {url.path}victim.txt HTTP/1.1\r\nHost: h\r\n\r\n".encode()
    assert http("PUT", folder + "victim.txt", b"keep me")[0] in (201, 204)
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
    with socket.create_connection((url.hostname, url.port), timeout=120) as s:
        s.sendall(f"PUT {url.path}carrier.txt HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                  f"\r\n".encode() + body + f"GET {url.path}carrier.txt HTTP/1.1\r\nHost: h\r\n"
                  f"Connection: close\r\n\r\n".encode())
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert raw.count(b"HTTP/1.1 ") == 2, raw          # the PUT's answer and the GET's, nothing else
    assert raw.rstrip().endswith(inner.rstrip())       # the carrier holds the inner request as bytes
    assert http("GET", folder + "victim.txt")[2] == b"keep me"
