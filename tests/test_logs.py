"""[log] telethon and [metrics] listen: parsed and checked like every key; Telethon's loggers stay at
warning under --log-level debug unless asked; `tgdav serve` refuses a metrics address it cannot bind."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

import pytest

from tgdav import logs
from tgdav.cli import LOG_FORMAT
from tgdav.config import load_config
from tgdav.errors import ConfigError
from tgdav.metrics import Metrics, serve_metrics


@pytest.fixture
def restore_logging():
    root, telethon = logging.getLogger().level, logging.getLogger("telethon").level
    yield
    logging.getLogger().setLevel(root)
    logging.getLogger("telethon").setLevel(telethon)


@pytest.mark.parametrize("level, telethon, tgdav_debug, telethon_level", [
    ("debug", None, True, logging.ERROR),          # the default: Telethon's reconnect warnings stay out
    ("debug", "debug", True, logging.DEBUG),
    ("info", "info", False, logging.INFO),
])
def test_telethon_keeps_its_own_level(restore_logging, level, telethon, tgdav_debug, telethon_level):
    logs.setup(level, LOG_FORMAT, telethon)
    assert logging.getLogger("tgdav.pool").isEnabledFor(logging.DEBUG) is tgdav_debug
    assert logging.getLogger("telethon.network.mtprotosender").getEffectiveLevel() == telethon_level
    assert not logging.getLogger("wsgidav.request_server").isEnabledFor(logging.INFO)


def test_log_and_metrics_keys(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[log]\ntelethon = "Debug"\n[metrics]\nlisten = "[::1]:9108"\n')
    config = load_config(str(path), env={"HOME": str(tmp_path)})
    assert (config.log.telethon, config.metrics.listen) == ("debug", "[::1]:9108")
    assert load_config(None, env={"HOME": str(tmp_path), "TGDAV_METRICS_LISTEN": "127.0.0.1:0"}
                       ).metrics.listen == "127.0.0.1:0"
    for bad in ("9108", "127.0.0.1:", "127.0.0.1:99999", "host:port"):
        path.write_text(f'[metrics]\nlisten = "{bad}"\n')
        with pytest.raises(ConfigError, match=r"\[metrics\] listen = .* is not host:port — write an address"):
            load_config(str(path), env={"HOME": str(tmp_path)})


def test_metrics_listener_serves_the_registry_and_refuses_a_taken_port():
    metrics = Metrics()
    metrics.export(3)
    server, url = serve_metrics("127.0.0.1:0", metrics)
    try:
        out = subprocess.run(["curl", "-sS", url], capture_output=True, text=True, timeout=30, check=True).stdout
        assert 'tgdav_exports_total{dc="3"} 1.0' in out
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(ConfigError, match=r"cannot serve metrics on 127\.0\.0\.1:\d+ \(.*\) — choose"):
                serve_metrics(f"127.0.0.1:{taken.getsockname()[1]}", metrics)
    finally:
        server.shutdown()
        server.server_close()


def test_no_traceback_for_a_bad_metrics_address(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[metrics]\nlisten = "nowhere"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TGDAV_")} | {"HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "tgdav", "--config", str(path), "cache", "stats"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"tgdav: error: {path}: [metrics] listen = 'nowhere' is not host:port — "), r.stderr
