"""Listing benchmark (issue 16): big channels and a media-library scan against `tgdav serve`.

One command:

    python bench/list_bench.py                     # 1k, 10k and 50k channels, library scan
    python bench/list_bench.py --sizes 1000,10000 --warm-runs 3 --skip-scan
    python bench/list_bench.py --history-rate 30 --history-burst 100   # a looser getHistory rule

bench/list_sandbox.py runs in its own process with the telegram-like link (100 ms round trip,
2 MiB/s per connection) and the sandbox's getHistory rate rule (default: a burst of 30 calls, then
one a second per account; --history-rate/--history-burst change it for the sandbox AND tgdav).
Every "cold" figure is a fresh `tgdav serve` process with a fresh state dir (only the login session
copied in); before each one the benchmark waits until the account's getHistory bucket is full again.

Measured (medians where there are several runs; the load average beside each):
- PROPFIND / Depth 1, cold: seconds and getHistory calls;
- PROPFIND /L<n>/ Depth 1 for each channel size: cold seconds, getHistory calls, FLOOD_WAITs met;
  warm seconds (median of --warm-runs); peak RSS of the serve process (VmHWM) after the warm runs;
  bytes of the stored listing (head and largest piece, pickled as the store keeps them);
- PROPFIND Depth 1 of a folder deep in a tagged tree (2 000 files), cold: seconds and getHistory;
- a Kodi/Jellyfin-style scan of "Library" (1 000 videos in 100 folders): 4 clients at once each
  take a folder, list it (Depth 1) and read the first and last 64 KiB of each file; wall time,
  getFile calls against the floor (one per MiB block a read touches), and wall time in round trips
  against the floor (requests per client x 100 ms). Every byte is checked against the pattern.

Results print as a table and go to bench/results/list-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import math
import os
import pickle
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, unquote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sandbox_proc import stop_group as stop  # noqa: E402
from tgdav.sandbox.content import pattern  # noqa: E402
from tgdav.sandbox.controls import HISTORY_RULE  # noqa: E402

KIB, MIB = 1024, 1 << 20
RTT = 0.1
TGDAV = [sys.executable, "-m", "tgdav"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sandbox:
    def __init__(self, args, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "list_sandbox.py"), "--profile", args.profile,
             "--state", str(root / "sandbox"), "--sizes", args.sizes, "--library", str(args.library)],
            stdout=subprocess.PIPE, stderr=open(root / "sandbox.err", "wb"), env=ENV, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the sandbox did not start: " + (root / "sandbox.err").read_text()[-2000:])
        self.info = json.loads(line)
        self.admin = self.info["admin"].rstrip("/")
        self.json = root / "sandbox.json"
        self.json.write_bytes(line)

    def counters(self) -> dict:
        with urllib.request.urlopen(self.admin + "/counters", timeout=30) as r:
            return json.loads(r.read())

    def total(self, key: str) -> int:
        return sum(int(dc.get(key, 0)) for dc in self.counters().values() if isinstance(dc, dict))

    def faults(self, body: dict) -> None:
        req = urllib.request.Request(self.admin + "/faults", data=json.dumps(body).encode(), method="POST")
        urllib.request.urlopen(req, timeout=10).read()


class Server:
    """A `tgdav serve` with a fresh state dir (the template's login session copied in)."""

    def __init__(self, bench: "Bench", name: str, state: Path | None = None) -> None:
        self.dir = bench.root / name
        if state is None:
            state = self.dir / "state"
            shutil.copytree(bench.template / "state" / "sessions", state / "sessions")
        self.port = free_port()
        config = bench.config(self.dir, state, self.port, "tgdav")
        self.proc = subprocess.Popen(TGDAV + ["--config", str(config), "serve"], env=ENV,
                                     stdout=open(self.dir / "serve.out", "wb"),
                                     stderr=open(self.dir / "serve.err", "wb"),
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = state
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("tgdav serve exited: " + (self.dir / "serve.err").read_text()[-2000:])
            try:
                with urllib.request.urlopen(self.url + "/:tgdav/status.json", timeout=5) as r:
                    r.read()
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("tgdav serve did not answer")

    def rss(self, field: str = "VmHWM") -> int:
        """Bytes of the serve process: VmHWM (peak) or VmRSS (now)."""
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def close(self) -> None:
        stop(self.proc)


def request(url: str, method: str, path: str, headers: dict) -> tuple[int, dict, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=900)
    try:
        conn.request(method, quote(path), headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def propfind(url: str, path: str) -> tuple[float, bytes]:
    """Seconds until the 207 (a 503 with Retry-After, as a client would, is retried: a first
    listing longer than tgdav's 120 s answer deadline goes on in the background), and the body."""
    t = time.perf_counter()
    while True:
        status, headers, body = request(url, "PROPFIND", path, {"Depth": "1"})
        if status != 503:
            break
        time.sleep(min(float(headers.get("Retry-After", 5)), 5))
    if status != 207:
        raise SystemExit(f"PROPFIND {path}: {status} {body[:300]!r}")
    return time.perf_counter() - t, body


def members(body: bytes) -> list[tuple[str, int]]:
    """(href, getcontentlength) of each file in a multistatus."""
    out = []
    for resp in ET.fromstring(body).iter("{DAV:}response"):
        length = resp.find(".//{DAV:}getcontentlength")
        if length is not None:
            out.append((unquote(resp.find("{DAV:}href").text), int(length.text)))
    return out


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="tgdav-list-bench-"))
        self.rule = (args.history_rate or HISTORY_RULE[0], args.history_burst or HISTORY_RULE[1])
        self.sandbox = Sandbox(args, self.root)
        if args.history_rate or args.history_burst:
            self.sandbox.faults({"history_rate_limit": {"per_second": self.rule[0], "burst": self.rule[1],
                                                        "seconds": HISTORY_RULE[2]}})
        self.template = self.root / "template"
        self._login()
        self.last_history = 0.0
        self.results: dict = {"load_start": load(), "rule": {"per_second": self.rule[0], "burst": self.rule[1]},
                              "profile": args.profile}

    def config(self, where: Path, state: Path, port: int, session: str) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        config = where / "tgdav.toml"
        # tgdav keeps at least a second's worth of calls (and 2) below the sandbox's burst: calls
        # sent at its pace may reach the sandbox closer together (scheduling, several connections)
        margin = max(2, math.ceil(self.rule[0]))
        config.write_text(f"""[telegram]
sandbox = "{self.sandbox.json}"
session = "{session}"
history_per_second = {self.rule[0]}
history_burst = {max(1, self.rule[1] - margin)}

[state]
dir = "{state}"

[server]
port = {port}

[auth]
mode = "none"
""", encoding="utf-8")
        return config

    def _login(self) -> None:
        info = self.sandbox.info
        config = self.config(self.template, self.template / "state", free_port(), "tgdav")
        r = subprocess.run(TGDAV + ["--config", str(config), "login", "--phone", str(info["user_phone"])],
                           input=f"{info['login_code']}\n", capture_output=True, text=True, timeout=120, env=ENV)
        if r.returncode != 0:
            raise SystemExit("tgdav login failed: " + r.stderr[-2000:])

    def fresh(self, name: str, history: bool) -> Server:
        """A fresh server; when it will read history, first wait until the account's bucket is full."""
        if history:
            refill = self.rule[1] / self.rule[0]
            wait = self.last_history + refill - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        return Server(self, name)

    def history_used(self) -> None:
        self.last_history = time.monotonic()

    # --- the measurements -------------------------------------------------------------------------
    def root_listing(self) -> dict:
        runs = []
        for i in range(self.args.runs):
            server = self.fresh(f"root{i}", history=False)
            try:
                before = self.sandbox.total("requests:GetHistory")
                seconds, _ = propfind(server.url, "/")
                runs.append({"seconds": seconds, "gethistory": self.sandbox.total("requests:GetHistory") - before,
                             "load": load()})
            finally:
                server.close()
        return {"runs": runs, "median_seconds": statistics.median(r["seconds"] for r in runs)}

    def channel(self, title: str, count: int) -> dict:
        cold = []
        out: dict = {"messages": count}
        for i in range(self.args.runs):
            server = self.fresh(f"{title}-{i}", history=True)
            try:
                before_h = self.sandbox.total("requests:GetHistory")
                before_f = self.sandbox.total("errors:FLOOD_WAIT_X")
                seconds, body = propfind(server.url, f"/{title}/")
                self.history_used()
                files = len(members(body))
                cold.append({"seconds": seconds, "files": files, "body_bytes": len(body),
                             "gethistory": self.sandbox.total("requests:GetHistory") - before_h,
                             "flood_waits": self.sandbox.total("errors:FLOOD_WAIT_X") - before_f, "load": load()})
                if i == self.args.runs - 1:
                    out["cold_peak_rss_mib"] = server.rss() / MIB
                    server.close()
                    # warm: a restarted server (the listing from the store), so the peak is the
                    # warm listings' own, not the first read's
                    server = Server(self, f"{title}-warm", state=server.state)
                    propfind(server.url, f"/{title}/")
                    warm = [propfind(server.url, f"/{title}/")[0] for _ in range(self.args.warm_runs)]
                    out["warm_seconds"] = warm
                    out["warm_median"] = statistics.median(warm)
                    out["warm_load"] = load()
                    out["peak_rss_mib"] = server.rss() / MIB
                    server.close()
                    out["stored"] = stored_listing(server.state)
            finally:
                server.close()
        out["cold"] = cold
        out["cold_median"] = statistics.median(r["seconds"] for r in cold)
        return out

    def deep(self) -> dict:
        server = self.fresh("deep", history=True)
        try:
            before = self.sandbox.total("requests:GetHistory")
            seconds, body = propfind(server.url, "/Tree/show 03/season 2/")
            self.history_used()
            return {"seconds": seconds, "files": len(members(body)), "load": load(),
                    "gethistory": self.sandbox.total("requests:GetHistory") - before}
        finally:
            server.close()

    def scan(self) -> dict:
        library = self.sandbox.info["library"]
        server = self.fresh("scan", history=True)
        try:
            before = self.sandbox.counters()
            t0 = time.perf_counter()
            propfind(server.url, "/Library/")
            queue = sorted(library)
            lock = threading.Lock()
            bad: list[str] = []
            per_client = [0] * self.args.clients
            floor_getfile = 0

            def client(n: int) -> None:
                nonlocal floor_getfile
                while True:
                    with lock:
                        if not queue:
                            return
                        folder = queue.pop(0)
                    _, listing = propfind(server.url, f"/Library/{folder}/")
                    per_client[n] += 1
                    for href_, size in members(listing):
                        doc = library[folder][href_.rsplit("/", 1)[-1]]
                        for start in (0, max(0, size - 64 * KIB)):
                            end = min(size, start + 64 * KIB) - 1
                            status, _, data = request(server.url, "GET", href_, {"Range": f"bytes={start}-{end}"})
                            per_client[n] += 1
                            with lock:
                                floor_getfile += end // MIB - start // MIB + 1
                            if status != 206 or hashlib.sha256(data).digest() != hashlib.sha256(
                                    pattern(doc, start, end - start + 1)).digest():
                                with lock:
                                    bad.append(f"{href_} {start}-{end}: {status}")
            threads = [threading.Thread(target=client, args=(n,)) for n in range(self.args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            self.history_used()
            after = self.sandbox.counters()
            getfile = sum(int(after[d].get("requests:GetFile", 0)) - int(before.get(d, {}).get("requests:GetFile", 0))
                          for d in after if isinstance(after[d], dict))
            floor_rtts = max(per_client) + 1            # the library listing, then one client's requests
            return {"wall_seconds": wall, "files": sum(len(v) for v in library.values()),
                    "folders": len(library), "clients": self.args.clients, "bad_reads": bad[:10],
                    "getfile": getfile, "getfile_floor": floor_getfile,
                    "round_trips": wall / RTT, "round_trip_floor": floor_rtts, "load": load(),
                    "requests_per_client": per_client}
        finally:
            server.close()


def stored_listing(state: Path) -> dict:
    """Bytes of the stored listings (pickled, as diskcache keeps them): the head and the biggest piece."""
    from diskcache import Cache
    store = Cache(str(state / "cache" / "meta"))
    try:
        sizes = {}
        for key in store.iterkeys():
            if isinstance(key, tuple) and key and key[0] == "listing":
                sizes[str(key[1])] = len(pickle.dumps(store.get(key)))
        heads = {k: v for k, v in sizes.items() if k.count(":") == 1}
        pieces = {k: v for k, v in sizes.items() if k.count(":") == 2}
        return {"heads_max_bytes": max(heads.values(), default=0), "pieces": len(pieces),
                "piece_max_bytes": max(pieces.values(), default=0), "all_bytes": sum(sizes.values())}
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000,50000")
    p.add_argument("--library", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--runs", type=int, default=1, help="cold runs per measurement (fresh servers)")
    p.add_argument("--warm-runs", type=int, default=5)
    p.add_argument("--profile", default="telegram-like")
    p.add_argument("--history-rate", type=float, default=0.0, help="getHistory calls per second (sandbox and tgdav)")
    p.add_argument("--history-burst", type=int, default=0)
    p.add_argument("--skip-scan", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    bench = Bench(args)
    res = bench.results
    try:
        res["root"] = bench.root_listing()
        print(f"PROPFIND / Depth 1 cold: {res['root']['median_seconds']:.2f} s, "
              f"getHistory {[r['gethistory'] for r in res['root']['runs']]}  (load {load()})", flush=True)
        res["channels"] = {}
        for n in [int(s) for s in args.sizes.split(",") if s]:
            title = f"L{n // 1000}k" if n % 1000 == 0 else f"L{n}"
            r = res["channels"][title] = bench.channel(title, n)
            print(f"{title}: cold {r['cold_median']:.2f} s ({r['cold'][-1]['gethistory']} getHistory, "
                  f"{r['cold'][-1]['flood_waits']} FLOOD_WAIT, peak RSS {r['cold_peak_rss_mib']:.0f} MiB), "
                  f"warm {r['warm_median']:.3f} s (restarted server, peak RSS {r['peak_rss_mib']:.0f} MiB), "
                  f"stored piece max {r['stored']['piece_max_bytes']} B  "
                  f"(load {r['warm_load']})", flush=True)
        res["deep"] = bench.deep()
        print(f"deep tagged folder cold: {res['deep']['seconds']:.2f} s, {res['deep']['gethistory']} getHistory "
              f"for {res['deep']['files']} files  (load {res['deep']['load']})", flush=True)
        if not args.skip_scan:
            s = res["scan"] = bench.scan()
            print(f"library scan: {s['wall_seconds']:.1f} s wall, getFile {s['getfile']} (floor "
                  f"{s['getfile_floor']}), {s['round_trips']:.0f} round trips (floor {s['round_trip_floor']}), "
                  f"bad reads {len(s['bad_reads'])}  (load {s['load']})", flush=True)
        res["load_end"] = load()
    finally:
        bench.sandbox.proc.send_signal(signal.SIGTERM)
        stop(bench.sandbox.proc)
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        path = out / f"list-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(res, indent=2))
        print(f"results: {path}")
        if not args.keep:
            shutil.rmtree(bench.root, ignore_errors=True)
    return 1 if res.get("scan", {}).get("bad_reads") else 0


if __name__ == "__main__":
    sys.exit(main())
