"""The sandbox of bench/list_bench.py, in its own process: big channels of tiny posts.

One user (home DC 2), member of:
    "L1k", "L10k", "L50k"   1 000, 10 000 and 50 000 tiny documents (100 bytes .. 1 KiB each)
    "Library"              --library files (default 1 000) of 2 MiB + n bytes, "video NNNN.mkv",
                           tagged into --folders folders (default 100): "#tgdav file /Show NN/..."
                           (the Kodi/Jellyfin scan)
    "Tree"                 2 000 tagged files in /show NN/season N/ (a Depth 1 deep in a tagged tree)
Bytes are tgdav.sandbox.content.pattern(document id, offset, length). Prints sandbox.info() plus
"channels" (title -> message count) and "library" (folder -> {file name: document id}) as ONE JSON line, and
serves until SIGTERM. The getHistory rate rule is the sandbox's default (controls.HISTORY_RULE).

    python bench/list_sandbox.py --profile telegram-like --sizes 1000,10000,50000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sandbox_proc import quiet_logs, serve_world  # noqa: E402
from tgdav.sandbox.controls import PROFILES  # noqa: E402
from tgdav.sandbox.world import World  # noqa: E402

MIB = 1 << 20


def label(n: int) -> str:
    return f"L{n // 1000}k" if n % 1000 == 0 else f"L{n}"


def build_world(sizes: list[int], library: int, folders: int, seed: int) -> tuple[World, dict]:
    w = World(seed=seed)
    user = w.add_user("+15550016", "Lister", home_dc=2)
    counts = {}
    for n in sizes:
        ch = w.add_channel(label(n), members=[user])
        for i in range(n):
            w.add_document(ch, name=f"post {i:06d}.txt", size=100 + i % 925, mime="text/plain", dc=2)
        counts[ch.title] = n
    lib = w.add_channel("Library", members=[user])
    shelves: dict[str, dict[str, int]] = {}
    for i in range(library):
        show = f"Show {i % folders:03d}"
        name = f"video {i:04d}.mkv"
        m = w.add_document(lib, name=name, size=2 * MIB + i, mime="video/x-matroska", dc=2,
                           text=f"#tgdav file /{show}/{name}")
        shelves.setdefault(show, {})[name] = m.media.id
    counts["Library"] = library
    tree = w.add_channel("Tree", members=[user])
    for i in range(2000):
        show, season = f"show {i % 20:02d}", f"season {i // 20 % 5 + 1}"
        w.add_document(tree, name=f"ep {i:04d}.mkv", size=1000 + i, mime="video/x-matroska", dc=2,
                       text=f"#tgdav file /{show}/{season}/ep {i:04d}.mkv")
    counts["Tree"] = 2000
    return w, {"channels": counts, "library": shelves}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="telegram-like", choices=sorted(PROFILES))
    p.add_argument("--state", help="RSA key and auth keys survive here")
    p.add_argument("--sizes", default="1000,10000,50000")
    p.add_argument("--library", type=int, default=1000)
    p.add_argument("--folders", type=int, default=100)
    p.add_argument("--seed", type=int, default=16)
    args = p.parse_args(argv)
    quiet_logs()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    world, extra = build_world(sizes, args.library, args.folders, args.seed)
    return serve_world(world, args.state, args.profile, extra)

if __name__ == "__main__":
    sys.exit(main())
