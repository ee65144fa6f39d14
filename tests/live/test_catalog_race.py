"""The catalog's own races, with a fake Telegram whose answers a test holds back (tests/live/fakes.py).
Promise guarded: a change made elsewhere reaches the listing (issue 18's first row)."""

from __future__ import annotations

import asyncio

from types import SimpleNamespace

from telethon import types

from tests.helpers import until
from tests.live.fakes import DATE, FakeClient, document_message
from tgdav.telegram import tree
from tgdav.telegram.catalog import TelegramCatalog
from tgdav.telegram.updates import LiveUpdates


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoStore:
    def listing(self, key):
        return None

    def remember_listing(self, key, value):
        pass


async def _listed(client) -> tuple[TelegramCatalog, object]:
    """A catalog of `client`'s one channel, its listing read once: (catalog, folder)."""
    catalog = TelegramCatalog(client, NoStore(), refresh_seconds=60, clock=Clock())
    folder = (await catalog.folders())[0]
    await catalog.entries(folder)
    return catalog, folder


async def _settle(catalog) -> None:
    while catalog._refreshing:
        await asyncio.gather(*catalog._refreshing.values())


def test_a_folder_reload_during_a_refresh_keeps_what_the_refresh_found():
    async def run():
        client, clock = FakeClient(), Clock()
        client.post("old.bin")
        catalog = TelegramCatalog(client, NoStore(), refresh_seconds=60, clock=clock)
        folder = (await catalog.folders())[0]
        assert [e.name for e in await catalog.entries(folder)] == ["old.bin"]

        client.post("new.bin")                      # posted elsewhere
        clock.now += 61                             # the listing and the channel list are both stale
        client.hold["GetHistory"] = asyncio.Event()
        client.hold["GetDialogs"] = asyncio.Event()
        await catalog.entries(folder)               # starts both refreshes in the background
        await until(lambda: client.calls["GetHistory"] == 2 and client.calls["GetDialogs"] == 2, 5,
                    lambda: dict(client.calls))       # both refreshes asked, both held
        client.hold.pop("GetDialogs").set()         # the channel list is read again first...
        await until(lambda: "folders" not in catalog._refreshing, 5, "the channel list read again")
        client.hold.pop("GetHistory").set()         # ...then the history answer comes back
        await _settle(catalog)

        names = [e.name for e in await catalog.entries(folder)]
        assert names == ["old.bin", "new.bin"]
    asyncio.run(run())


class PagedChannel:
    """getHistory as Telegram pages it: a window `limit` long starting `add_offset` messages below
    offset_id (0: the newest), newest first, with the channel's message count; `before(add_offset)`
    runs before a page is cut (a test deletes messages there, as another client would mid-read)."""

    def __init__(self, channel_id: int, count: int) -> None:
        self.channel = types.Channel(id=channel_id, title="Big", photo=types.ChatPhotoEmpty(), date=DATE,
                                     access_hash=5, creator=True)
        self.messages = [document_message(channel_id, mid, f"f{mid}.bin") for mid in range(1, count + 1)]
        self.before = None

    async def iter_dialogs(self):
        yield SimpleNamespace(entity=self.channel, date=self.messages[-1].date)

    async def __call__(self, request):
        if self.before is not None:
            self.before(request.add_offset)
        newest_first = self.messages[::-1]
        top = sum(1 for m in self.messages if request.offset_id and m.id >= request.offset_id)
        start = max(0, top + request.add_offset)
        window = newest_first[start:start + request.limit]
        picked = [m for m in window if m.id > request.min_id and (not request.max_id or m.id < request.max_id)]
        return types.messages.ChannelMessages(pts=1, count=len(self.messages), messages=picked, topics=[],
                                              chats=[], users=[])

    def delete(self, mid: int) -> None:
        self.messages = [m for m in self.messages if m.id != mid]


