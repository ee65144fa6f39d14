"""What a replica's clients wait for while its Redis is away: one `tgdav serve` with [state] redis
against bench/scale_sandbox.py (channel Uploads: 40 files), Redis up, then killed, then frozen
(SIGSTOP, with Redis started again first).

    python bench/redis_away_bench.py --runs 5

For each state: the first PROPFIND after the change (it may pay the 1 s deadline once), then the
medians over --runs of PROPFIND Depth 1 of Uploads (allprop: lock discovery for 41 resources), a GET of
one file and a PUT (refused 503 while Redis is away). Prints milliseconds and the status codes; the
load average is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import stop  # noqa: E402
from tests.scale.conftest import login, replica_config, serve, start_redis, start_sandbox  # noqa: E402


def timed(url: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        e.read()
        status = e.code
    return (time.perf_counter() - began) * 1000, status


def measure(folder: str, runs: int, tag: str) -> dict:
    first = timed(folder, "PROPFIND", {"Depth": "1"})
    rows = {"first PROPFIND": [first]}
    for i in range(runs):
        rows.setdefault("PROPFIND Depth 1", []).append(timed(folder, "PROPFIND", {"Depth": "1"}))
        rows.setdefault("GET 4 KiB file", []).append(timed(folder + "entry-03.bin"))
        rows.setdefault("PUT 4 KiB", []).append(timed(folder + f"bench-{tag}-{i}.bin", "PUT",
                                                     {"Content-Type": "application/octet-stream"},
                                                     os.urandom(4096)))
    return {name: (statistics.median(ms for ms, _ in got), sorted({s for _, s in got}))
            for name, got in rows.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tgdav-redis-bench-"))
    sb = start_sandbox(root / "sandbox", bots=0, size_mib=1)
    procs = [sb.proc]
    try:
        redis_url, redis = start_redis(root / "redis")
        procs.append(redis)
        config, port = replica_config(root / "a", sb.admin_json, redis_url=redis_url)
        login(config, sb.info)
        url, proc = serve(config, port, root / "serve-a")
        procs.append(proc)
        folder = f"{url}{sb.info['uploads']}/"
        timed(folder, "PROPFIND", {"Depth": "1"})
        results = {"Redis up": measure(folder, args.runs, "up")}
        os.killpg(redis.pid, signal.SIGKILL)
        redis.wait()
        results["Redis killed"] = measure(folder, args.runs, "killed")
        _, redis = start_redis(root / "redis", port=int(redis_url.rsplit(":", 1)[1].split("/")[0]))
        procs.append(redis)
        time.sleep(4)                     # the replica's PING finds it back
        os.kill(redis.pid, signal.SIGSTOP)
        try:
            results["Redis frozen"] = measure(folder, args.runs, "frozen")
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        print(f"load average: {open('/proc/loadavg').read().strip()}")
        for state, rows in results.items():
            for name, (ms, statuses) in rows.items():
                print(f"{state:13}  {name:18}  {ms:9.1f} ms  status {statuses}")
    finally:
        for proc in reversed(procs):
            stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
