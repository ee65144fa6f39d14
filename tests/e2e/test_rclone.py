"""rclone as a real WebDAV client: lsjson, copy, and a read-only FUSE mount."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.e2e.conftest import BIG_NAME, CHANNEL_A, CHANNEL_B, MP4_NAME, sha256, sha256_file

pytestmark = pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone not installed")


def rclone_args(e2e) -> list[str]:
    return ["--webdav-url", e2e.url, "--webdav-vendor", "other", "--config", str(e2e.root / "rclone.conf")]


def rclone(e2e, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["rclone", *args, *rclone_args(e2e)], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_lsjson_recursive_names_and_sizes(e2e):
    p = rclone(e2e, "lsjson", "-R", ":webdav:")
    assert p.returncode == 0, p.stderr.decode()
    items = json.loads(p.stdout)
    got = {(i["Path"], None if i["IsDir"] else i["Size"]) for i in items}
    want = {(ch, None) for ch in e2e.files}
    want |= {(f"{ch}/{name}", path.stat().st_size) for ch, files in e2e.files.items() for name, path in files.items()}
    assert got == want


@pytest.mark.parametrize("channel", [CHANNEL_A, CHANNEL_B])
def test_copy_channel_every_file_intact(e2e, tmp_path, channel):
    dest = tmp_path / "copy"
    p = rclone(e2e, "copy", f":webdav:{channel}", str(dest))
    assert p.returncode == 0, p.stderr.decode()
    got = {f.name: sha256_file(f) for f in dest.iterdir()}
    want = {name: sha256_file(path) for name, path in e2e.files[channel].items()}
    assert got == want


# ---- 6. FUSE mount ---------------------------------------------------------------------------

def _unmount(mnt: Path) -> None:
    for args in (["fusermount3", "-u", str(mnt)], ["fusermount3", "-uz", str(mnt)], ["umount", "-l", str(mnt)]):
        if not os.path.ismount(mnt):
            return
        subprocess.run(args, capture_output=True, timeout=30)
        try:
            wait_until(lambda: not os.path.ismount(mnt), 5, "unmounted", interval=0.1)
        except AssertionError:
            continue        # the next, stronger way


@pytest.fixture(scope="module")
def mount(e2e, tmp_path_factory):
    if shutil.which("fusermount3") is None or not os.path.exists("/dev/fuse"):
        pytest.skip("no FUSE here")
    mnt = tmp_path_factory.mktemp("mnt")
    log = open(mnt.parent / "rclone-mount.log", "wb")
    proc = subprocess.Popen(["rclone", "mount", ":webdav:", str(mnt), "--read-only", "--vfs-cache-mode", "off",
                             "--dir-cache-time", "5s", *rclone_args(e2e)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:

        def mounted() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"rclone mount exited with {proc.returncode}: "
                            f"{(mnt.parent / 'rclone-mount.log').read_text()[-2000:]}")
            return os.path.ismount(mnt)
        wait_until(mounted, 30, "rclone mount up", interval=0.1)
        yield mnt
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


def test_mount_lists_channels_and_files(mount, e2e):
    assert sorted(os.listdir(mount)) == sorted(e2e.files)
    for ch, files in e2e.files.items():
        assert sorted(os.listdir(mount / ch)) == sorted(files)
        for name, path in files.items():
            assert (mount / ch / name).stat().st_size == path.stat().st_size


def test_mount_whole_read(mount, e2e):
    for ch, name in ((CHANNEL_A, BIG_NAME), (CHANNEL_B, MP4_NAME)):
        assert sha256_file(mount / ch / name) == sha256_file(e2e.source(ch, name))


def test_mount_seek_and_read(mount, e2e):
    src = e2e.source(CHANNEL_A, BIG_NAME).read_bytes()
    with open(mount / CHANNEL_A / BIG_NAME, "rb") as f:
        for offset, length in ((2 * 1024 * 1024 + 5, 100_000), (17, 4096), (len(src) - 33, 1000),
                               (1024 * 1024 - 1, 2)):
            f.seek(offset)
            got = f.read(length)
            want = src[offset:offset + length]
            assert len(got) == len(want) and sha256(got) == sha256(want), offset