def test_a_whole_read_misses_nothing_when_messages_are_deleted_while_it_pages():
    """A whole read pages by place below the newest message; a message deleted meanwhile moves every
    older one up a place, so a page cut after it starts one message lower than its neighbour ended.
    The read finds that and reads what fell between: every message still there is listed (a file
    lost from a whole read is 404 until the next one, and to the janitor a piece set missing a piece
    is a leftover)."""
    async def run():
        fake = PagedChannel(88, 450)
        deleted: list[int] = []

        def before(add_offset: int) -> None:      # before pages 200 and 400: one newer message goes
            if add_offset in (200, 400):
                victim = fake.messages[-1 - len(deleted) * 7 - 3].id
                fake.delete(victim)
                deleted.append(victim)
        catalog = TelegramCatalog(fake, NoStore(), refresh_seconds=60, clock=Clock(), parallel=1)
        folder = (await catalog.folders())[0]
        assert len(await catalog.entries(folder)) == 450      # the first read, nothing deleted
        fake.before = before
        records = await catalog.reread(folder)
        assert len(deleted) == 2
        left = {m.id for m in fake.messages}
        assert {r.message_id for r in records} >= left, sorted(left - {r.message_id for r in records})
        assert {e.name for e in await catalog.entries(folder)} >= {f"f{mid}.bin" for mid in left}
    asyncio.run(run())


def test_an_update_fetched_before_this_writers_own_change_does_not_undo_it():
    """A heal's channelDifference (or an update) is fetched outside the catalog's lock: when it lands
    after this process's own edit (a MOVE) or deletion, it carries the message as it was before.
    Applying it would take the file back to its old path (the moved file 404 where the MOVE put it)
    or bring a deleted file back; a message is never taken back to an older edit, and an id this
    process deleted never returns (Telegram never gives an id twice)."""

    async def run():
        client, clock = FakeClient(), Clock()
        first = client.post("a.bin")
        second = client.post("b.bin")
        catalog = TelegramCatalog(client, NoStore(), refresh_seconds=60, clock=clock)
        folder = (await catalog.folders())[0]
        assert sorted(e.name for e in await catalog.entries(folder)) == ["a.bin", "b.bin"]
        stale_first, stale_second = first, second            # what a difference fetched now carries

        moved = types.Message(                           # this writer's MOVE: a new caption
            id=first.id, peer_id=first.peer_id, date=first.date, message="#tgdav file /moved/a.bin",
            media=first.media, edit_date=DATE.replace(minute=5))
        await catalog.apply(folder, [moved])
        await catalog.forget(folder, [second.id])             # this writer's DELETE
        assert await catalog.node(folder, ("moved", "a.bin")) is not None

        # the difference fetched before both changes lands now
        await catalog.apply_changes(client.channel.id, [stale_first, stale_second], [], pts=None)
        assert await catalog.node(folder, ("moved", "a.bin")) is not None
        assert [e.name for e in await catalog.entries(folder)] == []
        assert await catalog.node(folder, ("b.bin",)) is None
        # a newer edit from elsewhere still applies
        later = types.Message(id=first.id, peer_id=first.peer_id, date=first.date,
                              message="#tgdav file /later/a.bin", media=first.media,
                              edit_date=DATE.replace(minute=9))
        await catalog.apply_changes(client.channel.id, [later], [], pts=None)
        assert await catalog.node(folder, ("later", "a.bin")) is not None
    asyncio.run(run())


def test_a_late_update_of_a_post_never_undoes_its_edit_in_the_same_second():
    """An upload and its MOVE in one second (the write-history checker's seed 10: PUT then MOVE
    40 ms apart): the post's pushed update (pts 10), dispatched late, lands after the MOVE's own
    answer (an edit, pts 11) was applied. Dates cannot order them (edit date == post date); the
    pts of each version does: the moved file stays where the MOVE put it, for this process and in
    the listing it stores (what a restart starts from)."""

    async def run():
        client = FakeClient()
        posted = client.post("a.bin")
        catalog, folder = await _listed(client)
        moved = types.Message(id=posted.id, peer_id=posted.peer_id, date=posted.date,
                              message="#tgdav file /moved/a.bin", media=posted.media,
                              edit_date=posted.date)           # the same second
        await catalog.apply(folder, [moved], {posted.id: 11})
        await catalog.apply_changes(client.channel.id, [posted], [], pts=None, version=10)
        assert await catalog.node(folder, ("moved", "a.bin")) is not None
        assert await catalog.node(folder, ("a.bin",)) is None
        # the MOVE's own update, pushed as well, changes nothing; a later edit from elsewhere applies
        await catalog.apply_changes(client.channel.id, [moved], [], pts=None, version=11)
        assert await catalog.node(folder, ("moved", "a.bin")) is not None
        later = types.Message(id=posted.id, peer_id=posted.peer_id, date=posted.date,
                              message="#tgdav file /later/a.bin", media=posted.media, edit_date=posted.date)
        await catalog.apply_changes(client.channel.id, [later], [], pts=None, version=12)
        assert await catalog.node(folder, ("later", "a.bin")) is not None
    asyncio.run(run())


