"""tgdav.metrics on its own: the read path's interface lands in the Prometheus exposition (read back
with prometheus_client's own parser), sources are read at scrape time, registries are not shared, and
the catalog's scan progress reaches the status data."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families
from telethon import types

from tgdav.metrics import Metrics, explain
from tgdav.telegram.catalog import TelegramCatalog


def samples(metrics: Metrics) -> dict[tuple[str, frozenset], float]:
    content_type, body = metrics.exposition()
    assert content_type.startswith("text/plain; version=")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def value(metrics: Metrics, name: str, **labels) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_read_path_interface_is_exposed_with_dc_labels():
    m = Metrics()
    m.getfile_done(2, 131072, 0.04)
    m.getfile_done(2, 65536, 0.02)
    m.getfile_done(4, 1000, 0.3)
    m.getfile_failed(4, "TIMEOUT")
    m.file_migrate(2, 4)
    m.flood_wait(4, 7, account_wide=False)
    m.flood_wait(2, 30, account_wide=True)
    m.export(4)
    m.reference_refresh()
    m.cache_read(hit_bytes=1000, miss_bytes=3000)
    m.dropped_answer(4)
    m.upload_opened()
    m.upload_part(2, 524288)
    m.upload_closed(ok=False, error="FILE_PARTS_INVALID")
    m.stream_opened()
    m.stream_opened()
    m.stream_closed()
    assert value(m, "tgdav_getfile_requests_total", dc="2") == 2
    assert value(m, "tgdav_getfile_bytes_total", dc="2") == 131072 + 65536
    assert value(m, "tgdav_getfile_bytes_total", dc="4") == 1000
    assert value(m, "tgdav_getfile_seconds_count", dc="2") == 2
    assert value(m, "tgdav_getfile_seconds_bucket", dc="4", le="0.5") == 1
    assert value(m, "tgdav_getfile_seconds_bucket", dc="4", le="0.25") == 0
    assert value(m, "tgdav_getfile_errors_total", dc="4", error="TIMEOUT") == 1
    assert value(m, "tgdav_file_migrations_total", dc="2", to_dc="4") == 1
    assert value(m, "tgdav_flood_wait_seconds_count", dc="4", scope="sender") == 1
    assert value(m, "tgdav_flood_wait_seconds_sum", dc="2", scope="account") == 30
    assert value(m, "tgdav_exports_total", dc="4") == 1
    assert value(m, "tgdav_file_reference_refreshes_total") == 1
    assert value(m, "tgdav_cache_read_bytes_total", result="hit") == 1000
    assert value(m, "tgdav_cache_read_bytes_total", result="miss") == 3000
    assert value(m, "tgdav_dropped_answers_total", dc="4") == 1
    assert value(m, "tgdav_active_streams") == 1
    assert value(m, "tgdav_upload_bytes_total", dc="2") == 524288
    assert value(m, "tgdav_upload_files_total", result="failed") == 1
    assert value(m, "tgdav_active_uploads") == 0
    # errors a person should read about, in words; the flood's seconds included
    texts = [text for _, text in m.activity.errors()]
    assert any("FLOOD_PREMIUM_WAIT 30 s" in t and "whole account" in t for t in texts)
    assert any("TIMEOUT" in t and "took too long" in t for t in texts)


def test_sources_are_read_at_scrape_time_and_a_failing_one_is_absent():
    m = Metrics()
    state = {3: {"senders": 2, "busy": 1, "draining": 0, "gated": 1, "gate_seconds": 12.5}}
    m.set_pool_source(lambda: state)
    m.set_cache_source(lambda: {"bytes": 4096, "count": 2, "limit": 1 << 30})
    assert value(m, "tgdav_senders", dc="3") == 2
    assert value(m, "tgdav_senders_gated", dc="3") == 1
    assert value(m, "tgdav_flood_gate_seconds", dc="3") == 12.5
    assert value(m, "tgdav_cache_bytes") == 4096
    assert value(m, "tgdav_cache_limit_bytes") == 1 << 30
    state[3]["senders"] = 5
    assert value(m, "tgdav_senders", dc="3") == 5

    def broken():
        raise RuntimeError("pool gone")
    m.set_pool_source(broken)
    assert value(m, "tgdav_senders", dc="3") is None
    assert value(m, "tgdav_cache_bytes") == 4096


def test_redis_state_is_exposed_only_when_replicas_share_redis():
    m = Metrics()
    assert value(m, "tgdav_redis_up") is None and m.shared_state() == {}
    state = {"up": True, "away_seconds": 0.0, "failures": 0, "last_error": ""}
    m.set_shared_source(lambda: state)
    assert value(m, "tgdav_redis_up") == 1 and value(m, "tgdav_redis_failures_total") == 0
    state.update(up=False, away_seconds=4.0, failures=2, last_error="ConnectionError: refused")
    assert value(m, "tgdav_redis_up") == 0 and value(m, "tgdav_redis_failures_total") == 2


def test_each_metrics_has_its_own_registry():
    a, b = Metrics(), Metrics()
    a.export(2)
    assert value(a, "tgdav_exports_total", dc="2") == 1
    assert value(b, "tgdav_exports_total", dc="2") is None


@pytest.mark.parametrize("code, words", [("FLOOD_WAIT_30", "slow down"), ("FILE_MIGRATE_4", "another data"),
                                         ("SOMETHING_NEW", "SOMETHING_NEW")])
def test_errors_are_explained(code, words):
    assert words in explain(code)


WHEN = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)


class _BigChannel:
    """A user client that reads one channel holding `count` text messages, paged as
    messages.getHistory pages them."""

    def __init__(self, count: int) -> None:
        self.count, self.calls = count, 0
        self.channel = types.Channel(id=77, title="Big channel", photo=types.ChatPhotoEmpty(), date=WHEN,
                                     broadcast=True, access_hash=1)

    async def iter_dialogs(self):
        yield _Dialog(self.channel)

    async def __call__(self, request):
        self.calls += 1
        top = request.offset_id - 1 if request.offset_id else self.count
        ids = range(top, max(top - request.limit, 0), -1)
        return types.messages.ChannelMessages(
            pts=1, count=self.count, chats=[], users=[], topics=[],
            messages=[types.Message(id=i, peer_id=types.PeerChannel(77), date=WHEN, message="hi") for i in ids])


class _Dialog:
    def __init__(self, entity) -> None:
        self.entity = entity


class _Store:
    def listing(self, key):
        return None

    def remember_listing(self, key, value):
        pass


def test_first_scan_of_a_big_channel_reports_progress(caplog):
    metrics = Metrics()
    client = _BigChannel(12_345)
    catalog = TelegramCatalog(client, _Store(), progress=metrics.scan_progress)

    async def scan():
        folder = await catalog.folder("Big channel")
        return await catalog.entries(folder)

    with caplog.at_level("INFO", logger="tgdav.catalog"):
        assert asyncio.run(scan()) == []          # text messages only: no files
    assert client.calls == 124
    scans = metrics.activity.scans()
    assert [(s["channel"], s["messages"], s["done"]) for s in scans] == [("Big channel", 12_345, True)]
    assert value(metrics, "tgdav_catalog_messages_scanned_total") == 12_345
    progress = [r.getMessage() for r in caplog.records if r.name == "tgdav.catalog"]
    assert any("10000 messages so far" in line for line in progress), progress
    assert any("scanned 12345 messages" in line for line in progress), progress
