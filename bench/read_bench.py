"""Read-path benchmark: tgdav's PartReader vs plain Telethon iter_download, against the sandbox.

The sandbox runs in its own process (bench/sandbox_proc.py, link profile telegram-like: 100 ms round
trip, 2 MiB/s per connection); counters are read through its admin URL (GET {admin}/counters). The
reader runs in this process; a second reader process ("restart") reuses the same state dir.

    python bench/read_bench.py                 # 256 MiB, 4 senders per DC (a few minutes)
    python bench/read_bench.py --quick         # 128 MiB, 8 seeks
    python bench/read_bench.py --size-mib 128 --senders 8

Prints a table and writes bench/results/<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tgdav.app import build_read_path  # noqa: E402
from tgdav.cache.store import Store  # noqa: E402
from tgdav.config import Config, PoolConfig  # noqa: E402
from tgdav.sandbox.content import pattern  # noqa: E402
from tgdav.sandbox.controls import PROFILES  # noqa: E402
from tgdav.telegram.login import SandboxInfo, login, make_client  # noqa: E402

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
log = logging.getLogger("bench")


# --- counters through the admin URL ------------------------------------------------------------
def counters(admin: str) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(admin + "/counters", timeout=10) as r:
        return json.load(r)


def delta(before: dict, after: dict) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for dc in sorted(set(before) | set(after), key=int):
        b, a = before.get(dc, {}), after.get(dc, {})
        d = {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b)}
        d = {k: v for k, v in sorted(d.items()) if v}
        if d:
            out[dc] = d
    return out


def total(d: dict, name: str) -> int:
    return sum(c.get(name, 0) for c in d.values())


def total_prefix(d: dict, prefix: str) -> int:
    return sum(v for c in d.values() for k, v in c.items() if k.startswith(prefix))


def per_dc(d: dict, name: str) -> dict[str, int]:
    return {dc: c[name] for dc, c in d.items() if c.get(name)}


class Phase:
    """Counters, wall time and this process's CPU around a block of work."""

    def __init__(self, admin: str) -> None:
        self.admin = admin

    def __enter__(self) -> "Phase":
        self.c0 = counters(self.admin)
        self.cpu0, self.t0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0
        self.counters = delta(self.c0, counters(self.admin))


def expected_sha256(seed: int, size: int) -> str:
    h = hashlib.sha256()
    for off in range(0, size, 16 * MIB):
        h.update(pattern(seed, off, min(16 * MIB, size - off)))
    return h.hexdigest()


# --- the tgdav engine, wired by the same code as `tgdav serve` ---------------------------------------
class Engine:
    def __init__(self, state: Path, info: SandboxInfo, senders: int, read_ahead: int, first_part: int):
        self.state, self.info = state, info
        self.config = Config(pool=PoolConfig(senders_per_dc=senders, read_ahead_parts=read_ahead,
                                             first_part=first_part))

    async def open(self) -> dict[str, object]:
        raw = self.info.raw
        self.client = make_client(self.state, "s", self.info.api_id, self.info.api_hash, self.info)
        await login(self.client, bot_token=None, phone=raw["user_phone"], ask=lambda p, s: raw["login_code"])
        self.store = Store(self.state / "cache")
        self.read_path = build_read_path(self.client, self.store, self.config, is_bot=False)
        self.pool, self.catalog, self.reader = self.read_path.pool, self.read_path.catalog, self.read_path.reader
        folders = await self.catalog.folders()
        folder = next(f for f in folders if f.title == raw["bench"]["channel_title"])
        entries = {e.name: e for e in await self.catalog.entries(folder)}
        return {name: e.location for name, e in entries.items()}

    async def read(self, loc, start: int, end: int, hasher=None) -> tuple[int, float, float]:
        """(bytes, seconds to first byte, seconds total)."""
        n, ttfb, t0 = 0, None, time.perf_counter()
        stream = self.reader.stream(loc, start, end)
        try:
            async for piece in stream:
                if ttfb is None:
                    ttfb = time.perf_counter() - t0
                if hasher is not None:
                    hasher.update(piece)
                n += len(piece)
        finally:
            await stream.aclose()
        return n, ttfb or 0.0, time.perf_counter() - t0

    async def play(self, loc, offset: int, length: int) -> tuple[int, float, bytes, float]:
        """A player after a seek: an open-ended range from `offset`, `length` bytes taken, then the
        connection dropped (the stream closed with its read-ahead in flight).
        (bytes, seconds to first byte, SHA-256 of the bytes, seconds until `length` bytes were in
        hand). Check the digest with `played_right` after the timed work: computing the expected
        bytes here would hold the loop just when the closed stream's drops must go out (a real
        client runs in another process), and inflate what crosses the link."""
        n, ttfb, t0 = 0, None, time.perf_counter()
        h = hashlib.sha256()
        stream = self.reader.stream(loc, offset, loc.size - 1)
        try:
            async for piece in stream:
                if ttfb is None:
                    ttfb = time.perf_counter() - t0
                piece = piece[:length - n]
                h.update(piece)
                n += len(piece)
                if n >= length:
                    break
            full = time.perf_counter() - t0
        finally:
            await stream.aclose()
        return n, ttfb or 0.0, h.digest(), full

    async def close(self) -> None:
        await self.read_path.close()
        await self.client.disconnect()
        self.store.close()


