"""Big channels (issue 16): the root lists without reading any history; a channel's history is read
once, ceil(count / 100) getHistory calls, inside the account's getHistory flood rule; a new post
is stored as one small piece of the listing; no periodic full re-read. Counted on the sandbox."""

from __future__ import annotations

import math
import threading
import urllib.request
import xml.etree.ElementTree as ET
from email.utils import formatdate
from urllib.parse import unquote

import pytest

from tests.helpers import wait_until
from tests.read_path.conftest import CHANNEL, HOME_DC, delta, running_sandbox
from tgdav.dav.server import build_app, make_server
from tgdav.cache.reader import SyncReader
from tgdav.sandbox.world import World
from tgdav.telegram.catalog import SEGMENT, SyncCatalog

BIG = 2345           # posts in the big channel: 24 pages
TITLES = ("Big", "Small")


@pytest.fixture(scope="module")
def big_sandbox():
    w = World(seed=16)
    user = w.add_user("+15550001616", "Lister", home_dc=HOME_DC)
    w.add_document(w.add_channel(CHANNEL, members=[user]), name="x.bin", size=10, mime="text/plain")
    big = w.add_channel("Big", members=[user])
    for i in range(BIG):
        if i % 10 == 3:
            w.add_text(big, f"just text {i}")
        else:
            w.add_document(big, name=f"post {i:05d}.bin", size=100 + i, mime="application/octet-stream")
    small = w.add_channel("Small", members=[user])
    for i in range(3):
        w.add_document(small, name=f"s{i}.bin", size=10, mime="text/plain")
    with running_sandbox(w, user, {}) as sb:
        sb.big, sb.small = big, small
        yield sb


@pytest.fixture
def sb(big_sandbox):
    big_sandbox.reset()
    yield big_sandbox
    big_sandbox.reset()


@pytest.fixture
def engine_sandbox(sb):
    return sb


def files_of(channel) -> set[str]:
    return {m.media.name for m in channel.messages if m.media is not None}


def folder_of(engine, title: str):
    return next(f for f in engine.call(engine.catalog.folders()) if f.title == title)


def propfind(url: str, depth: str) -> dict[str, dict[str, str]]:
    req = urllib.request.Request(url, method="PROPFIND", headers={"Depth": depth})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 207
        body = r.read()
    out = {}
    for response in ET.fromstring(body).iter("{DAV:}response"):
        props = {c.tag.removeprefix("{DAV:}"): (c.text or "") for p in response.iter("{DAV:}prop") for c in p}
        out[unquote(response.find("{DAV:}href").text)] = props
    return out


def serve(engine):
    app = build_app(SyncCatalog(engine.bridge, engine.catalog), SyncReader(engine.bridge, engine.reader),
                    users=None, auth="none")
    server = make_server(app, host="127.0.0.1", port=0, threads=4, timeout=30)
    server.expiration_interval = 0.02
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    return server, f"http://127.0.0.1:{server.bind_addr[1]}"


def test_root_depth_1_reads_no_history_and_dates_channels_by_their_last_message(sb, make_engine):
    engine = make_engine()
    before = sb.snapshot()
    server, url = serve(engine)
    try:
        found = propfind(url + "/", "1")
    finally:
        server.stop()
    assert delta(before, sb.snapshot(), "requests:GetHistory") == 0
    for channel in (sb.big, sb.small):
        assert found[f"/{channel.title}/"]["getlastmodified"] == formatdate(channel.top.date, usegmt=True)


def test_a_cold_channel_is_read_in_ceil_count_over_100_calls_inside_the_rate_rule(sb, make_engine):
    engine = make_engine()
    before = sb.snapshot()
    entries = engine.call(engine.catalog.entries(folder_of(engine, "Big")))
    assert {e.name for e in entries} == files_of(sb.big)
    assert delta(before, sb.snapshot(), "requests:GetHistory") == math.ceil(BIG / 100)
    assert delta(before, sb.snapshot(), "errors:FLOOD_WAIT_X") == 0
    assert engine.stats()[str(HOME_DC)]["senders"] >= 2      # pages went out on several connections


