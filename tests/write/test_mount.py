"""`rclone mount --vfs-cache-mode writes` on a writable folder: cp, mkdir, mv, rm as a user would,
checked through tgdav's HTTP side (what Telegram now holds)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers import wait_until
from tests.e2e.test_rclone import _unmount
from tests.write.conftest import http as request, random_bytes, sha256

MiB = 1024 * 1024


@pytest.fixture
def mounted(folder, tmp_path):
    assert shutil.which("fusermount3") and os.path.exists("/dev/fuse"), "fuse3 is needed (see .ci/run)"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = open(tmp_path / "rclone-mount.log", "wb")
    proc = subprocess.Popen(["rclone", "mount", ":webdav:", str(mnt), "--webdav-url", folder,
                             "--webdav-vendor", "other", "--vfs-cache-mode", "writes",
                             "--vfs-write-back", "0s", "--dir-cache-time", "1s",
                             "--cache-dir", str(tmp_path / "cache")],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:

        def mounted() -> bool:
            assert proc.poll() is None, (tmp_path / "rclone-mount.log").read_text()[-2000:]
            return os.path.ismount(mnt)
        wait_until(mounted, 30, "rclone mount up", interval=0.1)
        yield mnt, folder
    finally:
        _unmount(mnt)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        _unmount(mnt)


def _eventually(check) -> None:
    """rclone uploads a closed file in the background: wait until the server shows the result."""
    wait_until(check, 60, "the change reached the server", interval=0.2)


def test_cp_mkdir_mv_rm_through_an_rclone_mount(mounted, tmp_path):
    mnt, url = mounted
    data = random_bytes(2 * MiB + 321, 100)
    src = tmp_path / "photo ü.jpg"
    src.write_bytes(data)
    shutil.copy(src, mnt / "photo ü.jpg")
    os.mkdir(mnt / "album")
    _eventually(lambda: request("GET", url + "photo%20%C3%BC.jpg")[2] == data)
    assert request("PROPFIND", url + "album/", headers={"Depth": "0"})[0] == 207
    os.rename(mnt / "photo ü.jpg", mnt / "album" / "renamed.jpg")
    _eventually(lambda: request("GET", url + "photo%20%C3%BC.jpg")[0] == 404)
    assert sha256(request("GET", url + "album/renamed.jpg")[2]) == sha256(data)
    assert sha256((mnt / "album" / "renamed.jpg").read_bytes()) == sha256(data)
    os.remove(mnt / "album" / "renamed.jpg")
    _eventually(lambda: request("GET", url + "album/renamed.jpg")[0] == 404)
    os.rmdir(mnt / "album")
    _eventually(lambda: request("PROPFIND", url + "album/", headers={"Depth": "0"})[0] == 404)
