"""Soak: `tgdav serve` on the sandbox under 64 Range readers and 200-connection bursts for minutes,
with faults injected at random through the sandbox's admin API, every byte checked.

    python bench/soak.py                    # 3 minutes (the figures in the README / report)
    python bench/soak.py --quick            # 30 s smoke run
    python bench/soak.py --bursts-only --bursts 5             # only the 200-connection bursts
    python bench/soak.py --bursts-only --code /path/to/older/checkout   # the same against other code

It starts `tgdav sandbox --seed` (three random files per channel, kept here to check bytes against),
logs in with the sandbox's code and starts `tgdav serve` (auth none, 64 threads), as a user would.
Readers ask random ranges of random files, retry a 503 after its Retry-After (as rclone does), and
compare every byte with the seed file. Every `--burst-every` s, 200 clients connect at once and ask
PROPFIND Depth 1 of the root. Every `--fault-every` s one fault (FLOOD_WAIT on getFile, a
connection dropped after N bytes, a DC down, a slow link) is switched on for a while, then cleared.
Clients use several loopback source addresses (127.0.0.2..), as several devices at home would.

Reported (JSON on stdout): requests, answered 206 exact, 503s, errors (any other status, reset, cut
or short body, timeout) with their kinds, corrupt bodies (wrong bytes: must be 0), p50/p99 latency of
reads and of burst PROPFINDs, and the server's RSS at start, peak and end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MIB = 1 << 20

from bench.sandbox_proc import stop_group  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 4)


class Stack:
    """Sandbox + login + serve as processes, in a temporary directory."""

    def __init__(self, where: Path, code: Path, file_mib: list[int], channels: int, cache: str) -> None:
        self.where, self.code = where, code
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TGDAV_")}
        self.env["PYTHONPATH"] = str(code)
        rnd = random.Random(42)
        self.files: dict[str, bytes] = {}
        seed = where / "seed"
        for c in range(channels):
            folder = seed / f"Soak{c}"
            folder.mkdir(parents=True)
            for i, size in enumerate(file_mib):
                data = rnd.randbytes(size * MIB + rnd.randrange(4096))
                (folder / f"f{i}.bin").write_bytes(data)
                self.files[f"Soak{c}/f{i}.bin"] = data
        self.procs: list[subprocess.Popen] = []
        sandbox = self._spawn(["sandbox", "--seed", str(seed), "--state", str(where / "sb")], "sandbox",
                              stdout=subprocess.PIPE)
        line = sandbox.stdout.readline()
        if not line:
            raise SystemExit("the sandbox did not start: " + (where / "sandbox.err").read_text()[-2000:])
        self.info = json.loads(line)
        (where / "sandbox.json").write_bytes(line)
        self.admin = self.info["admin"].rstrip("/")
        self.port = free_port()
        config = where / "tgdav.toml"
        config.write_text(f'[telegram]\nsandbox = "{where / "sandbox.json"}"\nsession = "soak"\n'
                          f'[state]\ndir = "{where / "state"}"\n[server]\nport = {self.port}\nthreads = 64\n'
                          f'[auth]\nmode = "none"\n[log]\nlevel = "warning"\n[cache]\nsize = "{cache}"\n')
        login = subprocess.run([sys.executable, "-m", "tgdav", "--config", str(config), "login", "--phone",
                                str(self.info["user_phone"])], env=self.env, capture_output=True, text=True,
                               input=f"{self.info['login_code']}\n{self.info.get('user_password', '')}\n",
                               timeout=120, cwd=where)
        if login.returncode:
            raise SystemExit("login failed: " + login.stderr[-2000:])
        self.serve = self._spawn(["--config", str(config), "serve"], "serve")
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(self.url, method="PROPFIND", headers={"Depth": "1"})
                urllib.request.urlopen(req, timeout=10).read()
                return
            except OSError:
                time.sleep(0.3)
        raise SystemExit("tgdav serve did not answer: " + (where / "serve.err").read_text()[-2000:])

    def _spawn(self, args: list[str], name: str, stdout=None) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "tgdav", *args], env=self.env, stdin=subprocess.DEVNULL,
                                cwd=self.where,
                                stdout=stdout or open(self.where / f"{name}.out", "wb"),
                                stderr=open(self.where / f"{name}.err", "wb"), start_new_session=True)
        self.procs.append(proc)
        return proc

    def post(self, path: str, body: dict) -> None:
        req = urllib.request.Request(self.admin + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_group(proc)


def http(port: int, request: bytes, source: str, timeout: float = 120) -> tuple[int, dict, bytes]:
    """One request on a fresh connection from `source`; the whole response (Content-Length framed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as s:
        s.sendall(request)
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before the headers ({len(raw)} bytes)")
            raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(headers.get("content-length", -1))
        while length < 0 or len(body) < length:
            chunk = s.recv(1 << 20)
            if not chunk:
                if length < 0:
                    break
                raise ConnectionError(f"cut body: {len(body)} of {length} bytes")
            body += chunk
        return int(lines[0].split()[1]), headers, body


class Soak:
    def __init__(self, stack: Stack, args) -> None:
        self.stack, self.args = stack, args
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.read_latency: list[float] = []
        self.burst_latency: list[float] = []
        self.burst_errors: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.rss_peak = 0
        self.rss_timeline: list[tuple[int, float]] = []

    def count(self, outcome: str, error: str | None = None) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            if error:
                self.errors[error] += 1

    def reader(self, n: int) -> None:
        rnd = random.Random(n)
        source = f"127.0.0.{2 + n % 8}"
        names = sorted(self.stack.files)
        while not self.stop.is_set():
            name = rnd.choice(names)
            data = self.stack.files[name]
            length = rnd.choice((4096, 65536, 300_000, MIB, 3 * MIB))
            start = rnd.randrange(0, max(1, len(data) - length))
            end = min(len(data), start + length) - 1
            path = urllib.request.quote(name)
            request = (f"GET /{path} HTTP/1.1\r\nHost: soak\r\nRange: bytes={start}-{end}\r\n"
                       f"Connection: close\r\n\r\n").encode()
            began = time.monotonic()
            try:
                status, headers, body = http(self.stack.port, request, source)
            except (OSError, ValueError, IndexError) as e:
                self.count("error", type(e).__name__ + (": cut body" if "cut body" in str(e) else ""))
                continue
            took = time.monotonic() - began
            if status == 206 and len(body) == end - start + 1:
                if body == data[start:end + 1]:
                    self.count("ok")
                    with self.lock:
                        self.read_latency.append(took)
                else:
                    self.count("corrupt")
            elif status == 503:
                self.count("503")
                self.stop.wait(min(10, int(headers.get("retry-after", "1") or 1)))
            else:
                self.count("error", f"status {status}" + (f" ({len(body)} bytes)" if status == 206 else ""))

    def burst(self) -> None:
        """`burst_size` connections opened at once from one thread (non-blocking connects in a tight
        loop, as an event-loop client or many devices would), each asking PROPFIND Depth 1 of /."""
        import selectors
        request = b"PROPFIND / HTTP/1.1\r\nHost: soak\r\nDepth: 1\r\nConnection: close\r\n\r\n"
        sel = selectors.DefaultSelector()
        began = time.monotonic()
        state = {}
        for i in range(self.args.burst_size):
            s = socket.socket()
            s.setblocking(False)
            s.bind((f"127.0.0.{10 + i % 8}", 0))
            s.connect_ex(("127.0.0.1", self.stack.port))
            state[s] = [b"", False]
            sel.register(s, selectors.EVENT_WRITE)
        deadline = began + 180
        while state and time.monotonic() < deadline:
            for key, events in sel.select(timeout=1):
                s = key.fileobj
                try:
                    if events & selectors.EVENT_WRITE:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise OSError(err, os.strerror(err))
                        s.send(request)
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    chunk = s.recv(1 << 16)
                    if chunk:
                        state[s][0] += chunk
                        continue
                    raw = state.pop(s)[0]
                    sel.unregister(s)
                    s.close()
                    status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0
                    with self.lock:
                        if status == 207:
                            self.burst_latency.append(time.monotonic() - began)
                        else:
                            self.burst_errors[f"status {status}"] += 1
                except OSError as e:
                    state.pop(s, None)
                    sel.unregister(s)
                    s.close()
                    with self.lock:
                        self.burst_errors[e.strerror or type(e).__name__] += 1
        for s in list(state):
            s.close()
            with self.lock:
                self.burst_errors["no answer in 180 s"] += 1
        sel.close()

    def fault(self, rnd: random.Random) -> None:
        dcs = [int(d) for d in self.stack.info["dcs"]]
        dc = rnd.choice(dcs)
        kind = rnd.choice(["flood", "drop", "down", "slow"])
        self.faults[kind] += 1
        post = self.stack.post
        if kind == "flood":
            post("/faults", {"flood_wait": [{"dc": dc, "method": "GetFile", "seconds": rnd.choice((2, 8, 30)),
                                             "count": 1}]})
        elif kind == "drop":
            post("/faults", {"drop_after_bytes": {str(dc): {"bytes": rnd.choice((100_000, MIB)), "count": 2}}})
        elif kind == "down":
            post("/faults", {"down": [dc]})
        else:
            post("/link", {"dc": dc, "latency_ms": 300, "bandwidth": 128 * 1024})
        self.stop.wait(rnd.uniform(3, 8))
        post("/faults", {"clear": True})
        post("/link", {"dc": dc, "latency_ms": 0, "bandwidth": 0})

    def run(self) -> dict:
        pid = self.stack.serve.pid
        rss_start = rss_kib(pid)
        readers = [] if self.args.bursts_only else [
            threading.Thread(target=self.reader, args=(n,), daemon=True) for n in range(self.args.readers)]
        for t in readers:
            t.start()
        rnd = random.Random(7)
        began = time.monotonic()
        next_burst, next_fault, bursts, next_rss = began + 2, began + 5, 0, began
        while True:
            now = time.monotonic()
            self.rss_peak = max(self.rss_peak, rss_kib(pid))
            if now >= next_rss:
                self.rss_timeline.append((round(now - began), round(rss_kib(pid) / 1024, 1)))
                next_rss = now + 15
            if self.args.bursts_only:
                if bursts >= self.args.bursts:
                    break
            elif now - began >= self.args.seconds:
                break
            if now >= next_burst:
                self.burst()
                bursts += 1
                next_burst = time.monotonic() + self.args.burst_every
            elif now >= next_fault and not self.args.bursts_only and not self.args.no_faults:
                self.fault(rnd)
                next_fault = time.monotonic() + self.args.fault_every
            else:
                time.sleep(0.2)
        self.stop.set()
        for t in readers:
            t.join(150)
        alive = self.stack.serve.poll() is None
        return {
            "seconds": round(time.monotonic() - began, 1), "readers": len(readers), "bursts": bursts,
            "burst_size": self.args.burst_size, "faults": dict(self.faults),
            "reads": dict(self.outcomes), "read_errors": dict(self.errors),
            "corrupt": self.outcomes.get("corrupt", 0),
            "read_p50_s": percentile(self.read_latency, 0.5), "read_p99_s": percentile(self.read_latency, 0.99),
            "burst_answers": len(self.burst_latency), "burst_errors": dict(self.burst_errors),
            "burst_p50_s": percentile(self.burst_latency, 0.5), "burst_p99_s": percentile(self.burst_latency, 0.99),
            "burst_max_s": round(max(self.burst_latency), 3) if self.burst_latency else None,
            "server_rss_mib": {"start": round(rss_start / 1024, 1), "peak": round(self.rss_peak / 1024, 1),
                               "end": round(rss_kib(pid) / 1024, 1) if alive else None},
            "server_rss_mib_every_15s": self.rss_timeline,
            "server_alive": alive,
        }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=180)
    p.add_argument("--quick", action="store_true", help="30 s, 16 readers, smaller files")
    p.add_argument("--readers", type=int, default=64)
    p.add_argument("--burst-size", type=int, default=200)
    p.add_argument("--burst-every", type=float, default=20)
    p.add_argument("--fault-every", type=float, default=12)
    p.add_argument("--no-faults", action="store_true")
    p.add_argument("--bursts-only", action="store_true", help="no readers, no faults: --bursts bursts")
    p.add_argument("--bursts", type=int, default=5)
    p.add_argument("--cache-size", default="16 MiB",
                   help="[cache] size of the server: small, so reads keep reaching the sandbox and its faults")
    p.add_argument("--code", type=Path, default=ROOT, help="checkout whose tgdav the server runs")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.readers, args.burst_every, args.fault_every = 30, 16, 10, 6
    sizes = [2, 8, 24] if not args.quick else [1, 4]
    with tempfile.TemporaryDirectory(prefix="tgdav-soak-") as tmp:
        stack = Stack(Path(tmp), args.code.resolve(), sizes, channels=2, cache=args.cache_size)
        try:
            result = Soak(stack, args).run()
        finally:
            stack.close()
    result["code"] = str(args.code)
    print(json.dumps(result, indent=1))
    return 0 if result["corrupt"] == 0 and result["server_alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
