"""A whole sandbox: world + services + every DC's listener + the admin API, in-process (Sandbox, for
pytest and benchmarks) or as `tgdav sandbox`, which prints ONE JSON line on stdout with everything a
client needs and runs until SIGTERM / SIGHUP / Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path

from .admin import AdminServer
from .cluster import ClusterThread
from .controls import PROFILES, Controls
from .counters import Counters
from .keys import AuthKeyStore
from .rsakey import load_or_create
from .services import Services
from .world import World

log = logging.getLogger("tgdav.sandbox")

API_ID = 94575           # any api_id works against the sandbox; these are what it advertises
API_HASH = "a3406de8d171bb422bb6ddf3bbd800e2"


class Sandbox:
    """A running sandbox around `world`. `user` and `bot` are the accounts the info line advertises."""

    def __init__(self, world: World, *, user=None, bot=None, user_password: str | None = None,
                 state_dir: Path | None = None, profile: str = "off") -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown link profile {profile!r}; known: {', '.join(PROFILES)}")
        self.world = world
        self.user = user if user is not None else next(iter(world.users()), None)
        self.bot = bot if bot is not None else next(iter(world.bots()), None)
        self.user_password = user_password
        self.state_dir = Path(state_dir) if state_dir else None
        if self.state_dir:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.counters = Counters()
        self.controls = Controls(PROFILES[profile])
        self.keys = AuthKeyStore(self.state_dir / "keys.json" if self.state_dir else None)
        self.rsa = load_or_create(self.state_dir)
        self.services = Services(world, self.keys, self.counters, self.controls, state_dir=self.state_dir)
        self.cluster = ClusterThread(self.services, self.keys, self.counters, self.controls, self.rsa,
                                     dc_ids=tuple(world.dc_ids))
        self.admin = AdminServer(self.counters, self.controls, world, call=self._on_loop,
                                 writes=self.services.state.writes)

    def _on_loop(self, fn):
        """fn() run on the cluster's loop, between the services' steps (the admin API's changes)."""
        async def run():
            return fn()
        return self.cluster.run(run())

    def start(self) -> "Sandbox":
        self.cluster.start()
        self.world.dcs.update({dc: ("127.0.0.1", port) for dc, port in self.cluster.ports.items()})
        self.admin.start()
        return self

    def stop(self) -> None:
        self.admin.close()
        self.cluster.stop()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def home_dc(self) -> int:
        account = self.user or self.bot
        return account.home_dc if account else min(self.world.dc_ids)

    def info(self) -> dict:
        """The JSON line: what a client (tgdav or a plain Telethon script) needs to connect."""
        info = {
            "dcs": {str(dc): list(addr) for dc, addr in sorted(self.world.dcs.items())},
            "home_dc": self.home_dc,
            "rsa_public_key": self.rsa.public_pem,
            "api_id": API_ID,
            "api_hash": API_HASH,
            "bot_token": self.bot.bot_token if self.bot else None,
            "user_phone": self.user.phone if self.user else None,
            "login_code": self.world.login_code,
            "admin": self.admin.url,
        }
        if self.user_password:
            info["user_password"] = self.user_password
        return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tgdav sandbox",
                                description="A local multi-DC Telegram for tests, demos and benchmarks.")
    p.add_argument("--seed", metavar="DIR", help="a folder: each subfolder a channel, each file a document")
    p.add_argument("--profile", default="off", choices=sorted(PROFILES),
                   help="link emulation: off, or telegram-like (100 ms round trip, 2 MiB/s per connection)")
    p.add_argument("--state", metavar="DIR",
                   help="keep the RSA key, auth keys and everything clients write here across restarts")
    p.add_argument("--dcs", type=int, default=5, help="number of DCs (default 5)")
    p.add_argument("--password", help="give the user account this 2FA cloud password")
    p.add_argument("--home-dc", type=int, metavar="N",
                   help="the user's and the bot's home DC (default 2, as for most real accounts); a "
                        "login begun elsewhere is sent there with PHONE_MIGRATE / USER_MIGRATE")
    p.add_argument("--writable", metavar="TITLE", action="append", default=[],
                   help="with --seed: the user creates (owns) the channel of this title, so it may post "
                        "there; an empty one is made if no subfolder has that name (repeatable)")
    p.add_argument("--group", metavar="TITLE", action="append", default=[],
                   help="with --seed: a supergroup of this title where the user is a plain member, "
                        "@group_owner its creator and @stranger another member (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    from .demo import build_demo_world
    from .seed import build_world_from_folder

    args = build_parser().parse_args(argv)
    if args.dcs < 2:
        build_parser().error("--dcs must be at least 2 (files on a foreign DC are the point)")
    dc_ids = tuple(range(1, args.dcs + 1))
    if args.home_dc is not None and args.home_dc not in dc_ids:
        build_parser().error(f"--home-dc {args.home_dc}: not one of the DCs 1..{args.dcs}")
    if args.seed:
        if not Path(args.seed).is_dir():
            build_parser().error(f"--seed {args.seed}: not a folder")
        world = build_world_from_folder(Path(args.seed), dc_ids=dc_ids, password=args.password,
                                        home_dc=args.home_dc,
                                        writable=tuple(args.writable), groups=tuple(args.group))
    else:
        if args.writable or args.group:
            build_parser().error("--writable and --group need --seed (the demo world has its writable Uploads)")
        world = build_demo_world(dc_ids=dc_ids, password=args.password, home_dc=args.home_dc)
    sandbox = Sandbox(world, user_password=args.password, state_dir=args.state, profile=args.profile)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: stop.set())
    with sandbox:
        print(json.dumps(sandbox.info()), flush=True)
        log.info("sandbox up: DCs %s, admin %s, login code %s", sandbox.cluster.ports,
                 sandbox.admin.url, world.login_code)
        stop.wait()
    return 0
