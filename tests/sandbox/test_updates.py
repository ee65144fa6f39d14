"""Updates pushed by the sandbox and the differences that heal gaps, seen by an unmodified Telethon
(its MessageBox detects gaps and calls updates.getChannelDifference itself). Assertions are on the
updates Telethon dispatched and the sandbox's counters (updates_pushed, updates_dropped,
channel_differences), never on time: waits poll for a state with a generous deadline."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
from telethon import TelegramClient, events
from telethon.sessions import StringSession
from telethon.tl import functions, types

from tests.helpers import run, until
from tests.sandbox.test_e2e_telethon import new_client, serve
from tgdav.sandbox.world import World
from tgdav.telegram.mtproto import Client, forget_config

READER, POSTER = "15550003333", "15550004444"


@pytest.fixture(scope="module")
def live():
    world = World(seed=18)
    reader = world.add_user(READER, "Reader", home_dc=2)
    poster = world.add_user(POSTER, "Poster", home_dc=2)
    channel = world.add_channel("Live", creator=poster, members=[reader])
    for i in range(5):
        world.add_text(channel, f"seed {i}")
    world.add_channel("Elsewhere", creator=poster)          # the reader is not a member
    with serve(world) as (counters, controls, services, ports):
        yield world, channel, counters, controls, services, ports


@pytest.fixture
def sb(live):
    world, channel, counters, controls, services, ports = live
    counters.reset()
    controls.apply_faults({"clear": True}, now=services.clock())
    return live


async def login(ports, phone: str, code: str) -> TelegramClient:
    client = new_client(ports)
    await client.connect()
    await client.send_code_request(phone)
    await client.sign_in(phone, code)
    return client


@asynccontextmanager
async def reader_and_poster(sb):
    """The reader's and the poster's clients, logged in (disconnected at the end), and the channel."""
    world, channel, *_, ports = sb
    reader = await login(ports, READER, world.login_code)
    try:
        poster = await login(ports, POSTER, world.login_code)
        try:
            yield reader, poster, types.InputPeerChannel(channel.id, channel.access_hash)
        finally:
            await poster.disconnect()
    finally:
        await reader.disconnect()


def test_changes_reach_the_readers_main_connection_with_channel_pts(sb):
    _, channel, counters, *_ = sb

    async def go():
        async with reader_and_poster(sb) as (reader, poster, entity):
            seen = []
            reader.add_event_handler(lambda u: seen.append(u), events.Raw(
                (types.UpdateNewChannelMessage, types.UpdateEditChannelMessage,
                 types.UpdateDeleteChannelMessages)))
            await reader.get_dialogs()                 # the reader knows the channel
            pts0 = channel.pts
            m = await poster.send_message(entity, "hello")
            await poster.edit_message(entity, m, "hello again")
            await poster.delete_messages(entity, [m.id])
            await until(lambda: len(seen) == 3, 20, lambda: seen)
            assert [type(u) for u in seen] == [types.UpdateNewChannelMessage, types.UpdateEditChannelMessage,
                                               types.UpdateDeleteChannelMessages]
            assert [u.pts for u in seen] == [pts0 + 1, pts0 + 2, pts0 + 3]
            assert seen[0].message.message == "hello" and seen[1].message.message == "hello again"
            assert seen[2].messages == [m.id]
            # the poster's own connection read each change in its answer: one push per change
            assert counters.total("updates_pushed") == 3
    run(go(), 90)


def test_a_client_without_updates_is_not_subscribed(sb):
    world, channel, counters, *_, ports = sb

    async def go():
        quiet = new_client(ports)
        await quiet.set_receive_updates(False)      # every request in invokeWithoutUpdates
        await quiet.connect()
        await quiet.send_code_request(READER)
        await quiet.sign_in(READER, world.login_code)
        await quiet.get_dialogs()
        poster = await login(ports, POSTER, world.login_code)
        try:
            entity = types.InputPeerChannel(channel.id, channel.access_hash)
            await poster.send_message(entity, "nobody listens")
            assert counters.total("updates_pushed") == 0
        finally:
            await poster.disconnect()
            await quiet.disconnect()
    run(go(), 90)


def test_dropped_updates_are_healed_with_get_channel_difference(sb):
    _, _, counters, controls, services, _ = sb

    async def go():
        async with reader_and_poster(sb) as (reader, poster, entity):
            texts = []
            reader.add_event_handler(lambda e: texts.append(e.message.message),
                                     events.Raw(types.UpdateNewChannelMessage))
            await reader.get_dialogs()
            await poster.send_message(entity, "first")
            await until(lambda: texts == ["first"], 20)
            controls.apply_faults({"drop_updates": 2}, now=services.clock())
            for text in ("lost 1", "lost 2", "third"):
                await poster.send_message(entity, text)
            await until(lambda: len(texts) == 4, 20, lambda: texts)
            assert sorted(texts) == sorted(["first", "lost 1", "lost 2", "third"])
            assert counters.total("updates_dropped") == 2
            assert counters.total("channel_differences") >= 1      # Telethon's MessageBox healed the gap
    run(go(), 90)


def test_channel_difference_slices_and_too_long(sb):
    _, channel, counters, controls, services, _ = sb

    async def go():
        async with reader_and_poster(sb) as (reader, poster, entity):
            peer = types.InputChannel(channel.id, channel.access_hash)
            start = channel.pts
            empty = await reader(functions.updates.GetChannelDifferenceRequest(
                peer, types.ChannelMessagesFilterEmpty(), start, 100))
            assert isinstance(empty, types.updates.ChannelDifferenceEmpty) and empty.pts == start
            a = await poster.send_message(entity, "a")
            b = await poster.send_message(entity, "b")
            await poster.edit_message(entity, a, "a2")
            await poster.delete_messages(entity, [b.id])
            first = await reader(functions.updates.GetChannelDifferenceRequest(
                peer, types.ChannelMessagesFilterEmpty(), start, 2))
            assert isinstance(first, types.updates.ChannelDifference) and not first.final
            assert [m.message for m in first.new_messages] == ["a2"]     # b is gone by now
            rest = await reader(functions.updates.GetChannelDifferenceRequest(
                peer, types.ChannelMessagesFilterEmpty(), first.pts, 100))
            assert rest.final and rest.pts == channel.pts
            assert [type(u) for u in rest.other_updates] == [types.UpdateEditChannelMessage,
                                                             types.UpdateDeleteChannelMessages]
            assert rest.other_updates[1].messages == [b.id]
            controls.apply_faults({"message_box": 3}, now=services.clock())
            too_long = await reader(functions.updates.GetChannelDifferenceRequest(
                peer, types.ChannelMessagesFilterEmpty(), start, 100))
            assert isinstance(too_long, types.updates.ChannelDifferenceTooLong)
            assert too_long.dialog.pts == channel.pts
            assert counters.total("channel_differences_too_long") == 1
    run(go(), 90)


def test_get_difference_names_the_channels_changed_since_the_state(sb):
    """What a client that was away asks first (core.telegram.org/api/updates, Recovering gaps):
    updates.getDifference from its state names each of its channels changed since then with
    updateChannelTooLong (the channel's pts), not the channels it is not in; it heals those with
    getChannelDifference."""
    world, channel, counters, *_, ports = sb
    elsewhere = next(c for c in world.channels.values() if c.title == "Elsewhere")

    async def go():
        reader = await login(ports, READER, world.login_code)
        poster = await login(ports, POSTER, world.login_code)
        try:
            state = await reader(functions.updates.GetStateRequest())
            await poster.send_message(types.InputPeerChannel(channel.id, channel.access_hash), "while away")
            await poster.send_message(types.InputPeerChannel(elsewhere.id, elsewhere.access_hash), "not yours")
            diff = await reader(functions.updates.GetDifferenceRequest(pts=state.pts, date=state.date,
                                                                       qts=state.qts))
            assert isinstance(diff, types.updates.Difference), diff
            named = {u.channel_id: u.pts for u in diff.other_updates if isinstance(u, types.UpdateChannelTooLong)}
            assert named == {channel.id: channel.pts}
            assert diff.state.date >= state.date
        finally:
            await poster.disconnect()
            await reader.disconnect()
    run(go(), 90)


def test_the_main_client_connecting_again_begins_a_new_session_that_telegram_announces(sb):
    """mtproto.Client connects again by itself once Telethon gave up (or an attempt was cut). It
    starts a new session, as Telethon's own reconnect does, so Telegram announces it
    (new_session_created) and the client's new-session handlers catch up (updates.LiveUpdates).
    Keeping the session id of a connection Telegram had already seen, it was told nothing."""
    world, channel, counters, *_, ports = sb

    async def go():
        forget_config()
        reader = Client(StringSession(), api_id=1, api_hash="x", connection_retries=1, retry_delay=0,
                        timeout=10, flood_sleep_threshold=0, answer_timeout=10)
        reader.session.set_dc(2, "127.0.0.1", ports[2])
        await reader.connect()
        await reader.send_code_request(READER)
        await reader.sign_in(READER, world.login_code)
        told = []
        reader.add_new_session_handler(lambda: told.append("new session"))
        try:
            await reader._sender._disconnect(error=ConnectionError("cut"))     # as when Telethon gives up
            assert not reader.is_connected()
            await reader(functions.updates.GetStateRequest())                  # connects again first
            assert told == ["new session"]
        finally:
            await reader.disconnect()
    run(go(), 90)
