"""The built-in demo world of `tgdav demo`: real media a player or viewer can open (a seekable MP4,
JPEG and PNG images as photos and as documents, a WAV made here), a large synthetic file, files on
every DC and one whose advertised DC is stale. The accounts are seed.add_owner_accounts'. They only
read those channels; `Uploads` is the user's own (its creator; the bot is an admin who may post), so
it is where a client writes.

demo_media/ was made once with ffmpeg:
    clip.mp4             testsrc2 320x240 25 fps + 440 Hz sine, 6 s, H.264/AAC, a keyframe every
                         second (-g 25 -sc_threshold 0), -movflags +faststart
    mandelbrot_800.jpg   lavfi mandelbrot 800x600;  mandelbrot_320.jpg  the same scaled to 320x240
    testcard.png         lavfi testsrc2 256x192
"""

from __future__ import annotations

import io
import math
import wave
from array import array
from pathlib import Path

from tgdav.sandbox.seed import add_owner_accounts
from tgdav.sandbox.world import DEFAULT_DCS, Audio, BytesSource, FileSource, PhotoSize, Video, World

MEDIA = Path(__file__).parent / "demo_media"
BIG_SIZE = 8 << 30
UPLOADS = "Uploads"       # the writable channel
WELCOME = """Welcome to the tgdav demo.

Every channel is a folder, every file posted in it a file:
  Videos/clip.mp4     open it in a player and seek: each seek is an HTTP Range read
  Pictures, Music     photos and a song, straight from Telegram's data centers
  Archive/big.bin     8 GiB of synthetic bytes: read any part of it, no disk needed

Uploads is the one channel you can write to: drop files there (Finder, Explorer, rclone copy,
curl -T), make folders, move and delete them. Every other channel is read-only.

The status page (/:tgdav/status) shows connections, streams and the cache as you go.
"""


def chord_wav(seconds: float = 3.0, rate: int = 22050) -> bytes:
    """A C major chord fading out: 16-bit mono PCM in a WAV container, deterministic."""
    samples = array("h")
    for i in range(int(seconds * rate)):
        t = i / rate
        value = sum(math.sin(2 * math.pi * f * t) for f in (261.63, 329.63, 392.0)) / 3
        samples.append(int(value * math.exp(-t) * 30000))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


def _file(name: str) -> tuple[FileSource, int]:
    path = MEDIA / name
    return FileSource(path), path.stat().st_size


def build_demo_world(*, seed: int = 0, dc_ids: tuple[int, ...] = DEFAULT_DCS, home_dc: int | None = None,
                     password: str | None = None, big_size: int = BIG_SIZE) -> World:
    world = World(seed=seed, dc_ids=dc_ids)
    owners = add_owner_accounts(world, home_dc=home_dc, password=password)
    home_dc = owners[0].home_dc
    foreign = [dc for dc in world.dc_ids if dc != home_dc] or [home_dc]

    welcome = world.add_channel("Welcome", username="tgdav_demo", members=owners)
    world.add_text(welcome, "Welcome to the tgdav demo: every channel is a folder, every file a file.")
    world.add_text(welcome, "Open Videos/clip.mp4 in a player and seek: each seek is an HTTP Range read.")
    readme = WELCOME.encode()      # text posts are not files: the instructions are one a newcomer can open
    world.add_document(welcome, name="README.txt", size=len(readme), mime="text/plain",
                       source=BytesSource(readme), dc=home_dc, text="Start here")

    pictures = world.add_channel("Pictures", members=owners)
    small_jpg, small_size = _file("mandelbrot_320.jpg")
    large_jpg, large_size = _file("mandelbrot_800.jpg")
    png, png_size = _file("testcard.png")
    world.add_photo(pictures, [PhotoSize("m", 320, 240, small_size, small_jpg),
                               PhotoSize("x", 800, 600, large_size, large_jpg)],
                    dc=foreign[0], text="The Mandelbrot set, as a photo")
    world.add_photo(pictures, [PhotoSize("x", 256, 192, png_size, png)], mime="image/png", dc=home_dc)
    world.add_document(pictures, name="mandelbrot.jpg", size=large_size, mime="image/jpeg",
                       source=large_jpg, dc=home_dc)
    world.add_document(pictures, name="testcard.png", size=png_size, mime="image/png", source=png,
                       dc=foreign[1 % len(foreign)])

    music = world.add_channel("Music", members=owners)
    wav = chord_wav()
    world.add_document(music, name="c-major.wav", size=len(wav), mime="audio/x-wav",
                       source=BytesSource(wav), dc=foreign[2 % len(foreign)],
                       audio=Audio(duration=3, title="C major", performer="tgdav sandbox"))

    videos = world.add_channel("Videos", members=owners)
    clip, clip_size = _file("clip.mp4")
    world.add_document(videos, name="clip.mp4", size=clip_size, mime="video/mp4", source=clip,
                       dc=foreign[-1], video=Video(duration=6.0, w=320, h=240, supports_streaming=True),
                       text="A 6 second test card")

    archive = world.add_channel("Archive", members=owners)
    world.add_document(archive, name="big.bin", size=big_size, mime="application/octet-stream",
                       dc=foreign[0], text="Synthetic bytes: any size, no disk")
    moved = world.add_document(archive, name="moved.bin", size=3 << 20, mime="application/octet-stream",
                               dc=foreign[1 % len(foreign)], text="Its message names a DC that no longer holds it")
    if len(world.dc_ids) > 1:
        world.make_stale(moved.media)
    for i in range(12):
        world.add_document(archive, name=f"part-{i:02d}.bin", size=(i + 1) * 100_000,
                           mime="application/octet-stream")

    world.add_channel(UPLOADS, members=owners, creator=owners[0], admins=[owners[1]])
    return world
