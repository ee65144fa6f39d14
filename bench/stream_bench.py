"""Streams that share the link (issue 19): players beside a bulk copy, against the sandbox.

One command, not a timed test. The sandbox runs in its own process (bench/sandbox_proc.py, link
profile telegram-like: 100 ms round trip, 2 MiB/s per connection); the read path is built by
tgdav.app.build_read_path, the code `tgdav serve` uses. Figures are medians, in round trips (RTT).

    python bench/stream_bench.py                 # 512 MiB files, 10 seeks per player
    python bench/stream_bench.py --quick         # 256 MiB files, 5 seeks, no 8-sender read

Phases (each on offsets of fresh.bin nobody read before: every seek is a cache miss):
  player alone        a player seeks (`bytes=N-`), takes 2 MiB at once, closes; --seeks times:
                      first byte and 2 MiB in its hands, in RTT
  player beside bulk  the same while one bulk reader takes big.bin `bytes=0-` as fast as it can:
                      the player's figures and the bulk reader's share of the link meanwhile
  4 players + bulk    four such players at once beside the bulk reader (each one's time to 2 MiB
                      after each seek; the bulk rate)
  player drops        read_bench's player: 1 MiB taken, the stream dropped with its read-ahead in
                      flight, a seek at once: bytes Telegram read (getfile_bytes) and bytes that
                      crossed the link (getfile_bytes minus answers dropped before sending) per
                      byte served
  never opened        a new reader (no kept key) lists the channel, then reads small.bin on DC 4:
                      first byte in RTT, with [pool] connect_listed_dcs on and off
  sequential x8       a new reader with 8 senders per DC reads big.bin whole, cold (the start
                      included): % of the link (8 x 2 MiB/s)
  HTTP CPU            `tgdav serve` in its own process, big.bin whole with curl twice: CPU seconds
                      per GiB of the server process, from Telegram and from the chunk cache; then
                      what this machine charges any code for the same work (machine_floor: the
                      crypto and new cache files, in a row and at the link's rate)
  Telethon player     plain Telethon iter_download from each seek offset, 2 MiB: the same figures
Writes bench/results/stream-<timestamp>.json; prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from read_bench import (Engine, Phase, played_right, random_offsets, start_sandbox,  # noqa: E402
                        stop_sandbox, total)
from tgdav.sandbox.controls import PROFILES  # noqa: E402
from tgdav.telegram.login import SandboxInfo, login, make_client  # noqa: E402

KIB, MIB = 1 << 10, 1 << 20
PHASES = ("alone", "drops", "bulk", "cold", "seq8", "http", "telethon")
log = logging.getLogger("bench")


async def play(engine: Engine, loc, offset: int, length: int) -> dict:
    """A player after a seek: `bytes=offset-`, `length` bytes taken as they come, then closed.
    {"ttfb": s, "full": s (length in hand), ...}; `summary` checks the bytes (after the timed work)."""
    n, ttfb, digest, full = await engine.play(loc, offset, length)
    return {"offset": offset, "ttfb": ttfb, "full": full, "check": (loc, offset, length, n, digest)}


class Bulk:
    """One reader taking `loc` from 0 as fast as it can, counting its bytes over time."""

    def __init__(self, engine: Engine, loc) -> None:
        self.engine, self.loc = engine, loc
        self.bytes = 0
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        stream = self.engine.reader.stream(self.loc, 0, self.loc.size - 1)
        try:
            async for piece in stream:
                self.bytes += len(piece)
        finally:
            await stream.aclose()

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


def summary(plays: list[dict], rtt: float) -> dict:
    ttfb = [p["ttfb"] / rtt for p in plays]
    full = [p["full"] / rtt for p in plays]
    return {"n": len(plays), "ttfb_rtt": statistics.median(ttfb), "ttfb_rtt_max": max(ttfb),
            "full_rtt": statistics.median(full), "full_rtt_max": max(full),
            "all_ok": all([_right(p) for p in plays])}


def _right(play: dict) -> bool:
    if "check" in play:
        play["ok"] = played_right(*play.pop("check"))
    return play["ok"]


async def phases(args, info: SandboxInfo, work: Path, results: dict) -> None:
    admin = info.raw["admin"]
    rtt = PROFILES[args.profile].latency_ms / 1000
    link = args.senders * PROFILES[args.profile].bandwidth
    engine = Engine(work / "client", info, args.senders, 8, 64 * KIB)
    locs = await engine.open()
    big, fresh = locs["big.bin"], locs["fresh.bin"]
    # warm: DC 4 known and its senders open (as in a player that has been playing a while); big.bin
    # (the bulk reader's) is read later from byte 0, every byte from Telegram
    await engine.read(big, 0, 99)
    await engine.read(fresh, 0, 16 * MIB - 1)
    rng = random.Random(args.seed)
    need = args.seeks * (2 + 4) + args.seeks
    offsets = random_offsets(rng, fresh.size, need, args.play_len, avoid_mib=set(range(0, 17)), slack=MIB)
    take = iter(offsets)

    # 1. alone
    if "alone" in args.only:
        load = os.getloadavg()[0]
        plays = [await play(engine, fresh, next(take), args.play_len) for _ in range(args.seeks)]
        results["alone"] = {**summary(plays, rtt), "load": [load, os.getloadavg()[0]]}
        await asyncio.sleep(1)
    if "drops" in args.only:
        await drops(args, engine, fresh, take, rtt, results)
    if "bulk" in args.only:
        await beside_bulk(args, engine, big, fresh, take, rtt, link, results)
    await engine.close()
    if "cold" in args.only:
        await never_opened(args, info, work, rtt, results)
    if "seq8" in args.only:
        await sequential_8(args, info, work, admin, results)


async def drops(args, engine: Engine, fresh, take, rtt: float, results: dict) -> None:
    """2. read_bench's player: 1 MiB taken, dropped with read-ahead in flight, a seek at once."""
    admin = engine.info.raw["admin"]
    load = os.getloadavg()[0]
    served = 0
    with Phase(admin) as p:
        drops = []
        for _ in range(args.seeks):
            drops.append(await play(engine, fresh, next(take), args.drop_len))
            served += args.drop_len
        await asyncio.sleep(1.0)           # the last dropped answers settle
    c = p.counters
    results["player_drops"] = {
        **summary(drops, rtt), "served": served,
        "getfile_over_served": total(c, "getfile_bytes") / served,
        "link_over_served": (total(c, "getfile_bytes") - total(c, "dropped_answer_bytes")) / served,
        "getfile_calls": total(c, "requests:GetFile"), "drop_requests": total(c, "drop_requests"),
        "answers_dropped": total(c, "answers_dropped"), "unawaited_bytes": total(c, "unawaited_bytes"),
        "dropped_answer_bytes": total(c, "dropped_answer_bytes"), "load": [load, os.getloadavg()[0]]}
    await asyncio.sleep(1)


