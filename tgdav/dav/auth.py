"""HTTP authentication: Basic or Digest (RFC 7616, MD5, qop=auth), against a users dict.

A password in `users` may be stored in one of these forms; the prefix decides the form:

    form                                   Basic   Digest
    plain text                              yes     yes
    "sha256:<hex>"  (sha256 of password)    yes     no
    "pbkdf2_sha256$<iterations>$<salt>$<hex>" yes   no     (hex of pbkdf2_hmac("sha256", pw, salt, n))
    "ha1:<hex>"     (md5 of "user:realm:pw") yes    yes    (bound to the realm it was made for)

Digest needs the plain password or its HA1, so hashed forms only work with Basic; use Basic over TLS
(Explorer insists on that anyway). Secrets are compared in constant time.

Digest nonces are stateless: a timestamp signed with a per-process key, valid for NONCE_TTL seconds;
an older, correctly signed nonce gets a fresh challenge with stale=true, so clients retry silently.
Nonce counts are not tracked (a captured request can be replayed for the same URI within the TTL).
Malformed Authorization headers get 400; bad credentials get 401 with a challenge.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from typing import Callable, Iterable
from urllib.parse import unquote, urlsplit

from tgdav.dav.policy import StartResponse, text_reply

NONCE_TTL = 3600
SCHEMES = ("basic", "digest", "none")
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


class MalformedCredentials(ValueError):
    pass


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def check_password(stored: str, user: str, realm: str, password: str) -> bool:
    """Basic: does `password` match the stored secret, whatever its form?"""
    if stored.startswith("sha256:"):
        return _equal(hashlib.sha256(password.encode()).hexdigest(), stored[7:].lower())
    if stored.startswith("pbkdf2_sha256$"):
        try:
            _, iterations, salt, digest = stored.split("$", 3)
            derived = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
        except ValueError:
            return False
        return _equal(derived.hex(), digest.lower())
    if stored.startswith("ha1:"):
        return _equal(_md5(f"{user}:{realm}:{password}"), stored[4:].lower())
    return _equal(stored, password)


def digest_ha1(stored: str, user: str, realm: str) -> str | None:
    """Digest's HA1 for a stored secret, or None when the form cannot do Digest."""
    if stored.startswith("ha1:"):
        return stored[4:].lower()
    if stored.startswith(("sha256:", "pbkdf2_sha256$")):
        return None
    return _md5(f"{user}:{realm}:{stored}")


def parse_digest_params(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        match = _PARAM.match(value, pos)
        if match is None or match.end() == pos:
            raise MalformedCredentials("malformed Digest parameters")
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = match.end()
    return params


class Authenticator:
    """WSGI middleware: lets a request through only with valid credentials (scheme "none": always)."""

    def __init__(self, app: Callable, users: dict[str, str] | None, scheme: str, realm: str,
                 clock: Callable[[], float] = time.time) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"auth must be one of {', '.join(SCHEMES)}, not {scheme!r}")
        self.app, self.users, self.scheme, self.realm, self.clock = app, users or {}, scheme, realm, clock
        self._key = secrets.token_bytes(32)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgidav.auth.realm"] = self.realm
        environ["wsgidav.auth.user_name"] = ""
        if self.scheme == "none":
            return self.app(environ, start_response)
        header = environ.get("HTTP_AUTHORIZATION", "")
        kind, _, credentials = header.strip().partition(" ")
        stale = False
        try:
            if kind.lower() == "basic" and self.scheme == "basic":
                user = self._basic(credentials)
            elif kind.lower() == "digest" and self.scheme == "digest":
                user, stale = self._digest(environ, parse_digest_params(credentials))
            else:
                user = None
        except MalformedCredentials as exc:
            return text_reply("400 Bad Request", f"Malformed Authorization header: {exc}").send(
                environ, start_response)
        if user is None:
            return text_reply("401 Unauthorized", "Authentication required",
                              [("WWW-Authenticate", self._challenge(stale))]).send(environ, start_response)
        environ["wsgidav.auth.user_name"] = user
        return self.app(environ, start_response)

    def _challenge(self, stale: bool) -> str:
        if self.scheme == "basic":
            return f'Basic realm="{self.realm}", charset="UTF-8"'
        return (f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, nonce="{self._nonce()}"'
                + (", stale=true" if stale else ""))

    def _basic(self, credentials: str) -> str | None:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise MalformedCredentials("Basic credentials are not base64 of UTF-8 user:password") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise MalformedCredentials("Basic credentials lack the ':' between user and password")
        stored = self.users.get(user)
        return user if stored is not None and check_password(stored, user, self.realm, password) else None

    def _nonce(self) -> str:
        stamp = f"{int(self.clock()):x}"
        return f"{stamp}.{hmac.new(self._key, stamp.encode(), 'sha256').hexdigest()[:32]}"

    def _nonce_state(self, nonce: str) -> str:
        """"fresh", "stale" (ours but too old) or "bad"."""
        stamp, _, signature = nonce.partition(".")
        expected = hmac.new(self._key, stamp.encode(), "sha256").hexdigest()[:32]
        if not _equal(signature, expected):
            return "bad"
        return "fresh" if self.clock() - int(stamp, 16) <= NONCE_TTL else "stale"

    def _digest(self, environ: dict, p: dict[str, str]) -> tuple[str | None, bool]:
        """(user or None, stale) for a Digest response."""
        required = ("username", "realm", "nonce", "uri", "response")
        if any(key not in p for key in required):
            raise MalformedCredentials("Digest credentials need " + ", ".join(required))
        if p.get("algorithm", "MD5").upper() != "MD5" or p.get("qop", "auth") != "auth" or (
                "qop" in p and not ("nc" in p and "cnonce" in p)):
            return None, False
        if p["realm"] != self.realm or not self._same_target(p["uri"], environ):
            return None, False
        state = self._nonce_state(p["nonce"])
        stored = self.users.get(p["username"])
        ha1 = digest_ha1(stored, p["username"], self.realm) if stored is not None else None
        if state == "bad" or ha1 is None:
            return None, False
        ha2 = _md5(f"{environ['REQUEST_METHOD']}:{p['uri']}")
        if "qop" in p:
            expected = _md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{p['nonce']}:{ha2}")
        if not _equal(expected, p["response"].lower()):
            return None, False
        return (p["username"], False) if state == "fresh" else (None, True)

    @staticmethod
    def _same_target(uri: str, environ: dict) -> bool:
        """RFC 7616 3.4.6: the digest must be for the resource actually requested."""
        target = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        return unquote(urlsplit(uri).path) == unquote(urlsplit(target).path)
