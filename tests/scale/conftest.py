"""Scale-out fixtures: redis-server and nginx from Debian, started here on free ports (never as system
services), one sandbox (bench/scale_sandbox.py) and `tgdav serve` replicas as real processes.

Every child runs in its own process group and is stopped at teardown (tests/e2e/conftest.stop).
Assertions are on bytes (SHA-256 of tgdav.sandbox.content.pattern) and on the sandbox's counters.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.e2e.conftest import TGDAV, free_port, serve_config, sha256, stop
from tgdav.sandbox.content import pattern

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_SCRIPT = ROOT / "bench" / "scale_sandbox.py"


def need(tool: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}")
                                       if Path(p).exists()), None)
    if path is None:
        raise RuntimeError(f"{tool} is not installed: .ci/run installs it (apt-get)")
    return path


def start_redis(where: Path, port: int | None = None) -> tuple[str, subprocess.Popen]:
    """redis-server on `port` (a free one by default; the same one again to bring a stopped Redis back)."""
    where.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen([need("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(where)],
                            stdout=open(where / "redis.log", "ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    import redis
    client = redis.Redis(port=port)

    def answers() -> bool:
        try:
            return client.ping()
        except redis.ConnectionError:
            if proc.poll() is not None:
                raise RuntimeError("redis-server did not start: " + (where / "redis.log").read_text()) from None
            return False
    try:
        wait_until(answers, 30, lambda: "redis-server answering: " + (where / "redis.log").read_text(),
                   interval=0.1)
    except BaseException:
        stop(proc)
        raise
    finally:
        client.close()
    return f"redis://127.0.0.1:{port}/0", proc


@dataclass
class Sandbox:
    info: dict
    admin: str
    proc: subprocess.Popen
    admin_json: Path              # the sandbox.json file ([telegram] sandbox)
    contents: dict = field(default_factory=dict)

    def counters(self) -> dict:
        with urllib.request.urlopen(self.admin + "/counters", timeout=10) as r:
            return json.loads(r.read())

    def faults(self, body: dict) -> None:
        req = urllib.request.Request(self.admin + "/faults", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def content(self, name: str) -> bytes:
        if name not in self.contents:
            f = self.info["files"][name]
            self.contents[name] = pattern(f["document_id"], 0, f["size"])
        return self.contents[name]

    def sha(self, name: str, start: int = 0, end: int | None = None) -> str:
        data = self.content(name)
        return sha256(data[start:] if end is None else data[start:end + 1])


def delta(before: dict, after: dict, name: str, dc: int | None = None) -> int:
    dcs = [str(dc)] if dc is not None else set(before) | set(after)
    return sum(int(after.get(d, {}).get(name, 0)) - int(before.get(d, {}).get(name, 0)) for d in dcs)


def start_sandbox(where: Path, *, bots: int = 3, size_mib: float = 8, profile: str = "off") -> Sandbox:
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, str(SANDBOX_SCRIPT), "--bots", str(bots), "--size-mib",
                             str(size_mib), "--profile", profile, "--state", str(where / "state")],
                            stdout=subprocess.PIPE, stderr=open(where / "sandbox.err", "wb"),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    line = proc.stdout.readline()
    if not line:
        stop(proc)
        raise RuntimeError("the sandbox printed nothing: " + (where / "sandbox.err").read_text())
    (where / "sandbox.json").write_bytes(line)
    info = json.loads(line)
    return Sandbox(info, info["admin"].rstrip("/"), proc, where / "sandbox.json")


def replica_config(where: Path, sandbox_json: Path, *, redis_url: str = "", session: str = "replica",
                   extra: str = "", port: int | None = None) -> tuple[Path, int]:
    where.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = where / "tgdav.toml"
    redis_line = f'redis = "{redis_url}"' if redis_url else ""
    config.write_text(f"""[telegram]
sandbox = "{sandbox_json}"
session = "{session}"
{extra}

[state]
dir = "{where / 'state'}"
{redis_line}

[server]
port = {port}

[auth]
mode = "none"

[pool]
max_wait_seconds = 1
""", encoding="utf-8")
    return config, port


def login(config: Path, info: dict, *, bot_token: str | None = None, phone: str | None = None,
          session: str | None = None) -> None:
    args = ["--bot-token", bot_token] if bot_token else ["--phone", str(phone or info["user_phone"])]
    args += ["--session", session] if session else []
    done = subprocess.run(TGDAV + ["--config", str(config), "login", *args],
                          input=f"{info['login_code']}\n{info.get('user_password', '')}\n",
                          capture_output=True, text=True, timeout=90)
    if done.returncode != 0:
        raise RuntimeError(f"tgdav login failed ({done.returncode}): {done.stderr[-2000:]}")


serve = serve_config


@dataclass
class Fleet:
    root: Path
    sandbox: Sandbox
    redis_url: str
    urls: list[str]
    procs: list[subprocess.Popen]

    def file_url(self, replica: int, name: str) -> str:
        return f"{self.urls[replica]}{self.sandbox.info['channel']}/{name}"


@pytest.fixture(scope="session")
def scale_sandbox(tmp_path_factory) -> Sandbox:
    """One sandbox (bench/scale_sandbox.py) for every scale test."""
    sb = start_sandbox(tmp_path_factory.mktemp("scale-sandbox"))
    yield sb
    stop(sb.proc)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory, scale_sandbox) -> Fleet:
    """redis-server, the sandbox, and two replicas A and B of the sandbox's user, sharing Redis."""
    root = tmp_path_factory.mktemp("scale")
    procs: list[subprocess.Popen] = []
    sb = scale_sandbox
    sandbox_json = Path(sb.admin_json)
    try:
        redis_url, redis_proc = start_redis(root / "redis")
        procs.append(redis_proc)
        urls = []
        for name in ("a", "b"):
            config, port = replica_config(root / name, sandbox_json, redis_url=redis_url)
            login(config, sb.info)
            url, proc = serve(config, port, root / f"serve-{name}")
            procs.append(proc)
            urls.append(url)
        yield Fleet(root, sb, redis_url, urls, procs)
    finally:
        for proc in reversed(procs):
            stop(proc)
