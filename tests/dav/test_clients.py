"""Real WebDAV clients against the server: rclone (listing, copy, Basic auth) and cadaver."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import datetime, timezone

import pytest

from tgdav.sandbox.content import pattern


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def rclone(tmp_path):
    """rclone(url, *args, user=None, password=None): stdout of an rclone run with a throwaway config."""
    config = tmp_path / "rclone.conf"
    config.write_text("")

    def run(url: str, *args: str, user: str | None = None, password: str | None = None) -> str:
        auth = []
        if user is not None:
            obscured = subprocess.run(["rclone", "obscure", password], capture_output=True, text=True,
                                      check=True).stdout.strip()
            auth = ["--webdav-user", user, "--webdav-pass", obscured]
        cmd = ["rclone", "--config", str(config), *args, "--webdav-url", url, "--webdav-vendor", "other",
               "--low-level-retries", "1", "--retries", "1", *auth]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout

    return run


def test_rclone_lsjson_matches_the_catalog(dav, rclone):
    listed = {item["Path"]: item for item in json.loads(rclone(dav.url, "lsjson", "-R", ":webdav:"))}
    expected = {name: None for name in dav.catalog.tree}
    for folder, entries in dav.catalog.tree.items():
        expected.update({f"{folder}/{e.name}": e for e in entries})
    assert set(listed) == set(expected)
    for path, entry in expected.items():
        item = listed[path]
        if entry is None:
            assert item["IsDir"] is True
            continue
        assert (item["IsDir"], item["Size"]) == (False, entry.size)
        modified = datetime.fromisoformat(item["ModTime"].replace("Z", "+00:00"))
        assert modified == datetime.fromtimestamp(int(entry.modified), timezone.utc)
    assert dav.reader.opens == []


def test_rclone_copy_of_a_folder_with_basic_auth(serve, rclone, tmp_path):
    dav = serve(users={"reader": "pa ss:wörd"}, auth="basic")
    for folder in ("Films", "Música ünï"):
        target = tmp_path / folder
        rclone(dav.url, "copy", f":webdav:{folder}", str(target), user="reader", password="pa ss:wörd")
        entries = dav.catalog.tree[folder]
        assert sorted(os.listdir(target)) == sorted(e.name for e in entries)
        for entry in entries:
            got = (target / entry.name).read_bytes()
            assert sha256(got) == sha256(pattern(entry.location.id, 0, entry.size)), entry.name
    with pytest.raises(subprocess.CalledProcessError):
        rclone(dav.url, "lsjson", ":webdav:Films", user="reader", password="wrong")


def test_cadaver_lists_a_folder_and_gets_a_file(dav, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    target = tmp_path / "clip.mp4"
    script = f'cd Films\nls\nget "clip #1 100% what?.mp4" {target}\nquit\n'
    out = subprocess.run(["cadaver", dav.url + "/"], input=script, capture_output=True, text=True,
                         env={"HOME": str(home), "PATH": os.environ["PATH"]}, timeout=120).stdout
    for entry in dav.catalog.tree["Films"]:
        assert entry.name in out
        assert str(entry.size) in out
    assert sha256(target.read_bytes()) == sha256(pattern(11, 0, 5 * 2**20 + 17))