def test_the_pace_keeps_a_listing_inside_a_tight_rule(sb, make_engine):
    """The sandbox floods beyond 6 calls at once then 20 a second; tgdav paced at 5 then 15 a second
    never meets FLOOD_WAIT (unpaced, 24 parallel pages would)."""
    sb.faults({"history_rate_limit": {"per_second": 20, "burst": 6, "seconds": 30}})
    engine = make_engine(history_per_second=15, history_burst=5)
    before = sb.snapshot()
    entries = engine.call(engine.catalog.entries(folder_of(engine, "Big")))
    assert {e.name for e in entries} == files_of(sb.big)
    assert delta(before, sb.snapshot(), "errors:FLOOD_WAIT_X") == 0
    assert delta(before, sb.snapshot(), "requests:GetHistory") == math.ceil(BIG / 100)


def test_a_look_that_gives_up_does_not_cancel_the_first_read(sb, make_engine):
    """An HTTP client's timeout cancels its look, not the history read: the next look gets the
    listing it read, with no page asked twice."""
    sb.faults({"history_rate_limit": {"per_second": 20, "burst": 6, "seconds": 30}})
    engine = make_engine(history_per_second=15, history_burst=5)     # 24 pages: more than a second
    folder = folder_of(engine, "Big")
    before = sb.snapshot()
    with pytest.raises(TimeoutError):
        engine.call(engine.catalog.entries(folder), timeout=0.3)
    entries = engine.call(engine.catalog.entries(folder), timeout=60)
    assert {e.name for e in entries} == files_of(sb.big)
    assert delta(before, sb.snapshot(), "requests:GetHistory") == math.ceil(BIG / 100)


def test_a_new_post_stores_one_piece_and_refreshes_never_reread_everything(sb, make_engine, tmp_path):
    # many refreshes in a row: a generous rule (the rule itself is tested above)
    sb.faults({"history_rate_limit": {"per_second": 1000, "burst": 1000, "seconds": 3}})
    state = tmp_path / "state"
    engine = make_engine(state, history_per_second=500, history_burst=100)
    folder = folder_of(engine, "Big")
    engine.call(engine.catalog.entries(folder))
    written: list[tuple[str, int]] = []
    remember = engine.store.remember_listing
    engine.store.remember_listing = lambda key, value: (
        written.append((key, len(value) if isinstance(value, list) else 0)), remember(key, value))[-1]
    engine.catalog._refresh_seconds = 0               # every look finds the listing stale
    before = sb.snapshot()
    new = sb.world.add_document(sb.big, name="late post.bin", size=5, mime="text/plain")
    assert wait_until(lambda: "late post.bin" in {e.name for e in engine.call(engine.catalog.entries(folder))}, 10)
    assert written and all(n <= SEGMENT for _, n in written)
    pieces = {key for key, n in written if n}
    assert pieces == {f"channel:{sb.big.id}:{new.id // SEGMENT}"}
    for _ in range(35):                                # the old code re-read all 24 pages every 30th time
        assert wait_until(lambda: not engine.catalog._refreshing, 10)
        calls = delta(before, sb.snapshot(), "requests:GetHistory")
        engine.call(engine.catalog.entries(folder))
        assert wait_until(lambda: delta(before, sb.snapshot(), "requests:GetHistory") > calls, 10)
    assert wait_until(lambda: not engine.catalog._refreshing, 10)
    refreshes = delta(before, sb.snapshot(), "requests:GetHistory")
    assert refreshes <= 37                             # one call per refresh, never a whole history
    engine.close()
    again = make_engine(state, history_per_second=500, history_burst=100)   # a restart starts from the stored pieces
    before = sb.snapshot()
    names = {e.name for e in again.call(again.catalog.entries(folder_of(again, "Big")))}
    assert names == files_of(sb.big)
    assert delta(before, sb.snapshot(), "requests:GetHistory") <= 1 + 1   # "Read path" and "Big": none


def test_a_restart_keeps_the_pace_telegram_still_counts(sb, make_engine, tmp_path):
    """25 pages taken just before a restart are still owed after it: the new process does not start
    with a full bucket (it would meet FLOOD_WAIT at once under Telegram's rule)."""
    sb.faults({"history_rate_limit": {"per_second": 1000, "burst": 1000, "seconds": 3}})
    state = tmp_path / "state"
    engine = make_engine(state)                   # the default pace: 28 at once, then 1/s
    engine.call(engine.catalog.entries(folder_of(engine, "Big")))
    engine.close()
    again = make_engine(state)

    async def free():
        return again.catalog._pace.available()
    assert again.call(free()) < 10                # 28 - 25 pages, plus a few seconds of refill