async def beside_bulk(args, engine: Engine, big, fresh, take, rtt: float, link: float, results: dict) -> None:
    """3. and 4.: one player, then four, beside one bulk reader."""
    bulk = Bulk(engine, big)
    bulk.start()
    await asyncio.sleep(3)                  # the bulk reader is at full speed
    b0, t0 = bulk.bytes, time.perf_counter()
    plays = []
    for _ in range(args.seeks):
        plays.append(await play(engine, fresh, next(take), args.play_len))
    secs = time.perf_counter() - t0
    results["beside_bulk"] = {**summary(plays, rtt), "bulk_share": (bulk.bytes - b0) / secs / link,
                              "bulk_mib_s": (bulk.bytes - b0) / secs / MIB}
    if "alone" in results:
        results["beside_bulk"]["vs_alone"] = results["beside_bulk"]["full_rtt"] / results["alone"]["full_rtt"]

    # 4. four players at once beside the bulk reader
    async def player(k: int) -> list[dict]:
        out = []
        for _ in range(args.seeks):
            out.append(await play(engine, fresh, next(take), args.play_len))
        return out
    b0, t0 = bulk.bytes, time.perf_counter()
    per = await asyncio.gather(*(player(k) for k in range(4)))
    secs = time.perf_counter() - t0
    results["four_players"] = {"players": [summary(p, rtt) for p in per],
                               "all": summary([x for p in per for x in p], rtt),
                               "bulk_share": (bulk.bytes - b0) / secs / link,
                               "bulk_mib_s": (bulk.bytes - b0) / secs / MIB,
                               "bulk_done": bulk.task.done()}
    await bulk.stop()
    await asyncio.sleep(1)


