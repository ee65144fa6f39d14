"""Live listings benchmark (issue 18): how soon a change made anywhere shows in tgdav's PROPFIND.

One command starts everything: the sandbox in its own process (link profile telegram-like: 100 ms
round trip, 2 MiB/s per connection), redis-server on a free port, and four `tgdav serve` processes
of one account:
    A, B   replicas sharing Redis ([state] redis), updates on
    C      alone (its own disk store), updates on: the idle and restart measurements
    D      alone, `[cache] updates = false` (listing_refresh 60 s): the polling baseline
A second account ("another client", a plain Telethon in this process) posts files.

    python bench/live_bench.py                  # about 5 minutes
    python bench/live_bench.py --posts 10 --idle-seconds 30 --restart-posts 200

Measures (seconds are medians; the sandbox's counters give the request counts):
  post -> PROPFIND   --posts files posted by the other client, one at a time; from the post's answer
                     (messages.sendMedia answered) to the first PROPFIND (Depth 1, polled every
                     20 ms) through A that lists it; the posting's own time is shown beside it
  PUT A -> B         --posts PUTs through A; from the 201 to the first PROPFIND through B that lists it
  MKCOL then PUT     --mkcols new top-level folders through A, each followed at once by a PUT into
                     it: the statuses of the PUTs (201 wanted, always)
  idle               --channels channels listed through C, then PROPFIND of all of them every 10 s for
                     --idle-seconds: getHistory calls per minute (0 wanted); the same through D
  restart            C stopped, --restart-posts files posted into one channel (link off while
                     posting, to save time), C started again: whether its PROPFIND is complete, the
                     getHistory calls (0 wanted), and C's own count of getChannelDifference calls
                     for that channel (its round trips), and the seconds from `serve` answering to
                     the complete listing
Prints a table and writes bench/results/live-<timestamp>.json. Not a test: nothing is asserted,
but the exit status is 1 if the restart's listing is incomplete.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import SandboxAdmin, serve_config, stop  # noqa: E402
from tests.scale.conftest import login as tgdav_login, replica_config, start_redis  # noqa: E402
from tests.scale.test_live_replicas import listed, request as dav  # noqa: E402

POSTER_PHONE = "+15550018"
WRITABLE = "Writable"
log = logging.getLogger("bench")


# --- the sandbox process ---------------------------------------------------------------------------
def sandbox_child(args) -> int:
    import signal

    from tgdav.sandbox.runner import Sandbox
    from tgdav.sandbox.world import World

    w = World(seed=18)
    user = w.add_user("+15550017", "Live", home_dc=2)
    poster = w.add_user(POSTER_PHONE, "Poster", home_dc=2)
    channels = {}
    for i in range(args.channels):
        ch = w.add_channel(f"Channel {i:03d}", creator=poster, members=[user])
        for j in range(3):
            w.add_document(ch, name=f"seed{j}.bin", size=1000 + j, mime="application/octet-stream", dc=2)
        channels[ch.title] = [ch.id, ch.access_hash]
    w.add_channel(WRITABLE, creator=user, members=[poster])
    sandbox = Sandbox(w, user=user, state_dir=Path(args.state), profile=args.profile)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with sandbox:
        print(json.dumps(dict(sandbox.info(), poster_phone=POSTER_PHONE, channels=channels)), flush=True)
        done.wait()
    return 0


def until_listed(url: str, names: set[str], timeout: float = 60.0) -> float | None:
    """Seconds until a PROPFIND of `url` lists every name (polled every 20 ms); None if never."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if names <= listed(url):
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def q(name: str) -> str:
    return urllib.parse.quote(name)


# --- the other client ------------------------------------------------------------------------------
class Poster:
    """A second account posting files with plain Telethon, on its own loop thread."""

    def __init__(self, info_path: Path, state: Path) -> None:
        from telethon.tl import types

        from tgdav.telegram.login import SandboxInfo, login, make_client
        self.types = types
        self.info = SandboxInfo.load(info_path)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

        async def start():
            client = make_client(state, "poster", 1, "x", self.info)
            await login(client, bot_token=None, phone=POSTER_PHONE, ask=lambda p, s: self.info.raw["login_code"])
            return client
        self.client = self.run(start())

    def run(self, coro, timeout: float = 300):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def peer(self, title: str):
        cid, access_hash = self.info.raw["channels"][title]
        return self.types.InputPeerChannel(cid, access_hash)

    def post(self, title: str, names: list[str], parallel: int = 1) -> None:
        sem = asyncio.Semaphore(parallel)

        async def one(name):
            async with sem:
                await self.client.send_file(self.peer(title), name.encode() * 10, force_document=True,
                                            attributes=[self.types.DocumentAttributeFilename(name)])

        async def all_():
            await asyncio.gather(*(one(n) for n in names))
        self.run(all_())

    def close(self) -> None:
        self.run(self.client.disconnect())
        self.loop.call_soon_threadsafe(self.loop.stop)


