"""PROPFIND listings against the fake catalog, Depth policy, and probe names that never reach it."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from email.utils import formatdate
from urllib.parse import quote, unquote

import pytest

from tests.dav.fakes import FakeCatalog, make_entry

D = "{DAV:}"


def propfind(curl, url: str, depth: str | None, body: str | None = None):
    args = ["-X", "PROPFIND"] + (["-H", f"Depth: {depth}"] if depth is not None else [])
    if body is not None:
        args += ["-H", "Content-Type: application/xml", "--data-binary", body]
    return curl(url, *args)


def listing(body: bytes) -> dict[str, dict[str, str | None]]:
    """href (decoded) -> {property local name: text}; resourcetype becomes "collection" or ""."""
    out = {}
    for response in ET.fromstring(body).iter(f"{D}response"):
        props = {}
        for prop in response.iter(f"{D}prop"):
            for child in prop:
                name = child.tag.removeprefix(D)
                props[name] = "collection" if child.find(f"{D}collection") is not None else (child.text or "")
        out[unquote(response.find(f"{D}href").text)] = props
    return out


def test_root_depth_1_lists_every_folder(dav, curl):
    r = propfind(curl, dav.url + "/", "1")
    assert r.status == 207
    found = listing(r.body)
    expected = {"/"} | {f"/{name}/" for name in dav.catalog.tree}
    assert set(found) == expected
    for name, folder in dav.catalog._folders.items():
        props = found[f"/{name}/"]
        assert props["resourcetype"] == "collection"
        assert props["displayname"] == name
        assert props["getlastmodified"] == formatdate(folder.modified, usegmt=True)
    assert dav.reader.opens == []


@pytest.mark.parametrize("folder", ["Films", "Música ünï", "Empty folder"])
def test_folder_depth_1_lists_its_files_with_their_metadata(dav, curl, folder):
    r = propfind(curl, f"{dav.url}/{quote(folder)}/", "1")
    assert r.status == 207
    found = listing(r.body)
    assert set(found) == {f"/{folder}/"} | {f"/{folder}/{e.name}" for e in dav.catalog.tree[folder]}
    for entry in dav.catalog.tree[folder]:
        props = found[f"/{folder}/{entry.name}"]
        assert props == {
            "resourcetype": "",
            "displayname": entry.name,
            "getcontentlength": str(entry.size),
            "getcontenttype": entry.mime,
            "getlastmodified": formatdate(entry.modified, usegmt=True),
            "creationdate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.created)),
            "getetag": f'"{entry.etag}"',
        }
    assert dav.reader.opens == []


def test_depth_0_on_a_file_and_named_properties(dav, curl):
    url = f"{dav.url}/Films/{quote('clip #1 100% what?.mp4')}"
    r = propfind(curl, url, "0", '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>'
                                 '<D:getcontentlength/><D:resourcetype/></D:prop></D:propfind>')
    assert r.status == 207
    assert listing(r.body) == {"/Films/clip #1 100% what?.mp4": {"getcontentlength": str(5 * 2**20 + 17),
                                                                  "resourcetype": ""}}
    r = propfind(curl, f"{dav.url}/Films/", "0")
    assert set(listing(r.body)) == {"/Films/"}
    assert dav.reader.opens == []


@pytest.mark.parametrize("depth", [None, "infinity", "Infinity"])
def test_infinite_depth_is_refused_with_the_precondition(dav, curl, depth):
    r = propfind(curl, dav.url + "/", depth)
    assert r.status == 403
    assert ET.fromstring(r.body).find(f"{D}propfind-finite-depth") is not None
    assert sum(dav.catalog.calls.values()) == 0


def test_bad_depth_is_400(dav, curl):
    assert propfind(curl, dav.url + "/", "2").status == 400


def test_unknown_paths_are_404(dav, curl):
    assert propfind(curl, dav.url + "/Nope/", "1").status == 404
    assert propfind(curl, dav.url + "/Films/nope.txt", "0").status == 404


@pytest.mark.parametrize("path", [
    "/._Films", "/Films/._small.txt", "/.DS_Store", "/Films/.DS_Store", "/.localized", "/.Spotlight-V100",
    "/.metadata_never_index", "/.Trashes", "/.hidden", "/.ql_disablethumbnails", "/Films/desktop.ini",
    "/Films/Thumbs.db", "/autorun.inf", "/Films/DESKTOP.INI",
])
def test_probe_names_are_404_without_touching_catalog_or_reader(dav, curl, path):
    for args in (["-X", "PROPFIND", "-H", "Depth: 0"], ["-X", "PROPFIND", "-H", "Depth: 1"], [], ["-I"]):
        assert curl(dav.url + quote(path), *args).status == 404
    assert sum(dav.catalog.calls.values()) == 0
    assert dav.reader.opens == []


def test_a_big_folder_lists_lean(serve, curl):
    """About 520 bytes a file: Explorer (1 MB reply limit by default) can list ~1900 files."""
    files = [make_entry(1000 + i, f"episode {i:04d}.mkv", 700 * 2**20 + i, "video/x-matroska") for i in range(1500)]
    dav = serve(FakeCatalog({"Series": files}))
    r = propfind(curl, dav.url + "/Series/", "1")
    assert r.status == 207
    assert len(listing(r.body)) == 1501
    assert len(r.body) < 1500 * 550
    assert dav.catalog.calls["entries"] == 1
    assert dav.catalog.calls["entry"] == 0


def full(body: bytes) -> dict[str, dict[str, tuple[str, str]]]:
    """href (decoded) -> {property: (status line, its XML without namespace prefixes)}: prefixes and
    order differ between renderers, the meaning must not."""
    out = {}
    for response in ET.fromstring(body).iter(f"{D}response"):
        props = {}
        for propstat in response.iter(f"{D}propstat"):
            status = propstat.find(f"{D}status").text
            for child in propstat.find(f"{D}prop"):
                inner = "".join(sorted(ET.tostring(c, encoding="unicode").replace("ns0:", "").replace(
                    ' xmlns:ns0="DAV:"', "") for c in child.iter() if c is not child))
                props[child.tag] = (status, (child.text or "").strip() + inner)
        out[unquote(response.find(f"{D}href").text)] = props
    return out


NAMED = ['<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/><D:resourcetype/>'
         '</D:prop></D:propfind>',
         '<?xml version="1.0"?><propfind xmlns="DAV:"><prop><displayname/><getetag/><creationdate/>'
         '<getlastmodified/><getcontenttype/></prop></propfind>',
         '<?xml version="1.0"?><propfind xmlns="DAV:"><allprop/></propfind>']


@pytest.mark.parametrize("path", ["/", "/Films/", "/M%C3%BAsica%20%C3%BCn%C3%AF/", "/Empty%20folder/"])
@pytest.mark.parametrize("depth", ["0", "1"])
@pytest.mark.parametrize("body", [None] + NAMED)
def test_collections_render_as_wsgidav_renders_them(serve, curl, monkeypatch, path, depth, body):
    """dav.listing answers PROPFIND of collections itself (streamed); every property, status and
    href is what WsgiDAV's own machinery answers for the same request."""
    fast = serve()
    monkeypatch.setattr("tgdav.dav.server.FastPropfind", lambda app, provider: app)
    wsgidav = serve()
    mine, theirs = propfind(curl, fast.url + path, depth, body), propfind(curl, wsgidav.url + path, depth, body)
    assert mine.status == theirs.status == 207
    assert mine.headers.get("transfer-encoding") == "chunked" and "content-length" in theirs.headers
    assert full(mine.body) == full(theirs.body)
    assert len(full(mine.body)) > (1 if depth == "1" and path != "/Empty%20folder/" else 0)


