"""Fuzzing the HTTP face: hypothesis builds requests (methods, paths, headers, ranges, XML and other
bodies, Content-Length or chunked framing), sends each on a raw socket to a real cheroot server over
the fakes, and checks that every one gets exactly one well-formed answer, 2xx/3xx/4xx, within the
socket timeout (a hang fails), and that the server still serves exact bytes afterwards."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings, strategies as st

from tests.dav.fakes import FakeCatalog, FakeReader
from tgdav.dav.server import build_app, make_server
from tgdav.sandbox.content import pattern

PATHS = ["/", "/Films", "/Films/", "/Films/small.txt", "/Films/empty.bin", "/Films/one.byte",
         "/Films/clip #1 100% what?.mp4", "/Música ünï/canción – ñ.mp3", "/Big/huge movie.mkv",
         "/Empty folder/", "/nope", "/Films/nope.txt", "/Films/small.txt/deeper", "/._x", "/.DS_Store"]
METHODS = ["GET", "HEAD", "OPTIONS", "PROPFIND", "PUT", "DELETE", "MKCOL", "MOVE", "COPY", "LOCK",
           "UNLOCK", "PROPPATCH", "POST", "PATCH", "TRACE", "CONNECT", "SEARCH", "REPORT"]
SAFE_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


def _segment():
    raw = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
    return st.one_of(raw.map(lambda s: quote(s, safe="")), st.sampled_from(
        ["..", ".", "%2e%2e", "..%2f..%2fetc%2fpasswd", "%00", "%ff%fe", "%", "%zz", "a%2fb", ";x", "~"]))


PATH = st.one_of(st.sampled_from(PATHS).map(lambda p: quote(p, safe="/")),
                 st.lists(_segment(), min_size=1, max_size=4).map(lambda s: "/" + "/".join(s)),
                 st.sampled_from(PATHS).map(lambda p: quote(p, safe="/")).flatmap(
                     lambda p: st.sampled_from(["", "?a=b", "?%zz", "?" + "x" * 300]).map(lambda q: p + q)))

NUMBER = st.one_of(st.integers(0, 2**64), st.sampled_from(["", "-1", "+3", "0x10", "1e3", " 5", "999999999999999999999"]))
RANGE = st.one_of(
    st.tuples(st.integers(0, 1200), st.integers(0, 1200)).map(lambda ab: f"bytes={ab[0]}-{ab[1]}"),
    st.tuples(NUMBER, NUMBER).map(lambda ab: f"bytes={ab[0]}-{ab[1]}"),
    NUMBER.map(lambda n: f"bytes={n}-"), NUMBER.map(lambda n: f"bytes=-{n}"),
    st.lists(st.tuples(st.integers(0, 6000), st.integers(0, 6000)), min_size=2, max_size=5).map(
        lambda rs: "bytes=" + ",".join(f"{a}-{b}" for a, b in rs)),
    st.sampled_from(["bytes=", "bytes=-", "items=0-1", "bytes=0-0,-1", "bytes 0-1", "bytes=1-0"]), SAFE_TEXT)
DATE = st.sampled_from(["Wed, 01 May 2024 10:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT", "yesterday",
                        "Fri, 31 Dec 9999 23:59:59 GMT", ""])
HEADER = st.one_of(
    RANGE.map(lambda v: ("Range", v)),
    st.sampled_from(["0", "1", "infinity", "2", "-1", "", "1 ", "one"]).map(lambda v: ("Depth", v)),
    DATE.map(lambda v: ("If-Modified-Since", v)), DATE.map(lambda v: ("If-Unmodified-Since", v)),
    st.sampled_from(['"doc14-1000"', "*", 'W/"x"', '"', ""]).map(lambda v: ("If-None-Match", v)),
    st.sampled_from(['"doc14-1000"', "*", '"x"']).map(lambda v: ("If-Match", v)),
    st.sampled_from(["(<urn:x>)", "<http://h/Films> (Not <DAV:no-lock>)", "garbage"]).map(lambda v: ("If", v)),
    st.sampled_from(["Basic !!!", "Basic " + "A" * 200, "Digest x", "Digest username=\"a\", nonce=", "Bearer t",
                     ""]).map(lambda v: ("Authorization", v)),
    st.sampled_from(["http://h/x", "/x", "", "http://[::1"]).map(lambda v: ("Destination", v)),
    st.sampled_from(["T", "F", "x"]).map(lambda v: ("Overwrite", v)),
    st.sampled_from(["application/xml", "text/xml; charset=utf-8", "text/plain", "", "multipart/x"]).map(
        lambda v: ("Content-Type", v)),
    st.sampled_from(["gzip", "identity", "x"]).map(lambda v: ("Content-Encoding", v)),
    st.tuples(st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z"), SAFE_TEXT))

PROP_NAMES = st.lists(st.sampled_from(["getcontentlength", "getlastmodified", "displayname", "resourcetype",
                                       "getetag", "getcontenttype", "creationdate", "quota-used-bytes",
                                       "unknown-prop", "lockdiscovery", "supportedlock"]), max_size=6)
XML = st.one_of(
    st.just('<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'),
    st.just('<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>'),
    PROP_NAMES.map(lambda ps: '<D:propfind xmlns:D="DAV:"><D:prop>' + "".join(f"<D:{p}/>" for p in ps)
                   + "</D:prop></D:propfind>"),
    st.just('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            '<D:propfind xmlns:D="DAV:"><D:prop>&e;</D:prop></D:propfind>'),
    st.just('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            '<D:propfind xmlns:D="DAV:"><D:prop><D:x>&b;</D:x></D:prop></D:propfind>'),
    st.just('<D:propfind xmlns:D="DAV:"><D:prop>'), st.just('<x/>'), st.just('<D:lockinfo xmlns:D="DAV:"/>'),
    SAFE_TEXT)
BODY = st.one_of(st.none(), XML.map(str.encode), st.binary(max_size=3000))


def chunked(body: bytes, pieces: int) -> bytes:
    step = max(1, -(-len(body) // max(1, pieces)))
    parts = [body[i:i + step] for i in range(0, len(body), step)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


REQUEST = st.fixed_dictionaries({
    "method": st.integers(0, 19).flatmap(lambda n: st.sampled_from(METHODS) if n < 3 else st.from_regex(
        r"\A[A-Z]{1,12}\Z") if n == 3 else st.just(("GET", "GET", "HEAD", "PROPFIND", "PROPFIND")[n % 5])),
    "depth": st.sampled_from(["0", "1", "1", "0", None, "infinity", "2"]),
    "path": PATH, "headers": st.lists(HEADER, max_size=6), "body": BODY,
    "framing": st.sampled_from(["length", "chunked"]), "pieces": st.integers(1, 5),
    "version": st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
})


class Server:
    def __init__(self, auth: str) -> None:
        users = {"alice": "secret"} if auth != "none" else None
        self.server = make_server(build_app(FakeCatalog(), FakeReader(), users=users, auth=auth),
                                  host="127.0.0.1", port=0, threads=8, timeout=30, head_timeout=10)
        self.server.expiration_interval = 0.02
        self.server.prepare()
        threading.Thread(target=self.server.serve, daemon=True).start()
        self.port = self.server.bind_addr[1]

    def ask(self, request: dict) -> tuple[int, bytes]:
        method, body = request["method"], request["body"]
        head = [f"{method} {request['path']} {request['version']}", "Host: fuzz", "Connection: close"]
        if request.get("depth") is not None:
            head.append(f"Depth: {request['depth']}")
        head += [f"{name}: {value}" for name, value in request["headers"]]
        payload = b""
        if body is not None:
            if request["framing"] == "chunked" and request["version"] == "HTTP/1.1":
                head.append("Transfer-Encoding: chunked")
                payload = chunked(body, request["pieces"])
            else:
                head.append(f"Content-Length: {len(body)}")
                payload = body
        data = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + payload
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
            sock.sendall(data)
            response = http.client.HTTPResponse(sock, method=method)
            response.begin()                       # a hang raises socket.timeout: the test fails
            content = response.read()
            rest = sock.recv(65536)
        assert rest == b"", f"a second response (or stray bytes) for one request: {rest[:200]!r}"
        return response.status, content


class _Errors(logging.Handler):
    """Counts what the server logs as an error (an internal failure, even after the answer went out)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _fuzz(auth: str, examples: int) -> None:
    server = Server(auth)
    errors = _Errors()
    logging.getLogger("tgdav").addHandler(errors)
    try:
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(REQUEST)
        def check(request):
            status, body = server.ask(request)
            assert 200 <= status < 500, (status, body[:300], request)
            assert b"Traceback" not in body

        check()
        # still up, still exact
        status, body = server.ask({"method": "GET", "path": "/Films/small.txt", "headers": [("Range", "bytes=7-99")]
                                   if auth == "none" else [("Range", "bytes=7-99"), ("Authorization", "Basic YWxpY2U6c2VjcmV0")],
                                   "body": None, "framing": "length", "pieces": 1, "version": "HTTP/1.1"})
        assert (status, body) == (206, pattern(14, 7, 93))
        assert [r.getMessage() for r in errors.records] == []
    finally:
        logging.getLogger("tgdav").removeHandler(errors)
        server.server.stop()


def test_fuzz_without_auth():
    _fuzz("none", 400)


def test_fuzz_with_basic_auth():
    _fuzz("basic", 150)
