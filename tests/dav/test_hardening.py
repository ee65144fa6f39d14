"""The HTTP face under hostile or clumsy clients, through real sockets against a real cheroot server:
connection bursts, slow (slowloris) clients, request smuggling with bodies, error pages that leak
nothing. Assertions are on what came back on the wire, never on durations."""

from __future__ import annotations

import hashlib
import re
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import wait_until
from tests.dav.fakes import FakeCatalog, FakeReader
from tgdav.dav.server import build_app, make_server
from tgdav.sandbox.content import pattern


def start(app, **options):
    defaults = dict(host="127.0.0.1", port=0, threads=8, timeout=30)
    server = make_server(app, **{**defaults, **options})
    server.expiration_interval = 0.02
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    return server


@pytest.fixture
def served():
    servers = []

    def run(app=None, **options):
        app = app or build_app(FakeCatalog(), FakeReader(), users=None, auth="none")
        server = start(app, **options)
        servers.append(server)
        return server.bind_addr[1]

    yield run
    for server in servers:
        server.stop()


def exchange(port: int, data: bytes, *, source: str = "127.0.0.1", timeout: float = 10.0) -> bytes:
    """Send `data` on one connection and read until the server closes it or stays silent `timeout` s."""
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as s:
        s.sendall(data)
        s.settimeout(timeout)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            pass
    return out


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream into HTTP responses (Content-Length framed, as ours all are)."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, raw
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", len(rest)))
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return out


def get(port: int, path: str, headers: str = "", *, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    raw = exchange(port, f"GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{headers}\r\n".encode(),
                   timeout=timeout)
    assert raw, f"no answer to GET {path}"
    [answer] = responses(raw)
    return answer


SMUGGLED = b"GET /Films/small.txt HTTP/1.1\r\nHost: h\r\n\r\n"


# --- bursts: the listen backlog ----------------------------------------------------------------------
def test_a_burst_of_200_connections_waits_in_the_kernel_and_is_served():
    """200 clients connect while the server accepts nothing: the kernel must complete every handshake
    (cheroot's default backlog of 5 drops the rest, and their TCP stacks retry for seconds), then
    every one of 200 PROPFIND Depth 1 gets its 207."""
    app = build_app(FakeCatalog(), FakeReader(), users=None, auth="none")
    server = make_server(app, host="127.0.0.1", port=0, threads=16, timeout=30)
    server.expiration_interval = 0.02
    server.prepare()                      # listening, nothing accepted yet
    port = server.bind_addr[1]
    socks = []
    try:
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        pending, deadline = set(socks), time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], list(pending), [], 0.5)
            pending -= {s for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0}
        assert not pending, f"{len(pending)} of 200 connections were not taken by the listen queue"

        threading.Thread(target=server.serve, daemon=True).start()
        request = b"PROPFIND / HTTP/1.1\r\nHost: h\r\nDepth: 1\r\nConnection: close\r\n\r\n"

        def ask(s: socket.socket) -> int:
            s.setblocking(True)
            s.settimeout(60)
            s.sendall(request)
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
            return responses(raw)[0][0]

        with ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(ask, socks))
        assert statuses == [207] * 200
    finally:
        for s in socks:
            s.close()
        server.stop()


