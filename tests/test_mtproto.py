"""The Telethon boundary (tgdav/telegram/mtproto.py): the version pin is kept at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tgdav.errors import ConfigError
from tgdav.telegram import mtproto

ROOT = Path(__file__).resolve().parent.parent


def test_the_tested_release_is_accepted_and_others_are_refused():
    mtproto.check_version(mtproto.TESTED + ".0")
    mtproto.check_version(mtproto.TESTED + ".7")
    for other in ("1.44.0", "1.46.0", "2.0.0", mtproto.TESTED + "0.1"):
        with pytest.raises(ConfigError, match=f"Telethon {other} is installed"):
            mtproto.check_version(other)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["demo", "--port", "0"], ["ls", "/"]])
def test_another_telethon_is_refused_at_start_in_one_line(tmp_path, command):
    """A Telethon release other than the tested one stops `tgdav serve` / `demo` / `ls` before
    anything connects: exit 1, one line on stderr naming both releases and the fix."""
    code = ("import sys, telethon; telethon.__version__ = '1.99.0'; from tgdav.cli import main; "
            f"sys.exit(main({command!r}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TGDAV_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT), TGDAV_API_ID="1", TGDAV_API_HASH="h",
               TGDAV_AUTH="none")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=50)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Telethon 1.99.0 is installed" in lines[0] and f"telethon=={mtproto.TESTED}.*" in lines[0]
    assert done.stdout == ""