def test_a_pts_less_copy_of_a_folder_marker_never_undoes_its_move_in_the_same_second():
    """MKCOL d3 then MOVE d3 -> d2 in one second (the write-history checker's seed 701: the MOVE
    answered 201, then PUT d3/x 201, PROPFIND d3 207 and COPY d3 -> d2 with Overwrite: F 201 on the
    same server, while Telegram held the marker as d2). The MOVE is one edit of the marker (pts 11).
    Telethon fills a gap it sees with its own getChannelDifference and dispatches the difference's
    new messages with pts 0: fetched before the edit, the marker as MKCOL posted it lands after the
    edit's answer. Neither a pts nor the dates (one second) order it: it changes nothing, and the
    heal such an update starts brings the marker as it is now, with its pts."""

    async def run():
        client = FakeClient()
        client.post("keep.bin")
        catalog, folder = await _listed(client)
        made = types.Message(id=50, peer_id=types.PeerChannel(client.channel.id), date=DATE,
                             message="#tgdav dir /d3")
        await catalog.apply(folder, [made], {50: 10})           # MKCOL d3's own answer
        moved = types.Message(id=50, peer_id=made.peer_id, date=DATE, message="#tgdav dir /d2",
                              edit_date=DATE)                    # MOVE d3 -> d2, the same second
        await catalog.apply(folder, [moved], {50: 11})
        await catalog.apply_changes(client.channel.id, [made], [], pts=None, version=None)
        assert isinstance(await catalog.node(folder, ("d2",)), tree.Dir)
        assert await catalog.node(folder, ("d3",)) is None
        # the heal's difference (version: its pts) still applies a later edit from elsewhere
        later = types.Message(id=50, peer_id=made.peer_id, date=DATE, message="#tgdav dir /d4",
                              edit_date=DATE)
        await catalog.apply_changes(client.channel.id, [later], [], pts=None, version=12)
        assert isinstance(await catalog.node(folder, ("d4",)), tree.Dir)
    asyncio.run(run())


def test_a_late_update_never_undoes_a_newer_version_a_whole_read_brought():
    """A whole read (getHistory) brings each message as it is now, without a pts: the pts held for
    it can stay the one of an older update. An update fetched before the read but landing after it
    has a higher pts than that, yet an older edit date: it is stale, and the file stays where the
    whole read found it."""

    async def run():
        client = FakeClient()
        posted = client.post("a.bin")
        catalog, folder = await _listed(client)

        def edited(path: str, minute: int) -> types.Message:
            return types.Message(id=posted.id, peer_id=posted.peer_id, date=posted.date,
                                 message=f"#tgdav file /{path}", media=posted.media,
                                 edit_date=DATE.replace(minute=minute))
        await catalog.apply_changes(client.channel.id, [edited("one/a.bin", 1)], [], pts=None, version=10)
        client.messages[posted.id] = edited("five/a.bin", 5)      # edited twice more elsewhere
        await catalog.reread(folder)                               # a whole read brings the newest
        assert await catalog.node(folder, ("five", "a.bin")) is not None
        await catalog.apply_changes(client.channel.id, [edited("three/a.bin", 3)], [], pts=None, version=11)
        assert await catalog.node(folder, ("five", "a.bin")) is not None
        assert await catalog.node(folder, ("three", "a.bin")) is None
    asyncio.run(run())


