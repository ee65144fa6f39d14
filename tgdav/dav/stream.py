"""GET and HEAD of files, served here instead of by WsgiDAV.

WsgiDAV opens the content, seeks once and reads blocks: it never tells the file object where a range
ends (so the reader could not bound its read-ahead), answers only the last range of a multi-range
request, and gives 200 to an If-Modified-Since equal to Last-Modified. This middleware answers GET and
HEAD of a file itself and opens the reader with exactly the bytes the client asked for:

- 200 or 206 with Content-Length and Accept-Ranges: bytes (Kodi only seeks when it sees both),
  Content-Range, ETag, Last-Modified (RFC 1123), Content-Type;
- 416 with Content-Range: bytes */size; If-Range (entity tag or date) falls back to the whole file;
  an empty file is 200 and empty whatever its Range asks (no byte range of it exists);
- If-None-Match, else If-Modified-Since (equal dates included) -> 304;
- several ranges -> multipart/byteranges with exact parts, each opened from the reader in turn
  (overlapping or touching ones merged, more than MAX_PARTS: the whole file, as RFC 9110 allows);
- HEAD sends the same headers and never opens the reader;
- X-Accel-Expires: @1 on every answer about a file's bytes: a caching nginx in front
  (config/nginx.conf) may keep them but must revalidate them (If-None-Match) on every use, which
  is answered 304 here from metadata; nginx never passes this header on to clients.

Every file answer carries `Content-Security-Policy: sandbox` (with nothing to load) and
`X-Content-Type-Options: nosniff`: a file's bytes and type come from whoever posted it, and an HTML,
SVG or XHTML file opened in the browser must never run script in the share's origin (where it could
PUT, DELETE and PROPFIND with the user's credentials). Media elements, <img> and downloads do not
apply a response's CSP, so the player and the image viewer work as before. PDFs (application/pdf)
get nosniff only: browsers' PDF viewers will not run sandboxed and keep a PDF's script from the
origin themselves.

The body is a generator: ErrorMiddleware pulls its first chunk before the headers go out, so an
error at open or at the first read is still a clean 503/404; closing the body closes the ByteStream.
"""

from __future__ import annotations

import secrets
from email.utils import formatdate, parsedate_to_datetime
from typing import Callable, Iterable, Iterator

from tgdav.dav.policy import StartResponse, target, text_reply
from tgdav.dav.provider import content_type
from tgdav.errors import UpstreamUnavailable
from tgdav.model import Catalog, FileEntry, Location, Reader
from tgdav.ranges import Unsatisfiable, parse_range_header

MAX_PARTS = 32
# a file opened as a page: an opaque origin, no script, no forms, no plugins, nothing loaded
FILE_HEADERS = [("Content-Security-Policy", "sandbox; default-src 'none'; frame-ancestors 'none'"),
                ("X-Content-Type-Options", "nosniff")]
# PDFs: browsers' viewers refuse to run in a sandbox (Chrome: "This page has been blocked") and run
# a PDF's own script isolated from the origin; nosniff keeps other bytes from posing as one
PDF_HEADERS = [("X-Content-Type-Options", "nosniff")]


def file_headers(mime: str) -> list[tuple[str, str]]:
    return PDF_HEADERS if mime == "application/pdf" else FILE_HEADERS


# "stored, and stale from the start" for nginx's proxy cache (an absolute expiry in 1970): nginx keeps
# each slice and asks again with its ETag before serving it, so a file overwritten, moved or deleted
# is never served from an old slice. A 304 costs no Telegram traffic.
REVALIDATE = ("X-Accel-Expires", "@1")


def http_date(ts: float) -> str:
    """RFC 1123 date in GMT (what Kodi and Explorer parse)."""
    return formatdate(int(ts), usegmt=True)


