"""Bytes in, uploaded files out: upload.saveFilePart / saveBigFilePart over the pool, parts in parallel.

Telegram's rules (DESIGN.md): parts of 512 KiB (the last may be smaller), numbered from 0, at most
`max_parts` per file (upload_max_fileparts_*: ~2000 MiB per message, ~4000 MiB premium). A file under
10 MB goes with saveFilePart and inputFile (with its md5); from 10 MB with saveBigFilePart and
inputFileBig. A stream of unknown length (a chunked PUT) uses saveBigFilePart with file_total_parts
= -1 on every part but the last, which carries the count; the newest full part is held back until
the next byte arrives, so the last part is always known when it is sent and never empty.

A stream longer than one message can hold is cut into pieces of `max_parts` parts, each its own
uploaded file; `on_piece(input_file, number, size, last)` is called for each in order (by the
writer, which sends it as a message). A full piece of a stream of unknown length is handed over only
when the next byte arrives or the stream ends, so `last` is always right.

Memory is bounded per upload: at most `parallel` parts in flight plus the one being filled. So that
FILE_PART_X_MISSING (FILE_PART_0_MISSING included) can be answered by sending part X again, whatever
the file's size, every part of the piece being uploaded is also written to a spool file in
`spool_dir` (the state directory's spool/): an unnamed temporary file (unlinked at once, so even a
killed tgdav leaves nothing), at most one piece (upload_max_fileparts parts) per upload, dropped
when the piece's message is sent or the upload ends. The parts go on the home DC's senders of the pool
(`invoke(request)`), which gates FLOOD_WAIT and raises RetryLater for long ones; any failure fails
the upload, and nothing is sent as a message before every part of a piece is saved.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import tempfile
from typing import Awaitable, Callable

from tgdav.telegram.mtproto import functions, types

from tgdav.errors import TgdavError, UpstreamUnavailable
from tgdav.telegram import rpc
from tgdav.telegram.mediainfo import VideoInfo, mp4_video_info

log = logging.getLogger("tgdav.upload")

PART = 512 * 1024
BIG = 10 * 1024 * 1024
MAX_PARTS = 4000            # Telegram's default upload_max_fileparts_default
SAVE_RETRIES = 3            # a part answered False is sent again this many times

Invoke = Callable[[object], Awaitable[object]]
OnPiece = Callable[[object, int, int, bool], Awaitable[None]]


class PieceUpload:
    """One uploaded file (one message's worth). Owns its parts on the wire: saved in parallel (at
    most `parallel` in flight), kept in the spool for FILE_PART_X_MISSING, then an input file."""

    def __init__(self, invoke: Invoke, name: str, *, size: int | None, parallel: int,
                 part_size: int = PART, spool_dir=None) -> None:
        self._invoke = invoke
        self.name = name
        self.file_id = secrets.randbits(63)
        self.big = size is None or size >= BIG
        self.total = None if size is None else max(1, -(-size // part_size))
        self.count = 0              # parts handed in
        self.size = 0
        self._part = part_size
        self._md5 = None if self.big else hashlib.md5()
        # every part, for FILE_PART_X_MISSING: an unnamed file (gone with the process, whatever happens)
        self._spool = tempfile.TemporaryFile(dir=spool_dir, prefix="tgdav-upload-")
        self._lengths: dict[int, int] = {}
        self._slots = asyncio.Semaphore(parallel)
        self._tasks: set[asyncio.Task] = set()
        self._error: BaseException | None = None

    async def add(self, data: bytes, *, last: bool = False, total: int | None = None) -> None:
        """Hand in the next part; returns once it is in flight (waits for a free slot)."""
        await self._slots.acquire()
        if self._error is not None:
            self._slots.release()
            raise self._error
        index = self.count
        self.count += 1
        self.size += len(data)
        if self._md5 is not None:
            self._md5.update(data)
        await asyncio.to_thread(os.pwrite, self._spool.fileno(), data, index * self._part)
        self._lengths[index] = len(data)
        if total is None:
            total = self.total if self.total is not None else (index + 1 if last else -1)
        task = asyncio.get_running_loop().create_task(self._save(index, data, total))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _request(self, index: int, data: bytes, total: int):
        if self.big:
            return functions.upload.SaveBigFilePartRequest(self.file_id, index, total, data)
        return functions.upload.SaveFilePartRequest(self.file_id, index, data)

    async def _save(self, index: int, data: bytes, total: int) -> None:
        """Saving a part again is harmless (same file id and number), so a part answered False or
        lost with its connection is sent again, up to SAVE_RETRIES times; FLOOD_WAIT is the pool's."""
        try:
            for attempt in range(1, SAVE_RETRIES + 1):
                try:
                    if await rpc.call(self._invoke, self._request(index, data, total),
                                      f"saving part {index} of {self.name!r}"):
                        return
                except (ConnectionError, UpstreamUnavailable, asyncio.TimeoutError) as e:
                    if attempt == SAVE_RETRIES:
                        raise
                    log.info("part %d of %r: %s; sending it again", index, self.name, e)
            raise UpstreamUnavailable(f"Telegram did not keep part {index} of {self.name!r}")
        except asyncio.CancelledError:
            raise
        except BaseException as e:   # the first failure fails the upload; later add()s raise it
            if self._error is None:
                self._error = e
        finally:
            self._slots.release()

    async def finish(self):
        """Wait for every part; the inputFile / inputFileBig to send."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._error is not None:
            raise self._error
        if self.big:
            return types.InputFileBig(self.file_id, self.count, self.name)
        return types.InputFile(self.file_id, self.count, self.name, self._md5.hexdigest())

    async def resend(self, index: int, *, and_after: bool = False) -> bool:
        """FILE_PART_X_MISSING: send part X again (`and_after`: every part from X on, in parallel)
        from the spool; False when the piece has no such part (or was forgotten)."""
        if index not in self._lengths or self._spool.closed:
            return False
        for i in (range(index, self.count) if and_after else (index,)):
            await self._slots.acquire()
            if self._error is not None:
                self._slots.release()
                raise self._error
            data = await asyncio.to_thread(os.pread, self._spool.fileno(), self._lengths[i], i * self._part)
            task = asyncio.get_running_loop().create_task(self._save(i, data, self.count))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._error is not None:
            raise self._error
        return True

    def forget(self) -> None:
        """The message is sent (or the upload is over): the spooled parts go."""
        self._spool.close()
        self._lengths.clear()

    async def abort(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.forget()


class StreamUpload:
    """A whole stream: full parts in with add_part(), the tail with close(); pieces out via on_piece.
    Owns where the stream is cut: which part closes a piece and whether a piece is the last.

    `size` is the total when known (Content-Length), else None. Call from the loop only.
    """

    def __init__(self, invoke: Invoke, name: str, on_piece: OnPiece, *, size: int | None,
                 parallel: int = 8, max_parts: int = MAX_PARTS, part_size: int = PART,
                 spool_dir=None) -> None:
        if max_parts < 1:
            raise ValueError("max_parts must be at least 1")
        self._invoke, self._name, self._on_piece = invoke, name, on_piece
        self._size, self._parallel, self._max_parts, self._part = size, parallel, max_parts, part_size
        self._spool_dir = spool_dir
        self._piece: PieceUpload | None = None
        self._number = 0            # pieces started
        self._sent = 0              # bytes handed in
        self._held: bytes | None = None          # unknown length: the newest full part
        self._full: PieceUpload | None = None    # unknown length: a full piece not yet handed over
        self.pieces: list[PieceUpload] = []
        self.head = b""             # the stream's first bytes, for sniffing its type
        self.video: VideoInfo | None = None      # a fast-start MP4's duration and size


    def _start_piece(self) -> PieceUpload:
        self._number += 1
        size = None
        if self._size is not None:
            size = min(self._size - self._sent, self._max_parts * self._part)
        piece = PieceUpload(self._invoke, self._name, size=size, parallel=self._parallel,
                            part_size=self._part, spool_dir=self._spool_dir)
        self.pieces.append(piece)
        self._piece = piece
        return piece

    async def _put(self, data: bytes, *, last: bool) -> None:
        """Send one part (not held back) into the current piece; rolls pieces over when full."""
        if self._full is not None:              # more bytes follow the full piece: not the last
            full, self._full = self._full, None
            await self._on_piece(await full.finish(), self._number, full.size, False)
        if not self.head:
            self.head = data[:64]
            if data[4:8] == b"ftyp":
                self.video = mp4_video_info(data)
        piece = self._piece or self._start_piece()
        closes_piece = piece.count + 1 == self._max_parts
        total = piece.count + 1 if (closes_piece or last) and piece.total is None else None
        await piece.add(data, last=last or closes_piece, total=total)
        self._sent += len(data)
        if closes_piece and not last:
            self._piece = None
            if self._size is None:
                self._full = piece               # handed over when we know whether more follows
            else:
                await self._on_piece(await piece.finish(), self._number, piece.size,
                                     self._sent >= self._size)

    async def add_part(self, data: bytes) -> None:
        """A full part (part_size bytes)."""
        if self._size is not None:
            await self._put(data, last=self._sent + len(data) >= self._size)
            return
        if self._held is not None:
            held, self._held = self._held, None
            await self._put(held, last=False)
        self._held = data

    async def close(self, tail: bytes = b"") -> None:
        """The stream ended with `tail` (shorter than a part, maybe empty): finish the last piece."""
        if self._size is not None and self._sent + len(tail) != self._size:
            raise TgdavError(f"the request body ended after {self._sent + len(tail)} of the "
                             f"{self._size} bytes its Content-Length announced; nothing was stored")
        if self._held is not None:
            held, self._held = self._held, None
            if tail:
                await self._put(held, last=False)
            else:
                tail = held
        if tail:
            await self._put(tail, last=True)
        if self._full is not None:
            full, self._full = self._full, None
            await self._on_piece(await full.finish(), self._number, full.size, True)
        elif self._piece is not None:
            piece, self._piece = self._piece, None
            await self._on_piece(await piece.finish(), self._number, piece.size, True)

    async def abort(self) -> None:
        for piece in self.pieces:
            await piece.abort()