# --- slow clients ------------------------------------------------------------------------------------
def _trickle(port: int, source: str, stop: threading.Event, answers: list, interval: float) -> None:
    """A slowloris client: the request line, then one header line every `interval` s, never the end."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0)) as s:
            s.sendall(b"GET /Films/small.txt HTTP/1.1\r\n")
            n = 0
            while not stop.wait(interval):
                try:
                    s.sendall(f"X-Slow-{n}: {'a' * 10}\r\n".encode())
                except OSError:
                    break
                n += 1
                r, _, _ = select.select([s], [], [], 0)
                if r:
                    break
            s.settimeout(5)
            try:
                answers.append(s.recv(4096))
            except OSError:
                answers.append(b"")
    except OSError as e:
        answers.append(repr(e).encode())


def _slowloris(port: int, count: int, source: str, interval: float):
    stop, answers = threading.Event(), []
    threads = [threading.Thread(target=_trickle, args=(port, source, stop, answers, interval), daemon=True)
               for _ in range(count)]
    for t in threads:
        t.start()
    time.sleep(1.5)   # let every trickler connect and take a worker (before the fix: all of them)
    return stop, threads, answers


def test_trickled_request_heads_are_cut_and_free_their_workers(served):
    """12 clients trickle header lines into a server with 8 workers and no per-address limit: the
    head deadline answers each 408 and frees its worker, so a normal GET is answered."""
    port = served(head_timeout=3, per_ip_limit=0)
    stop, threads, answers = _slowloris(port, 12, "127.0.0.2", interval=0.5)
    try:
        status, _, body = get(port, "/Films/small.txt", timeout=40)
        assert (status, body) == (200, pattern(14, 0, 1000))
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert len(answers) == 12
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers


def test_one_address_cannot_take_every_worker(served):
    """With a head deadline far away, 12 tricklers from one address hold at most per_ip_limit of the
    8 workers; a client on another address is served while they trickle on."""
    port = served(head_timeout=120, per_ip_limit=3)
    stop, threads, answers = _slowloris(port, 12, "127.0.0.2", interval=0.5)
    try:
        for _ in range(3):
            status, _, body = get(port, "/Films/small.txt", timeout=40)
            assert (status, body) == (200, pattern(14, 0, 1000))
        assert answers == [], "the tricklers were still trickling while the GETs were served"
    finally:
        stop.set()
        for t in threads:
            t.join(15)


def test_beyond_nine_times_the_limit_an_address_is_refused_with_503(served):
    """per_ip_limit 1: one trickler is served, 8 wait their turn, the other 3 get 503 at once."""
    port = served(head_timeout=120, per_ip_limit=1)
    stop, threads, answers = _slowloris(port, 12, "127.0.0.2", interval=0.3)
    try:
        wait_until(lambda: len(answers) >= 3, 20, lambda: f"three answers: {answers}", interval=0.1)
        assert len(answers) == 3 and all(a.startswith(b"HTTP/1.1 503 ") for a in answers), answers
        assert get(port, "/Films/one.byte", timeout=40)[0] == 200     # other addresses are served
    finally:
        stop.set()
        for t in threads:
            t.join(15)


def test_many_connections_from_one_address_wait_their_turn_instead_of_failing(served):
    """The per-address limit queues: 40 simultaneous GETs from one address with a limit of 4 all get
    their bytes."""
    port = served(per_ip_limit=4)
    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda _: get(port, "/Films/small.txt"), range(40)))
    assert [(s, b) for s, _, b in answers] == [(200, pattern(14, 0, 1000))] * 40


# --- request bodies and smuggling --------------------------------------------------------------------
def _chunked(body: bytes, pieces: int = 3) -> bytes:
    step = max(1, -(-len(body) // pieces))
    parts = [body[i:i + step] for i in range(0, len(body), step)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


@pytest.mark.parametrize("method", ["PUT", "PROPFIND", "GET"])
def test_a_chunked_body_is_never_taken_for_a_second_request(served, method):
    """The issue's printf: a chunked body that holds a second request. One request, one response."""
    port = served()
    raw = exchange(port, f"{method} /Films/ HTTP/1.1\r\nHost: h\r\nDepth: 1\r\n"
                         f"Transfer-Encoding: chunked\r\n\r\n".encode() + _chunked(SMUGGLED), timeout=2)
    answers = responses(raw)
    assert len(answers) == 1, raw
    assert answers[0][0] != 200 or method == "GET"


