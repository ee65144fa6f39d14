"""cheroot, hardened for a server on a home network: what a client sends cannot hold the server.

cheroot hands a connection to a worker thread as soon as its first byte arrives, and the worker then
reads the request head with the connection's socket timeout (minutes, so a paused player keeps its
connection). Left alone, that lets a client trickling one header line every few seconds hold a
worker for ever, and 64 such clients hold them all. The rules here, at the depth where cheroot reads:

- Listen backlog: the kernel's maximum (SOMAXCONN), not cheroot's 5, so a burst of connections
  queues in the kernel instead of being dropped and retried by the clients' TCP stacks for seconds.
- Head deadline: the request line and headers must arrive within `head_timeout` seconds of their
  first byte. Before every recv() the socket timeout is cut to what is left of that deadline, so a
  trickling client gets 408 and its connection closes, however it spaces its bytes.
- Per-address limit: at most `per_ip_limit` connections from one client address are being served
  at once; more from that address wait their turn (they are not refused, so a burst from one
  client is served, just not all at once), and above WAIT_FACTOR times the limit new ones get 503.
  One address can therefore hold at most that many workers, and every other client is served.
- Request framing, h11's rule: a request body is always consumed or the connection closed before
  the next request is parsed, so a body can never be taken for a second request. Content-Length
  must be digits and given once; Content-Length together with Transfer-Encoding, obsolete line
  folding and repeated framing headers get 400 and a close; an HTTP/1.0 request with
  Transfer-Encoding is answered and the connection closed (RFC 9112 6.1). Chunked bodies reach the
  app de-chunked through wsgi.input; whatever the app did not read is drained after the response
  when small (DRAIN_LIMIT, chunk trailers included), otherwise the connection is closed.
"""

from __future__ import annotations

import _pyio
import logging
import re
import socket
import threading
import time
from collections import defaultdict, deque

from cheroot import errors as cheroot_errors
from cheroot import wsgi
from cheroot.makefile import MakeFile, StreamReader, StreamWriter
from cheroot.server import (CRLF, ChunkedRFile, HeaderReader, HTTPConnection, HTTPRequest,
                            KnownLengthRFile, comma_separated_headers)
from cheroot.ssl.builtin import BuiltinSSLAdapter

from tgdav.dav.policy import RequestBodyError, RequestBodyTooLarge

server_log = logging.getLogger("tgdav.server")

DRAIN_LIMIT = 1024 * 1024   # an unread request body up to this is read and dropped; a bigger one closes
HANDSHAKE_TIMEOUT = 5.0     # seconds for a TLS handshake (done on cheroot's accept thread)
WAIT_FACTOR = 8             # connections of one address that may wait for a worker, per allowed one
_DIGITS = re.compile(rb"[0-9]{1,18}")
_FRAMING = (b"Content-Length", b"Transfer-Encoding")


# --- the head deadline -------------------------------------------------------------------------------
class _DeadlineSocketIO(socket.SocketIO):
    """A socket reader that, while `deadline` is set, never waits past it."""

    deadline: float | None = None

    def __init__(self, sock: socket.socket, mode: str, idle_timeout: float | None) -> None:
        super().__init__(sock, mode)
        self.idle_timeout = idle_timeout

    def readinto(self, b) -> int | None:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out")
            self._sock.settimeout(left if self.idle_timeout is None else min(left, self.idle_timeout))
        return super().readinto(b)


class _HeadReader(StreamReader):
    """cheroot's StreamReader over a _DeadlineSocketIO."""

    def __init__(self, sock: socket.socket, bufsize: int, idle_timeout: float | None) -> None:
        _pyio.BufferedReader.__init__(self, _DeadlineSocketIO(sock, "rb", idle_timeout), bufsize)
        self.bytes_read = 0


# --- the response writer -----------------------------------------------------------------------------
class _SocketWriter(StreamWriter):
    """cheroot's socket writer without its copies. cheroot's appends every write to a bytearray, sends
    bytes(that bytearray) and deletes what went: a 1 MiB block that leaves in several send()s is
    copied once per send plus once per delete. Here a block is sent from a memoryview of itself, as
    many send()s as the socket takes (each within the socket's timeout, as cheroot's)."""

    def write(self, b) -> int:
        self._checkClosed()
        if isinstance(b, str):
            raise TypeError("can't write str to binary stream")
        with self._write_lock:
            self._flush_unlocked()              # (cheroot's write never leaves anything buffered)
            view = memoryview(b).cast("B")
            n = len(view)
            while view:
                try:
                    sent = self.raw.write(view)
                except BlockingIOError as e:
                    sent = e.characters_written
                view = view[sent or 0:]
        self.bytes_written += n
        return n