def parse_http_date(value: str) -> int | None:
    """Seconds since the epoch, or None for anything that is not an HTTP date."""
    try:
        return int(parsedate_to_datetime(value.strip()).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def quoted_etag(entry: FileEntry) -> str:
    return '"%s"' % entry.etag.strip('"')


def _none_match(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x"."""
    tags = [tag.strip() for tag in header.split(",")]
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in tags)


def if_match_holds(environ: dict, etag: str) -> bool:
    """If-Match (RFC 9110 13.1.1) uses the strong comparison: a weak tag never matches."""
    header = environ.get("HTTP_IF_MATCH")
    if header is None:
        return True
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or etag in tags


def not_modified(environ: dict, etag: str, modified: float) -> bool:
    if "HTTP_IF_NONE_MATCH" in environ:
        return _none_match(environ["HTTP_IF_NONE_MATCH"], etag)
    since = parse_http_date(environ.get("HTTP_IF_MODIFIED_SINCE", ""))
    return since is not None and int(modified) <= since


def if_range_holds(environ: dict, etag: str, modified: float) -> bool:
    """If-Range: a strong entity tag must equal ours, a date must equal Last-Modified exactly."""
    value = environ.get("HTTP_IF_RANGE")
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == etag
    return parse_http_date(value) == int(modified)


def plan_parts(spans: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """The spans to send: as asked unless some overlap or touch (then sorted and merged, so a
    hostile header cannot multiply the bytes read); None when there are too many to bother."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    if len(merged) > MAX_PARTS:
        return None
    return spans if len(merged) == len(spans) else merged


class StreamApp:
    """Serves GET/HEAD of /folder/file; everything else goes on to `app` (WsgiDAV)."""

    def __init__(self, catalog: Catalog, reader: Reader, app: Callable, block_size: int,
                 watch: Callable | None = None) -> None:
        self.catalog, self.reader, self.app, self.block_size = catalog, reader, app, block_size
        self.watch = watch   # watch(body, environ, spans, size, length) -> body: dav.access.StreamWatch

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        entry = target(environ, self.catalog).entry      # looked up once per request (dav.policy)
        if entry is None:  # WsgiDAV answers 404 (or serves its dir browser's assets)
            return self.app(environ, start_response)
        return self.respond(environ, start_response, entry)

    def respond(self, environ: dict, start_response: StartResponse, entry: FileEntry) -> Iterable[bytes]:
        size, etag = entry.size, quoted_etag(entry)
        validators = [("ETag", etag), ("Last-Modified", http_date(entry.modified)), REVALIDATE] + file_headers(
            content_type(entry))
        if not if_match_holds(environ, etag):
            return text_reply("412 Precondition Failed", "The file has changed (If-Match)",
                              validators).send(environ, start_response)
        if not_modified(environ, etag, entry.modified):
            start_response("304 Not Modified", validators)
            return []
        headers = validators + [("Accept-Ranges", "bytes")]
        spans = None
        # an empty file has no byte a 206 could name: its Range is ignored (RFC 9110 14.2 allows it)
        # and the file served whole, 200 and empty, rather than a 416 that nginx's slice module (it
        # always asks for the first slice) and resuming downloaders take for a failure
        if size and environ.get("HTTP_RANGE") and if_range_holds(environ, etag, entry.modified):
            try:
                spans = parse_range_header(environ["HTTP_RANGE"], size)
                spans = plan_parts(spans) if spans else None
            except Unsatisfiable:
                return text_reply("416 Range Not Satisfiable", f"The file has {size} bytes",
                                  headers + [("Content-Range", f"bytes */{size}")]).send(environ, start_response)
        mime = content_type(entry)
        if spans is None:
            status, parts, trailer = "200 OK", [(b"", 0, size - 1)] if size else [], b""
            headers.append(("Content-Type", mime))
        elif len(spans) == 1:
            (start, end), = spans
            status, parts, trailer = "206 Partial Content", [(b"", start, end)], b""
            headers += [("Content-Type", mime), ("Content-Range", f"bytes {start}-{end}/{size}")]
        else:
            boundary = secrets.token_hex(16)
            status, trailer = "206 Partial Content", f"\r\n--{boundary}--\r\n".encode()
            parts = [((("\r\n" if i else "") + f"--{boundary}\r\nContent-Type: {mime}\r\n"
                       f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n").encode(), start, end)
                     for i, (start, end) in enumerate(spans)]
            headers.append(("Content-Type", f"multipart/byteranges; boundary={boundary}"))
        length = sum(len(prefix) + end - start + 1 for prefix, start, end in parts) + len(trailer)
        start_response(status, headers + [("Content-Length", str(length))])
        if environ["REQUEST_METHOD"] == "HEAD":
            return []
        body = self._body(entry, parts, trailer)
        spans = [(start, end) for _, start, end in parts]
        return self.watch(body, environ, spans, size, length) if self.watch else body

    def _body(self, entry: FileEntry, parts: list[tuple[bytes, int, int]], trailer: bytes) -> Iterator[bytes]:
        """Each part opened with its exact [start, end] (per piece, for a file stored in several
        messages); a stream that ends early is an upstream failure."""
        for prefix, start, end in parts:
            for location, first, last in piece_spans(entry, start, end):
                stream = self.reader.open(location, first, last)
                try:
                    remaining = last - first + 1
                    while remaining:
                        block = stream.read(min(self.block_size, remaining))
                        if not block:
                            raise UpstreamUnavailable(f"the file ended {remaining} bytes early")
                        remaining -= len(block)
                        yield prefix + block if prefix else block
                        prefix = b""
                finally:
                    stream.close()
        if trailer:
            yield trailer


def piece_spans(entry: FileEntry, start: int, end: int) -> list[tuple[Location, int, int]]:
    """Bytes start..end of the file as (piece, first, last) ranges inside each piece it crosses."""
    out = []
    for offset, location in entry.spans:
        lo, hi = max(start, offset), min(end, offset + location.size - 1)
        if lo <= hi:
            out.append((location, lo - offset, hi - offset))
    return out
