"""Helper accounts benchmark: throughput over 1, 2 and 4 accounts with the sandbox's getFile rate rule.

The sandbox runs in its own process (bench/scale_sandbox.py: a user and 3 helper bots, all members
of channel "Scale"; big.bin on DC 4), link profile telegram-like (100 ms round trip, 2 MiB/s per
connection) and the rate rule on: more than --rate getFile per second per account and DC answers
FLOOD_WAIT_--flood for that account and DC (tgdav/sandbox/services/ratelimit.py). The reader runs in
this process, wired by tgdav.app.build_read_path (the main account plus helpers, as `serve` wires
`[telegram] helpers`), each run on a fresh state dir (cold chunk cache), after a warm-up that opens
one sender per account on DC 4 (so exports are not timed).

    python bench/scale_bench.py               # 32 MiB, 3 runs of each (a few minutes)
    python bench/scale_bench.py --size-mib 16 --runs 1

Measures (medians of --runs):
  sequential  one stream reads big.bin whole, 1 account vs 2 accounts: MiB/s and the ratio
  concurrent  --streams streams read disjoint parts of big.bin at once, over 1, 2 and 4 accounts:
              aggregate MiB/s
Every read is checked against its SHA-256; the exit status is 1 if one differs. Writes the figures to
bench/results/scale-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import shutil
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
from tgdav.telegram.accounts import connect_helpers  # noqa: E402
from tgdav.telegram.login import SandboxInfo, login, make_client  # noqa: E402

MIB = 1 << 20
log = logging.getLogger("bench")


def counters(admin: str) -> dict:
    with urllib.request.urlopen(admin + "/counters", timeout=10) as r:
        return json.load(r)


def post(admin: str, path: str, body: dict) -> None:
    req = urllib.request.Request(admin + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def total(before: dict, after: dict, name: str) -> int:
    return sum(int(after.get(dc, {}).get(name, 0)) - int(before.get(dc, {}).get(name, 0))
               for dc in set(before) | set(after))


class Engine:
    """The main account and `accounts - 1` helper bots, on this loop, over a fresh state dir."""

    def __init__(self, info: SandboxInfo, state: Path, accounts: int, senders: int) -> None:
        self.info, self.state, self.accounts = info, state, accounts
        self.config = Config(pool=PoolConfig(senders_per_dc=senders))

    async def open(self) -> dict:
        raw = self.info.raw
        make = lambda name: make_client(self.state, name, self.info.api_id, self.info.api_hash, self.info)  # noqa: E731
        self.client = make("main")
        await login(self.client, bot_token=None, phone=raw["user_phone"], ask=lambda p, s: raw["login_code"])
        self.helpers = await connect_helpers(raw["bots"][:self.accounts - 1], make)
        self.store = Store(self.state / "cache")
        self.read_path = build_read_path(self.client, self.store, self.config, is_bot=False,
                                         helpers=self.helpers)
        catalog = self.read_path.catalog
        folder = next(f for f in await catalog.folders() if f.title == raw["channel"])
        self.entries = {e.name: e.location for e in await catalog.entries(folder)}
        # warm-up: every account authorised on DC 4 with one sender open (exports are not timed)
        far = self.entries["far.bin"]
        for a in self.read_path.accounts.accounts:      # the main account alone is an Accounts of one
            await a.fetcher.fetch(await a.location(far), 0, 4096)
        return self.entries

    async def read(self, loc, start: int, end: int) -> tuple[int, bool]:
        h = hashlib.sha256()
        n = 0
        stream = self.read_path.reader.stream(loc, start, end)
        try:
            async for piece in stream:
                h.update(piece)
                n += len(piece)
        finally:
            await stream.aclose()
        return n, h.digest() == hashlib.sha256(pattern(loc.id, start, end - start + 1)).digest()

    def stats(self) -> dict:
        return self.read_path.accounts.stats()

    async def close(self) -> None:
        await self.read_path.close()
        await self.client.disconnect()
        self.store.close()


async def one_run(info: SandboxInfo, admin: str, accounts: int, streams: int, senders: int,
                  flood_seconds: int) -> dict:
    state = Path(tempfile.mkdtemp(prefix=f"scale-bench-{accounts}-"))
    engine = Engine(info, state, accounts, senders)
    try:
        entries = await engine.open()
        big = entries["big.bin"]
        await asyncio.sleep(flood_seconds + 0.5)   # floods of the warm-up or the previous run are over
        spans = []
        step = big.size // streams
        for i in range(streams):
            start = i * step
            end = big.size - 1 if i == streams - 1 else start + step - 1
            spans.append((start, end))
        before = counters(admin)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(engine.read(big, s, e) for s, e in spans))
        seconds = time.perf_counter() - t0
        after = counters(admin)
        nbytes = sum(n for n, _ in results)
        return {"accounts": accounts, "streams": streams, "seconds": seconds, "bytes": nbytes,
                "mib_s": nbytes / MIB / seconds, "sha_ok": all(ok for _, ok in results),
                "getfile": total(before, after, "requests:GetFile"),
                "flood_waits": total(before, after, "errors:FLOOD_WAIT_X"),
                "accounts_stats": {k: {kk: vv for kk, vv in v.items() if kk != "pool"}
                                   for k, v in engine.stats().items()}}
    finally:
        await engine.close()
        shutil.rmtree(state, ignore_errors=True)


async def bench(args, info: SandboxInfo, admin: str) -> dict:
    post(admin, "/faults", {"getfile_rate_limit": {"per_second": args.rate, "seconds": args.flood}})
    out: dict = {"size_mib": args.size_mib, "rate_per_second": args.rate, "flood_seconds": args.flood,
                 "senders_per_dc": args.senders, "profile": "telegram-like", "runs": args.runs,
                 "sequential": {}, "concurrent": {}}
    plan = [("sequential", a, 1) for a in (1, 2)] + [("concurrent", a, args.streams) for a in (1, 2, 4)]
    for r in range(args.runs):
        for kind, accounts, streams in plan:
            result = await one_run(info, admin, accounts, streams, args.senders, args.flood)
            out[kind].setdefault(str(accounts), []).append(result)
            print(f"run {r + 1}: {kind:10} {accounts} account(s) {streams} stream(s): "
                  f"{result['mib_s']:6.2f} MiB/s  floods {result['flood_waits']:3}  "
                  f"sha {'ok' if result['sha_ok'] else 'BAD'}  {result['accounts_stats']}", flush=True)
    for kind in ("sequential", "concurrent"):
        for accounts, runs in out[kind].items():
            out[kind][accounts] = {"median_mib_s": statistics.median(x["mib_s"] for x in runs), "runs": runs}
    seq = out["sequential"]
    out["sequential_ratio_2_to_1"] = seq["2"]["median_mib_s"] / seq["1"]["median_mib_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=float, default=32)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--streams", type=int, default=4, help="concurrent streams (default 4)")
    p.add_argument("--senders", type=int, default=4, help="senders per DC per account (default 4)")
    p.add_argument("--rate", type=int, default=4, help="getFile per second per account and DC before "
                                                       "FLOOD_WAIT (default 4)")
    p.add_argument("--flood", type=int, default=3, help="seconds of FLOOD_WAIT the rule answers (default 3)")
    p.add_argument("-v", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.v else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("telethon").setLevel(logging.ERROR)
    sandbox_state = Path(tempfile.mkdtemp(prefix="scale-bench-sandbox-"))
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "scale_sandbox.py"), "--profile", "telegram-like",
                             "--bots", "3", "--size-mib", str(args.size_mib), "--state", str(sandbox_state)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()
        if not line:
            print("the sandbox did not start", file=sys.stderr)
            return 2
        info = SandboxInfo.from_json(line.decode())
        admin = info.raw["admin"].rstrip("/")
        out = asyncio.run(bench(args, info, admin))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(sandbox_state, ignore_errors=True)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    seq, conc = out["sequential"], out["concurrent"]
    print(f"\nsequential read of {args.size_mib:g} MiB, rate rule {args.rate}/s per account and DC "
          f"(FLOOD_WAIT {args.flood} s), {args.senders} senders per DC per account, medians of {args.runs}:")
    print(f"  1 account  {seq['1']['median_mib_s']:6.2f} MiB/s")
    print(f"  2 accounts {seq['2']['median_mib_s']:6.2f} MiB/s   ratio {out['sequential_ratio_2_to_1']:.2f}x")
    print(f"{args.streams} concurrent streams, aggregate:")
    for a in ("1", "2", "4"):
        print(f"  {a} account(s) {conc[a]['median_mib_s']:6.2f} MiB/s")
    print(f"results: {path}")
    ok = all(r["sha_ok"] for kind in (seq, conc) for v in kind.values() for r in v["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
