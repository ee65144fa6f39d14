"""End-to-end fixtures: a seeded sandbox Telegram, `tgdav login` and `tgdav serve` as real processes.

Everything is started once per session and torn down reliably: each child runs in its own process
group, is sent SIGTERM at teardown and SIGKILLed if it does not leave. Ports come from the OS (the
sandbox picks its own; the WebDAV port is a freshly freed ephemeral one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import wait_until

TGDAV = [sys.executable, "-m", "tgdav"]
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stop(proc: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """SIGTERM the child's process group, then SIGKILL it if it lingers. Returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    else:  # the leader is gone: make sure nothing it started survives in its group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return proc.returncode


def wait_http(url: str, proc: subprocess.Popen, method: str = "PROPFIND", timeout: float = START_TIMEOUT) -> None:
    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before answering {url}")
        try:
            req = urllib.request.Request(url, method=method, headers={"Depth": "0"})
            with urllib.request.urlopen(req, timeout=5) as r:
                r.read()
        except urllib.error.HTTPError:
            pass            # it answers
        except OSError:
            return False
        return True
    wait_until(answers, timeout, f"{url} answering", interval=0.2)



class SandboxAdmin:
    """The sandbox's admin API for a test's own sandbox process (self.admin: its base URL)."""
    admin: str

    def counters(self) -> dict:
        with urllib.request.urlopen(self.admin + "/counters", timeout=10) as r:
            return json.loads(r.read())

    def total(self, key: str) -> int:
        return sum(int(dc.get(key, 0)) for dc in self.counters().values() if isinstance(dc, dict))

    def post(self, path: str, body: dict) -> None:
        req = urllib.request.Request(self.admin + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200

    def publish(self, channel: str, name: str | None = None, data: bytes | None = None, *,
                mime: str | None = None, text: str | None = None, create: bool = True) -> dict:
        """A post in the sandbox as some poster makes it (tgdav.sandbox.admin: POST /publish): a
        document `name` with `data` (or a text post), in the channel titled `channel`."""
        body = {"channel": channel, "create": create, "name": name, "mime": mime, "text": text,
                "data": base64.b64encode(data).decode() if data is not None else None}
        req = urllib.request.Request(self.admin + "/publish", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

def start_server(where: Path, sandbox_json: Path, info: dict, log_prefix: Path) -> tuple[str, subprocess.Popen]:
    """Write a config in `where`, `tgdav login` with the sandbox's code on stdin, start `tgdav serve`
    and wait until it answers. Returns (base URL, process); the caller stops the process."""
    where.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = where / "tgdav.toml"
    config.write_text(f"""[telegram]
sandbox = "{sandbox_json}"
session = "e2e"

[state]
dir = "{where / 'state'}"

[server]
port = {port}

[auth]
mode = "none"
""", encoding="utf-8")
    login = subprocess.run(TGDAV + ["--config", str(config), "login", "--phone", str(info["user_phone"])],
                           input=f"{info['login_code']}\n{info.get('user_password', '')}\n",
                           capture_output=True, text=True, timeout=90)
    if login.returncode != 0:
        raise RuntimeError(f"tgdav login failed ({login.returncode}): {login.stderr[-2000:]}")
    return serve_config(config, port, log_prefix)


def serve_config(config: Path, port: int, log_prefix: Path, log_mode: str = "wb") -> tuple[str, subprocess.Popen]:
    """Start `tgdav --config CONFIG serve` (its output in log_prefix.out/.err, opened with log_mode)
    and wait until it answers on `port`. Returns (base URL, process); the caller stops the process."""
    proc = subprocess.Popen(TGDAV + ["--config", str(config), "serve"],
                            stdout=open(f"{log_prefix}.out", log_mode), stderr=open(f"{log_prefix}.err", log_mode),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url, proc)
    except BaseException:
        stop(proc)
        raise
    return url, proc


# ---- the seed folder ---------------------------------------------------------------------------

CHANNEL_A = "Alpha"
CHANNEL_B = "Beta Ünïcode"
CHANNEL_C = "Gamma"            # one bigger file, read only by the fault tests (never cached before them)
FAULTS_NAME = "faults.bin"
MP4_NAME = "clip.mp4"
BIG_NAME = "big 3MiB+17.bin"
SPACEY_NAME = "naïve résumé – ünicode file.txt"


def _make_seed(root: Path) -> dict[str, dict[str, Path]]:
    rnd = __import__("random").Random(1234)
    a = root / CHANNEL_A
    b = root / CHANNEL_B
    c = root / CHANNEL_C
    for d in (a, b, c):
        d.mkdir(parents=True)
    files = {
        a / "one.bin": rnd.randbytes(1),
        a / "five-thousand.bin": rnd.randbytes(5000),
        a / BIG_NAME: rnd.randbytes(3 * 1024 * 1024 + 17),
        b / SPACEY_NAME: ("Grüße aus dem Sandkasten\n" * 400).encode(),
        b / "empty.txt": b"",
        c / FAULTS_NAME: rnd.randbytes(16 * 1024 * 1024),
    }
    for path, data in files.items():
        path.write_bytes(data)
    mp4 = b / MP4_NAME
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc=duration=4:size=320x240:rate=25", "-g", "25", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(mp4)], check=True, timeout=120)
    return {d.name: {p.name: p for p in sorted(d.iterdir())} for d in (a, b, c)}


@dataclass
class Env:
    root: Path                      # tmp root for this session
    seed: Path
    files: dict[str, dict[str, Path]]   # channel -> name -> source file
    sandbox: dict
    admin: str
    url: str                        # WebDAV base URL, with trailing slash
    config: Path
    procs: dict = field(default_factory=dict)

    def counters(self) -> dict:
        with urllib.request.urlopen(self.admin + "/counters", timeout=10) as r:
            return json.loads(r.read())

    def total(self, key: str) -> int:
        return sum(int(dc.get(key, 0)) for dc in self.counters().values() if isinstance(dc, dict))

    def source(self, channel: str, name: str) -> Path:
        return self.files[channel][name]


@pytest.fixture(scope="session")
def e2e(tmp_path_factory) -> Env:
    for tool in ("curl", "ffmpeg"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    root = tmp_path_factory.mktemp("e2e")
    seed = root / "seed"
    files = _make_seed(seed)
    procs: dict[str, subprocess.Popen] = {}
    logs = root / "logs"
    logs.mkdir()
    try:
        sb_err = open(logs / "sandbox.err", "wb")
        sandbox = subprocess.Popen(TGDAV + ["sandbox", "--seed", str(seed), "--state", str(root / "sandbox-state")],
                                   stdout=subprocess.PIPE, stderr=sb_err, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        procs["sandbox"] = sandbox
        line = sandbox.stdout.readline()
        if not line:
            raise RuntimeError("sandbox printed no JSON line: " + (logs / "sandbox.err").read_text())
        info = json.loads(line)
        (root / "sandbox.json").write_bytes(line)

        url, serve = start_server(root / "main", root / "sandbox.json", info, logs / "serve")
        procs["serve"] = serve
        config = root / "main" / "tgdav.toml"
        env = Env(root=root, seed=seed, files=files, sandbox=info, admin=info["admin"].rstrip("/"),
                  url=url, config=config, procs=procs)
        yield env
    finally:
        for name in ("serve", "sandbox"):
            stop(procs.get(name))
