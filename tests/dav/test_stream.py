"""GET/HEAD of files with curl: every kind of Range, conditionals, exact bytes and exact reader opens."""

from __future__ import annotations

import http.client
from email.utils import formatdate
from urllib.parse import quote

import pytest

from tests.dav.fakes import FakeCatalog, GiB, MiB, make_entry
from tgdav.sandbox.content import pattern

CLIP = ("Films", "clip #1 100% what?.mp4")
SMALL = ("Films", "small.txt")
HUGE = ("Big", "huge movie.mkv")


def url_of(dav, folder: str, name: str) -> str:
    return f"{dav.url}/{quote(folder)}/{quote(name)}"


def test_full_get_sends_exact_bytes_and_headers(dav, curl):
    entry = dav.catalog.file(*SMALL)
    r = curl(url_of(dav, *SMALL))
    assert r.status == 200
    assert r.body == pattern(14, 0, 1000)
    assert r.headers["content-length"] == "1000"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["etag"] == '"doc14-1000"'
    assert r.headers["last-modified"] == formatdate(entry.modified, usegmt=True)
    assert dav.reader.opens == [(14, 0, 999)]


@pytest.mark.parametrize("spec, first, last", [
    ("0-99", 0, 99),
    ("4000000-", 4000000, 5 * MiB + 16),
    ("-500", 5 * MiB + 17 - 500, 5 * MiB + 16),
    (f"{5 * MiB + 16}-{5 * MiB + 16}", 5 * MiB + 16, 5 * MiB + 16),
    ("5000-99999999999", 5000, 5 * MiB + 16),
    ("-99999999", 0, 5 * MiB + 16),
])
def test_single_range_opens_exactly_that_range(dav, curl, spec, first, last):
    size = 5 * MiB + 17
    r = curl(url_of(dav, *CLIP), "-H", f"Range: bytes={spec}")
    assert r.status == 206
    assert r.headers["content-range"] == f"bytes {first}-{last}/{size}"
    assert r.headers["content-length"] == str(last - first + 1)
    assert r.body == pattern(11, first, last - first + 1)
    assert dav.reader.opens == [(11, first, last)]
    assert dav.reader.bytes_read == last - first + 1


def test_ranges_deep_inside_a_file_of_several_gib(dav, curl):
    size = 3 * GiB + 12345
    for spec, first, last in [("-100", size - 100, size - 1),
                              (f"{GiB}-{GiB + 999}", GiB, GiB + 999),
                              (f"{3 * GiB}-", 3 * GiB, size - 1)]:
        r = curl(url_of(dav, *HUGE), "-r", spec)
        assert (r.status, r.headers["content-range"]) == (206, f"bytes {first}-{last}/{size}")
        assert r.body == pattern(31, first, last - first + 1)
        assert dav.reader.opens[-1] == (31, first, last)


def test_unsatisfiable_range_is_416_with_the_size(dav, curl):
    r = curl(url_of(dav, *SMALL), "-H", "Range: bytes=1000-")
    assert r.status == 416
    assert r.headers["content-range"] == "bytes */1000"
    assert dav.reader.opens == []


def test_malformed_range_serves_the_whole_file(dav, curl):
    r = curl(url_of(dav, *SMALL), "-H", "Range: bytes=9-2")
    assert (r.status, r.body) == (200, pattern(14, 0, 1000))


def test_empty_and_one_byte_files(dav, curl):
    r = curl(url_of(dav, "Films", "empty.bin"))
    assert (r.status, r.body, r.headers["content-length"]) == (200, b"", "0")
    for spec in ("0-", "0-1048575", "-5", "10-20"):    # no byte range of it exists: 200, empty
        r = curl(url_of(dav, "Films", "empty.bin"), "-r", spec)
        assert (r.status, r.body, r.headers["content-length"]) == (200, b"", "0")
    assert dav.reader.opens == []
    r = curl(url_of(dav, "Films", "one.byte"))
    assert (r.status, r.body) == (200, pattern(13, 0, 1))
    r = curl(url_of(dav, "Films", "one.byte"), "-r", "-1")
    assert (r.status, r.body, r.headers["content-range"]) == (206, pattern(13, 0, 1), "bytes 0-0/1")


def _parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    boundary = content_type.split("boundary=")[1].encode()
    assert body.startswith(b"--" + boundary + b"\r\n") and body.endswith(b"\r\n--" + boundary + b"--\r\n")
    chunks = body[:-len(boundary) - 8].split(b"--" + boundary + b"\r\n")[1:]
    out = []
    for chunk in chunks:
        head, _, data = chunk.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        out.append((headers["Content-Range"], data.removesuffix(b"\r\n")))
    return out


def test_multi_range_answers_every_part_exactly(dav, curl):
    size = 5 * MiB + 17
    r = curl(url_of(dav, *CLIP), "-H", "Range: bytes=0-9, 3000000-3000099, -10")
    assert r.status == 206
    assert r.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert int(r.headers["content-length"]) == len(r.body)
    assert _parts(r.body, r.headers["content-type"]) == [
        (f"bytes 0-9/{size}", pattern(11, 0, 10)),
        (f"bytes 3000000-3000099/{size}", pattern(11, 3000000, 100)),
        (f"bytes {size - 10}-{size - 1}/{size}", pattern(11, size - 10, 10)),
    ]
    assert dav.reader.opens == [(11, 0, 9), (11, 3000000, 3000099), (11, size - 10, size - 1)]


