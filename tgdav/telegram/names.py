"""File and folder names: clean, unique, stable. Pure functions, no I/O.

- A name keeps what the user gave it (the document's file name, the channel's title) minus what a
  path or Windows cannot hold: '/', '\\', control characters, <>:"|?*, trailing dots and spaces, and
  reserved device names (CON, NUL, COM1...), which get a leading underscore.
- Characters no XML or HTML output may hold (U+FFFE, U+FFFF, lone surrogates, C1 controls) and bidi
  controls that would disguise a name (U+202E...) become U+FFFD: tgdav.text.safe.
- A file without a name gets one from its kind, date and message id: photo_2024-05-01_1234.jpg.
- Duplicates (compared case-insensitively, as Finder and Explorer do) are told apart by the message or
  channel id: "film.mkv" and "film (1234).mkv". The item with the lowest id keeps the plain name, so
  names never change when newer items arrive.
"""

from __future__ import annotations

import mimetypes
import re
from datetime import datetime, timezone
from typing import Iterable

from tgdav import text

_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f/\\<>:"|?*]')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
             *(f"LPT{i}" for i in range(1, 10))}
MAX_NAME = 200   # bytes of UTF-8; leaves room for a suffix within every client's 255

_EXTENSIONS = {"image/jpeg": ".jpg", "video/mp4": ".mp4", "audio/mpeg": ".mp3", "audio/ogg": ".ogg",
               "video/x-matroska": ".mkv", "audio/x-wav": ".wav", "audio/wav": ".wav",
               "application/octet-stream": ".bin", "text/plain": ".txt"}


def clean(name: str) -> str:
    """`name` made safe for every client; "" when nothing usable is left."""
    name = _FORBIDDEN.sub("_", name).strip().rstrip(". ")
    name = text.safe(name)          # what no XML/HTML may hold, bidi controls: U+FFFD (tgdav.text)
    while len(name.encode()) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:-1] + dot + ext) if dot and len(ext) < 16 and stem else name[:-1]
    if name.split(".")[0].upper() in _RESERVED:
        name = "_" + name
    return "" if name in ("", ".", "..") else name


def extension_for(mime: str) -> str:
    return _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime or "") or ".bin"


def fallback_name(kind: str, date: float, message_id: int, mime: str) -> str:
    day = datetime.fromtimestamp(date, timezone.utc).strftime("%Y-%m-%d")
    return f"{kind}_{day}_{message_id}{extension_for(mime)}"


def with_suffix(name: str, ident: int) -> str:
    stem, dot, ext = name.rpartition(".")
    if dot and stem and len(ext) < 16:
        return f"{stem} ({ident}).{ext}"
    return f"{name} ({ident})"


def unique(items: Iterable[tuple[int, str]]) -> dict[int, str]:
    """{id: unique name} for (id, cleaned name) pairs; the lowest id keeps a contested name."""
    taken: set[str] = set()
    out: dict[int, str] = {}
    for ident, name in sorted(items):
        if name.casefold() in taken:
            name = with_suffix(name, ident)
        taken.add(name.casefold())
        out[ident] = name
    return out


# --- names a user gives inside a channel (PUT, MKCOL, MOVE, COPY): stored as sent --------------------
# What Linux and macOS allow in a name, minus what one tag line (tgdav/telegram/tree.py) or an XML/HTML
# listing cannot carry: '/', controls (C0, DEL, C1), lone surrogates, noncharacters, bidi controls.
# Windows-only rules (\ : * ? " < > |, trailing dots, CON...) do not apply: the name is the user's.
_UNSTORABLE = re.compile("[/\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
                         + "".join(f"{chr(p + 0xfffe)}{chr(p + 0xffff)}" for p in range(0x10000, 0x110000, 0x10000))
                         + "\u202a-\u202e\u2066-\u2069]")
MAX_STORED_NAME = 255    # bytes of UTF-8, as Linux and macOS allow


def unstorable(name: str) -> str:
    """Why `name` cannot be a file or folder name inside a channel, or "" when it can, as given."""
    if name in ("", ".", ".."):
        return f"{name!r} cannot be a name"
    if _UNSTORABLE.search(name):
        return "a name cannot hold '/', control characters, bidi controls or noncharacters"
    if name != name.rstrip():
        return "a name cannot end with a space (Telegram trims the end of a caption)"
    if len(name.encode()) > MAX_STORED_NAME:
        return f"a name is at most {MAX_STORED_NAME} bytes (UTF-8)"
    return ""
