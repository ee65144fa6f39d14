"""A new session on the main connection (every reconnect begins one) is caught up the way
core.telegram.org/api/updates says: updates.getDifference from the last state, each difference slice
followed from its intermediate state, the listed channels it names healed, differenceTooLong healing
every listing and fetching the state anew. The sandbox answers getDifference only in one piece (it
keeps no account-wide pts), so this runs LiveUpdates against a scripted client; the whole path, with
a sandbox and a real reconnect, is tests/write/test_outage.py."""

from __future__ import annotations

import asyncio

from telethon import types
from telethon.tl import functions

from tgdav.telegram.updates import LiveUpdates

LISTED = {1: 10, 2: 20, 3: 30}          # channel id -> the pts its listing is current to


def state(pts: int, date: int) -> types.updates.State:
    return types.updates.State(pts=pts, qts=0, date=date, seq=0, unread_count=0)


def too_long(*channel_ids: int) -> list:
    return [types.UpdateChannelTooLong(channel_id=c, pts=100) for c in channel_ids]


class Scripted:
    """Answers each request with the next answer of its method; records every request."""

    def __init__(self, answers: dict[type, list]) -> None:
        self.answers = answers
        self.requests: list = []

    async def __call__(self, request):
        self.requests.append(request)
        return self.answers[type(request)].pop(0)


class Listings:
    is_bot = False

    def pts_of(self, channel_id: int) -> int | None:
        return LISTED.get(channel_id)

    def listed(self) -> list[int]:
        return list(LISTED)

    def invalidate_folders(self) -> None:
        self.folders_invalid = True

    async def folders(self) -> list:
        return []


def test_a_new_session_follows_the_difference_slices_and_heals_only_the_listed_channels_named():
    async def run():
        start = state(5, 1000)
        client = Scripted({functions.updates.GetDifferenceRequest: [
            types.updates.DifferenceSlice(new_messages=[], new_encrypted_messages=[], chats=[], users=[],
                                          other_updates=too_long(1), intermediate_state=state(6, 1010)),
            types.updates.Difference(new_messages=[], new_encrypted_messages=[], chats=[], users=[],
                                     other_updates=too_long(2, 99), state=state(7, 1020)),
            types.updates.DifferenceEmpty(date=1030, seq=0),
        ]})
        catalog = Listings()
        live = LiveUpdates(client, catalog)
        live._state, healed = start, []
        live.heal = healed.append

        live._new_session()
        await live.settle()
        assert [(r.pts, r.date) for r in client.requests] == [(5, 1000), (6, 1010)]            # the slice's intermediate state is followed
        assert healed == [1, 2]                           # 99 has no listing: nothing to heal
        assert catalog.folders_invalid                    # the channel list is read again

        live._new_session()                               # another reconnect, nothing changed since
        await live.settle()
        assert healed == [1, 2]
        assert (client.requests[-1].pts, live._state.date) == (7, 1030)
    asyncio.run(run())


def test_a_difference_too_long_heals_every_listing_and_fetches_the_state_again():
    async def run():
        client = Scripted({functions.updates.GetDifferenceRequest: [types.updates.DifferenceTooLong(pts=500)],
                           functions.updates.GetStateRequest: [state(500, 2000)]})
        live = LiveUpdates(client, Listings())
        live._state, healed = state(5, 1000), []
        live.heal = healed.append
        live._new_session()
        await live.settle()
        assert sorted(healed) == sorted(LISTED)
        assert (live._state.pts, live._state.date) == (500, 2000)
    asyncio.run(run())


def test_what_telegram_pushes_too_long_is_fetched_as_telegram_says():
    """updatesTooLong (too many updates to push) is caught up as a new session is; updateChannelTooLong
    heals that channel (when it has a listing). Both arrive as pushes (LiveUpdates._pushed, the
    main connection's updates as they come), which Telethon's message box would have handled itself,
    keeping the edits and deletions of the difference from us."""
    async def run():
        client = Scripted({functions.updates.GetDifferenceRequest: [types.updates.DifferenceEmpty(date=1030, seq=0)]})
        live = LiveUpdates(client, Listings())
        live._state, healed = state(5, 1000), []
        live.heal = healed.append
        live._pushed(types.Updates(updates=too_long(2, 99), users=[], chats=[], date=1020, seq=0))
        assert healed == [2]                              # 99 has no listing: nothing to heal
        live._pushed(types.UpdateShort(update=types.UpdateChannelTooLong(channel_id=3), date=1025))
        assert healed == [2, 3]
        live._pushed(types.UpdatesTooLong())
        await live.settle()
        assert [(r.pts, r.date) for r in client.requests] == [(5, 1000)]
        assert live._state.date == 1030
    asyncio.run(run())
