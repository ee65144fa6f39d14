"""A world from a folder: each subfolder a channel (title = folder name), each file in it a document
message (mime from the extension, size, date from mtime, bytes read from the file), plus synthetic
documents of any size. Files are dealt round-robin over the DCs starting after the accounts' home DC,
so downloads exercise exports, imports and migrations from the first file on.
The accounts read every channel; only `writable` channels (named by title) are the user's own, where
it may post (its creator), and the bot's (an admin with post, edit and delete rights).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from tgdav.sandbox.world import DEFAULT_DCS, EPOCH, Account, Channel, FileSource, World

USER_PHONE = "15550100001"
USER_NAME = "Sandbox User"
BOT_USERNAME = "tgdav_sandbox_bot"

_EXTRA_TYPES = {".mkv": "video/x-matroska", ".webm": "video/webm", ".flac": "audio/flac",
                ".m4a": "audio/mp4", ".opus": "audio/ogg", ".m4v": "video/mp4"}
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


def mime_of(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def parse_size(text: str) -> int:
    """"8G", "8GiB", "100m", "4096" -> bytes (binary units)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a size: {text!r} (examples: 4096, 100M, 8GiB)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


@dataclass(frozen=True)
class SyntheticFile:
    """A document whose bytes are the deterministic pattern of its id: any size, no disk."""
    channel: str
    name: str
    size: int
    mime: str = "application/octet-stream"

    @classmethod
    def parse(cls, spec: str) -> "SyntheticFile":
        """"Channel/name.bin:8GiB" -> SyntheticFile("Channel", "name.bin", 8 GiB)."""
        path, sep, size = spec.rpartition(":")
        channel, slash, name = path.partition("/")
        if not (sep and slash and channel and name) or "/" in name:
            raise ValueError(f"not a synthetic file: {spec!r} (expected Channel/name.bin:SIZE)")
        return cls(channel, name, parse_size(size), mime_of(name))


def default_home_dc(world: World) -> int:
    """DC 2, as for most real accounts, when the world has it."""
    return 2 if 2 in world.dc_ids else world.dc_ids[0]


def add_owner_accounts(world: World, *, home_dc: int | None = None,
                       password: str | None = None) -> tuple[Account, Account]:
    """The user (phone USER_PHONE, optional 2FA password) and the bot that tgdav logs in as."""
    home_dc = default_home_dc(world) if home_dc is None else home_dc
    user = world.add_user(USER_PHONE, USER_NAME, username="sandbox_user", home_dc=home_dc,
                          password=password)
    bot = world.add_bot("Sandbox Bot", BOT_USERNAME, home_dc=home_dc)
    return user, bot


def build_world_from_folder(folder: str | Path, *, seed: int = 0, dc_ids: tuple[int, ...] = DEFAULT_DCS,
                            home_dc: int | None = None, password: str | None = None,
                            synthetic: tuple[SyntheticFile, ...] = (), writable: tuple[str, ...] = (),
                            groups: tuple[str, ...] = ()) -> World:
    """Hidden files and nested folders are skipped; Telegram channels are flat."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"not a folder: {root}")
    world = World(seed=seed, dc_ids=dc_ids)
    owners = add_owner_accounts(world, home_dc=home_dc, password=password)
    start = world.dc_ids.index(owners[0].home_dc) + 1
    dealt = 0
    channels: dict[str, Channel] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted((f for f in sub.iterdir() if f.is_file() and not f.name.startswith(".")),
                       key=lambda f: (int(f.stat().st_mtime), f.name))
        first = int(files[0].stat().st_mtime) if files else EPOCH
        channel = channels[sub.name] = world.add_channel(sub.name, members=owners, date=first,
                                                         **_ownership(sub.name, writable, owners))
        for f in files:
            dc = world.dc_ids[(start + dealt) % len(world.dc_ids)]
            dealt += 1
            stat = f.stat()
            world.add_document(channel, name=f.name, size=stat.st_size, mime=mime_of(f.name),
                               source=FileSource(f.resolve()), dc=dc, date=int(stat.st_mtime))
    for spec in synthetic:
        channel = channels.get(spec.channel) or channels.setdefault(
            spec.channel, world.add_channel(spec.channel, members=owners,
                                            **_ownership(spec.channel, writable, owners)))
        world.add_document(channel, name=spec.name, size=spec.size, mime=spec.mime)
    for title in writable:
        if title not in channels:
            channels[title] = world.add_channel(title, members=owners, **_ownership(title, writable, owners))
    if groups:      # supergroups: the user a plain member beside a creator and a stranger
        owner = world.add_user("15550100002", "Group Owner", username="group_owner", home_dc=owners[0].home_dc)
        stranger = world.add_user("15550100003", "Stranger", username="stranger", home_dc=owners[0].home_dc)
        for title in groups:
            world.add_channel(title, members=(owners[0], stranger), creator=owner, megagroup=True)
    return world


def _ownership(title: str, writable: tuple[str, ...], owners: tuple[Account, Account]) -> dict:
    if title not in writable:
        return {}
    user, bot = owners
    return {"creator": user, "admins": [bot]}
