"""The access log and the HTTP metrics: one line per request, as a user can follow it.

    127.0.0.1 alice "GET /Videos/clip.mp4" 206 range="bytes=65536-" sent=233148 ttfb=0.004s total=1.214s

One request is one line, whatever it holds: every field a client chose (path, query, user, method,
Range) is escaped by tgdav.text.for_log (ESC, CR, LF as \\x1b, \\r, \\n; undecodable bytes as \\xNN).

fields: client address, user ("-" without one), method and the path exactly as the client sent it
(REQUEST_URI, before any decoding or rewriting), status, the Range header asked ("-" for none), body
bytes sent, time to the first body byte and total time. What happened at the end is said in words:

    ... client closed after 65536 of 298684 bytes (seek or stop)    a player seeking or stopping: normal
    ... client went away during the upload after 1000 of 66000 bytes: nothing was stored    (PUT)
    ... failed after 65536 of 298684 bytes: <why>                  upstream broke mid-body (WARNING)

The same measurements feed Metrics.http_request (status, bytes, time to first byte), and
StreamWatch puts every file body into Activity while it streams (the status page's active streams).
Neither holds a body back: chunks pass through as they come. Requests for tgdav's own pages
(/:tgdav/..., which the status page polls every second) are logged at DEBUG.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable, Iterator

from tgdav import text
from tgdav.dav.policy import StartResponse
from tgdav.metrics import Metrics

access_log = logging.getLogger("tgdav.access")

OWN_PAGES = ("/:tgdav/", "/%3Atgdav/", "/%3atgdav/")
ERROR_TEXT_MAX = 300   # bytes of a 5xx reply's text kept as the explanation of a recent error


def request_target(environ: dict) -> str:
    """The path (and query) as the client sent it, printable on one line: bytes beyond ASCII as
    UTF-8 if they are, else \\xNN; control characters escaped (tgdav.text.for_log)."""
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if not raw:
        raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if environ.get("QUERY_STRING"):
            raw += "?" + environ["QUERY_STRING"]
    return field(raw).replace('"', "%22")


def field(value: str) -> str:
    """A WSGI string (bytes as latin-1) as one printable piece of a log line."""
    return text.for_log(value.encode("latin-1", "replace").decode("utf-8", "surrogateescape"))


def _quoted(value: str | None) -> str:
    return '"%s"' % field(value).replace('"', "'") if value else "-"


class AccessLog:
    """Outermost middleware: logs and measures every request the WSGI app answers."""

    def __init__(self, app: Callable, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.metrics, self.clock = app, metrics, clock

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        record = _Record(environ, self.clock())

        def started(status: str, headers: list, exc_info=None):
            record.status = status.split(" ", 1)[0]
            for name, value in headers:
                lower = name.lower()
                if lower == "content-length" and value.isdigit():
                    record.length = int(value)
                elif lower == "content-type":
                    record.text = value.startswith("text/plain")
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            body = self.app(environ, started)
        except BaseException as exc:
            record.failure = f"{type(exc).__name__}: {exc}"
            self._finish(record)
            raise
        return _Logged(body, record, self)

    def _finish(self, r: "_Record") -> None:
        now = self.clock()
        total = now - r.began
        first = (r.first - r.began) if r.first is not None else (total if r.done else None)
        env = r.environ
        line = '%s %s "%s %s" %s range=%s sent=%d ttfb=%s total=%.3fs' % (
            field(env.get("REMOTE_ADDR", "-")), field(env.get("wsgidav.auth.user_name") or "-"),
            field(env.get("REQUEST_METHOD", "-")), request_target(env), r.status,
            _quoted(env.get("HTTP_RANGE")), r.sent, "%.3fs" % first if first is not None else "-", total)
        of = f" of {r.length}" if r.length is not None else ""
        client_closed = False
        if r.failure is not None:
            access_log.warning("%s failed after %d%s bytes: %s", line, r.sent, of, text.for_log(r.failure))
            self.metrics.activity.error(f'{env.get("REQUEST_METHOD")} {request_target(env)} stopped after '
                                        f"{r.sent}{of} bytes: {r.failure}")
        elif not r.done and (r.length is None or r.sent < r.length):
            client_closed = True
            if env.get("REQUEST_METHOD") == "PUT":
                access_log.info("%s client went away during the upload%s: nothing was stored", line,
                                _received(env))
            elif env.get("REQUEST_METHOD") in ("GET", "HEAD"):
                access_log.info("%s client closed after %d%s bytes (seek or stop)", line, r.sent, of)
            else:
                access_log.info("%s client closed before the whole answer (%d%s bytes) was sent", line,
                                r.sent, of)
        else:
            # tgdav's own pages (the status page polls every second) only at debug
            own = request_target(env).startswith(OWN_PAGES)
            access_log.log(logging.DEBUG if own else logging.INFO, "%s", line)
        if r.status.startswith("5") and r.explanation:
            self.metrics.activity.error(f'{env.get("REQUEST_METHOD")} {request_target(env)}: {r.status} '
                                        f"{r.explanation}")
        self.metrics.http_request(env.get("REQUEST_METHOD", "-"), r.status, r.sent, first, total,
                                  client_closed)


def _received(environ: dict) -> str:
    """", after N of M bytes" of a request body, as far as the server's reader knows."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return ""
    remaining = getattr(environ.get("wsgi.input"), "remaining", None)
    if not isinstance(remaining, int):
        return f" (of {length} bytes)"
    return f" after {length - remaining} of {length} bytes"


