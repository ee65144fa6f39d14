"""Basic and Digest with plain and hashed secrets, over real HTTP; check_bind."""

from __future__ import annotations

import base64
import hashlib
import logging
import re

import pytest

from tgdav.dav.auth import NONCE_TTL, Authenticator
from tgdav.dav.server import check_bind
from tgdav.errors import ConfigError
from tgdav.sandbox.content import pattern

PW = "s3cret pässword:with colon"
SMALL = "/Films/small.txt"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


USERS = {
    "plain": PW,
    "sha": "sha256:" + hashlib.sha256(PW.encode()).hexdigest(),
    "pbkdf2": "pbkdf2_sha256$1000$NaCl$" + hashlib.pbkdf2_hmac("sha256", PW.encode(), b"NaCl", 1000).hex(),
    "ha1": "ha1:" + md5(f"ha1:tgdav:{PW}"),
}


@pytest.fixture
def basic(serve):
    return serve(users=USERS, auth="basic")


@pytest.fixture
def digest(serve):
    return serve(users=USERS, auth="digest")


@pytest.mark.parametrize("user", sorted(USERS))
def test_basic_accepts_every_stored_form(basic, curl, user):
    r = curl(basic.url + SMALL, "-u", f"{user}:{PW}")
    assert (r.status, r.body) == (200, pattern(14, 0, 1000))
    r = curl(basic.url + "/Films/", "-u", f"{user}:{PW}", "-X", "PROPFIND", "-H", "Depth: 1")
    assert r.status == 207


@pytest.mark.parametrize("credentials", [None, f"plain:{PW}x", "nobody:x", f"sha:{PW[:-1]}", "pbkdf2:", f"ha1:{PW} "])
def test_basic_refuses_wrong_credentials(basic, curl, credentials):
    r = curl(basic.url + SMALL, *(["-u", credentials] if credentials else []))
    assert r.status == 401
    assert r.headers["www-authenticate"].startswith('Basic realm="tgdav"')
    assert basic.reader.opens == [] and sum(basic.catalog.calls.values()) == 0


@pytest.mark.parametrize("header", ["Basic !!!notbase64", "Basic " + base64.b64encode(b"nocolon").decode(),
                                    "Basic " + base64.b64encode(b"\xff\xfe:x").decode()])
def test_malformed_basic_is_400(basic, curl, header):
    assert curl(basic.url + SMALL, "-H", f"Authorization: {header}").status == 400
    assert curl(basic.url + SMALL, "-u", f"plain:{PW}").status == 200


@pytest.mark.parametrize("user", ["plain", "ha1"])
def test_digest_accepts_plain_and_ha1(digest, curl, user):
    r = curl(digest.url + SMALL, "--digest", "-u", f"{user}:{PW}", "-r", "0-9")
    assert (r.status, r.body) == (206, pattern(14, 0, 10))


@pytest.mark.parametrize("credentials", [f"plain:{PW}x", f"sha:{PW}", f"pbkdf2:{PW}", "nobody:x"])
def test_digest_refuses_wrong_or_unusable_credentials(digest, curl, credentials):
    r = curl(digest.url + SMALL, "--digest", "-u", credentials)
    assert r.status == 401
    assert r.headers["www-authenticate"].startswith('Digest realm="tgdav"')
    assert curl(digest.url + SMALL, "-u", f"plain:{PW}").status == 401  # Basic is not offered


def _digest_header(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)
    ha1, ha2 = md5(f"{user}:tgdav:{password}"), md5(f"{method}:{uri}")
    response = md5(f"{ha1}:{nonce}:00000001:abc:auth:{ha2}")
    return (f'Digest username="{user}", realm="tgdav", nonce="{nonce}", uri="{uri}", qop=auth, '
            f'nc=00000001, cnonce="abc", response="{response}", algorithm=MD5')


def test_digest_is_bound_to_the_requested_uri(digest, curl):
    challenge = curl(digest.url + SMALL).headers["www-authenticate"]
    header = _digest_header(challenge, "plain", PW, "GET", SMALL)
    assert curl(digest.url + SMALL, "-H", f"Authorization: {header}").status == 200
    assert curl(digest.url + "/Films/one.byte", "-H", f"Authorization: {header}").status == 401
    forged = header.replace(challenge.split('nonce="')[1][:8], "00000000", 1)
    assert curl(digest.url + SMALL, "-H", f"Authorization: {forged}").status == 401


def test_digest_nonce_expires_as_stale():
    now = [1_000_000.0]
    seen = []

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    auth = Authenticator(app, {"plain": PW}, "digest", "tgdav", clock=lambda: now[0])

    def call(header=None):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": SMALL, "REQUEST_URI": SMALL}
        if header:
            environ["HTTP_AUTHORIZATION"] = header
        body = auth(environ, lambda status, headers: seen.append((status, dict(headers))))
        return seen[-1][0].split()[0], seen[-1][1], b"".join(body)

    status, headers, _ = call()
    header = _digest_header(headers["WWW-Authenticate"], "plain", PW, "GET", SMALL)
    assert call(header)[0] == "200"
    now[0] += NONCE_TTL + 1
    status, headers, _ = call(header)
    assert status == "401" and "stale=true" in headers["WWW-Authenticate"]


def test_credentials_never_reach_the_log(basic, curl, caplog):
    caplog.set_level(logging.DEBUG)
    curl(basic.url + SMALL, "-u", f"plain:{PW}")
    curl(basic.url + SMALL, "-u", f"plain:{PW}x")
    token = base64.b64encode(f"plain:{PW}".encode()).decode()
    assert caplog.records  # the access log did write
    assert not any(PW in r.getMessage() or token in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("host, users, auth, ok", [
    ("127.0.0.1", None, "basic", True), ("::1", {}, "digest", True), ("localhost", None, "basic", True),
    ("0.0.0.0", {"a": "b"}, "basic", True), ("0.0.0.0", None, "none", True),
    ("0.0.0.0", None, "basic", False), ("0.0.0.0", {}, "digest", False), ("192.168.1.5", None, "basic", False),
    ("::", None, "basic", False), ("127.0.0.1", None, "kerberos", False),
])
def test_check_bind(host, users, auth, ok):
    if ok:
        check_bind(host, users, auth)
    else:
        with pytest.raises(ConfigError):
            check_bind(host, users, auth)