@pytest.mark.parametrize("body", ['<?xml version="1.0"?><propfind xmlns="DAV:"><propname/></propfind>',
                                  '<?xml version="1.0"?><propfind xmlns="DAV:" xmlns:x="urn:x"><prop>'
                                  '<x:color/><displayname/></prop></propfind>', "<not xml"])
def test_what_is_not_rendered_here_is_wsgidavs_answer(dav, curl, body):
    r = propfind(curl, dav.url + "/Films/", "1", body)
    assert r.headers.get("transfer-encoding") != "chunked"
    assert r.status in (207, 400)


def test_hostile_names_yield_valid_xml_and_their_own_hrefs(serve, curl):
    names = ["a\uffffb.bin", "x\u202egnp.exe", "<&>\"'.txt", "ctl\x01\x7f.bin", "ok.bin"]
    dav = serve(FakeCatalog({"Odd": [make_entry(40 + i, n, 10 + i) for i, n in enumerate(names)]}))
    found = listing(propfind(curl, dav.url + "/Odd/", "1").body)      # parses: valid XML
    for n in names:
        assert found[f"/Odd/{n}"]["displayname"] == n.replace("\uffff", "\ufffd").replace("\u202e", "\ufffd") \
            .replace("\x01", "\ufffd").replace("\x7f", "\ufffd")


def test_a_listing_telegram_cannot_give_now_is_503_with_retry_after(serve, curl):
    """The members are read before the 207 starts: a flood wait is its own answer, not a cut body."""
    from tgdav.errors import RetryLater

    class Flooded(FakeCatalog):
        def entries(self, folder):
            raise RetryLater(7, "Telegram asked to wait 7 s")
    dav = serve(Flooded())
    r = propfind(curl, dav.url + "/Films/", "1")
    assert r.status == 503 and r.headers["retry-after"] == "7"
    assert propfind(curl, dav.url + "/Films/", "0").status == 207     # the folder itself needs no listing
