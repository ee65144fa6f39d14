"""Listings kept current from Telegram's updates (issue 18): a post, an edit or a deletion made by
another client reaches tgdav's listing without a getHistory; a gap (updates lost) and a restart are
healed with getChannelDifference from the kept pts; a gap older than Telegram keeps reads the channel
again. Counters are the sandbox's (requests:GetHistory, requests:GetChannelDifference)."""

from __future__ import annotations

import time

from tests.helpers import wait_until
from tests.read_path.conftest import delta


def history(sb) -> int:
    return sb.total("requests:GetHistory")


def test_a_post_edit_and_delete_elsewhere_reach_the_listing_without_get_history(sandbox, sides, poster):
    reader = sides()
    before = reader.names()                      # the first look reads the history once
    reads = history(sandbox)
    message = poster.post("elsewhere.bin")
    assert wait_until(lambda: "elsewhere.bin" in reader.names())
    folder = reader.folder()
    etag = reader.call(reader.catalog.entry(folder, "elsewhere.bin")).etag
    time.sleep(1.1)                              # the edit date must differ by a second to show
    poster.edit(message, "a caption")
    assert wait_until(lambda: reader.call(reader.catalog.entry(folder, "elsewhere.bin")).etag != etag)
    poster.delete(message.id)
    assert wait_until(lambda: reader.names() == before)
    time.sleep(0.5)                              # listing_refresh is 0.2 s: polling would have read by now
    reader.names()
    assert history(sandbox) == reads
    stats = reader.updates.stats()[sandbox.channel.id]
    assert stats["updates"] >= 3 and stats["pts"] == sandbox.channel.pts


def test_lost_updates_are_healed_with_get_channel_difference(sandbox, sides, poster):
    reader = sides()
    reader.names()
    reads, diffs = history(sandbox), sandbox.total("requests:GetChannelDifference")
    sandbox.faults({"drop_updates": 2})
    for name in ("gap1.bin", "gap2.bin", "gap3.bin"):
        poster.post(name)
    assert wait_until(lambda: {"gap1.bin", "gap2.bin", "gap3.bin"} <= set(reader.names()))
    reader.settle()
    assert sandbox.total("updates_dropped") == 2
    assert sandbox.total("requests:GetChannelDifference") > diffs
    assert history(sandbox) == reads
    assert reader.updates.stats()[sandbox.channel.id]["gaps_healed"] >= 1
    assert reader.catalog.pts_of(sandbox.channel.id) == sandbox.channel.pts


def restarted(sides, sandbox, state, while_down):
    """A reader lists the channel and stops; while_down() runs; a reader starts again on the same
    state and has caught up. That reader, and the sandbox's counters from before it started."""
    reader = sides(state)
    reader.names()
    reader.close()
    while_down()
    before = sandbox.snapshot()
    again = sides(state)
    again.settle()
    return again, before


def test_a_restart_catches_up_with_get_channel_difference_only(sandbox, sides, poster, tmp_path):
    def while_down():
        posted = [poster.post(f"while-down-{i}.bin") for i in range(7)]
        poster.delete(posted[0].id)
    again, before = restarted(sides, sandbox, tmp_path / "restarted", while_down)
    names = again.names()
    assert {f"while-down-{i}.bin" for i in range(1, 7)} <= set(names)
    assert "while-down-0.bin" not in names
    after = sandbox.snapshot()
    assert delta(before, after, "requests:GetHistory") == 0
    assert delta(before, after, "requests:GetChannelDifference") > 0
    assert again.catalog.pts_of(sandbox.channel.id) == sandbox.channel.pts


def test_a_gap_older_than_telegram_keeps_reads_the_channel_again(sandbox, sides, poster, tmp_path):
    def while_down():
        for i in range(4):
            poster.post(f"long-gone-{i}.bin")
        sandbox.faults({"message_box": 2})
    again, before = restarted(sides, sandbox, tmp_path / "too-long", while_down)
    assert {f"long-gone-{i}.bin" for i in range(4)} <= set(again.names())
    after = sandbox.snapshot()
    assert delta(before, after, "channel_differences_too_long") == 1
    assert delta(before, after, "requests:GetHistory") == 1
    assert again.updates.stats()[sandbox.channel.id]["too_long"] == 1


def test_status_page_and_metrics_show_each_channels_pts_last_update_and_gaps(sandbox, sides, poster):
    from prometheus_client.parser import text_string_to_metric_families

    from tgdav.dav.face import Face
    from tgdav.metrics import Metrics
    from tgdav.telegram.catalog import SyncCatalog

    reader = sides()
    reader.names()
    sandbox.faults({"drop_updates": 1})
    poster.post("status-1.bin")
    poster.post("status-2.bin")
    assert wait_until(lambda: {"status-1.bin", "status-2.bin"} <= set(reader.names()))
    reader.settle()
    metrics = Metrics()
    metrics.set_updates_source(reader.updates.stats)
    face = Face(lambda environ, start: [], SyncCatalog(reader.bridge, reader.catalog), metrics)
    channel = str(sandbox.channel.id)

    samples = {(s.name, s.labels.get("channel")): s.value
               for family in text_string_to_metric_families(metrics.exposition()[1].decode())
               for s in family.samples}
    assert samples[("tgdav_channel_pts", channel)] == sandbox.channel.pts
    assert samples[("tgdav_channel_gaps_healed_total", channel)] >= 1
    assert samples[("tgdav_channel_last_update_timestamp_seconds", channel)] > 0

    live = face.status_data()["live"][channel]
    assert live["pts"] == sandbox.channel.pts and live["gaps_healed"] >= 1
    body = face.status_body()
    assert "<h2>Live updates</h2>" in body and ">Live</td>" in body


