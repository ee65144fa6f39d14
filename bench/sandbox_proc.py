"""The benchmark's sandbox, in its own process (so its CPU never shares a GIL with the reader).

Builds a small world: one user on home DC 2, one channel "Bench" with
    big.bin    --size-mib MiB, advertised on DC 2 but really on DC 4 (world.make_stale): the first
               getFile answers FILE_MIGRATE_4, so the migration path is exercised and counted
    fresh.bin  --size-mib MiB on DC 4 (not stale), never read sequentially: random seeks land on
               bytes no one has fetched before (time-to-first-byte without cache hits)
    small.bin  100 KiB on DC 4
runs Sandbox with the given --profile and --state, prints sandbox.info() (plus a "bench" key
describing the files) as ONE JSON line on stdout, and serves until SIGTERM / SIGINT.

    python bench/sandbox_proc.py --profile telegram-like --state /tmp/x --size-mib 256
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tgdav.sandbox.controls import PROFILES  # noqa: E402
from tgdav.sandbox.runner import Sandbox  # noqa: E402
from tgdav.sandbox.world import World  # noqa: E402

MIB = 1 << 20


def build_world(size: int, seed: int) -> tuple[World, dict]:
    w = World(seed=seed)
    user = w.add_user("+15550001", "Bench", home_dc=2)
    ch = w.add_channel("Bench", members=[user])
    big = w.add_document(ch, name="big.bin", size=size, mime="application/octet-stream", dc=2)
    true_dc = w.make_stale(big.media, true_dc=4)
    fresh = w.add_document(ch, name="fresh.bin", size=size, mime="application/octet-stream", dc=4)
    small = w.add_document(ch, name="small.bin", size=100 * 1024, mime="application/octet-stream", dc=4)
    files = {
        name: {"message_id": m.id, "document_id": m.media.id, "size": m.media.size,
               "advertised_dc": m.media.dc_id, "true_dc": m.media.true_dc}
        for name, m in (("big.bin", big), ("fresh.bin", fresh), ("small.bin", small))
    }
    assert true_dc == 4
    return w, {"channel_id": ch.id, "channel_title": ch.title, "files": files}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="telegram-like", choices=sorted(PROFILES))
    p.add_argument("--state", required=True, help="RSA key and auth keys survive here")
    p.add_argument("--size-mib", type=float, default=256)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    quiet_logs()
    world, bench = build_world(int(args.size_mib * MIB), args.seed)
    return serve_world(world, args.state, args.profile, {"bench": bench})


def stop_group(proc) -> None:
    """SIGTERM the process group of a child started with start_new_session, SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="sandbox %(asctime)s %(name)s %(levelname)s %(message)s")


def serve_world(world: World, state: str | None, profile: str, extra: dict) -> int:
    """Serve `world` until SIGTERM / SIGINT, after printing sandbox.info() plus `extra` and the
    profile as ONE JSON line (what the benchmarks read)."""
    sandbox = Sandbox(world, state_dir=Path(state) if state else None, profile=profile)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with sandbox:
        info = sandbox.info()
        info.update(extra, profile=profile)
        print(json.dumps(info), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
