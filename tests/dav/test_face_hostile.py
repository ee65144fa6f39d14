"""The browser face with hostile text and the small things a person notices: the status page lists
the channels being read (as status.json does) and stays valid HTML whatever the account or channel
names hold; every page has a strict CSP; /favicon.ico is served; folders have their own glyph."""

from __future__ import annotations

import html5lib

from tests.dav.fakes import FakeCatalog, make_entry
from tgdav.dav.face import ICONS
from tgdav.metrics import Metrics

BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def test_status_page_lists_channels_being_read_and_stays_valid_html(serve, curl):
    metrics = Metrics()
    metrics.activity.account = "Mallory\u202e\uffff\x85"
    metrics.scan_progress("Films", 120, 4, done=True)
    metrics.scan_progress("evil\u202egnp.exe\ufffe", 3, 1)
    dav = serve(metrics=metrics)
    page = curl(dav.url + "/:tgdav/status")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html5lib.HTMLParser(strict=True).parse(page.body)
    text = page.body.decode()
    assert "Reading channels" in text and "Films: done, 120 messages, 4 files" in text
    assert "evil\ufffdgnp.exe\ufffd: reading" in text and not BIDI & set(text)


def test_every_page_has_a_strict_policy_and_the_icon_is_served(dav, curl):
    for path in ("/", "/Films/", "/:tgdav/status", "/:tgdav/status?fragment=1"):
        policy = curl(dav.url + path).headers["content-security-policy"]
        assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy, path
    icon = curl(dav.url + "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.body[:4] == b"\x00\x00\x01\x00" and b"\x89PNG" in icon.body
    file = curl(dav.url + "/Films/small.txt")
    assert file.headers["content-security-policy"].startswith("sandbox")
    assert file.headers["x-content-type-options"] == "nosniff"


def test_pdfs_open_in_the_browsers_viewer_other_types_stay_sandboxed(serve, curl):
    catalog = FakeCatalog({"Docs": [make_entry(41, "paper.pdf", 100, "application/pdf"),
                                    make_entry(42, "paper2.pdf", 100, "text/html"),
                                    make_entry(43, "paper3.pdf", 100, "application/pdf; x=<script>")]})
    dav = serve(catalog)
    pdf = curl(dav.url + "/Docs/paper.pdf")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in pdf.headers        # Chrome's viewer refuses a sandbox
    for name in ("paper2.pdf", "paper3.pdf"):                  # the type decides, not the name
        assert curl(dav.url + "/Docs/" + name).headers["content-security-policy"].startswith("sandbox"), name


def test_folders_have_their_own_glyph(dav, curl):
    folder = int(ICONS["folder"].strip("&#;"))
    assert not 0x25B6 <= folder <= 0x25BB, "a right-pointing triangle reads as the video's play glyph"
    root = curl(dav.url + "/").body.decode()
    assert f'<span class="icon">{ICONS["folder"]}</span>' in root and ICONS["video"] not in root