# --- the run -----------------------------------------------------------------------------------------
def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="telegram-like")
    p.add_argument("--channels", type=int, default=100)
    p.add_argument("--posts", type=int, default=20)
    p.add_argument("--mkcols", type=int, default=10)
    p.add_argument("--idle-seconds", type=float, default=75.0)
    p.add_argument("--restart-posts", type=int, default=500)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--sandbox-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--state", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sandbox_child:
        return sandbox_child(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("telethon").setLevel(logging.ERROR)

    root = Path(tempfile.mkdtemp(prefix="tgdav-live-bench-"))
    procs: list[subprocess.Popen] = []
    results: dict = {"load_start": open("/proc/loadavg").read().split()[:3], "args": vars(args)}
    poster = None
    try:
        child = subprocess.Popen([sys.executable, __file__, "--sandbox-child", "--profile", args.profile,
                                  "--channels", str(args.channels), "--state", str(root / "sandbox")],
                                 stdout=subprocess.PIPE, stderr=open(root / "sandbox.err", "wb"),
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(child)
        line = child.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox printed nothing: " + (root / "sandbox.err").read_text())
        info_path = root / "sandbox.json"
        info_path.write_bytes(line)
        info = json.loads(line)
        admin = SandboxAdmin()
        admin.admin = info["admin"].rstrip("/")
        redis_url, redis_proc = start_redis(root / "redis")
        procs.append(redis_proc)

        def replica(name: str, redis: str = "", extra: str = "") -> tuple[Path, int]:
            config, port = replica_config(root / name, info_path, redis_url=redis, extra=extra)
            tgdav_login(config, info)
            return config, port

        servers: dict[str, tuple[str, subprocess.Popen, Path, int]] = {}

        def serve(name: str, config: Path, port: int) -> str:
            url, proc = serve_config(config, port, root / f"serve-{name}", log_mode="ab")
            procs.append(proc)
            servers[name] = (url, proc, config, port)
            return url

        log.info("starting replicas A, B (Redis), C and D (updates off)")
        a = serve("a", *replica("a", redis_url))
        b = serve("b", *replica("b", redis_url))
        c = serve("c", *replica("c"))
        d = serve("d", *replica("d", extra="\n[cache]\nupdates = false\n"))
        poster = Poster(info_path, root / "poster")

        # 1. a post made by another client -> PROPFIND through A
        first = "Channel 000"
        listed(f"{a}{q(first)}/")
        waits, sends = [], []
        for i in range(args.posts):
            name = f"post-{i:03d}.bin"
            sent = time.monotonic()
            poster.post(first, [name])
            sends.append(time.monotonic() - sent)
            waits.append(until_listed(f"{a}{q(first)}/", {name}))
        results["post_to_propfind"] = {"seconds": waits, "median": median([w for w in waits if w is not None]),
                                       "missed": sum(w is None for w in waits),
                                       "send_median": median(sends)}
        log.info("post -> PROPFIND: median %s s", results["post_to_propfind"]["median"])

        # 2. PUT through A -> PROPFIND through B
        listed(f"{a}{q(WRITABLE)}/"), listed(f"{b}{q(WRITABLE)}/")
        waits = []
        for i in range(args.posts):
            name = f"put-{i:03d}.bin"
            status, _ = dav("PUT", f"{a}{q(WRITABLE)}/{name}", b"x" * 1000)
            if status not in (200, 201, 204):
                log.warning("PUT %s through A: %d", name, status)
            waits.append(until_listed(f"{b}{q(WRITABLE)}/", {name}))
        results["put_a_to_propfind_b"] = {"seconds": waits, "median": median([w for w in waits if w is not None]),
                                          "missed": sum(w is None for w in waits)}
        log.info("PUT A -> PROPFIND B: median %s s", results["put_a_to_propfind_b"]["median"])

        # 3. MKCOL then PUT at once
        statuses = []
        for i in range(args.mkcols):
            folder = f"New {os.getpid()} {i}"
            mk, _ = dav("MKCOL", f"{a}{q(folder)}/")
            put, _ = dav("PUT", f"{a}{q(folder)}/at-once.bin", b"y" * 100)
            statuses.append([mk, put])
        results["mkcol_then_put"] = {"statuses": statuses,
                                     "put_201": sum(put == 201 for _, put in statuses), "of": len(statuses)}
        log.info("MKCOL then PUT: %d of %d PUTs 201", results["mkcol_then_put"]["put_201"], len(statuses))

        # 4. idle: no getHistory while nothing changes
        titles = sorted(info["channels"])

        def idle(url: str) -> dict:
            for t in titles:                     # listed once (the first look reads each history)
                listed(f"{url}{q(t)}/")
            before = admin.total("requests:GetHistory")
            start = time.monotonic()
            rounds = 0
            while time.monotonic() - start < args.idle_seconds:
                for t in titles:
                    listed(f"{url}{q(t)}/")
                rounds += 1
                time.sleep(max(0.0, 10 - (time.monotonic() - start) % 10))
            calls = admin.total("requests:GetHistory") - before
            minutes = (time.monotonic() - start) / 60
            return {"get_history": calls, "per_minute": calls / minutes, "rounds": rounds,
                    "minutes": minutes}
        results["idle_updates"] = idle(c)
        log.info("idle with updates: %s getHistory/min", results["idle_updates"]["per_minute"])
        results["idle_polling"] = idle(d)
        log.info("idle polling (updates off): %s getHistory/min", results["idle_polling"]["per_minute"])
        stop(servers.pop("d")[1])

        # 5. restart C with --restart-posts posts made meanwhile
        busy = "Channel 001"
        listed(f"{c}{q(busy)}/")
        _, proc, config, port = servers.pop("c")
        stop(proc)
        admin.post("/link", {"profile": "off"})
        names = [f"meanwhile-{i:04d}.bin" for i in range(args.restart_posts)]
        poster.post(busy, names, parallel=20)
        admin.post("/link", {"profile": args.profile})
        before_h, before_d = admin.total("requests:GetHistory"), admin.total("requests:GetChannelDifference")
        c = serve("c", config, port)
        took = until_listed(f"{c}{q(busy)}/", set(names), timeout=300)
        _, body = dav("GET", f"{c}:tgdav/status.json")
        live = json.loads(body).get("live", {}).get(str(info["channels"][busy][0]), {})
        results["restart"] = {
            "complete": took is not None, "seconds_after_serve": took,
            "get_history": admin.total("requests:GetHistory") - before_h,
            "get_channel_difference_all": admin.total("requests:GetChannelDifference") - before_d,
            "get_channel_difference_channel": live.get("differences"),
            "channels_listed": len(titles),
        }
        log.info("restart: %s", results["restart"])
        results["load_end"] = open("/proc/loadavg").read().split()[:3]
    finally:
        if poster is not None:
            try:
                poster.close()
            except Exception:
                pass
        for proc in reversed(procs):
            stop(proc)
        if not args.keep:
            import shutil
            shutil.rmtree(root, ignore_errors=True)

    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"live-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    r = results
    print(f"""
live listings ({args.profile}; load {' '.join(r['load_start'])} -> {' '.join(r['load_end'])})
  post elsewhere -> PROPFIND (A)      median {r['post_to_propfind']['median']:.3f} s after the post's answer over {args.posts}, missed {r['post_to_propfind']['missed']} (posting itself: median {r['post_to_propfind']['send_median']:.3f} s)
  PUT through A -> PROPFIND (B)       median {r['put_a_to_propfind_b']['median']:.3f} s over {args.posts}, missed {r['put_a_to_propfind_b']['missed']}
  MKCOL then PUT at once              {r['mkcol_then_put']['put_201']} of {r['mkcol_then_put']['of']} PUTs 201 (statuses {r['mkcol_then_put']['statuses']})
  idle, {args.channels} channels, updates     {r['idle_updates']['per_minute']:.1f} getHistory/min
  idle, {args.channels} channels, polling     {r['idle_polling']['per_minute']:.1f} getHistory/min (updates off, listing_refresh 60 s)
  restart, {args.restart_posts} posts meanwhile     complete {r['restart']['complete']} after {r['restart']['seconds_after_serve']} s; getHistory {r['restart']['get_history']}; getChannelDifference {r['restart']['get_channel_difference_channel']} for that channel ({r['restart']['get_channel_difference_all']} for all {r['restart']['channels_listed']} listed)
written to {path}""")
    return 0 if r["restart"]["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
