"""nginx (Debian's, with the slice module) in front of the two replicas, configured from
config/nginx.conf with only addresses and paths changed: reads through it are byte-exact, a second
read of a hot range is answered from its cache (revalidated: tgdav answers 304) without a getFile,
WebDAV methods pass through. Overwrites, deletes and moves through nginx: test_nginx_fresh.py."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.e2e.conftest import free_port, sha256, stop
from tests.scale.conftest import ROOT, delta, need


def nginx_config(template: str, upstreams: list[str], port: int, where: Path) -> str:
    """config/nginx.conf with the replicas, the port and every path replaced for this test."""
    servers = "\n".join(f"        server {u} max_fails=3 fail_timeout=10s;" for u in upstreams)
    text, n = re.subn(r"(?m)^\s*server tgdav-a:8080[^\n]*\n\s*server tgdav-b:8080[^\n]*$", servers, template)
    assert n == 1
    text, n = re.subn(r"listen 8080;", f"listen 127.0.0.1:{port};", text)
    assert n == 1
    text, n = re.subn(r"/var/cache/nginx/tgdav", str(where / "cache"), text)
    assert n == 1
    paths = "".join(f"    {d}_temp_path {where / d};\n" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = text.replace("http {\n", f"http {{\n    access_log {where / 'access.log'};\n{paths}", 1)
    if os.geteuid() == 0:        # workers would run as nobody and could not use the test's temp dirs
        text = "user root;\n" + text
    return text


def start_nginx(where: Path, upstreams: list[str]) -> tuple[str, subprocess.Popen]:
    """Debian's nginx with config/nginx.conf in front of `upstreams` ("host:port"), its cache and logs
    in `where`. Returns (base URL, process); the caller stops it."""
    where.mkdir(exist_ok=True)
    port = free_port()
    conf = where / "nginx.conf"
    conf.write_text(nginx_config((ROOT / "config" / "nginx.conf").read_text(), upstreams, port, where))
    binary = need("nginx")
    check = subprocess.run([binary, "-t", "-c", str(conf), "-p", str(where), "-g",
                            f"pid {where / 'nginx.pid'}; error_log {where / 'error.log'};"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(where), "-g",
                             f"daemon off; pid {where / 'nginx.pid'}; error_log {where / 'error.log'};"],
                            stdout=subprocess.DEVNULL, stderr=open(where / "stderr.log", "wb"),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"

    def answers() -> bool:
        try:
            urllib.request.urlopen(url, timeout=5).read()
        except urllib.error.HTTPError:
            pass
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("nginx did not start: " + (where / "error.log").read_text()) from None
            return False
        return True
    try:
        wait_until(answers, 30, lambda: "nginx answering: " + (where / "error.log").read_text(), interval=0.1)
    except BaseException:
        stop(proc)
        raise
    return url, proc


@pytest.fixture(scope="module")
def nginx(fleet):
    url, proc = start_nginx(fleet.root / "nginx", [u.removeprefix("http://").rstrip("/") for u in fleet.urls])
    yield url
    stop(proc)


def request(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_reads_through_nginx_are_exact_and_a_hot_range_costs_no_getfile(fleet, nginx):
    sb = fleet.sandbox
    file_url = f"{nginx}{sb.info['channel']}/hot.bin"
    status, body, _ = request(file_url)
    assert status == 200 and sha256(body) == sb.sha("hot.bin")

    first, last = 1_500_000, 2_700_000                     # across the second and third slices
    before = sb.counters()
    status, body, headers = request(file_url, headers={"Range": f"bytes={first}-{last}"})
    assert status == 206 and sha256(body) == sb.sha("hot.bin", first, last)
    # nginx answered from its slices after tgdav confirmed them (304 by ETag), not a replica's own cache
    assert headers.get("X-Cache-Status") == "REVALIDATED"
    # the whole file was read once, so every slice is cached: no request reached Telegram
    assert delta(before, sb.counters(), "requests:GetFile") == 0

    status, body, headers = request(file_url, headers={"Range": "bytes=-1000"})
    assert status == 206 and sha256(body) == sb.sha("hot.bin", len(sb.content("hot.bin")) - 1000)
    assert headers.get("X-Cache-Status") == "REVALIDATED"
    assert delta(before, sb.counters(), "requests:GetFile") == 0


def test_a_cold_range_is_fetched_once_then_served_from_nginx(fleet, nginx):
    sb = fleet.sandbox
    file_url = f"{nginx}{sb.info['channel']}/big.bin"
    first, last = 5 * 2**20 + 12345, 6 * 2**20 + 999
    before = sb.counters()
    status, body, _ = request(file_url, headers={"Range": f"bytes={first}-{last}"})
    assert status == 206 and sha256(body) == sb.sha("big.bin", first, last)
    middle = sb.counters()
    assert delta(before, middle, "requests:GetFile") > 0
    status, body, headers = request(file_url, headers={"Range": f"bytes={first}-{last}"})
    assert status == 206 and sha256(body) == sb.sha("big.bin", first, last)
    assert headers.get("X-Cache-Status") == "REVALIDATED"
    assert delta(middle, sb.counters(), "requests:GetFile") == 0


def test_head_through_nginx_gives_the_size(fleet, nginx):
    sb = fleet.sandbox
    status, body, headers = request(f"{nginx}{sb.info['channel']}/far.bin", "HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) == sb.info["files"]["far.bin"]["size"]


def test_webdav_methods_pass_through_uncached(fleet, nginx):
    status, body, headers = request(f"{nginx}{fleet.sandbox.info['channel']}/", "PROPFIND", {"Depth": "1"})
    assert status == 207 and b"hot.bin" in body
    assert "X-Cache-Status" not in headers
    status, _, headers = request(nginx, "OPTIONS")
    assert status == 200 and "PROPFIND" in headers.get("Allow", "")


def test_a_request_with_credentials_is_never_answered_from_the_cache(fleet, nginx):
    sb = fleet.sandbox
    file_url = f"{nginx}{sb.info['channel']}/hot.bin"
    request(file_url, headers={"Range": "bytes=0-99"})          # cached by now
    status, body, headers = request(file_url, headers={"Range": "bytes=0-99",
                                                       "Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert headers.get("X-Cache-Status") == "BYPASS"             # went to a replica, which decides
    assert status == 206 and sha256(body) == sb.sha("hot.bin", 0, 99)