class _Record:
    def __init__(self, environ: dict, began: float) -> None:
        self.environ, self.began = environ, began
        self.status = "-"
        self.length: int | None = None
        self.text = False
        self.explanation = ""
        self.sent = 0
        self.first: float | None = None
        self.done = False
        self.failure: str | None = None


class _Logged:
    """The body, counted. An iterator class (not a generator), so nothing runs at garbage collection:
    close() is the one place a request ends, whether the body ended, failed or the client left."""

    def __init__(self, body: Iterable[bytes], record: _Record, log: AccessLog) -> None:
        self.body, self.record, self.log = body, record, log
        self.chunks: Iterator[bytes] | None = None
        self.pending = 0          # bytes handed to the server whose write is not yet confirmed
        self.closed = False

    def __iter__(self) -> "_Logged":
        return self

    def __next__(self) -> bytes:
        r = self.record
        r.sent += self.pending     # the server asks for more only after writing what it had
        self.pending = 0
        if self.chunks is None:
            self.chunks = iter(self.body)
        try:
            chunk = next(self.chunks)
        except StopIteration:
            r.done = True
            raise
        except Exception as exc:
            r.failure = str(exc) or type(exc).__name__
            raise
        if chunk and r.first is None:
            r.first = self.log.clock()
        if r.text and r.status.startswith("5") and len(r.explanation) < ERROR_TEXT_MAX:
            r.explanation += chunk[:ERROR_TEXT_MAX].decode("utf-8", "replace").strip()
        self.pending = len(chunk)
        return chunk

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            if self.record.done:
                self.record.sent += self.pending
            self.log._finish(self.record)


class StreamWatch:
    """StreamApp's hook: a file body registered in Activity (and the active-streams gauge) while it
    streams, with its bytes counted as they go out."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __call__(self, body: Iterator[bytes], environ: dict, spans: list[tuple[int, int]], size: int,
                 length: int) -> Iterator[bytes]:
        if not spans:
            where = "empty file"
        elif len(spans) == 1 and spans[0] == (0, size - 1):
            where = f"whole file, {size} bytes"
        elif len(spans) == 1:
            where = f"bytes {spans[0][0]}-{spans[0][1]} of {size}"
        else:
            where = f"{len(spans)} ranges of {size} bytes"
        path = environ.get("PATH_INFO", "").encode("latin-1", "replace").decode("utf-8", "replace")
        activity = self.metrics.activity
        stream = activity.open_stream(path, where, length, environ.get("wsgidav.auth.user_name") or "")
        self.metrics.stream_opened()
        try:
            for chunk in body:
                yield chunk
                stream.sent += len(chunk)
        finally:
            activity.close_stream(stream)
            self.metrics.stream_closed()
            if hasattr(body, "close"):
                body.close()