def test_a_channel_renamed_elsewhere_is_renamed_in_the_root_listing(sandbox, sides, poster):
    from telethon.tl import functions, types

    reader = sides()
    reader.names()
    dialogs = sandbox.total("requests:GetDialogs")
    channel = types.InputChannel(sandbox.channel.id, sandbox.channel.access_hash)

    async def titles():
        return {f.title for f in await reader.catalog.folders()}
    try:
        poster.call(poster.client(functions.channels.EditTitleRequest(channel, "Live renamed")))
        assert wait_until(lambda: "Live renamed" in reader.call(titles()))    # updateChannel, then the list
    finally:
        poster.call(poster.client(functions.channels.EditTitleRequest(channel, "Live")))
    assert wait_until(lambda: "Live" in reader.call(titles()))
    assert sandbox.total("requests:GetDialogs") == dialogs + 2          # read again once per change


def test_a_burst_of_posts_is_applied_in_order_without_a_difference(sandbox, sides, poster):
    import asyncio

    from telethon.tl import types

    reader = sides()
    reader.names()
    diffs = sandbox.total("requests:GetChannelDifference")
    names = [f"burst-{i}.bin" for i in range(12)]

    async def burst():
        await asyncio.gather(*(poster.client.send_file(
            poster.peer, b"z" * 50, force_document=True, attributes=[types.DocumentAttributeFilename(n)])
            for n in names))
    poster.call(burst())
    assert wait_until(lambda: set(names) <= set(reader.names()))
    reader.settle()
    assert reader.catalog.pts_of(sandbox.channel.id) == sandbox.channel.pts
    assert sandbox.total("requests:GetChannelDifference") == diffs      # no gap was seen where none was
    assert reader.updates.stats()[sandbox.channel.id]["gaps_healed"] == 0


def test_a_pts_less_copy_fetched_before_a_folder_move_never_undoes_it(sandbox, sides):
    """MKCOL d3 then MOVE d3 -> d2 in one second (the write-history checker's seed 701): the MOVE is
    one edit of the marker. Telethon fills a gap it sees with its own getChannelDifference and
    dispatches the new messages with pts 0; one fetched before the edit lands after the edit's own
    answer. It must not take the folder back to d3: the listing keeps d2 (what Telegram holds), and
    after the heal such an update starts, still does."""
    from telethon.tl import types
    from tgdav.telegram import tree
    from tests.live.conftest import POSTER
    from tgdav.telegram.writer import Writer

    reader = sides(phone=POSTER)       # tgdav as the account that may post in the channel
    plain = sides(tgdav=False)         # a plain Telethon client: what Telegram holds
    reader.names()
    folder = reader.folder()
    assert folder.writable
    home = reader.client.session.dc_id
    writer = Writer(reader.client, lambda request: reader.pool.invoke(home, request), reader.catalog)

    def node(*path):
        return reader.call(reader.catalog.node(folder, path))

    for attempt in range(10):          # the post and its edit must share a second (dates cannot order them)
        src, dst = f"d{attempt}", f"moved{attempt}"
        reader.call(writer.mkdir(folder, (src,)))
        marker = node(src).markers[0]
        fetched = reader.call(reader.client.get_messages(reader.peer, ids=marker))   # the gap fill's copy
        reader.call(writer.move(folder, (src,), (dst,)))
        held = plain.call(plain.client.get_messages(plain.peer, ids=marker))      # what Telegram holds
        assert held.message == f"#tgdav dir /{dst}"
        if int(held.edit_date.timestamp()) == int(held.date.timestamp()):
            break
    else:
        raise AssertionError("no post and edit in one second in 10 tries")
    assert fetched.message == f"#tgdav dir /{src}"
    reader.call(reader.updates.apply(types.UpdateNewChannelMessage(fetched, pts=0, pts_count=0)))
    assert isinstance(node(dst), tree.Dir) and node(src) is None
    reader.settle()                    # the heal that pts-less update started
    assert isinstance(node(dst), tree.Dir) and node(src) is None
    assert reader.catalog.pts_of(sandbox.channel.id) == sandbox.channel.pts


def test_a_lost_edit_followed_only_by_a_deletion_still_reaches_the_listing(sandbox, sides, poster):
    """The end of a folder COPY to another channel is one edit (its hold becomes a delete journal)
    and then deletions: no new message follows. When a push is lost there, Telethon's own message
    box sees the gap first and fills it with its own getChannelDifference; in Telethon 1.45 it sets
    its pts to the difference's before it applies the difference's edits and deletions, so it
    skips them all and dispatches nothing (only new messages are dispatched, with pts 0). The
    listing must learn of the edit and the deletion all the same."""
    reader = sides()
    keep, gone = poster.post("keep.bin"), poster.post("gone.bin")
    assert wait_until(lambda: {"keep.bin", "gone.bin"} <= set(reader.names()))
    reader.settle()
    folder = reader.folder()
    etag = reader.call(reader.catalog.entry(folder, "keep.bin")).etag
    time.sleep(1.1)                              # the edit date must differ by a second to show
    dropped = sandbox.total("updates_dropped")
    sandbox.faults({"drop_updates": 1})
    poster.edit(keep, "a caption")               # lost on the way
    poster.delete(gone.id)                       # arrives: a gap before it, and nothing after
    assert wait_until(lambda: "gone.bin" not in reader.names(), 20)
    assert wait_until(lambda: reader.call(reader.catalog.entry(folder, "keep.bin")).etag != etag, 20)
    reader.settle()
    assert sandbox.total("updates_dropped") == dropped + 1
    assert reader.catalog.pts_of(sandbox.channel.id) == sandbox.channel.pts