def test_overlapping_ranges_are_merged_so_no_byte_is_read_twice(dav, curl):
    r = curl(url_of(dav, *SMALL), "-H", "Range: bytes=0-99,50-149,0-,-1000")
    assert (r.status, r.headers["content-range"]) == (206, "bytes 0-999/1000")
    assert r.body == pattern(14, 0, 1000)
    assert dav.reader.opens == [(14, 0, 999)]


def test_if_range(dav, curl):
    entry = dav.catalog.file(*SMALL)
    url = url_of(dav, *SMALL)
    same_date = formatdate(entry.modified, usegmt=True)
    other_date = formatdate(entry.modified - 1, usegmt=True)
    for validator, status in [('"doc14-1000"', 206), ('"other"', 200), (same_date, 206), (other_date, 200),
                              ('W/"doc14-1000"', 200)]:
        r = curl(url, "-r", "10-19", "-H", f"If-Range: {validator}")
        assert r.status == status, validator
        assert r.body == (pattern(14, 10, 10) if status == 206 else pattern(14, 0, 1000))


def test_if_match_that_does_not_hold_is_412_without_opening_the_file(dav, curl):
    url = url_of(dav, *SMALL)
    for validator, status in [('"doc14-1000"', 200), ("*", 200), ('"x", "doc14-1000"', 200),
                              ('"other"', 412), ('W/"doc14-1000"', 412)]:
        r = curl(url, "-H", f"If-Match: {validator}")
        assert r.status == status, validator
        assert r.body == (pattern(14, 0, 1000) if status == 200 else r.body)
    assert dav.reader.opens == [(14, 0, 999)] * 3


def test_conditional_get_gives_304_without_opening_the_file(dav, curl):
    entry = dav.catalog.file(*SMALL)
    url = url_of(dav, *SMALL)
    modified = entry.modified
    not_modified = [("If-None-Match", '"doc14-1000"'), ("If-None-Match", 'W/"doc14-1000", "x"'),
                    ("If-None-Match", "*"), ("If-Modified-Since", formatdate(modified, usegmt=True)),
                    ("If-Modified-Since", formatdate(modified + 86400, usegmt=True))]
    for name, value in not_modified:
        r = curl(url, "-H", f"{name}: {value}")
        assert (r.status, r.body) == (304, b""), (name, value)
        assert r.headers["etag"] == '"doc14-1000"'
    assert dav.reader.opens == []
    for name, value in [("If-None-Match", '"other"'), ("If-Modified-Since", formatdate(modified - 1, usegmt=True)),
                        ("If-Modified-Since", "garbage")]:
        assert curl(url, "-H", f"{name}: {value}").status == 200, (name, value)


def test_head_sends_the_get_headers_and_opens_nothing(dav, curl):
    url = url_of(dav, *CLIP)
    head = curl(url, "-I")
    assert head.status == 200
    assert dav.reader.opens == []
    get = curl(url, "-r", "0-0")
    ranged_head = curl(url, "-I", "-r", "0-0")
    assert dav.reader.opens == [(11, 0, 0)]
    assert head.headers["content-length"] == str(5 * MiB + 17)
    for name in ("etag", "last-modified", "content-type", "accept-ranges"):
        assert head.headers[name] == get.headers[name] == ranged_head.headers[name]
    assert ranged_head.headers["content-range"] == get.headers["content-range"]


def test_head_has_no_body_on_a_kept_alive_connection(dav):
    conn = http.client.HTTPConnection("127.0.0.1", dav.port, timeout=30)
    path = "/" + quote(SMALL[0]) + "/" + quote(SMALL[1])
    for _ in range(2):
        conn.request("HEAD", path)
        r = conn.getresponse()
        assert (r.status, r.read(), r.getheader("Content-Length")) == (200, b"", "1000")
    conn.request("GET", path, headers={"Range": "bytes=0-4"})
    r = conn.getresponse()
    assert (r.status, r.read()) == (206, pattern(14, 0, 5))
    conn.close()
    assert dav.reader.opens == [(14, 0, 4)]


def test_unicode_and_reserved_characters_in_names(dav, curl):
    r = curl(url_of(dav, "Música ünï", "日本語 file.flac"))
    assert (r.status, r.body) == (200, pattern(22, 0, 70_000))
    r = curl(url_of(dav, "Música ünï", "canción – ñ.mp3"), "-r", "-7")
    assert (r.status, r.body) == (206, pattern(21, 300_001 - 7, 7))


def test_unknown_files_are_404(dav, curl):
    assert curl(url_of(dav, "Films", "nope.mkv")).status == 404
    assert curl(url_of(dav, "Nope", "small.txt")).status == 404
    assert curl(url_of(dav, "Films", "small.txt") + "/deeper").status == 404
    assert dav.reader.opens == []


def test_a_hostile_mime_type_never_reaches_a_header(serve, curl):
    catalog = FakeCatalog({"X": [make_entry(41, "a.bin", 10, "video/mp4\r\nX-Evil: 1"),
                                 make_entry(42, "b.bin", 10, "vidéo/ü"), make_entry(43, "c.bin", 10, "")]})
    dav = serve(catalog)
    for name, seed in (("a.bin", 41), ("b.bin", 42), ("c.bin", 43)):
        r = curl(f"{dav.url}/X/{name}")
        assert (r.status, r.body) == (200, pattern(seed, 0, 10))
        assert r.headers["content-type"] == "application/octet-stream"
        assert "x-evil" not in r.headers
