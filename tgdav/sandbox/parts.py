"""Upload parts as Telegram keeps them: per (account, DC, file_id), on disk, until they expire.

Parts stay on the DC they were sent to, and a file is used (messages.sendMedia) on that DC: clients
upload to the account's home DC, over as many connections as they like; parts sent to another DC are
not found from the home DC (FILE_PART_0_MISSING).

Layout under the store's folder (the sandbox's state dir, or a temporary one):
    uploads/<account id>/<dc>/<file_id as 16 hex digits>/<part number, 6 digits>   the part's bytes
    uploads/<account id>/<dc>/<file_id ...>/total                                  a big file's declared part count
A part is written to a temporary name and renamed into place, so a part re-sent after its file became
a document (whose bytes are hard links to the parts) never changes that document.

Rules (core.telegram.org/api/files, upload.saveFilePart, upload.saveBigFilePart):
    a part is at most 512 KiB (FILE_PART_TOO_BIG); every part but the last is a multiple of 1 KiB
    that divides 512 KiB (FILE_PART_SIZE_INVALID) and all of them have one size
    (FILE_PART_SIZE_CHANGED); the last may be smaller, and empty only when it ends a streamed upload
    on a part boundary (otherwise FILE_PART_EMPTY); part numbers start at 0 and stay below the total
    and below the account's maximum of parts (FILE_PART_INVALID); a big file's total is -1 (unknown,
    streamed) until its last part, which carries the count, and it may not change (FILE_PARTS_INVALID).
For saveFilePart no total is sent, so which part is the last is only known when the file is used;
its sizes are checked then (`complete`). Using a file: every part 0..N-1 present (else
FILE_PART_X_MISSING, X the first missing), none beyond (FILE_PARTS_INVALID), a big file's declared
total equal to N (FILE_PARTS_INVALID).

Expiry: an upload untouched for the controls' `upload_part_ttl` seconds, or touched before an
"expire upload parts now" control, is gone (its folder removed) the next time anything looks at it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tgdav.sandbox.context import RpcError
from tgdav.sandbox.controls import Controls

MAX_PART = 512 * 1024
KIB = 1024
STREAMED = -1
PURGE_EVERY = 1.0     # seconds between looks for expired uploads


def valid_part_size(size: int) -> bool:
    return 0 < size <= MAX_PART and size % KIB == 0 and MAX_PART % size == 0


@dataclass
class _Upload:
    folder: Path
    touched: float
    sizes: dict[int, int] = field(default_factory=dict)    # part number -> bytes
    total: int | None = None                                # a big file's declared part count


@dataclass(frozen=True)
class Completed:
    """A file ready to become a document: its parts 0..parts-1 in `folder`."""
    folder: Path
    parts: int
    part_size: int
    size: int


class PartStore:
    def __init__(self, root: Path, controls: Controls, clock: Callable[[], float]) -> None:
        self.root = Path(root) / "uploads"
        self.root.mkdir(parents=True, exist_ok=True)
        self._controls = controls
        self._clock = clock
        self._lock = threading.Lock()
        self._uploads: dict[tuple[int, int, int], _Upload] = {}   # (account, dc, file_id)
        self._next_purge = 0.0
        self._purged_for: tuple | None = None      # the expiry policy the last purge applied
        self._load()

    # --- saving parts ----------------------------------------------------------------------------
    def save(self, account_id: int, dc_id: int, file_id: int, part: int, data: bytes, *, max_parts: int,
             total: int | None = None) -> bool:
        """Keep one part. `total` is None for saveFilePart, else saveBigFilePart's file_total_parts.
        Returns False when the part was accepted but lost on purpose (a fault), True when kept."""
        size = len(data)
        if size > MAX_PART:
            raise RpcError(400, "FILE_PART_TOO_BIG")
        if total is not None and total != STREAMED and not 0 < total <= max_parts:
            raise RpcError(400, "FILE_PARTS_INVALID")
        if part < 0 or part >= max_parts or (total not in (None, STREAMED) and part >= total):
            raise RpcError(400, "FILE_PART_INVALID")
        with self._lock:
            upload = self._get(account_id, dc_id, file_id, create=True)
            if total not in (None, STREAMED):
                if upload.total is not None and upload.total != total:
                    raise RpcError(400, "FILE_PARTS_INVALID")
            is_last = total not in (None, STREAMED) and part == total - 1
            if size == 0 and not (is_last and part > 0):
                raise RpcError(400, "FILE_PART_EMPTY")
            if total is not None:       # a big file: every part says whether it is the last
                part_size = _part_size(upload, total if total != STREAMED else upload.total)
                if not is_last:
                    if not valid_part_size(size):
                        raise RpcError(400, "FILE_PART_SIZE_INVALID")
                    if part_size is not None and size != part_size:
                        raise RpcError(400, "FILE_PART_SIZE_CHANGED")
                elif part_size is not None and size > part_size:
                    raise RpcError(400, "FILE_PART_SIZE_CHANGED")
                if total != STREAMED and upload.total is None:
                    upload.total = total
                    _write_atomic(upload.folder / "total", str(total).encode())
            upload.touched = self._clock()
            if self._controls.take_lost_part(part):
                return False
            _write_atomic(upload.folder / f"{part:06d}", data)
            upload.sizes[part] = size
            return True

    # --- using a file ----------------------------------------------------------------------------
    def complete(self, account_id: int, dc_id: int, file_id: int, parts: int, *, big: bool, max_parts: int,
                 md5_hex: str = "") -> Completed:
        """Check that the file's parts 0..parts-1 make a whole file (see the module's rules)."""
        with self._lock:
            upload = self._get(account_id, dc_id, file_id, create=False)
            if upload is None:
                raise RpcError(400, "FILE_PART_0_MISSING")
            if not 0 < parts <= max_parts:
                raise RpcError(400, "FILE_PARTS_INVALID")
            if big and upload.total != parts:
                raise RpcError(400, "FILE_PARTS_INVALID")
            missing = next((i for i in range(parts) if i not in upload.sizes), None)
            if missing is not None:
                raise RpcError(400, f"FILE_PART_{missing}_MISSING")
            if any(i >= parts for i in upload.sizes):
                raise RpcError(400, "FILE_PARTS_INVALID")
            sizes = [upload.sizes[i] for i in range(parts)]
            part_size = sizes[0] if parts > 1 else max(sizes[0], 1)
            if parts > 1:
                if not valid_part_size(part_size):
                    raise RpcError(400, "FILE_PART_SIZE_INVALID")
                if any(s != part_size for s in sizes[:-1]) or sizes[-1] > part_size:
                    raise RpcError(400, "FILE_PART_SIZE_CHANGED")
            upload.touched = self._clock()
            done = Completed(upload.folder, parts, part_size, sum(sizes))
        if md5_hex and not big:
            digest = hashlib.md5()
            for i in range(parts):
                digest.update((done.folder / f"{i:06d}").read_bytes())
            if digest.hexdigest() != md5_hex.lower():
                raise RpcError(400, "MD5_CHECKSUM_INVALID")
        return done

    def link_into(self, done: Completed, folder: Path) -> None:
        """Give `folder` the file's parts as hard links (copies where links are impossible)."""
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(done.parts):
            src, dst = done.folder / f"{i:06d}", folder / f"{i:06d}"
            if dst.exists():
                dst.unlink()
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)

    def pending(self) -> int:
        """How many uploads are kept (for tests and the admin snapshot)."""
        with self._lock:
            self._purge()
            return len(self._uploads)

    # --- internals (call with the lock held) ---------------------------------------------------
    def _get(self, account_id: int, dc_id: int, file_id: int, *, create: bool) -> _Upload | None:
        self._purge()
        key = (account_id, dc_id, file_id & 0xFFFFFFFFFFFFFFFF)
        upload = self._uploads.get(key)
        if upload is None and create:
            folder = self.root / str(account_id) / str(dc_id) / f"{key[2]:016x}"
            folder.mkdir(parents=True, exist_ok=True)
            upload = self._uploads[key] = _Upload(folder, self._clock())
        return upload

    def _purge(self) -> None:
        """Drop expired uploads: at most once a second, and at once when the expiry controls change."""
        policy = ttl, expired_before = self._controls.upload_part_policy()
        now = self._clock()
        if now < self._next_purge and policy == self._purged_for:
            return
        self._next_purge, self._purged_for = now + PURGE_EVERY, policy
        for key, upload in list(self._uploads.items()):
            if now - upload.touched > ttl or (expired_before is not None and upload.touched <= expired_before):
                del self._uploads[key]
                shutil.rmtree(upload.folder, ignore_errors=True)

    def _load(self) -> None:
        """Uploads left by an earlier run: touched now, so a restart does not expire them."""
        now = self._clock()
        for folder in self.root.glob("*/*/*"):
            try:
                key = (int(folder.parent.parent.name), int(folder.parent.name), int(folder.name, 16))
                upload = _Upload(folder, now)
                for f in folder.iterdir():
                    if f.name.isdigit():
                        upload.sizes[int(f.name)] = f.stat().st_size
                    elif f.name == "total":
                        upload.total = int(f.read_text())
            except (OSError, ValueError):
                shutil.rmtree(folder, ignore_errors=True)   # not an upload we can read: as if expired
                continue
            self._uploads[key] = upload


def _part_size(upload: _Upload, total: int | None) -> int | None:
    """The size every part but the last has, from the parts known to be not last."""
    for part, size in upload.sizes.items():
        if total is None or part < total - 1:
            return size
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