def played_right(loc, offset: int, length: int, n: int, digest: bytes) -> bool:
    """Whether a play (Engine.play) got `length` bytes, the right ones."""
    return n == length and digest == hashlib.sha256(pattern(loc.id, offset, length)).digest()


def random_offsets(rng: random.Random, size: int, count: int, length: int, avoid_mib: set[int],
                   slack: int = MIB) -> list[int]:
    """`count` offsets for reads of `length` bytes such that the MiB blocks their parts can touch
    (the range widened by `slack` on both sides: alignment and overshoot of the first/last part)
    were touched by no earlier read: every read is a cache miss and shares no part with another."""
    out, used = [], set(avoid_mib)
    for _ in range(100_000):
        if len(out) == count:
            break
        off = rng.randrange(0, size - length)
        blocks = set(range(max(0, off - slack) // MIB, (off + length - 1 + slack) // MIB + 1))
        if blocks & used:
            continue
        used |= blocks
        out.append(off)
    if len(out) < count:
        need = count * ((length + 2 * slack) // MIB + 2) + len(avoid_mib)
        raise SystemExit(f"a file of {size / MIB:.0f} MiB is too small for {count} disjoint random reads of "
                         f"{length // KIB} KiB (each with {slack // KIB} KiB either side): give "
                         f"--size-mib of about {2 * need} or fewer --seeks")
    return out


async def tgdav_phases(args, info: SandboxInfo, state: Path, results: dict) -> None:
    admin = info.raw["admin"]
    bench = info.raw["bench"]["files"]
    size = bench["big.bin"]["size"]
    engine = Engine(state, info, args.senders, args.read_ahead, args.first_part)

    with Phase(admin) as p:
        locs = await engine.open()
    results["setup"] = {"seconds": p.seconds, "counters": p.counters}
    big, fresh = locs["big.bin"], locs["fresh.bin"]
    assert big.size == size and big.id == bench["big.bin"]["document_id"]

    # 1. sequential read of the whole (stale-DC) file, cold: unknown DC, no senders on DC 4
    h = hashlib.sha256()
    with Phase(admin) as p:
        n, ttfb, secs = await engine.read(big, 0, size - 1, h)
    c = p.counters
    results["tgdav_sequential"] = {
        "bytes": n, "seconds": secs, "mib_s": n / MIB / secs, "ttfb_ms": ttfb * 1000,
        "mib_s_after_first_byte": n / MIB / (secs - ttfb),
        "sha256_ok": h.hexdigest() == results["expected_sha256"]["big.bin"],
        "cpu_seconds": p.cpu, "cpu_s_per_gib": p.cpu / (n / GIB),
        "getfile_calls": total(c, "requests:GetFile"), "getfile_bytes": total(c, "getfile_bytes"),
        "fetched_over_served": total(c, "getfile_bytes") / n,
        "file_migrate": total(c, "errors:FILE_MIGRATE_X"),
        "imports_by_dc": per_dc(c, "imports"), "exports_by_dc": per_dc(c, "exports"),
        "connections_by_dc": per_dc(c, "connections"),
        "limit_offset_invalid": total(c, "errors:LIMIT_INVALID") + total(c, "errors:OFFSET_INVALID"),
        "pool": engine.pool.stats(), "counters": c,
    }

    # 2'. the same range again: must come from the chunk cache (0 getFile)
    h = hashlib.sha256()
    with Phase(admin) as p:
        n, ttfb, secs = await engine.read(big, 0, size - 1, h)
    results["tgdav_reread"] = {
        "bytes": n, "seconds": secs, "mib_s": n / MIB / secs,
        "sha256_ok": h.hexdigest() == results["expected_sha256"]["big.bin"],
        "getfile_calls": total(p.counters, "requests:GetFile"), "cpu_s_per_gib": p.cpu / (n / GIB),
        "chunk_stats": engine.store.chunk_stats(),
    }

    # 3. time to first byte after seeks, on a file opened once (DC known, DC 4 senders open)
    with Phase(admin) as p:
        await engine.read(fresh, 0, args.first_part - 1)
    results["ttfb_open"] = {"counters": p.counters}
    rng = random.Random(args.seed)
    offsets = random_offsets(rng, fresh.size, args.seeks, args.seek_len, avoid_mib={0},
                             slack=args.first_part)
    reads = []
    with Phase(admin) as p:
        for off in offsets:
            want = pattern(fresh.id, off, args.seek_len)
            hh = hashlib.sha256()
            n, ttfb, secs = await engine.read(fresh, off, off + args.seek_len - 1, hh)
            reads.append({"offset": off, "ttfb_ms": ttfb * 1000, "total_ms": secs * 1000,
                          "ok": n == args.seek_len and hh.digest() == hashlib.sha256(want).digest()})
    rtt = PROFILES[args.profile].latency_ms or float("nan")
    t = sorted(r["ttfb_ms"] for r in reads)
    results["ttfb"] = {
        "reads": reads, "median_ms": statistics.median(t), "p90_ms": _pct(t, 90),
        "min_ms": t[0], "max_ms": t[-1],
        "median_rtts": statistics.median(t) / rtt, "p90_rtts": _pct(t, 90) / rtt,
        "total_median_ms": statistics.median(r["total_ms"] for r in reads),
        "all_ok": all(r["ok"] for r in reads),
        "getfile_calls": total(p.counters, "requests:GetFile"),
        "getfile_bytes": total(p.counters, "getfile_bytes"),
        "file_migrate": total(p.counters, "errors:FILE_MIGRATE_X"),
        "imports": total(p.counters, "imports"), "connections": total(p.counters, "connections"),
        "limit_offset_invalid": total(p.counters, "errors:LIMIT_INVALID")
        + total(p.counters, "errors:OFFSET_INVALID"),
    }
    # 4. a player: open-ended range, ~1 MiB taken, connection dropped, a seek at once (read-ahead in flight)
    offsets = random_offsets(random.Random(args.seed + 1), fresh.size, args.seeks, args.play_len,
                             avoid_mib={0} | {o // MIB for o in offsets}, slack=2 * MIB)
    plays = []
    with Phase(admin) as p:
        for off in offsets:
            n, ttfb, digest, _ = await engine.play(fresh, off, args.play_len)
            plays.append({"offset": off, "ttfb_ms": ttfb * 1000, "n": n, "digest": digest})
        await asyncio.sleep(1.0)                      # let the last dropped answers settle
    for x in plays:
        x["ok"] = played_right(fresh, x["offset"], args.play_len, x.pop("n"), x.pop("digest"))
    t = sorted(x["ttfb_ms"] for x in plays)
    served = args.play_len * len(plays)
    results["player"] = {
        "plays": plays, "median_ms": statistics.median(t), "p90_ms": _pct(t, 90),
        "median_rtts": statistics.median(t) / rtt, "p90_rtts": _pct(t, 90) / rtt,
        "all_ok": all(x["ok"] for x in plays), "served_bytes": served,
        "getfile_bytes": total(p.counters, "getfile_bytes"),
        "fetched_over_served": total(p.counters, "getfile_bytes") / served,
        "drop_requests": total(p.counters, "drop_requests"),
        "answers_dropped": total(p.counters, "answers_dropped"),
        "unawaited_bytes": total(p.counters, "unawaited_bytes"),
        "connections": total(p.counters, "connections"), "pool": engine.pool.stats(),
    }
    await engine.close()


def _pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    k = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 100)) - 1))
    return sorted_values[k]


# --- the restarted reader (a second process on the same state dir) --------------------------------
async def restart_child(args, info: SandboxInfo, state: Path) -> dict:
    engine = Engine(state, info, args.senders, args.read_ahead, args.first_part)
    locs = await engine.open()
    big = locs["big.bin"]
    # the previous process cached every byte of big.bin: drop the chunks (not the DC map or the DC
    # authorisations, which live in the store's meta cache) so this read goes to the network
    engine.store.clear_chunks()
    n = min(8 * MIB, big.size)
    h = hashlib.sha256()
    got, ttfb, secs = await engine.read(big, 0, n - 1, h)
    ok = h.digest() == hashlib.sha256(pattern(big.id, 0, n)).digest()
    await engine.close()
    return {"bytes": got, "ttfb_ms": ttfb * 1000, "seconds": secs, "sha256_ok": ok}


# --- plain Telethon ------------------------------------------------------------------------------
async def telethon_phase(args, info: SandboxInfo, state: Path, results: dict) -> None:
    from telethon import types
    admin = info.raw["admin"]
    raw = info.raw
    bench = raw["bench"]
    client = make_client(state, "plain", info.api_id, info.api_hash, info)
    await login(client, bot_token=None, phone=raw["user_phone"], ask=lambda p, s: raw["login_code"])
    await client.get_dialogs()
    channel = await client.get_entity(types.PeerChannel(bench["channel_id"]))
    message = await client.get_messages(channel, ids=bench["files"]["big.bin"]["message_id"])
    size = message.media.document.size
    h = hashlib.sha256()
    n, ttfb = 0, None
    with Phase(admin) as p:
        async for chunk in client.iter_download(message.media, request_size=512 * KIB):
            if ttfb is None:
                ttfb = time.perf_counter() - p.t0
            h.update(chunk)
            n += len(chunk)
    c = p.counters
    seq_counters = c
    # the same player with iter_download from each seek offset (aligned down to its 512 KiB request
    # size, which Telethon needs so its parts stay inside one MiB)
    fresh_msg = await client.get_messages(channel, ids=bench["files"]["fresh.bin"]["message_id"])
    offsets = [x["offset"] for x in results.get("player", {}).get("plays", [])]
    ttfbs = []
    with Phase(admin) as pp:
        for off in offsets:
            start = off - off % (512 * KIB)
            t0, got = time.perf_counter(), 0
            async for chunk in client.iter_download(fresh_msg.media, offset=start, request_size=512 * KIB):
                if not got:
                    ttfbs.append((time.perf_counter() - t0) * 1000)
                got += len(chunk)
                if got >= args.play_len:
                    break
    if ttfbs:
        rtt = PROFILES[args.profile].latency_ms or float("nan")
        t = sorted(ttfbs)
        results["telethon_player"] = {
            "median_ms": statistics.median(t), "p90_ms": _pct(t, 90), "median_rtts": statistics.median(t) / rtt,
            "p90_rtts": _pct(t, 90) / rtt,
            "fetched_over_served": total(pp.counters, "getfile_bytes") / (args.play_len * len(t))}
    c = seq_counters
    results["telethon_sequential"] = {
        "bytes": n, "seconds": p.seconds, "mib_s": n / MIB / p.seconds, "ttfb_ms": (ttfb or 0) * 1000,
        "sha256_ok": n == size and h.hexdigest() == results["expected_sha256"]["big.bin"],
        "cpu_seconds": p.cpu, "cpu_s_per_gib": p.cpu / (n / GIB),
        "getfile_calls": total(c, "requests:GetFile"), "getfile_bytes": total(c, "getfile_bytes"),
        "fetched_over_served": total(c, "getfile_bytes") / n,
        "file_migrate": total(c, "errors:FILE_MIGRATE_X"),
        "imports_by_dc": per_dc(c, "imports"), "connections_by_dc": per_dc(c, "connections"),
        "limit_offset_invalid": total(c, "errors:LIMIT_INVALID") + total(c, "errors:OFFSET_INVALID"),
        "counters": c,
    }
    await client.disconnect()


# --- orchestration --------------------------------------------------------------------------------
def start_sandbox(args, state: Path) -> tuple[subprocess.Popen, dict]:
    cmd = [sys.executable, str(ROOT / "bench" / "sandbox_proc.py"), "--profile", args.profile,
           "--state", str(state), "--size-mib", str(args.size_mib), "--seed", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait(5)
        raise SystemExit(f"sandbox did not start (exit {proc.returncode})")
    return proc, json.loads(line)


def stop_sandbox(proc: subprocess.Popen) -> float:
    """SIGTERM our sandbox child; returns its CPU seconds (from /proc) before it exits."""
    cpu = float("nan")
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        pass
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return cpu


def sandbox_cpu(proc: subprocess.Popen) -> float:
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="tgdav-bench-"))
    results: dict = {"args": vars(args), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "python": sys.version.split()[0], "cpus": os.cpu_count(),
                     "loadavg_start": os.getloadavg()}
    proc, raw = start_sandbox(args, work / "sandbox")
    try:
        info = SandboxInfo.from_json(json.dumps(raw))
        link = PROFILES[args.profile]
        results["link"] = {"profile": args.profile, "latency_ms": link.latency_ms,
                           "bandwidth_mib_s": link.bandwidth / MIB,
                           "limit_mib_s": args.senders * link.bandwidth / MIB}
        results["files"] = raw["bench"]["files"]
        t = time.process_time()
        results["expected_sha256"] = {"big.bin": expected_sha256(raw["bench"]["files"]["big.bin"]["document_id"],
                                                                 raw["bench"]["files"]["big.bin"]["size"])}
        results["sha256_cpu_s_per_gib"] = None
        hash_cpu = time.process_time() - t
        results["expected_hash_cpu_s"] = hash_cpu
        # what hashing costs per GiB in this process (included in the CPU figures, subtract if wanted)
        blob = os.urandom(64 * MIB)
        t = time.process_time()
        hashlib.sha256(blob).digest()
        results["sha256_cpu_s_per_gib"] = (time.process_time() - t) * 16
        del blob

        state = work / "client"
        cpu_sb0 = sandbox_cpu(proc)
        log.info("tgdav: sequential read, re-read, random seeks (%s MiB)", args.size_mib)
        asyncio.run(tgdav_phases(args, info, state, results))
        results["sandbox_cpu_tgdav_s"] = sandbox_cpu(proc) - cpu_sb0

        log.info("tgdav: a second reader process on the same state dir (restart)")
        (work / "info.json").write_text(json.dumps(raw))
        c0 = counters(raw["admin"])
        child = subprocess.run(
            [sys.executable, __file__, "--restart-child", str(work), "--senders", str(args.senders),
             "--read-ahead", str(args.read_ahead), "--first-part-kib", str(args.first_part // KIB)]
            + (["--verbose"] if args.verbose else []),
            capture_output=True, text=True, timeout=600)
        if args.verbose:
            sys.stderr.write(child.stderr)
        if child.returncode != 0:
            sys.stderr.write(child.stderr)
            raise SystemExit("the restarted reader failed")
        c = delta(c0, counters(raw["admin"]))
        results["restart"] = {**json.loads(child.stdout.strip().splitlines()[-1]),
                              "file_migrate": total(c, "errors:FILE_MIGRATE_X"),
                              "imports_by_dc": per_dc(c, "imports"), "exports_by_dc": per_dc(c, "exports"),
                              "auth_keys": total(c, "auth_keys"),
                              "getfile_calls": total(c, "requests:GetFile"),
                              "limit_offset_invalid": total(c, "errors:LIMIT_INVALID")
                              + total(c, "errors:OFFSET_INVALID"),
                              "counters": c}

        if not args.skip_telethon:
            log.info("plain Telethon iter_download (%s MiB, one connection)", args.size_mib)
            cpu_sb0 = sandbox_cpu(proc)
            asyncio.run(telethon_phase(args, info, work / "plain", results))
            results["sandbox_cpu_telethon_s"] = sandbox_cpu(proc) - cpu_sb0
        results["counters_final"] = counters(raw["admin"])
    finally:
        results["sandbox_cpu_total_s"] = stop_sandbox(proc)
        results["loadavg_end"] = os.getloadavg()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            results["work_dir"] = str(work)
    return results


def table(r: dict) -> str:
    seq, ttfb, rs = r["tgdav_sequential"], r["ttfb"], r["restart"]
    tl = r.get("telethon_sequential")
    lim = r["link"]["limit_mib_s"]
    rtt = r["link"]["latency_ms"]
    rows = [("metric", "measured", "target")]
    add = rows.append
    add(("tgdav sequential read", f"{seq['seconds']:.1f} s, {seq['mib_s']:.2f} MiB/s", ""))
    add(("  % of link limit", f"{100 * seq['mib_s'] / lim:.0f} % of {lim:.0f} MiB/s "
         f"({r['args']['senders']} x {r['link']['bandwidth_mib_s']:.0f} MiB/s)", "high"))
    add(("  after the first byte (cold start excluded)", f"{seq['mib_s_after_first_byte']:.2f} MiB/s = "
         f"{100 * seq['mib_s_after_first_byte'] / lim:.0f} % of the link limit", ">= 90 %"))
    if tl:
        add(("  ratio to plain Telethon", f"{seq['mib_s'] / tl['mib_s']:.2f} x", "> 1"))
    add(("  SHA-256 vs pattern", "ok" if seq["sha256_ok"] else "MISMATCH", "ok"))
    add(("  first byte (cold: migrate+export)", f"{seq['ttfb_ms']:.0f} ms", ""))
    if tl:
        add(("plain Telethon iter_download 512 KiB", f"{tl['seconds']:.1f} s, {tl['mib_s']:.2f} MiB/s", ""))
        add(("  SHA-256 vs pattern", "ok" if tl["sha256_ok"] else "MISMATCH", "ok"))
    add((f"TTFB after seek ({len(ttfb['reads'])} x {r['args']['seek_len'] // KIB} KiB)",
         f"median {ttfb['median_ms']:.0f} ms ({ttfb['median_rtts']:.2f} RTT), "
         f"p90 {ttfb['p90_ms']:.0f} ms ({ttfb['p90_rtts']:.2f} RTT)", f"~1 RTT ({rtt:.0f} ms)"))
    add(("  whole 256 KiB read, median", f"{ttfb['total_median_ms']:.0f} ms", ""))
    add(("  seeks: getFile / migrate / new conns", f"{ttfb['getfile_calls']} / {ttfb['file_migrate']} / "
         f"{ttfb['connections']}", "- / 0 / 0"))
    pl, tp = r["player"], r.get("telethon_player")
    add((f"player: seek, take {r['args']['play_kib']} KiB, drop ({len(pl['plays'])} x)",
         f"first byte median {pl['median_ms']:.0f} ms ({pl['median_rtts']:.2f} RTT), "
         f"p90 {pl['p90_ms']:.0f} ms ({pl['p90_rtts']:.2f} RTT)", "<= 1.5 / 2.5 RTT"))
    add(("  bytes fetched / served", f"{pl['fetched_over_served']:.2f}", "low"))
    add(("  rpc_drop_answer sent / answers dropped / unawaited bytes",
         f"{pl['drop_requests']} / {pl['answers_dropped']} / {pl['unawaited_bytes']}", ""))
    add(("  bytes ok", "ok" if pl["all_ok"] else "MISMATCH", "ok"))
    if tp:
        add(("  plain Telethon iter_download, same seeks", f"median {tp['median_ms']:.0f} ms "
             f"({tp['median_rtts']:.2f} RTT), p90 {tp['p90_ms']:.0f} ms; fetched/served "
             f"{tp['fetched_over_served']:.2f}", ""))
    add(("FILE_MIGRATE, first process", str(seq["file_migrate"]), "1"))
    add(("FILE_MIGRATE, after restart", str(rs["file_migrate"]), "0"))
    add(("exports (imports by DC), first process", json.dumps(seq["imports_by_dc"]), "1 per foreign DC"))
    add(("exports (imports by DC), after restart", json.dumps(rs["imports_by_dc"]), "0"))
    add(("LIMIT_INVALID + OFFSET_INVALID", str(seq["limit_offset_invalid"] + ttfb["limit_offset_invalid"]
                                              + rs["limit_offset_invalid"]), "0"))
    add(("bytes fetched / bytes served (seq)", f"{seq['fetched_over_served']:.4f} "
         f"({seq['getfile_calls']} getFile)", "<= 1.05"))
    add(("getFile calls, second read of same range", str(r["tgdav_reread"]["getfile_calls"]), "0"))
    add(("  re-read from cache", f"{r['tgdav_reread']['mib_s']:.0f} MiB/s", ""))
    add(("reader CPU per GiB (tgdav seq)", f"{seq['cpu_s_per_gib']:.2f} s/GiB "
         f"(sha256 share {r['sha256_cpu_s_per_gib']:.2f})", ""))
    if tl:
        add(("reader CPU per GiB (Telethon seq)", f"{tl['cpu_s_per_gib']:.2f} s/GiB", ""))
    add(("restart: 8 MiB read after restart", f"{rs['seconds']:.2f} s, first byte {rs['ttfb_ms']:.0f} ms, "
         f"{'ok' if rs['sha256_ok'] else 'MISMATCH'}", ""))
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="tgdav read-path benchmark against the sandbox")
    p.add_argument("--size-mib", type=float, default=256, help="size of the test files (default 256)")
    p.add_argument("--quick", action="store_true", help="128 MiB files, 8 seeks (a fast run)")
    p.add_argument("--senders", type=int, default=4, help="senders per DC (default 4)")
    p.add_argument("--read-ahead", type=int, default=8, help="read-ahead in MiB ([pool] read_ahead_parts, default 8)")
    p.add_argument("--play-kib", type=int, default=1024, help="bytes a player takes after each seek (default 1024)")
    p.add_argument("--first-part-kib", type=int, default=64, help="PartReader first_part (default 64)")
    p.add_argument("--seeks", type=int, default=20, help="random reads for time to first byte")
    p.add_argument("--seek-kib", type=int, default=256, help="size of each random read (default 256)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random offsets")
    p.add_argument("--profile", default="telegram-like", choices=sorted(PROFILES))
    p.add_argument("--skip-telethon", action="store_true", help="no plain Telethon comparison")
    p.add_argument("--keep", action="store_true", help="keep the temporary state dirs")
    p.add_argument("-v", "--verbose", action="store_true", help="log tgdav's INFO lines (timestamps)")
    p.add_argument("--restart-child", metavar="WORKDIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        # 8 seeks (up to 2 MiB blocks each) and 8 players (1 MiB + 2 MiB either side: 6 blocks each)
        # that share no MiB block need ~70 of them; 64 MiB could never hold them
        args.size_mib, args.seeks = 128, 8
    args.first_part = args.first_part_kib * KIB
    args.seek_len = args.seek_kib * KIB
    args.play_len = args.play_kib * KIB
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    log.setLevel(logging.INFO)
    if args.verbose:
        logging.getLogger("tgdav").setLevel(logging.INFO)

    if args.restart_child:
        work = Path(args.restart_child)
        info = SandboxInfo.from_json((work / "info.json").read_text())
        print(json.dumps(asyncio.run(restart_child(args, info, work / "client"))))
        return 0

    r = run(args)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(r, indent=2, default=str))
    print(table(r))
    print(f"\nsandbox CPU: tgdav phases {r.get('sandbox_cpu_tgdav_s', float('nan')):.1f} s, "
          f"Telethon phase {r.get('sandbox_cpu_telethon_s', float('nan')):.1f} s; "
          f"load average start {r['loadavg_start'][0]:.2f}, end {r['loadavg_end'][0]:.2f}")
    print(f"results: {out}")
    ok = (r["tgdav_sequential"]["sha256_ok"] and r["ttfb"]["all_ok"] and r["restart"]["sha256_ok"]
          and r.get("telethon_sequential", {}).get("sha256_ok", True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
