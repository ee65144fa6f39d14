"""Listings kept current from Telegram's updates, so a change made anywhere shows at once.

Telegram pushes every change of a channel to the main connection of each member's sessions
(core.telegram.org/api/updates): updateNewChannelMessage, updateEditChannelMessage,
updateDeleteChannelMessages (each with the channel's pts and pts_count) and updateChannel (a
channel created, renamed, left or deleted). `LiveUpdates` takes them as the main connection receives
them (mtproto.Client.add_updates_handler), in the order they came, and hands each one to the
catalog, `catalog.apply_update(channel_id, messages, deleted, pts, pts_count)` (what a difference
brings: `catalog.apply_changes`).
Not from Telethon's event handlers: Telethon's own message box drops the edits and deletions of a
gap it fills itself, and dispatches nothing when there were only those (mtproto.Client), so a lost
push followed by edits and deletions only (the end of a folder copy) never arrived there.

The catalog keeps, with each listing (and in the store), the pts its records are current to. An
update that follows it exactly (pts - pts_count == kept) moves it; anything else is a gap: its
messages are applied at once and the channel is healed with updates.getChannelDifference from the
kept pts, page by page, until `final` (new messages, edits and deletions all applied). A
channelDifferenceTooLong (the gap is older than Telegram keeps) reads the channel's history again,
and so does an updateChannelTooLong pushed for a listed channel (Telegram's "fetch the difference").
updatesTooLong (too many updates to push) is caught up as a new session is (below).

At start (`start()`), every listing an earlier run kept is loaded from the store and healed the same
way: what was posted, edited or deleted while tgdav was down arrives through getChannelDifference
calls, not a full re-read. Polling (`[cache] updates_refresh`) stays as a slow safety net.

What Telegram pushed while the main connection was away (cut, the home DC down, Telethon
reconnecting) is lost: every reconnect begins a new session, which mtproto.Client reports, and then
updates.getDifference from the account's state (updates.getState at start, then each catch-up's)
names, with updateChannelTooLong, the channels changed meanwhile; those with a listing are healed as
above, and the channel list is read again.

Per channel, `stats()` gives what the status page and the metrics show: the pts, the time of the
last update, updates applied, gaps healed, differences asked and too-long answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass

from tgdav.telegram.mtproto import functions, types

from tgdav.errors import TgdavError
from tgdav.telegram import rpc

log = logging.getLogger("tgdav.updates")

LIMIT = 100          # changes per getChannelDifference: what Telegram gives a user account
UPDATE_TYPES = (types.UpdateNewChannelMessage, types.UpdateEditChannelMessage,
                types.UpdateDeleteChannelMessages, types.UpdateChannel)


@dataclass
class ChannelStats:
    pts: int = 0
    last_update: float = 0.0       # unix time of the last update applied (0: none yet)
    updates: int = 0
    gaps_healed: int = 0
    differences: int = 0           # updates.getChannelDifference calls
    too_long: int = 0              # channelDifferenceTooLong answers (a history re-read each)


class LiveUpdates:
    def __init__(self, client, catalog, *, clock=time.time) -> None:
        self._client = client
        self._catalog = catalog
        self._clock = clock
        self._stats: dict[int, ChannelStats] = {}
        self._healing: dict[int, asyncio.Task] = {}
        self._again: set[int] = set()
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._state: types.updates.State | None = None    # the account's, as of the last catch-up
        self._catch_up_lock = asyncio.Lock()
        self._catching_up: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Subscribe to updates and bring every listing an earlier run kept up to date."""
        self._client.add_updates_handler(self._pushed)
        await self._client.set_receive_updates(True)        # a request that subscribes the connection
        await self._read_state()
        self._client.add_new_session_handler(self._new_session)
        self._heal_listed(await self._catalog.load_kept())

    async def _read_state(self) -> None:
        self._state = await rpc.call(self._client, functions.updates.GetStateRequest(),
                                     "reading the account's update state")

    def _heal_listed(self, channel_ids) -> None:
        for channel_id in channel_ids:
            # a bot's listing has no pts until its first update (bots read no history); a user's
            # listing kept before pts were kept is read again once
            pts = self._catalog.pts_of(channel_id)         # None: no listing, nothing to heal
            if pts or pts is not None and not self._catalog.is_bot:
                self.heal(channel_id)

    async def settle(self) -> None:
        """Wait until every catch-up and heal started so far has finished (tests, benchmarks,
        shutdown)."""
        while self._catching_up or self._healing:
            await asyncio.gather(*self._catching_up, *self._healing.values(), return_exceptions=True)

    async def close(self) -> None:
        self._client.remove_new_session_handler(self._new_session)
        self._client.remove_updates_handler(self._pushed)
        tasks = (*self._catching_up, *self._healing.values(), *self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stats(self) -> dict[int, dict]:
        """Per channel; read from other threads (status page, metrics scrape), hence the copy."""
        items = list(self._stats.items())
        for channel_id, st in items:
            st.pts = self._catalog.pts_of(channel_id) or st.pts
        return {channel_id: asdict(st) for channel_id, st in items}

    # --- updates ----------------------------------------------------------------------------------
    def _pushed(self, updates) -> None:
        """What the main connection received (any `Updates` constructor), as it arrives: each channel
        update is applied in a task of its own, started in the order they came (one channel's then
        take its lock in that order: `apply`)."""
        if isinstance(updates, types.UpdatesTooLong):       # too many to push: fetch the difference
            if self._state is not None:     # else start() is still reading the state, current anyway
                self._new_session()
            return
        inner = getattr(updates, "updates", None)
        if inner is None:
            inner = [getattr(updates, "update", None)]      # updateShort; the short message kinds
        for update in inner:                                 # are private chats: none of ours
            if isinstance(update, types.UpdateChannelTooLong):
                self._heal_listed([update.channel_id])
            elif isinstance(update, UPDATE_TYPES):
                self._spawn(self._on_update(update))

    async def _on_update(self, update) -> None:
        try:
            await self.apply(update)
        except Exception:        # one bad update must not stop the others; the safety net remains
            log.exception("update %s could not be applied", type(update).__name__)

    async def apply(self, update) -> None:
        if isinstance(update, types.UpdateChannel):
            self._catalog.invalidate_folders()              # created, renamed, left or deleted
            self._spawn(self._catalog.folders())
            return
        if isinstance(update, types.UpdateDeleteChannelMessages):
            channel_id, messages, deleted = update.channel_id, [], list(update.messages)
        else:
            peer = getattr(update.message, "peer_id", None)
            if not isinstance(peer, types.PeerChannel):
                return
            channel_id, messages, deleted = peer.channel_id, [update.message], []
        # each update in its own task (_pushed): one channel's are applied one at a time, in the
        # order they came (asyncio.Lock is first come, first served; nothing is awaited before it).
        # Whether it follows the listing's pts, or is older (a heal or a whole read brought it
        # first), the catalog decides under its own lock (apply_update): a whole read ending while
        # this update waited may have moved the listing past it.
        async with self._locks.setdefault(channel_id, asyncio.Lock()):
            outcome = await self._catalog.apply_update(channel_id, messages, deleted, update.pts or 0,
                                                       update.pts_count or 0)
        if outcome is None or outcome == "old":     # no listing yet (its first look reads the
            return                                   # history), or the listing holds it already
        st = self._stat(channel_id)
        st.updates += 1
        st.last_update = self._clock()
        if outcome == "gap":
            self.heal(channel_id)

    # --- a new session: what was pushed to the old one is lost --------------------------------------
    def _new_session(self) -> None:
        """Telegram began a new session on the main connection (a reconnect, mtproto.Client): catch
        up, one catch-up at a time (a reconnect during one runs another after it)."""
        task = asyncio.get_running_loop().create_task(self._catch_up())
        self._catching_up.add(task)
        task.add_done_callback(self._catching_up.discard)

    async def _catch_up(self) -> None:
        """updates.getDifference from the state of the last catch-up (core.telegram.org/api/updates,
        Recovering gaps): each channel it names with updateChannelTooLong that has a listing is
        healed with getChannelDifference (the others cost nothing); differenceTooLong heals every
        listing. The channel list is read again too (a channel created, renamed or left meanwhile)."""
        async with self._catch_up_lock:
            self._catalog.invalidate_folders()
            self._spawn(self._catalog.folders())
            try:
                await self._difference()
            except (TgdavError, ConnectionError, OSError) as e:     # the connection lost again, a flood
                log.warning("what Telegram pushed while the connection was away is left to the next "
                            "reconnect, update or refresh: %s", e)

    async def _difference(self) -> None:
        state = self._state
        while True:
            diff = await rpc.call(self._client, functions.updates.GetDifferenceRequest(
                pts=state.pts, date=state.date, qts=state.qts),
                "reading what Telegram pushed while the connection was away")
            if isinstance(diff, types.updates.DifferenceEmpty):
                self._state = types.updates.State(pts=state.pts, qts=state.qts, date=diff.date,
                                                  seq=diff.seq, unread_count=state.unread_count)
                return
            if isinstance(diff, types.updates.DifferenceTooLong):    # the state is fetched anew
                self._heal_listed(self._catalog.listed())
                await self._read_state()
                return
            changed = [u.channel_id for u in diff.other_updates if isinstance(u, types.UpdateChannelTooLong)
                       and self._catalog.pts_of(u.channel_id) is not None]
            if changed:
                log.info("listed channel(s) %s changed while the connection to Telegram was away",
                         ", ".join(map(str, changed)))
            self._heal_listed(changed)
            for u in diff.other_updates:
                if isinstance(u, UPDATE_TYPES):
                    await self._on_update(u)
            if isinstance(diff, types.updates.DifferenceSlice):
                self._state = state = diff.intermediate_state
                continue
            self._state = diff.state
            return

    # --- gaps -------------------------------------------------------------------------------------
    def heal(self, channel_id: int) -> None:
        """Fetch what the channel's listing misses since its pts (one heal at a time per channel;
        asked again while one runs, it runs once more after)."""
        if channel_id in self._healing:
            self._again.add(channel_id)
            return

        async def run():
            try:
                while True:
                    self._again.discard(channel_id)
                    await self._heal(channel_id)
                    if channel_id not in self._again:
                        break
            except (TgdavError, ConnectionError, OSError) as e:     # Telegram away, a flood, gone
                log.warning("channel %d: its update gap is left to the next update or refresh: %s",
                            channel_id, e)
            except Exception:
                log.exception("channel %d: healing its update gap failed", channel_id)
            finally:
                self._healing.pop(channel_id, None)
        self._healing[channel_id] = asyncio.get_running_loop().create_task(run())

    async def _heal(self, channel_id: int) -> None:
        st = self._stat(channel_id)
        while True:
            pts, channel = self._catalog.pts_of(channel_id), self._catalog.input_channel(channel_id)
            if channel is None:
                return
            if not pts:                   # a listing from before pts were kept: read it again
                await self._catalog.reload(channel_id)
                break
            diff = await rpc.call(self._client, functions.updates.GetChannelDifferenceRequest(
                channel=channel, filter=types.ChannelMessagesFilterEmpty(), pts=pts, limit=LIMIT),
                f"reading what channel {channel_id} missed")
            st.differences += 1
            if isinstance(diff, types.updates.ChannelDifferenceEmpty):
                await self._catalog.apply_changes(channel_id, pts=diff.pts)
                break
            if isinstance(diff, types.updates.ChannelDifferenceTooLong):
                st.too_long += 1
                await self._catalog.reload(channel_id)
                break
            messages, deleted = list(diff.new_messages), []
            for u in diff.other_updates:
                if isinstance(u, (types.UpdateNewChannelMessage, types.UpdateEditChannelMessage)):
                    messages.append(u.message)
                elif isinstance(u, types.UpdateDeleteChannelMessages):
                    deleted.extend(u.messages)
            # each message as it is now, at least as new as diff.pts (an older one: _stale)
            await self._catalog.apply_changes(channel_id, messages, deleted, diff.pts, version=diff.pts)
            if diff.final:
                break
        st.gaps_healed += 1
        st.last_update = self._clock()

    def _stat(self, channel_id: int) -> ChannelStats:
        return self._stats.setdefault(channel_id, ChannelStats())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
