"""Fixtures for the write tests: a sandbox with a writable channel and `tgdav serve` as real processes.

The sandbox is seeded with a read-only channel (`ReadOnly`, posted by someone else) and started with
`--writable Uploads` (the user owns it). Its per-message part limit is lowered to PIECE_PARTS parts
(help.getAppConfig's upload_max_fileparts_default) before tgdav starts, so a file over
PIECE_PARTS * 512 KiB is stored as several messages. Every test writes below its own folder of
Uploads, so tests do not see each other's files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from xml.etree import ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import TGDAV, SandboxAdmin, free_port, serve_config, stop

PIECE_PARTS = 24                   # 12 MiB per message in these tests
PART = 512 * 1024
WRITABLE = "Uploads"
READONLY = "ReadOnly"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def login(where: Path, sandbox_json: Path, info: dict, extra: str = "") -> Path:
    """A config in `where` (state in where/state) and a logged-in session. Returns the config path."""
    where.mkdir(parents=True, exist_ok=True)
    config = where / "tgdav.toml"
    config.write_text(f"""[telegram]
sandbox = "{sandbox_json}"
session = "w"

[state]
dir = "{where / 'state'}"

[server]
port = {free_port()}

[auth]
mode = "none"
{extra}
""", encoding="utf-8")
    done = subprocess.run(TGDAV + ["--config", str(config), "login", "--phone", str(info["user_phone"])],
                          input=f"{info['login_code']}\n{info.get('user_password', '')}\n",
                          capture_output=True, text=True, timeout=90)
    if done.returncode != 0:
        raise RuntimeError(f"tgdav login failed ({done.returncode}): {done.stderr[-2000:]}")
    return config


def serve(config: Path, log_prefix: Path) -> tuple[str, subprocess.Popen]:
    port = next(int(line.split("=")[1]) for line in config.read_text().splitlines()
                if line.startswith("port ="))
    return serve_config(config, port, log_prefix, "ab")     # appended: a restarted server keeps its log


@dataclass
class Sandbox(SandboxAdmin):
    root: Path
    info: dict
    json_path: Path
    admin: str
    proc: subprocess.Popen | None = None
    procs: list = field(default_factory=list)

    def server(self, name: str, extra: str = "") -> tuple[str, subprocess.Popen, Path]:
        """A fresh `tgdav serve` with its own state dir (logged in): (url, process, config)."""
        config = login(self.root / name, self.json_path, self.info, extra)
        url, proc = serve(config, self.root / "logs" / name)
        self.procs.append(proc)
        return url, proc, config


@contextlib.contextmanager
def module_server(sandbox: Sandbox, name: str):
    """A server for one module's tests (in a module-scoped fixture): its URL, and the server stopped
    when the module ends. Started before any test's own servers, it would otherwise run to the end
    of the session, its janitor reading every writable channel again and taking the account's
    getHistory budget (shared by every server of the account) from later modules' servers."""
    url, proc, _ = sandbox.server(name)
    try:
        yield url
    finally:
        stop(proc)
        if proc in sandbox.procs:
            sandbox.procs.remove(proc)


def start_sandbox(root: Path, state: Path, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, dict]:
    seed = root / "seed"
    if not seed.exists():
        (seed / READONLY).mkdir(parents=True)
        (seed / READONLY / "posted elsewhere.txt").write_bytes(b"a post the user may only read\n")
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    proc = subprocess.Popen(TGDAV + ["sandbox", "--seed", str(seed), "--writable", WRITABLE,
                                     "--state", str(state), *extra],
                            stdout=subprocess.PIPE, stderr=open(logs / "sandbox.err", "ab"),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    line = proc.stdout.readline()
    if not line:
        stop(proc)
        raise RuntimeError("sandbox printed no JSON line: " + (logs / "sandbox.err").read_text())
    (root / "sandbox.json").write_bytes(line)
    return proc, json.loads(line)


@contextlib.contextmanager
def running_sandbox(root: Path, extra: tuple[str, ...] = ()):
    """A sandbox process in `root` (extra: more `tgdav sandbox` flags); every server it started
    and the sandbox stop at the end."""
    proc, info = start_sandbox(root, root / "sandbox-state", extra)
    sb = Sandbox(root, info, root / "sandbox.json", info["admin"].rstrip("/"), proc)
    try:
        yield sb
    finally:
        for p in sb.procs:
            stop(p)
        stop(sb.proc)


def redis_replica(sandbox: Sandbox, name: str, redis_url: str) -> str:
    """A `tgdav serve` keeping its shared state in Redis (listings refreshed every second): its URL."""
    config = login(sandbox.root / name, sandbox.json_path, sandbox.info)
    text = config.read_text().replace("[state]\n", f'[state]\nredis = "{redis_url}"\n', 1)
    config.write_text(text + "\n[cache]\nlisting_refresh = 1\n")
    url, proc = serve(config, sandbox.root / "logs" / name)
    sandbox.procs.append(proc)
    return url


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    with running_sandbox(tmp_path_factory.mktemp("write")) as sb:
        sb.post("/faults", {"upload_max_fileparts": {"default": PIECE_PARTS, "premium": 2 * PIECE_PARTS}})
        yield sb


@pytest.fixture(autouse=True)
def _servers_end_with_their_test(request):
    """The servers a test starts stop when it ends (the session's main server stays): one left
    running would go on in the background (its janitor deleting what an earlier kill left) while
    later tests count what reached Telegram."""
    if "sandbox" not in request.fixturenames:
        yield
        return
    sandbox = request.getfixturevalue("sandbox")
    before = len(sandbox.procs)
    yield
    for proc in sandbox.procs[before:]:
        stop(proc)
    del sandbox.procs[before:]


@pytest.fixture(scope="session")
def dav(sandbox) -> str:
    """The main writable server's base URL (trailing slash)."""
    url, _, _ = sandbox.server("main")
    return url


@pytest.fixture
def folder(dav, request) -> str:
    """A fresh folder of Uploads for one test: its URL with a trailing slash."""
    name = request.node.name.replace("[", "-").replace("]", "")
    url = f"{dav}{WRITABLE}/{name}/"
    req = urllib.request.Request(url, method="MKCOL")
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 201
    return url


def hrefs(multistatus: bytes | str) -> list[str]:
    """The hrefs of a 207 multistatus, unquoted, in order (parsed as XML: the prefix a server
    chooses for DAV: is its own business)."""
    root = ET.fromstring(multistatus.encode() if isinstance(multistatus, str) else multistatus)
    return [urllib.parse.unquote(h.text or "") for h in root.iter("{DAV:}href")]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 300) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def quote(path: str) -> str:
    return urllib.request.quote(path)


def random_bytes(n: int, seed: int) -> bytes:
    import random
    return random.Random(seed).randbytes(n)