async def never_opened(args, info: SandboxInfo, work: Path, rtt: float, results: dict) -> None:
    """5. the first byte of a never-opened file on a DC a listing names (a new state dir: no key kept)."""
    cold = {}
    for warm in (False, True):
        e = Engine(work / f"cold-{warm}", info, args.senders, 8, 64 * KIB)
        e.config = dataclasses.replace(e.config, pool=dataclasses.replace(e.config.pool,
                                                                          connect_listed_dcs=warm))
        locs = await e.open()                   # lists the channel
        await asyncio.sleep(2)                  # a person looks at the listing before opening a file
        n, ttfb, _ = await e.read(locs["small.bin"], 0, 99)
        cold["connected_ahead" if warm else "on_first_use"] = ttfb / rtt
        await e.close()
    results["never_opened"] = cold


async def sequential_8(args, info: SandboxInfo, work: Path, admin: str, results: dict) -> None:
    """6. sequential, 8 senders, cold, whole file."""
    if not args.quick:
        load = os.getloadavg()[0]
        seq = Engine(work / "client8", info, 8, 16, 64 * KIB)
        locs = await seq.open()
        loc = locs["big.bin"]
        with Phase(admin) as p:
            n, ttfb, secs = await seq.read(loc, 0, loc.size - 1)
        results["sequential_8"] = {"bytes": n, "seconds": secs, "mib_s": n / MIB / secs,
                                   "link_share": n / secs / (8 * PROFILES[args.profile].bandwidth),
                                   "ttfb_ms": ttfb * 1000, "cpu_s_per_gib": p.cpu / (n / (1 << 30)),
                                   "getfile_calls": total(p.counters, "requests:GetFile"),
                                   "load": [load, os.getloadavg()[0]]}
        await seq.close()


