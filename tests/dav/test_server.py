"""make_server: TLS through cheroot's builtin adapter."""

from __future__ import annotations

import subprocess

import pytest

from tgdav.dav.server import make_server
from tgdav.errors import ConfigError
from tgdav.sandbox.content import pattern


@pytest.fixture
def cert(tmp_path):
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return str(crt), str(key)


def test_tls_serves_exact_bytes_with_basic_auth(serve, curl, cert):
    dav = serve(users={"u": "p"}, auth="basic", tls_cert=cert[0], tls_key=cert[1])
    assert dav.url.startswith("https://")
    r = curl(dav.url + "/Films/small.txt", "--cacert", cert[0], "-u", "u:p", "-r", "100-199")
    assert (r.status, r.body) == (206, pattern(14, 100, 100))
    assert curl(dav.url + "/Films/small.txt", "--cacert", cert[0]).status == 401


def test_tls_needs_both_files():
    with pytest.raises(ConfigError):
        make_server(lambda environ, start_response: [], port=0, tls_cert="cert.pem")
