"""The sandbox's link emulation in real time: what one capped connection delivers, what a ping costs
over an added round trip, and what a capped uplink lets through, as medians of --runs.

The tests check the same emulation in emulated link time (Controls.link_time = EmulatedTime:
tests/sandbox/test_server.py::test_link_caps_one_connection_and_adds_latency and
tests/sandbox/test_writes.py::test_upload_bandwidth_cap_slows_uploads_per_connection), which neither
waits nor depends on the machine's load; this script gives the wall-clock figures they no longer
assert. An unmodified Telethon client and the sandbox run in this one process (the sandbox on its
own loop thread), so a loaded machine shows lower rates and longer round trips, never higher rates.

    python bench/link_bench.py              # 5 runs
    python bench/link_bench.py --runs 3 --cap-mib 2 --latency-ms 100 --upload-cap-mib 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telethon import TelegramClient  # noqa: E402
from telethon.crypto import rsa as telethon_rsa  # noqa: E402
from telethon.sessions import StringSession  # noqa: E402
from telethon.tl import functions, types  # noqa: E402

from tgdav.sandbox.content import pattern  # noqa: E402
from tgdav.sandbox.controls import Link  # noqa: E402
from tgdav.sandbox.runner import Sandbox  # noqa: E402
from tgdav.sandbox.world import World  # noqa: E402
from tgdav.telegram.mtproto import forget_config  # noqa: E402

MIB = 1 << 20
PHONE = "+15550002"
DOWNLOAD = 4 * MIB                 # four pipelined 1 MiB getFiles
UPLOAD = 3 * MIB // 2              # three 512 KiB saveFileParts


def build_world() -> tuple[World, object]:
    w = World(seed=77)
    user = w.add_user(PHONE, "Link", home_dc=2)
    channel = w.add_channel("Link", members=[user], creator=user)
    w.add_document(channel, name="four.bin", size=DOWNLOAD, mime="application/octet-stream", dc=2)
    return w, channel


async def measure(sb: Sandbox, channel, args) -> dict[str, list[float]]:
    forget_config()
    client = TelegramClient(StringSession(), api_id=1, api_hash="x", connection_retries=1, retry_delay=0,
                            timeout=60, flood_sleep_threshold=0)
    client.session.set_dc(2, "127.0.0.1", sb.cluster.ports[2])
    await client.connect()
    figures: dict[str, list[float]] = {"download MiB/s": [], "ping ms": [], "upload MiB/s": []}
    try:
        await client.send_code_request(PHONE)
        await client.sign_in(PHONE, sb.world.login_code)
        message = (await client.get_messages(types.InputPeerChannel(channel.id, channel.access_hash),
                                             limit=1))[0]
        doc = message.document
        location = types.InputDocumentFileLocation(doc.id, doc.access_hash, doc.file_reference, "")
        expected = pattern(doc.id, 0, DOWNLOAD)
        cap, latency_ms, up_cap = int(args.cap_mib * MIB), args.latency_ms, int(args.upload_cap_mib * MIB)
        for run in range(args.runs):
            sb.controls.set_link(Link(latency_ms=latency_ms, bandwidth=cap))
            start = time.perf_counter()
            replies = await asyncio.gather(*(client(functions.upload.GetFileRequest(location, i * MIB, MIB))
                                             for i in range(DOWNLOAD // MIB)))
            took = time.perf_counter() - start
            if b"".join(r.bytes for r in replies) != expected:
                raise SystemExit("the download's bytes are wrong")
            figures["download MiB/s"].append(DOWNLOAD / took / MIB)

            sb.controls.set_link(Link(latency_ms=latency_ms))
            start = time.perf_counter()
            await client(functions.PingRequest(run))
            figures["ping ms"].append((time.perf_counter() - start) * 1000)

            sb.controls.set_link(Link(upload_bandwidth=up_cap))
            start = time.perf_counter()
            await client.upload_file(os.urandom(UPLOAD), part_size_kb=512)
            figures["upload MiB/s"].append(UPLOAD / (time.perf_counter() - start) / MIB)
            sb.controls.set_link(Link())
    finally:
        await client.disconnect()
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cap-mib", type=float, default=2.0, help="download cap per connection, MiB/s")
    p.add_argument("--latency-ms", type=float, default=100.0, help="added round trip")
    p.add_argument("--upload-cap-mib", type=float, default=1.0, help="upload cap per connection, MiB/s")
    args = p.parse_args()
    world, channel = build_world()
    load_before = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else "?"
    with Sandbox(world) as sb:
        telethon_rsa.add_key(sb.rsa.public_pem, old=False)
        figures = asyncio.run(measure(sb, channel, args))
    load_after = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else "?"
    limits = {"download MiB/s": f"cap {args.cap_mib:g} (4 MiB pipelined, {args.latency_ms:g} ms added)",
              "ping ms": f"added round trip {args.latency_ms:g}",
              "upload MiB/s": f"cap {args.upload_cap_mib:g} (1.5 MiB in 512 KiB parts)"}
    print(f"link emulation, {args.runs} runs; load average {' '.join(load_before)} -> {' '.join(load_after)}")
    for name, values in figures.items():
        print(f"  {name:15} median {statistics.median(values):8.2f}  "
              f"(min {min(values):.2f}, max {max(values):.2f})  {limits[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
