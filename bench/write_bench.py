"""Write-path benchmark: tgdav's streamed upload vs plain Telethon upload_file, against the sandbox.

The sandbox runs in its own process (`tgdav sandbox --seed DIR --writable Uploads --profile P`),
with the telegram-like profile by default: 100 ms round trip and 2 MiB/s per connection in BOTH
directions. The link limit of an upload is senders x per-connection upload bandwidth. tgdav is built
by the composition root (tgdav.app.Engine, the same code as `tgdav serve`) and fed through the same
SyncUpload object a PUT writes into (HTTP itself is not measured). Each run uploads --size-mib MiB of
fresh random bytes; the medians of --runs runs are reported, and every upload is checked afterwards
by reading it back (SHA-256) through the sandbox's counters-free path: Telethon download_media.

    python bench/write_bench.py                  # 32 MiB x 3 runs, 4 senders
    python bench/write_bench.py --size-mib 64 --runs 5 --senders 8

Prints a table and writes bench/results/write-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
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

from tgdav.app import Engine  # noqa: E402
from tgdav.bridge import Bridge  # noqa: E402
from tgdav.config import Config  # noqa: E402
from tgdav.sandbox.controls import PROFILES  # noqa: E402
from tgdav.telegram.login import SandboxInfo, login, make_client  # noqa: E402

MIB = 1 << 20
CHUNK = 64 * 1024          # what WsgiDAV hands a PUT's file object per write()


def counters(admin: str) -> dict:
    with urllib.request.urlopen(admin + "/counters", timeout=10) as r:
        return json.load(r)


def total(c: dict, name: str) -> int:
    return sum(int(dc.get(name, 0)) for dc in c.values() if isinstance(dc, dict))


def start_sandbox(profile: str, work: Path) -> tuple[subprocess.Popen, dict]:
    seed = work / "seed"
    (seed / "Bench").mkdir(parents=True)
    (seed / "Bench" / "readme.txt").write_bytes(b"bench\n")
    proc = subprocess.Popen([sys.executable, "-m", "tgdav", "sandbox", "--seed", str(seed), "--writable",
                             "Uploads", "--profile", profile, "--state", str(work / "sandbox")],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the sandbox did not start")
    (work / "sandbox.json").write_text(line)
    return proc, json.loads(line)


def engine_for(work: Path, info: SandboxInfo, senders: int) -> Engine:
    state = work / "tgdav"
    raw = info.raw

    async def sign_in():
        client = make_client(state, "bench", info.api_id, info.api_hash, info)
        try:
            await login(client, bot_token=None, phone=raw["user_phone"], ask=lambda p, s: raw["login_code"])
        finally:
            await client.disconnect()

    with Bridge() as bridge:
        bridge.call(sign_in(), timeout=60)
    config = Config()
    config = dataclasses.replace(
        config,
        telegram=dataclasses.replace(config.telegram, sandbox=work / "sandbox.json", session="bench"),
        state=dataclasses.replace(config.state, dir=state),
        pool=dataclasses.replace(config.pool, senders_per_dc=senders))
    return Engine(config).start()


def tgdav_upload(engine: Engine, data: bytes, name: str) -> float:
    folder = engine.catalog.folder("Uploads")
    t0 = time.perf_counter()
    sink = engine.drive.open_upload(folder, (name,), len(data))
    view = memoryview(data)
    for i in range(0, len(data), CHUNK):
        sink.write(bytes(view[i:i + CHUNK]))
    sink.close()
    return time.perf_counter() - t0


async def telethon_phase(work: Path, info: SandboxInfo, blobs: list[bytes]) -> tuple[list[float], list[bool]]:
    raw = info.raw
    client = make_client(work / "plain", "plain", info.api_id, info.api_hash, info)
    await login(client, bot_token=None, phone=raw["user_phone"], ask=lambda p, s: raw["login_code"])
    try:
        channel = next(d.entity for d in await client.get_dialogs() if d.name == "Uploads")
        seconds = []
        for i, data in enumerate(blobs):
            t0 = time.perf_counter()
            uploaded = await client.upload_file(data, file_name=f"telethon-{i}.bin", part_size_kb=512)
            seconds.append(time.perf_counter() - t0)
            await client.send_file(channel, uploaded, force_document=True)
        ok = []
        for i, data in enumerate(blobs):   # read back every tgdav upload and check its bytes
            async for m in client.iter_messages(channel, limit=100):
                if m.file and m.file.name == f"tgdav-{i}.bin":
                    body = await client.download_media(m, bytes)
                    ok.append(hashlib.sha256(body).digest() == hashlib.sha256(data).digest())
                    break
            else:
                ok.append(False)
        return seconds, ok
    finally:
        await client.disconnect()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="tgdav write-path benchmark against the sandbox")
    p.add_argument("--size-mib", type=float, default=32)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--senders", type=int, default=4, help="senders per DC (default 4)")
    p.add_argument("--profile", default="telegram-like", choices=sorted(PROFILES))
    p.add_argument("--skip-telethon", action="store_true")
    args = p.parse_args(argv)
    link = PROFILES[args.profile]
    size = int(args.size_mib * MIB)
    work = Path(tempfile.mkdtemp(prefix="tgdav-wbench-"))
    proc, raw = start_sandbox(args.profile, work)
    info = SandboxInfo.from_json(json.dumps(raw))
    admin = raw["admin"].rstrip("/")
    blobs = [os.urandom(size) for _ in range(args.runs)]
    results: dict = {"args": vars(args), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "link": dataclasses.asdict(link)}
    try:
        engine = engine_for(work, info, args.senders)
        try:
            before = counters(admin)
            tg = [tgdav_upload(engine, data, f"tgdav-{i}.bin") for i, data in enumerate(blobs)]
            after = counters(admin)
        finally:
            engine.close()
        results["tgdav_seconds"] = tg
        results["tgdav_parts"] = total(after, "upload_parts") - total(before, "upload_parts")
        results["tgdav_upload_bytes"] = total(after, "upload_bytes") - total(before, "upload_bytes")
        if not args.skip_telethon:
            plain, ok = asyncio.run(telethon_phase(work, info, blobs))
            results["telethon_seconds"] = plain
            results["tgdav_sha256_ok"] = ok
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    mib = size / MIB
    tg_rate = statistics.median(mib / s for s in results["tgdav_seconds"])
    results["tgdav_mib_s_median"] = tg_rate
    lines = [f"write bench: {args.runs} x {mib:g} MiB, profile {args.profile} "
             f"({link.latency_ms:g} ms, {link.upload_bandwidth / MIB:g} MiB/s up per connection), "
             f"{args.senders} senders"]
    lines.append(f"  tgdav upload (PUT path):   {tg_rate:7.2f} MiB/s median  "
                 f"(runs: {', '.join(f'{mib / s:.2f}' for s in results['tgdav_seconds'])})")
    if link.upload_bandwidth:
        limit = args.senders * link.upload_bandwidth / MIB
        results["link_limit_mib_s"] = limit
        results["tgdav_over_link_limit"] = tg_rate / limit
        lines.append(f"  link limit (senders x up): {limit:7.2f} MiB/s  -> tgdav reaches {tg_rate / limit:.0%}")
    if "telethon_seconds" in results:
        plain_rate = statistics.median(mib / s for s in results["telethon_seconds"])
        results["telethon_mib_s_median"] = plain_rate
        results["tgdav_over_telethon"] = tg_rate / plain_rate
        lines.append(f"  Telethon upload_file:      {plain_rate:7.2f} MiB/s median  -> tgdav is "
                     f"{tg_rate / plain_rate:.1f}x")
        lines.append(f"  tgdav uploads read back byte-identical: {all(results['tgdav_sha256_ok'])}")
    lines.append(f"  parts sent by tgdav: {results['tgdav_parts']} "
                 f"({results['tgdav_upload_bytes'] / MIB:.1f} MiB)")
    print("\n".join(lines))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"write-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
