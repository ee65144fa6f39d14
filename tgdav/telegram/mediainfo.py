"""Video attributes where they are cheap to know: an MP4/MOV whose index (moov box) comes first
("fast start", what ffmpeg -movflags +faststart and most cameras/phones write) has its duration and
picture size in the first part of the upload. Pure code, no I/O; anything unexpected gives None.

    moov > mvhd: timescale, duration          moov > trak > tkhd: width, height (16.16 fixed point)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class VideoInfo:
    duration: float     # seconds
    width: int
    height: int


def _boxes(data: bytes, start: int, end: int):
    """(type, body start, body end) of the boxes in data[start:end]; stops at a box cut short."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def mp4_video_info(head: bytes) -> VideoInfo | None:
    """Duration and size of a fast-start MP4 from its first bytes, or None."""
    try:
        boxes = list(_boxes(head, 0, len(head)))
        if not boxes or boxes[0][0] != b"ftyp":
            return None
        moov = next(((s, e) for kind, s, e in boxes if kind == b"moov"), None)
        if moov is None:
            return None
        duration = None
        width = height = 0
        for kind, s, e in _boxes(head, *moov):
            if kind == b"mvhd":
                version = head[s]
                if version == 1:
                    timescale, length = struct.unpack_from(">IQ", head, s + 20)
                else:
                    timescale, length = struct.unpack_from(">II", head, s + 12)
                if timescale:
                    duration = length / timescale
            elif kind == b"trak" and not width:
                for sub, ss, se in _boxes(head, s, e):
                    if sub == b"tkhd":
                        w, h = struct.unpack_from(">II", head, se - 8)
                        width, height = w >> 16, h >> 16
        if duration is None or not (width and height):
            return None
        return VideoInfo(duration, width, height)
    except (struct.error, IndexError):
        return None