# --- request framing ---------------------------------------------------------------------------------
class _StrictHeaders(HeaderReader):
    """cheroot's header reader, refusing what makes a request's framing ambiguous (ValueError -> 400)."""

    def __call__(self, rfile, hdict=None):
        hdict = {} if hdict is None else hdict
        seen: set[bytes] = set()
        while True:
            line = rfile.readline()
            if not line:
                raise ValueError("The request headers ended before the blank line that ends them.")
            if line == CRLF:
                break
            if not line.endswith(CRLF):
                raise ValueError("HTTP requires CRLF line endings.")
            if line[:1] in (b" ", b"\t"):
                raise ValueError("Folded header lines are not accepted.")
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise ValueError("A header line is not 'Name: value'.")
            key, value = self._transform_key(name), value.strip()
            if key in seen and (key in _FRAMING or key == b"Host"):
                raise ValueError(f"The {key.decode('latin-1')} header is given twice.")
            seen.add(key)
            if key in comma_separated_headers and hdict.get(key):
                value = hdict[key] + b", " + value
            hdict[key] = value
        length = hdict.get(b"Content-Length")
        if length is not None and not _DIGITS.fullmatch(length):
            raise ValueError("Content-Length must be a number of bytes.")
        coding = hdict.get(b"Transfer-Encoding")
        if coding is not None and length is not None:
            raise ValueError("A request cannot have both Content-Length and Transfer-Encoding.")
        if coding is not None and coding.strip().lower() != b"chunked":
            raise ValueError("The only Transfer-Encoding accepted is chunked.")
        return hdict


class _Chunked(ChunkedRFile):
    """cheroot's de-chunking reader; a malformed or oversized body raises RequestBodyError."""

    def _fetch(self):
        try:
            super()._fetch()
        except cheroot_errors.MaxSizeExceeded:
            raise RequestBodyTooLarge("the request body is larger than this server accepts") from None
        except ValueError:
            raise RequestBodyError("the chunked request body is malformed") from None
        except OSError as e:
            if "Too Large" in str(e):
                raise RequestBodyTooLarge("the request body is larger than this server accepts") from None
            raise

    finished = False

    def finish(self, limit: int) -> bool:
        """Read and drop the rest of the body and its trailers, up to `limit` more bytes. True when
        the whole body is consumed (the connection can carry the next request)."""
        if self.finished:
            return True
        start = self.bytes_read
        try:
            while not self.closed:
                if self.bytes_read - start > limit:
                    return False
                self.buffer = b""
                self._fetch()
            self.buffer = b""
            for _ in self.read_trailer_lines():
                if self.bytes_read - start > limit:
                    return False
        except (ValueError, OSError):
            return False
        self.finished = True
        return True


class _Request(HTTPRequest):
    header_reader = _StrictHeaders()

    def parse_request(self) -> None:
        raw = self.conn.rfile.raw
        head_timeout = getattr(self.server, "head_timeout", None)
        if head_timeout and isinstance(raw, _DeadlineSocketIO):
            raw.deadline = time.monotonic() + head_timeout
        try:
            super().parse_request()
        finally:
            if isinstance(raw, _DeadlineSocketIO) and raw.deadline is not None:
                raw.deadline = None
                try:
                    self.conn.socket.settimeout(self.server.timeout)
                except OSError:
                    pass

    def read_request_headers(self) -> bool:
        if not super().read_request_headers():
            return False
        if self.request_protocol == b"HTTP/1.0" and b"Transfer-Encoding" in self.inheaders:
            self.close_connection = True   # framing unknown: answer, then close (RFC 9112 6.1)
        return True

    def respond(self) -> None:
        """cheroot's respond(), with our body readers and the body finished (or the connection closed)."""
        limit = self.server.max_request_body_size
        if self.chunked_read:
            self.rfile = _Chunked(self.conn.rfile, limit)
        else:
            length = int(self.inheaders.get(b"Content-Length", 0))
            if limit and length > limit:
                self.close_connection = True
                self.simple_response("413 Request Entity Too Large", self.server.too_large)
                return
            self.rfile = KnownLengthRFile(self.conn.rfile, length)
        self.server.gateway(self).respond()
        self.ready and self.ensure_headers_sent()
        if self.chunked_write:
            self.conn.wfile.write(b"0\r\n\r\n")
        if not self._body_finished():
            self.close_connection = True

    def send_headers(self) -> None:
        if not self.close_connection and not self._body_finished():
            self.close_connection = True   # cheroot then says Connection: close
        super().send_headers()

    def _body_finished(self) -> bool:
        """Drain a small unread body so the connection can carry the next request. False: close it."""
        if isinstance(self.rfile, _Chunked):
            return self.rfile.finish(DRAIN_LIMIT)
        remaining = getattr(self.rfile, "remaining", 0)
        if not remaining:
            return True
        if remaining > DRAIN_LIMIT:
            return False
        try:
            while remaining > 0:
                data = self.rfile.read(min(remaining, 65536))
                if not data:
                    return False
                remaining -= len(data)
        except OSError:
            return False
        return True

    def simple_response(self, status, msg="") -> None:
        if str(status)[:3] in ("400", "408", "413", "414", "431", "501", "505"):
            self.close_connection = True
        if str(status)[:3] == "413" and msg.startswith("The entity sent"):   # cheroot's Content-Length
            msg = self.server.too_large                                   # check, before 100 Continue
        super().simple_response(status, msg)


