"""Other real clients: ffprobe/ffmpeg (as a media player seeks) and cadaver."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse

import pytest

from tests.e2e.conftest import BIG_NAME, CHANNEL_A, CHANNEL_B, MP4_NAME, sha256_file


def mp4_url(e2e) -> str:
    return e2e.url + urllib.parse.quote(CHANNEL_B) + "/" + MP4_NAME


# ---- 7. media ----------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")
def test_ffprobe_reads_the_duration(e2e):
    p = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", mp4_url(e2e)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    served = float(json.loads(p.stdout)["format"]["duration"])
    local = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json",
                            str(e2e.source(CHANNEL_B, MP4_NAME))], capture_output=True, text=True, timeout=60)
    assert served == float(json.loads(local.stdout)["format"]["duration"])
    assert 3.5 < served < 4.5


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_seeks_into_the_served_video(e2e):
    p = subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-ss", "2", "-i", mp4_url(e2e),
                        "-frames:v", "1", "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    # and a decoded frame at 2 s equals the one decoded from the source file
    def frame(src: str) -> bytes:
        q = subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-ss", "2", "-i", src, "-frames:v", "1",
                            "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=60)
        assert q.returncode == 0, q.stderr
        return q.stdout
    assert frame(mp4_url(e2e)) == frame(str(e2e.source(CHANNEL_B, MP4_NAME)))


# ---- 8. cadaver --------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("cadaver") is None, reason="cadaver not installed")
def test_cadaver_lists_and_gets(e2e, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "got.bin"
    script = f'cd {CHANNEL_A}\nls\nget "{BIG_NAME}" {out}\nquit\n'
    p = subprocess.run(["cadaver", e2e.url], input=script, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HOME": str(home)}, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    for name in e2e.files[CHANNEL_A]:
        assert name in p.stdout, (name, p.stdout)
    assert out.exists(), p.stdout + p.stderr
    assert sha256_file(out) == sha256_file(e2e.source(CHANNEL_A, BIG_NAME))
