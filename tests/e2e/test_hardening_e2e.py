"""Hardening, end to end: files tgdav writes are private, and what `tgdav demo` prints works as printed
(the rclone mount line, the `tgdav ls` line) while its temporary state disappears with it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.e2e.conftest import CHANNEL_A, TGDAV, free_port, sha256, stop
from tests.e2e.test_demo import _read_until
from tests.e2e.test_rclone import _unmount


def test_every_file_in_the_state_dir_is_private(e2e):
    """Sessions, the cache's databases and chunk files: owner only (tgdav sets umask 077)."""
    url = e2e.url + urllib.request.quote(f"{CHANNEL_A}/five-thousand.bin")
    with urllib.request.urlopen(url, timeout=60) as r:
        assert sha256(r.read()) == sha256(e2e.source(CHANNEL_A, "five-thousand.bin").read_bytes())
    state = e2e.config.parent / "state"
    files = [p for p in state.rglob("*") if p.is_file()]
    assert any("cache" in p.parts for p in files) and any(p.suffix == ".session" for p in files)
    loose = {str(p.relative_to(state)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert loose == {}


def test_the_demo_commands_work_as_printed(tmp_path):
    if shutil.which("fusermount3") is None or not os.path.exists("/dev/fuse"):
        pytest.fail("fuse3 (fusermount3 and /dev/fuse) is needed: install fuse3")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    env = {k: v for k, v in env.items() if not k.startswith("TGDAV_")}
    port = free_port()
    err = open(tmp_path / "demo.err", "wb")
    demo = subprocess.Popen(TGDAV + ["demo", "--port", str(port)], stdout=subprocess.PIPE, stderr=err,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp_path, env=env)
    mount = None
    mnt = home / "tgdav"
    try:
        text = b"".join(_read_until(demo, b"serving WebDAV")).decode()
        assert not (tmp_path / "tgdav-demo").exists(), "the demo writes nothing into the current directory"
        state = Path(re.search(r"^  state +(\S+) \(temporary", text, re.M).group(1))
        assert state.is_dir()

        ls_line = re.search(r"^  tgdav +(tgdav --config \S+ ls /)$", text, re.M).group(1)
        listed = subprocess.run(ls_line.replace("tgdav", " ".join(TGDAV), 1), shell=True, env=env,
                                capture_output=True, text=True, timeout=90)
        assert listed.returncode == 0, listed.stderr
        assert {"Welcome/", "Videos/", "Archive/"} <= set(listed.stdout.split())

        mount_line = re.search(r"^ +(mkdir -p ~/tgdav && rclone mount .*)$", text, re.M).group(1)
        log = open(tmp_path / "mount.log", "wb")
        mount = subprocess.Popen(["bash", "-c", mount_line], env=env, stdout=log, stderr=log,
                                 stdin=subprocess.DEVNULL, start_new_session=True)

        def mounted() -> bool:
            assert mount.poll() is None, (tmp_path / "mount.log").read_text()[-2000:]
            return os.path.ismount(mnt)
        wait_until(mounted, 60, "rclone mount up", interval=0.2)
        assert {"Welcome", "Videos", "Archive"} <= set(os.listdir(mnt))
    finally:
        if mount is not None:
            _unmount(mnt)
            stop(mount)
        demo.send_signal(signal.SIGTERM)
        code = demo.wait(30)
        stop(demo)
    assert code == 0
    assert not state.exists(), "the temporary state is deleted when the demo stops"