class _Connection(HTTPConnection):
    RequestHandlerClass = _Request
    tgdav_slot: str | None = None       # the client address whose worker slot this connection holds

    def __init__(self, server, sock, makefile=MakeFile) -> None:
        def make(s, mode="r", bufsize=_pyio.DEFAULT_BUFFER_SIZE):
            return _HeadReader(s, bufsize, server.timeout) if "r" in mode else _SocketWriter(s, mode, bufsize)
        super().__init__(server, sock, make)

    def communicate(self) -> bool:
        try:
            return super().communicate()
        finally:
            self.server.release(self)


class TLSAdapter(BuiltinSSLAdapter):
    """cheroot's TLS adapter with a bounded handshake. cheroot shakes hands on its accept thread,
    with the connection's (long) timeout: one silent client would stop every accept for minutes."""

    def wrap(self, sock):
        sock.settimeout(HANDSHAKE_TIMEOUT)
        return super().wrap(sock)


# --- the server --------------------------------------------------------------------------------------
class HardenedServer(wsgi.Server):
    """cheroot's WSGI server with the rules above; errors go to logging instead of stderr."""

    ConnectionClass = _Connection
    request_queue_size = socket.SOMAXCONN
    too_large = "The request body is larger than this server accepts."   # the 413's words

    def __init__(self, *args, head_timeout: float = 15.0, per_ip_limit: int = 32, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.request_queue_size = socket.SOMAXCONN
        self.head_timeout = head_timeout
        self.per_ip_limit = per_ip_limit
        self._busy: dict[str, int] = defaultdict(int)
        self._waiting: dict[str, deque] = defaultdict(deque)
        self._slots = threading.Lock()
        self.bind_error: OSError | None = None

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        server_log.log(level, "%s", msg, exc_info=traceback)

    def bind(self, family, type, proto=0):
        try:
            return super().bind(family, type, proto)
        except OSError as e:
            self.bind_error = e
            raise

    def prepare(self) -> None:
        """Bind and listen; a failure raises the OSError of the bind itself (errno and all), not
        cheroot's summary without one."""
        self.bind_error = None
        try:
            super().prepare()
        except OSError as e:
            raise (self.bind_error or e) from None

    # per-address limit: process_conn is where cheroot hands a connection to the workers
    def process_conn(self, conn) -> None:
        addr = getattr(conn, "remote_addr", None)
        if not self.per_ip_limit or not addr:
            super().process_conn(conn)
            return
        with self._slots:
            if self._busy[addr] < self.per_ip_limit:
                self._busy[addr] += 1
                conn.tgdav_slot = addr
            elif len(self._waiting[addr]) < self.per_ip_limit * WAIT_FACTOR:
                self._waiting[addr].append(conn)
                return
            else:
                conn = self._refuse(conn)
        if conn is not None:
            super().process_conn(conn)

    def release(self, conn) -> None:
        """A worker is done with `conn` (for now): its address may start one more."""
        addr = getattr(conn, "tgdav_slot", None)
        if addr is None:
            return
        conn.tgdav_slot = None
        with self._slots:
            waiting = self._waiting.get(addr)
            if waiting:
                nxt = waiting.popleft()
                nxt.tgdav_slot = addr
            else:
                nxt = None
                self._busy[addr] -= 1
                if self._busy[addr] <= 0:
                    del self._busy[addr]
            if waiting is not None and not waiting:
                del self._waiting[addr]
        if nxt is not None:
            super().process_conn(nxt)

    def _refuse(self, conn) -> None:
        server_log.warning("too many connections from %s: refused one with 503", conn.remote_addr)
        body = b"Too many connections from your address; try again shortly.\n"
        try:
            conn.socket.settimeout(1)
            conn.wfile.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n"
                             b"Content-Type: text/plain; charset=utf-8\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        conn.close()
        return None

    def stop(self) -> None:
        super().stop()
        with self._slots:
            waiting = [conn for queue in self._waiting.values() for conn in queue]
            self._waiting.clear()
        for conn in waiting:
            try:
                conn.close()
            except OSError:
                pass