def test_a_late_update_of_a_post_never_undoes_an_edit_a_whole_read_brought_in_the_same_second():
    """A folder COPY to another channel commits by one edit of its hold (`#tgdav hold /dest` ->
    `#tgdav delete /dest`). A server whose whole read (getHistory: no pts) brought the edit, then
    got the hold's own pushed update late (with its pts, the same second), took the folder back to
    hidden: a fresh reader listed the copy whole, then not at all (clean-clone CI, twice). A post
    as first sent never replaces a record held for its id (the same post, or a later edit)."""

    async def run():
        client = FakeClient()
        posted = client.post("a.bin")
        moved = types.Message(id=posted.id, peer_id=posted.peer_id, date=posted.date,
                              message="#tgdav file /moved/a.bin", media=posted.media, edit_date=posted.date)
        client.messages[posted.id] = moved          # edited in the same second, before the first read
        catalog, folder = await _listed(client)     # a whole read: the edit, no pts held for it
        assert await catalog.node(folder, ("moved", "a.bin")) is not None
        await catalog.apply_changes(client.channel.id, [posted], [], pts=None, version=10)   # late
        assert await catalog.node(folder, ("moved", "a.bin")) is not None
        assert await catalog.node(folder, ("a.bin",)) is None
        # a post never seen before still arrives by its update
        other = client.post("b.bin")
        await catalog.apply_changes(client.channel.id, [other], [], pts=None, version=11)
        assert await catalog.node(folder, ("b.bin",)) is not None
    asyncio.run(run())


def test_an_update_that_waited_for_a_whole_read_never_brings_back_what_the_read_found_deleted():
    """A fresh server's janitor reads each writable channel whole (catalog.reread) while a folder
    COPY from another server lands in it: the hold is posted, the copies follow, the hold is
    deleted. The hold's pushed update, weighed against the listing's pts before it waited for the
    read to end, was applied after it: the read (current to the pts its first page was read at,
    after the deletion) no longer held the hold, the late post put it back, and every later update
    was older than the read's pts, so nothing took it away: the copy stayed hidden (clean-clone CI:
    the fresh server's `live` said pts 250, 1 update, no gap). Now the catalog weighs an update
    under its own lock, against the pts the listing holds when it is applied."""

    async def run():
        client = FakeClient()
        client.post("a.bin")
        client.pts = 1
        catalog, folder = await _listed(client)
        live = LiveUpdates(client, catalog)
        client.hold["GetHistory"] = asyncio.Event()
        reread = asyncio.ensure_future(catalog.reread(folder))          # the janitor's whole read
        await until(lambda: client.calls["GetHistory"] == 2, 5, lambda: dict(client.calls))
        hold = client.post("hold.bin")                                 # posted elsewhere...
        client.pts = 2
        posted = asyncio.ensure_future(live.apply(
            types.UpdateNewChannelMessage(message=hold, pts=2, pts_count=1)))
        del client.messages[hold.id]                                   # ...and deleted again
        client.pts = 3
        deleted = asyncio.ensure_future(live.apply(
            types.UpdateDeleteChannelMessages(channel_id=client.channel.id, messages=[hold.id], pts=3,
                                              pts_count=1)))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not posted.done() and not deleted.done()               # both wait for the read
        client.hold.pop("GetHistory").set()     # its pages come back now: pts 3, no hold.bin
        await asyncio.gather(reread, posted, deleted)

        assert [e.name for e in await catalog.entries(folder)] == ["a.bin"]
        assert catalog.pts_of(client.channel.id) == 3
        assert client.calls["GetChannelDifference"] == 0                # nothing missing: no heal
    asyncio.run(run())


def test_a_difference_fetched_before_a_whole_read_ended_never_brings_back_what_it_found_deleted():
    """The same race for a heal: its getChannelDifference is fetched outside the catalog's lock, so
    a whole read may end between the fetch and the apply, current to a later pts than the
    difference; the difference's messages (a post deleted again since) are left out."""

    async def run():
        client = FakeClient()
        client.post("a.bin")
        client.pts = 1
        catalog, folder = await _listed(client)
        hold = client.post("hold.bin")          # what a difference fetched now holds (pts 2)...
        del client.messages[hold.id]            # ...deleted before the whole read below
        client.pts = 3
        await catalog.reread(folder)
        await catalog.apply_changes(client.channel.id, [hold], [], pts=2, version=2)    # lands late
        assert [e.name for e in await catalog.entries(folder)] == ["a.bin"]
        assert catalog.pts_of(client.channel.id) == 3
        # a difference newer than the read still lands
        later = client.post("b.bin")
        await catalog.apply_changes(client.channel.id, [later], [], pts=4, version=4)
        assert sorted(e.name for e in await catalog.entries(folder)) == ["a.bin", "b.bin"]
    asyncio.run(run())