async def telethon_players(args, info: SandboxInfo, work: Path, offsets: list[int], results: dict) -> None:
    from telethon import types
    raw = info.raw
    bench = raw["bench"]
    rtt = PROFILES[args.profile].latency_ms / 1000
    client = make_client(work, "plain", info.api_id, info.api_hash, info)
    await login(client, bot_token=None, phone=raw["user_phone"], ask=lambda p, s: raw["login_code"])
    await client.get_dialogs()
    channel = await client.get_entity(types.PeerChannel(bench["channel_id"]))
    msg = await client.get_messages(channel, ids=bench["files"]["fresh.bin"]["message_id"])
    async for _ in client.iter_download(msg.media, request_size=512 * KIB):
        break                               # DC 4 connected and authorised
    plays = []
    for off in offsets:
        start = off - off % (512 * KIB)
        t0, got, ttfb = time.perf_counter(), 0, None
        async for chunk in client.iter_download(msg.media, offset=start, request_size=512 * KIB):
            if ttfb is None:
                ttfb = time.perf_counter() - t0
            got += len(chunk)
            if got >= args.play_len + (off - start):
                break
        plays.append({"ttfb": ttfb, "full": time.perf_counter() - t0, "ok": True})
    results["telethon_alone"] = summary(plays, rtt)
    await client.disconnect()


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def machine_floor(work: Path, rate: float, mib: int = 64) -> dict:
    """CPU seconds per GiB this machine charges, right now, for work any server streaming from
    Telegram through a disk cache does, whatever its code (this thread's CPU, step by step):
      crypto         AES-256-IGE decryption (cryptg, Telethon's) and SHA-256 (the msg_key check)
                     of 1 MiB answers, one after the other
      crypto_paced   the same at `rate` bytes/s, one answer per wake (as answers arrive)
      files_in_a_row `mib` new 1 MiB files written one after the other (new page-cache pages, new
                     inodes), in a directory next to the server's state
      files_paced    the same at `rate` bytes/s, one file per wake (a cache writer at the rate the
                     serve read from Telegram)
    A virtual machine that hands free memory back to its host, or runs a thread woken after a
    sleep on a cold CPU, shows it here; the HTTP phase's figures are read against these."""
    import hashlib
    import cryptg

    def per_gib(step, pause: float) -> float:
        """step(i) `mib` times, `pause` seconds apart; its CPU per GiB. Each step on the thread's
        CPU clock (CLOCK_THREAD_CPUTIME_ID), exact to the moment: getrusage(RUSAGE_THREAD) reads the
        CPU time the scheduler last booked (at a tick or a switch), so summed around each step with a
        sleep between it counted a third of the crypto's time (0.65 against 2.19 s/GiB, one run)."""
        spent = 0.0
        for i in range(mib):
            c0 = time.thread_time()
            step(i)
            spent += time.thread_time() - c0
            time.sleep(pause)
        return spent / (mib / 1024)

    data = os.urandom(MIB)
    key, iv = os.urandom(32), os.urandom(32)

    def answer(_: int) -> None:
        hashlib.sha256(cryptg.decrypt_ige(data, key, iv)).digest()

    out = {"crypto": per_gib(answer, 0.0), "crypto_paced": per_gib(answer, MIB / rate)}
    for name, pause in (("files_in_a_row", 0.0), ("files_paced", MIB / rate)):
        d = work / name
        d.mkdir(parents=True)

        def new_file(i: int) -> None:
            with open(d / f"{i}.val", "xb") as f:
                f.write(data)
        out[name] = per_gib(new_file, pause)
        shutil.rmtree(d)
    return out


