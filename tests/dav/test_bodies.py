"""DavBodies: a 207 WsgiDAV composes (errors on members of a DELETE, COPY or MOVE) describes every
failure in tgdav's words."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tgdav.dav.policy import DavBodies

BARE = (b'<?xml version="1.0" encoding="utf-8" ?>\n<ns0:multistatus xmlns:ns0="DAV:"><ns0:response>'
        b"<ns0:href>/Uploads/dir/a.txt</ns0:href><ns0:status>HTTP/1.1 423 Locked</ns0:status></ns0:response>"
        b"<ns0:response><ns0:href>/Uploads/dir/b.txt</ns0:href><ns0:status>HTTP/1.1 403 Forbidden</ns0:status>"
        b"</ns0:response></ns0:multistatus>")


def test_a_bare_multistatus_gets_words_for_each_failure():
    def wsgidav(environ, start_response):
        start_response("207 Multi-Status", [("Content-Type", "application/xml; charset=utf-8"),
                                            ("Content-Length", str(len(BARE)))])
        yield BARE

    got = {}
    body = b"".join(DavBodies(wsgidav)({"REQUEST_METHOD": "DELETE"},
                                       lambda s, h: got.update(status=s, headers=dict(h))))
    assert got["status"] == "207 Multi-Status" and int(got["headers"]["Content-Length"]) == len(body)
    described = {r.findtext("{DAV:}href"): r.findtext("{DAV:}responsedescription")
                 for r in ET.fromstring(body).iter("{DAV:}response")}
    assert described == {"/Uploads/dir/a.txt": "The resource is locked",
                         "/Uploads/dir/b.txt": "This request is not allowed"}


def test_a_propfind_multistatus_passes_untouched():
    def wsgidav(environ, start_response):
        start_response("207 Multi-Status", [("Content-Type", "application/xml; charset=utf-8")])
        yield BARE

    assert b"".join(DavBodies(wsgidav)({"REQUEST_METHOD": "PROPFIND"}, lambda s, h: None)) == BARE
