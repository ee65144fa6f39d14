"""A LOCK whose file is deleted or moved while the lock is granted (another replica's DELETE, a
Telegram app): answered in words (409, nothing locked), never a 500 with a traceback, and no lock is
left on a path that holds nothing. WsgiDAV names each lock's root in lockdiscovery by finding the
root again (dav_provider.get_property_value); the race is made certain by deleting the file the
moment WsgiDAV's lock manager grants the lock."""

from __future__ import annotations

import io

import pytest
from wsgidav.lock_man.lock_manager import LockManager

from tests.dav.fakes import FakeCatalog, FakeReader
from tgdav.dav.server import build_app

LOCKINFO = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>me</D:owner></D:lockinfo>')


class Drive:
    allow_new_channels = False

    def check(self, folder) -> None:
        pass


def _call(app, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(), "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": "text/xml", **(headers or {})}
    got = {}

    def start_response(status, response_headers, exc_info=None):
        got["status"], got["headers"] = int(status.split()[0]), dict(response_headers)
    body = b"".join(app(environ, start_response))
    return got["status"], got["headers"], body


@pytest.mark.parametrize("name", ["small.txt", "one.byte"])
def test_a_lock_whose_file_vanishes_meanwhile_is_409_and_leaves_no_lock(monkeypatch, tmp_path, name):
    catalog = FakeCatalog()
    app = build_app(catalog, FakeReader(), users=None, auth="none", drive=Drive(), state_dir=tmp_path)
    granted = LockManager.acquire

    def acquire_then_vanish(self, *args, **kwargs):      # a DELETE elsewhere lands right after the grant
        lock = granted(self, *args, **kwargs)
        catalog.tree["Films"] = [e for e in catalog.tree["Films"] if e.name != name]
        return lock
    monkeypatch.setattr(LockManager, "acquire", acquire_then_vanish)
    status, headers, body = _call(app, "LOCK", f"/Films/{name}", LOCKINFO, {"HTTP_TIMEOUT": "Second-600"})
    assert status == 409, (status, body)
    assert b"Traceback" not in body and body.strip() and b"\n" not in body.strip(), body
    assert "Lock-Token" not in headers
    monkeypatch.setattr(LockManager, "acquire", granted)
    # nothing stays locked at that path: a new file there can be locked at once by anyone
    catalog.tree["Films"].append(next(e for e in FakeCatalog().tree["Films"] if e.name == name))
    status, headers, body = _call(app, "LOCK", f"/Films/{name}", LOCKINFO, {"HTTP_TIMEOUT": "Second-600"})
    assert status == 200 and headers.get("Lock-Token"), (status, body)