def http_cpu(args, raw: dict, work: Path, results: dict) -> None:
    """`tgdav serve` (its own process, 4 senders) and curl: big.bin whole over HTTP twice, first from
    Telegram, then from the chunk cache; the server process's CPU seconds per GiB for each."""
    import socket
    import subprocess
    import urllib.request
    work.mkdir(parents=True, exist_ok=True)
    (work / "sandbox.json").write_text(json.dumps(raw))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = work / "tgdav.toml"
    config.write_text(f'[telegram]\nsandbox = "{work / "sandbox.json"}"\nsession = "bench"\n\n'
                      f'[state]\ndir = "{work / "state"}"\n\n[server]\nport = {port}\n\n'
                      f'[auth]\nmode = "none"\n\n[cache]\nsize = "4 GiB"\n', encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tgdav = [sys.executable, "-m", "tgdav", "--config", str(config)]
    subprocess.run(tgdav + ["login", "--phone", str(raw["user_phone"])], input=f"{raw['login_code']}\n\n",
                   capture_output=True, text=True, timeout=90, env=env, check=True)
    proc = subprocess.Popen(tgdav + ["serve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}/Bench/big.bin"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    r.read(1)
                break
            except OSError:
                time.sleep(0.2)
        size = raw["bench"]["files"]["big.bin"]["size"]
        out = {}
        for name in ("telegram", "cache"):
            (u0, s0), t0 = _cpu_seconds(proc.pid), time.perf_counter()
            got = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", url],
                                 capture_output=True, text=True, timeout=900, check=True).stdout
            secs, (u1, s1) = time.perf_counter() - t0, _cpu_seconds(proc.pid)
            assert int(got) == size, got
            gib = size / (1 << 30)
            out[name] = {"seconds": secs, "mib_s": size / MIB / secs, "cpu_s_per_gib": (u1 - u0 + s1 - s0) / gib,
                         "user_s_per_gib": (u1 - u0) / gib, "system_s_per_gib": (s1 - s0) / gib}
        results["http"] = out
        results["machine"] = machine_floor(work / "floor", out["telegram"]["mib_s"] * MIB)   # the rate it got
    finally:
        stop_sandbox(proc)                      # (any child: SIGTERM, then SIGKILL after 10 s)


def table(r: dict) -> str:
    rows = [("what", "measured (median)", "goal")]
    rows += _player_rows(r)
    if "http" in r:
        h = r["http"]
        for name, goal in (("telegram", "<= 5"), ("cache", "<= 1")):
            x = h[name]
            rows.append((f"HTTP, tgdav serve CPU, from {'Telegram' if name == 'telegram' else 'the cache'}",
                         f"{x['cpu_s_per_gib']:.2f} s/GiB (user {x['user_s_per_gib']:.2f}, system "
                         f"{x['system_s_per_gib']:.2f}; {x['mib_s']:.1f} MiB/s)", goal))
    if "machine" in r:
        m = r["machine"]
        rows.append(("  this machine, any code: crypto / new files", f"{m['crypto']:.2f} / {m['files_in_a_row']:.2f} s/GiB "
                     f"in a row, {m['crypto_paced']:.2f} / {m['files_paced']:.2f} "
                     "at the link's rate", ""))
    w0 = max(len(x) for x, _, _ in rows)
    w1 = max(len(y) for _, y, _ in rows)
    return "\n".join(f"{x:<{w0}}  {y:<{w1}}  {z}" for x, y, z in rows)


def _player_rows(r: dict) -> list:
    rows, checked = [], []
    if "alone" in r:
        a = r["alone"]
        checked.append(a)
        rows += [("player alone: first byte", f"{a['ttfb_rtt']:.2f} RTT (max {a['ttfb_rtt_max']:.2f})", "<= 1.5"),
                 ("player alone: 2 MiB in hand", f"{a['full_rtt']:.2f} RTT (max {a['full_rtt_max']:.2f})", "<= 4.5")]
    if "beside_bulk" in r:
        b, f = r["beside_bulk"], r["four_players"]
        checked += [b, f["all"]]
        vs = f" = {b['vs_alone']:.2f}x alone" if "vs_alone" in b else ""
        rows += [
            ("beside bulk: first byte", f"{b['ttfb_rtt']:.2f} RTT (max {b['ttfb_rtt_max']:.2f})", "<= 1.5"),
            ("beside bulk: 2 MiB in hand", f"{b['full_rtt']:.2f} RTT{vs} (max {b['full_rtt_max']:.2f})",
             "<= 1.5x"),
            ("beside bulk: bulk's share of the link", f"{100 * b['bulk_share']:.0f} % "
             f"({b['bulk_mib_s']:.2f} MiB/s)", ">= 50 %"),
            ("4 players + bulk: first byte", f"{f['all']['ttfb_rtt']:.2f} RTT (max {f['all']['ttfb_rtt_max']:.2f})", ""),
            ("4 players + bulk: 2 MiB in hand", f"{f['all']['full_rtt']:.2f} RTT (per player "
             + ", ".join(f"{p['full_rtt']:.1f}" for p in f["players"]) + ")", ""),
            ("4 players + bulk: bulk's share", f"{100 * f['bulk_share']:.0f} % ({f['bulk_mib_s']:.2f} MiB/s)", "")]
    if "player_drops" in r:
        d = r["player_drops"]
        checked.append(d)
        rows += [("player drops after 1 MiB: read / served", f"{d['getfile_over_served']:.2f} (getfile_bytes)", ""),
                 ("  crossed the link / served", f"{d['link_over_served']:.2f}", "<= 1.3"),
                 ("  first byte", f"{d['ttfb_rtt']:.2f} RTT", "<= 1.5")]
    if "never_opened" in r:
        c = r["never_opened"]
        rows.append(("never-opened file on a listed DC: first byte", f"{c['connected_ahead']:.2f} RTT "
                     f"(on first use: {c['on_first_use']:.2f} RTT)", "<= 2"))
    if "sequential_8" in r:
        s = r["sequential_8"]
        rows.append(("sequential, 8 senders, cold, whole", f"{100 * s['link_share']:.0f} % of the link "
                     f"({s['mib_s']:.2f} MiB/s, first byte {s['ttfb_ms']:.0f} ms, "
                     f"{s['cpu_s_per_gib']:.2f} s CPU/GiB)", ">= 90 %"))
    if "telethon_alone" in r:
        t = r["telethon_alone"]
        rows.append(("plain Telethon player alone", f"first byte {t['ttfb_rtt']:.2f} RTT, 2 MiB {t['full_rtt']:.2f} RTT", ""))
    if not all(x.get("all_ok", True) for x in checked):
        rows.append(("BYTES", "MISMATCH", "ok"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="tgdav streams sharing the link, against the sandbox")
    p.add_argument("--size-mib", type=float, default=512)
    p.add_argument("--quick", action="store_true", help="256 MiB files, 5 seeks, no 8-sender read")
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--seeks", type=int, default=10)
    p.add_argument("--play-kib", type=int, default=2048, help="what a player takes after a seek")
    p.add_argument("--drop-kib", type=int, default=1024, help="what the dropping player takes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", default="telegram-like", choices=sorted(PROFILES))
    p.add_argument("--skip-telethon", action="store_true")
    p.add_argument("--skip-http", action="store_true", help="no `tgdav serve` CPU phase")
    p.add_argument("--http-only", action="store_true", help="only the `tgdav serve` CPU phase")
    p.add_argument("--only", default=",".join(PHASES),
                   help="comma-separated phases to run, of " + ",".join(PHASES) + " (default: all)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    args.only = set(args.only.split(","))
    if args.only - set(PHASES):
        p.error(f"--only: unknown phase(s) {', '.join(sorted(args.only - set(PHASES)))}; "
                f"known: {', '.join(PHASES)}")
    if "http" not in args.only:
        args.skip_http = True
    if "telethon" not in args.only:
        args.skip_telethon = True
    if args.quick:
        args.size_mib, args.seeks = 256, 5
    args.play_len, args.drop_len = args.play_kib * KIB, args.drop_kib * KIB
    args.first_part = 64 * KIB
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if args.verbose:
        logging.getLogger("tgdav").setLevel(logging.INFO)
    work = Path(tempfile.mkdtemp(prefix="tgdav-stream-bench-"))
    results: dict = {"args": vars(args), "loadavg_start": os.getloadavg(), "cpus": os.cpu_count()}
    proc, raw = start_sandbox(args, work / "sandbox")
    try:
        info = SandboxInfo.from_json(json.dumps(raw))
        if not args.http_only and args.only & {"alone", "drops", "bulk", "cold", "seq8"}:
            asyncio.run(phases(args, info, work, results))
        if not args.skip_http:
            http_cpu(args, raw, work / "http", results)
        if not args.skip_telethon and not args.http_only:
            rng = random.Random(args.seed + 7)
            offsets = random_offsets(rng, raw["bench"]["files"]["fresh.bin"]["size"], args.seeks,
                                     args.play_len, avoid_mib=set(range(0, 5)), slack=2 * MIB)
            asyncio.run(telethon_players(args, info, work / "plain", offsets, results))
    finally:
        stop_sandbox(proc)
        results["loadavg_end"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"stream-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    print(f"\nload average start {results['loadavg_start'][0]:.2f}, end {results['loadavg_end'][0]:.2f}")
    for name in ("alone", "player_drops", "sequential_8"):
        if "load" in results.get(name, {}):
            print(f"  {name}: load average {results[name]['load'][0]:.2f} -> {results[name]['load'][1]:.2f}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
