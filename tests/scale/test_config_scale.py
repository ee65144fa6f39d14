"""[state] redis and [telegram] helpers: parsed, validated with one-line errors, secret in repr, and
a Redis that does not answer stops `tgdav serve` with one clear line (no traceback)."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.conftest import TGDAV, free_port
from tests.scale.conftest import replica_config
from tgdav.config import load_config
from tgdav.errors import ConfigError


def _load(tmp_path, text: str, env: dict | None = None):
    path = tmp_path / "tgdav.toml"
    path.write_text(text)
    return load_config(str(path), env={"HOME": str(tmp_path), **(env or {})})


def test_redis_url_and_helpers_are_read_and_kept_secret(tmp_path):
    config = _load(tmp_path, '[state]\nredis = "redis://:pw@10.0.0.5:6379/2"\n'
                             '[telegram]\nhelpers = ["123:abc-DEF", "helper1"]\n')
    assert config.state.redis == "redis://:pw@10.0.0.5:6379/2"
    assert config.telegram.helpers == ("123:abc-DEF", "helper1")
    shown = repr(config)
    assert "pw@" not in shown and "abc-DEF" not in shown


def test_tgdav_redis_overrides_the_file(tmp_path):
    config = _load(tmp_path, "", env={"TGDAV_REDIS": "redis://127.0.0.1:6380/0"})
    assert config.state.redis == "redis://127.0.0.1:6380/0"


@pytest.mark.parametrize("text, words", [
    ('[state]\nredis = "localhost:6379"\n', "[state] redis = <hidden> is not a Redis URL"),
    ('[telegram]\nhelpers = "123:abc"\n', "[telegram] helpers = <hidden> is not a list of strings"),
    ('[telegram]\nhelpers = ["a/b"]\n', "neither a bot token nor a session name"),
])
def test_bad_values_are_one_line_errors(tmp_path, text, words):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_serve_with_an_unreachable_redis_says_so_in_one_line(tmp_path, scale_sandbox):
    from tests.scale.conftest import login
    config, _ = replica_config(tmp_path / "r", scale_sandbox.admin_json,
                               redis_url=f"redis://127.0.0.1:{free_port()}/0")
    login(config, scale_sandbox.info)      # logged in: what stops serve is the unreachable Redis
    done = subprocess.run(TGDAV + ["--config", str(config), "serve"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "cannot reach Redis at redis://127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_serve_with_a_helper_session_not_logged_in_says_so_in_one_line(tmp_path, scale_sandbox):
    from tests.scale.conftest import login
    config, _ = replica_config(tmp_path / "r", scale_sandbox.admin_json, extra='helpers = ["nosuch"]')
    login(config, scale_sandbox.info)
    done = subprocess.run(TGDAV + ["--config", str(config), "serve"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip() == ("tgdav: error: helper session 'nosuch' is not logged in — run "
                                   "`tgdav login --session nosuch` first"), done.stderr
