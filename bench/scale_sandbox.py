"""The sandbox of the scale tests and bench/scale_bench.py, in its own process.

One user (home DC 2), a second user (a helper account, home DC 2, phone in "helper_phone") and
--bots bots (helper accounts, home DC 2), all members of channel "Scale":
    stale.bin  advertised on DC 2, really on DC 5: the first getFile answers FILE_MIGRATE_5
    next.bin   on DC 5 (stale.bin and next.bin are the only files there: the first read of
               stale.bin is what authorises an account on DC 5)
    far.bin    on DC 4 (a foreign DC: the first sender there exports the authorisation)
    hot.bin    on DC 3
    flood.bin  on DC 3, read only by the flood tests
    big.bin    --size-mib MiB on DC 4, for throughput
and channel "Uploads", which the user created (so tgdav may write there), holding ENTRIES small files
entry-00.bin ... on DC 2 (the shared-state and nginx tests write and list there).
Bytes are tgdav.sandbox.content.pattern(document id, offset, length). Prints sandbox.info() plus
"bots" (tokens) and "files" (name -> document id, size, DC) as ONE JSON line, serves until SIGTERM.

    python bench/scale_sandbox.py --profile off --bots 3 --size-mib 64
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tgdav.sandbox.controls import PROFILES  # noqa: E402
from tgdav.sandbox.runner import Sandbox  # noqa: E402
from tgdav.sandbox.world import World  # noqa: E402

MIB = 1 << 20
CHANNEL = "Scale"
UPLOADS = "Uploads"
ENTRIES = 40


def build_world(bots: int, big: int, seed: int) -> tuple[World, list, dict]:
    w = World(seed=seed)
    user = w.add_user("+15550002", "Scale", home_dc=2)
    helpers = [w.add_bot(f"Helper {i}", f"tgdav_helper{i}_bot", home_dc=2) for i in range(1, bots + 1)]
    second = w.add_user("+15550003", "Helper user", home_dc=2)
    ch = w.add_channel(CHANNEL, members=[user, second, *helpers])
    specs = [("stale.bin", 3 * MIB + 333, 2), ("next.bin", MIB + 3, 5), ("far.bin", 2 * MIB + 7, 4), ("hot.bin", 3 * MIB + 5, 3),
             ("flood.bin", 2 * MIB + 11, 3), ("big.bin", big, 4)]
    files = {}
    for name, size, dc in specs:
        m = w.add_document(ch, name=name, size=size, mime="application/octet-stream", dc=dc)
        if name == "stale.bin":
            w.make_stale(m.media, true_dc=5)
        files[name] = {"document_id": m.media.id, "size": m.media.size, "dc": m.media.true_dc}
    uploads = w.add_channel(UPLOADS, members=[user, second, *helpers], creator=user)
    for i in range(ENTRIES):
        m = w.add_document(uploads, name=f"entry-{i:02d}.bin", size=4096 + i, mime="application/octet-stream", dc=2)
        files[f"{UPLOADS}/entry-{i:02d}.bin"] = {"document_id": m.media.id, "size": m.media.size, "dc": 2}
    return w, helpers + [second], files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="off", choices=sorted(PROFILES))
    p.add_argument("--state", help="RSA key and auth keys survive here")
    p.add_argument("--bots", type=int, default=3)
    p.add_argument("--size-mib", type=float, default=8)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="sandbox %(asctime)s %(name)s %(levelname)s %(message)s")
    world, accounts, files = build_world(args.bots, int(args.size_mib * MIB), args.seed)
    helpers, second = accounts[:-1], accounts[-1]
    sandbox = Sandbox(world, state_dir=Path(args.state) if args.state else None, profile=args.profile)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with sandbox:
        info = sandbox.info()
        info.update(bots=[b.bot_token for b in helpers], bot_ids=[b.id for b in helpers],
                    user_id=sandbox.user.id, helper_phone=second.phone, helper_user_id=second.id, files=files, channel=CHANNEL, uploads=UPLOADS, profile=args.profile)
        print(json.dumps(info), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
