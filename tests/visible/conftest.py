"""A sandbox Telegram and a `tgdav serve` of their own, as real processes, for the status page, metrics
and browser tests (their own state, so counters and the cache start from nothing)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import TGDAV, SandboxAdmin, free_port, stop, wait_http
from tests.visible.cdp import Browser


@dataclass
class Live(SandboxAdmin):
    url: str                      # WebDAV base URL, trailing slash
    admin: str                    # the sandbox's admin address
    info: dict                    # the sandbox's JSON line
    root: Path
    metrics_url: str | None = None
    procs: list = field(default_factory=list)

    def get(self, path: str, headers: dict | None = None, timeout: float = 60) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(self.url + path.lstrip("/"), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def scrape(self, url: str | None = None) -> dict[tuple[str, frozenset], float]:
        """Every sample, parsed by prometheus_client's own parser."""
        with urllib.request.urlopen(url or self.url + ":tgdav/metrics", timeout=30) as r:
            text = r.read().decode()
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}



def metric_sum(samples: dict, name: str, **labels: str) -> float:
    """Sum of `name` over the samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def start_live(root: Path, *, seed: Path | None = None, config: str = "", auth: str = 'mode = "none"') -> Live:
    """Sandbox (demo world, or `seed`), `tgdav login`, `tgdav serve` with `auth` as its [auth] table
    and `config` appended to the configuration file. The caller stops it with stop_live()."""
    root.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    live = Live(url="", admin="", info={}, root=root)
    cmd = TGDAV + ["sandbox", "--state", str(root / "sandbox-state")] + (["--seed", str(seed)] if seed else [])
    sandbox = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(logs / "sandbox.err", "wb"),
                               stdin=subprocess.DEVNULL, start_new_session=True)
    live.procs.append(sandbox)
    try:
        line = sandbox.stdout.readline()
        if not line:
            raise RuntimeError("sandbox printed no JSON line: " + (logs / "sandbox.err").read_text())
        live.info = json.loads(line)
        live.admin = live.info["admin"].rstrip("/")
        (root / "sandbox.json").write_bytes(line)
        port = free_port()
        conf = root / "tgdav.toml"
        conf.write_text(f"""[telegram]
sandbox = "{root / 'sandbox.json'}"
session = "live"

[state]
dir = "{root / 'state'}"

[server]
port = {port}

[auth]
{auth}
{config}
""", encoding="utf-8")
        login = subprocess.run(TGDAV + ["--config", str(conf), "login", "--phone", str(live.info["user_phone"])],
                               input=f"{live.info['login_code']}\n{live.info.get('user_password', '')}\n",
                               capture_output=True, text=True, timeout=90)
        if login.returncode != 0:
            raise RuntimeError(f"tgdav login failed ({login.returncode}): {login.stderr[-2000:]}")
        serve = subprocess.Popen(TGDAV + ["--config", str(conf), "serve"], stdout=open(logs / "serve.out", "wb"),
                                 stderr=open(logs / "serve.err", "wb"), stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        live.procs.append(serve)
        live.url = f"http://127.0.0.1:{port}/"
        wait_http(live.url, serve)
        return live
    except BaseException:
        stop_live(live)
        raise


def stop_live(live: Live) -> None:
    for proc in reversed(live.procs):
        stop(proc)


@contextmanager
def running(root: Path, **kwargs) -> Iterator[Live]:
    """start_live(root, **kwargs) for the duration of a with block (a module fixture's body)."""
    live = start_live(root, **kwargs)
    try:
        yield live
    finally:
        stop_live(live)


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium of the test's own (profile in its tmp dir)."""
    b = Browser(tmp_path / "chromium-profile")
    try:
        yield b
    finally:
        b.close()