def test_chunk_trailers_are_not_a_request(served):
    port = served()
    raw = exchange(port, b"GET /Films/small.txt HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"0\r\n" + SMUGGLED, timeout=2)
    assert len(responses(raw)) == 1, raw


def test_an_unread_body_is_drained_and_the_next_request_answered(served):
    """Pipelined: a GET with a chunked body the app never reads, then a real GET on the same
    connection: two responses, the second with the right bytes."""
    port = served()
    second = b"GET /Films/small.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=10-19\r\nConnection: close\r\n\r\n"
    raw = exchange(port, b"GET /Films/one.byte HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + _chunked(b"x" * 5000) + second)
    answers = responses(raw)
    assert [a[0] for a in answers] == [200, 206]
    assert answers[1][2] == pattern(14, 10, 10)


def test_a_chunked_propfind_is_read_as_its_xml_body(served):
    port = served()
    body = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
            b'<D:getcontentlength/></D:prop></D:propfind>')
    raw = exchange(port, b"PROPFIND /Films/small.txt HTTP/1.1\r\nHost: h\r\nDepth: 0\r\nConnection: close\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(body))
    [(status, _, xml)] = responses(raw)
    assert status == 207
    assert b"<D:getcontentlength>1000</D:getcontentlength>" in xml.replace(b"ns0:", b"D:")
    assert b"getlastmodified" not in xml          # allprop would list it


def test_wsgi_input_yields_the_dechunked_body(served):
    """What the write path will rely on: a chunked PUT reaches the app de-chunked through wsgi.input,
    and an app that reads nothing still leaves the connection clean for the next request."""
    def app(environ, start_response):
        data = environ["wsgi.input"].read() if environ["PATH_INFO"] == "/read" else b""
        body = hashlib.sha256(data).hexdigest().encode() if data else b"unread"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    port = served(app)
    payload = bytes(range(256)) * 1000
    raw = exchange(port, b"PUT /read HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + _chunked(payload, 7)
                         + b"PUT /skip HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + _chunked(SMUGGLED)
                         + b"PUT /read HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    assert [body for _, _, body in responses(raw)] == [
        hashlib.sha256(payload).hexdigest().encode(), b"unread", hashlib.sha256(b"hello").hexdigest().encode()]


@pytest.mark.parametrize("headers", [
    "Content-Length: -1", "Content-Length: +5", "Content-Length: 5, 5", "Content-Length: five",
    "Content-Length: 5\r\nContent-Length: 5", "Content-Length: 0\r\nTransfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    "X-Folded: a\r\n b", "Host: a\r\nHost: b"])
def test_ambiguous_framing_is_400_and_closes(served, headers):
    port = served()
    raw = exchange(port, f"GET /Films/small.txt HTTP/1.1\r\nHost: h\r\n{headers}\r\n\r\n".encode()
                   + b"hello" + SMUGGLED)
    [(status, _, body)] = responses(raw)     # one answer, then the server closed the connection
    assert status == 400 and body and b"Traceback" not in body


def test_http10_with_transfer_encoding_closes_after_the_answer(served):
    port = served()
    raw = exchange(port, b"GET /Films/small.txt HTTP/1.0\r\nConnection: Keep-Alive\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + SMUGGLED)
    assert len(responses(raw)) == 1


# --- error pages -------------------------------------------------------------------------------------
LEAKS = re.compile(rb"wsgidav|cheroot|python|traceback|exception|error\(|\d{4}-\d\d-\d\d|/etc/|\.py|"
                   rb"entitiesforbidden|system_id|<html", re.IGNORECASE)

XXE = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
       b'<D:propfind xmlns:D="DAV:"><D:prop>&e;</D:prop></D:propfind>')


@pytest.mark.parametrize("request_bytes", [
    b"GET /..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n",
    b"PROPFIND / HTTP/1.1\r\nHost: h\r\nDepth: 0\r\nContent-Length: 7\r\n\r\nnot xml",
    b"PROPFIND / HTTP/1.1\r\nHost: h\r\nDepth: 0\r\nContent-Length: %d\r\n\r\n%s" % (len(XXE), XXE),
    b"PROPFIND / HTTP/1.1\r\nHost: h\r\nDepth: 0\r\nContent-Length: 21\r\n\r\n<D:propfind xmlns:D=\"",
    b"GET /Films/small.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=5000-6000\r\n\r\n",
    b"PROPFIND /Films/ HTTP/1.1\r\nHost: h\r\nDepth: 2\r\n\r\n",
    b"GET /Films/small.txt HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
    b"GET /nowhere/at/all HTTP/1.1\r\nHost: h\r\n\r\n",
    b"MKCOL /x HTTP/1.1\r\nHost: h\r\n\r\n",
])
def test_error_pages_say_what_is_wrong_and_nothing_internal(served, request_bytes):
    port = served()
    [(status, headers, body)] = responses(exchange(port, request_bytes.replace(
        b"Host: h\r\n", b"Host: h\r\nConnection: close\r\n", 1)))
    assert 400 <= status < 500, (status, body)
    assert body.strip(), "an error says what is wrong"
    assert not LEAKS.search(body), body
    if headers.get("content-type", "").startswith("text/plain"):
        assert re.fullmatch(rb"[A-Z][\w ,.:'()/-]+\n?", body), body
