"""The RPC methods called directly (through TL serialisation), checked against Telegram's semantics:
login flows, paging, getFile's rules, migrations, references, floods and counters."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st
from telethon.password import compute_check
from telethon.tl import functions, types

from tests.sandbox.conftest import MIB, PASSWORD, Sim, build_small_world
from tgdav.sandbox.content import pattern
from tgdav.sandbox.world import World

LAYER = 200


def wrapped(query):
    """What Telethon sends first on every connection."""
    return functions.InvokeWithLayerRequest(LAYER, functions.InitConnectionRequest(
        api_id=1, device_model="pytest", system_version="1", app_version="1", system_lang_code="en",
        lang_pack="", lang_code="en", query=query))


def input_channel(ch, access_hash=None):
    return types.InputPeerChannel(ch.id, ch.access_hash if access_hash is None else access_hash)


def doc_location(sim, ctx, channel, message_id):
    """The InputDocumentFileLocation of a message, fetched as a client would (fresh reference)."""
    r = sim.call(ctx, functions.channels.GetMessagesRequest(
        types.InputChannel(channel.id, channel.access_hash), [types.InputMessageID(message_id)]))
    d = r.messages[0].media.document
    return types.InputDocumentFileLocation(d.id, d.access_hash, d.file_reference, "")


def message_id_of(channel, media):
    return next(m.id for m in channel.messages if m.media is media)


def get_file(location, offset, limit, precise=False):
    return functions.upload.GetFileRequest(location, offset=offset, limit=limit, precise=precise)


# --- connect, config, wrappers, counters ----------------------------------------------------------
def test_first_request_is_answered_without_login_and_counts_every_layer(sim):
    ctx = sim.ctx(dc=3)
    config = sim.call(ctx, wrapped(functions.help.GetConfigRequest()))
    assert config.this_dc == 3
    assert {(o.id, o.ip_address, o.port) for o in config.dc_options} == {
        (dc, "127.0.0.1", 40000 + dc) for dc in (1, 2, 3, 4, 5)}
    assert sim.call(ctx, functions.help.GetNearestDcRequest()).this_dc == 3
    for name in ("InvokeWithLayer", "InitConnection", "GetConfig", "GetNearestDc"):
        assert sim.counters.get(3, f"requests:{name}") == 1


@pytest.mark.parametrize("request_", [
    functions.users.GetUsersRequest([types.InputUserSelf()]),
    functions.updates.GetStateRequest(),
    functions.messages.GetDialogsRequest(None, 0, types.InputPeerEmpty(), 10, 0),
    functions.auth.ExportAuthorizationRequest(4),
    functions.upload.GetFileRequest(types.InputDocumentFileLocation(1, 1, b"", ""), 0, 4096),
])
def test_a_key_without_login_gets_auth_key_unregistered(sim, request_):
    ctx = sim.ctx(dc=4)
    assert sim.error(ctx, wrapped(request_)) == (401, "AUTH_KEY_UNREGISTERED")
    assert sim.counters.get(4, "errors:AUTH_KEY_UNREGISTERED") == 1


def test_a_key_bound_on_another_dc_is_not_logged_in_here(sim, user):
    home = sim.ctx(dc=2, account=user)
    foreign = type(home)(dc_id=4, auth_key_id=home.auth_key_id, session_id=9, conn_id=9)
    assert sim.error(foreign, functions.updates.GetStateRequest()) == (401, "AUTH_KEY_UNREGISTERED")


def test_unknown_method_is_refused(sim, user):
    ctx = sim.ctx(account=user)
    assert sim.error(ctx, functions.messages.GetAllDraftsRequest()) == (400, "INPUT_METHOD_INVALID")
    assert sim.counters.get(2, "requests:GetAllDrafts") == 1


# --- login ----------------------------------------------------------------------------------------
def test_user_login_with_code(sim, small):
    ctx = sim.ctx()
    sent = sim.call(ctx, wrapped(functions.auth.SendCodeRequest("+15550001111", 1, "x", types.CodeSettings())))
    assert isinstance(sent.type, types.auth.SentCodeTypeApp)
    sign = lambda code, h=sent.phone_code_hash: functions.auth.SignInRequest("15550001111", h, code)
    assert sim.error(ctx, sign("00000" if small.world.login_code != "00000" else "11111")) == (400, "PHONE_CODE_INVALID")
    assert sim.error(ctx, sign(small.world.login_code, "nothash")) == (400, "PHONE_CODE_EXPIRED")
    auth = sim.call(ctx, sign(small.world.login_code))
    assert auth.user.is_self and auth.user.phone == "15550001111" and not auth.user.bot
    me = sim.call(ctx, functions.users.GetUsersRequest([types.InputUserSelf()]))
    assert me[0].id == auth.user.id and me[0].is_self
    assert sim.error(ctx, functions.auth.SendCodeRequest("+1 999", 1, "x", types.CodeSettings())) == (
        400, "PHONE_NUMBER_INVALID")


def test_user_login_with_2fa_uses_real_srp(sim, small):
    ctx = sim.ctx()
    sent = sim.call(ctx, functions.auth.SendCodeRequest("15550002222", 1, "x", types.CodeSettings()))
    code = functions.auth.SignInRequest("15550002222", sent.phone_code_hash, small.world.login_code)
    assert sim.error(ctx, code) == (401, "SESSION_PASSWORD_NEEDED")
    assert sim.error(ctx, functions.updates.GetStateRequest()) == (401, "AUTH_KEY_UNREGISTERED")

    pwd = sim.call(ctx, functions.account.GetPasswordRequest())
    assert pwd.has_password
    bad = compute_check(pwd, "wrong password")
    assert sim.error(ctx, functions.auth.CheckPasswordRequest(bad)) == (400, "PASSWORD_HASH_INVALID")
    assert sim.error(ctx, functions.auth.CheckPasswordRequest(bad)) == (400, "SRP_ID_INVALID")  # single use

    pwd = sim.call(ctx, functions.account.GetPasswordRequest())
    auth = sim.call(ctx, functions.auth.CheckPasswordRequest(compute_check(pwd, PASSWORD)))
    assert auth.user.first_name == "Bob" and auth.user.is_self
    assert sim.call(ctx, functions.updates.GetStateRequest()).pts >= 1


def test_bot_login_and_what_bots_may_not_do(sim, small, bot):
    ctx = sim.ctx()
    imp = lambda token: functions.auth.ImportBotAuthorizationRequest(0, 1, "x", token)
    assert sim.error(ctx, imp("123:nope")) == (400, "ACCESS_TOKEN_INVALID")
    auth = sim.call(ctx, imp(bot.bot_token))
    assert auth.user.bot and auth.user.id == bot.id
    films = small.films
    history = functions.messages.GetHistoryRequest(input_channel(films), 0, None, 0, 10, 0, 0, 0)
    assert sim.error(ctx, history) == (400, "BOT_METHOD_INVALID")
    dialogs = functions.messages.GetDialogsRequest(None, 0, types.InputPeerEmpty(), 10, 0)
    assert sim.error(ctx, dialogs) == (400, "BOT_METHOD_INVALID")
    r = sim.call(ctx, functions.channels.GetMessagesRequest(
        types.InputChannel(films.id, 0), [types.InputMessageID(1), types.InputMessageID(999)]))
    assert r.messages[0].message == "hello"
    assert isinstance(r.messages[1], types.MessageEmpty) and r.messages[1].id == 999


def test_log_out_unbinds_the_key(sim, user):
    ctx = sim.ctx(account=user)
    assert isinstance(sim.call(ctx, functions.auth.LogOutRequest()), types.auth.LoggedOut)
    assert sim.error(ctx, functions.updates.GetStateRequest()) == (401, "AUTH_KEY_UNREGISTERED")


def test_export_and_import_authorization(sim, user):
    home = sim.ctx(dc=2, account=user)
    assert sim.error(home, functions.auth.ExportAuthorizationRequest(2)) == (400, "DC_ID_INVALID")
    assert sim.error(home, functions.auth.ExportAuthorizationRequest(9)) == (400, "DC_ID_INVALID")
    exported = sim.call(home, functions.auth.ExportAuthorizationRequest(4))
    assert sim.counters.get(2, "exports") == 1

    wrong_dc = sim.ctx(dc=3)
    assert sim.error(wrong_dc, functions.auth.ImportAuthorizationRequest(exported.id, exported.bytes)) == (
        400, "AUTH_BYTES_INVALID")
    foreign = sim.ctx(dc=4)
    tampered = exported.bytes[:-1] + bytes([exported.bytes[-1] ^ 1])
    assert sim.error(foreign, functions.auth.ImportAuthorizationRequest(exported.id, tampered)) == (
        400, "AUTH_BYTES_INVALID")
    auth = sim.call(foreign, wrapped(functions.auth.ImportAuthorizationRequest(exported.id, exported.bytes)))
    assert auth.user.id == user.id
    assert sim.counters.get(4, "imports") == 1 and sim.counters.get(3, "imports") == 0
    assert sim.keys.get(foreign.auth_key_id).user_id == user.id


# --- entities ---------------------------------------------------------------------------------------
def test_resolve_username(sim, small, user):
    ctx = sim.ctx(account=user)
    r = sim.call(ctx, functions.contacts.ResolveUsernameRequest("SandboxNews"))
    assert r.peer.channel_id == small.news.id and r.chats[0].access_hash == small.news.access_hash
    r = sim.call(ctx, functions.contacts.ResolveUsernameRequest("files_bot"))
    assert r.users[0].bot and r.peer.user_id == r.users[0].id
    assert sim.error(ctx, functions.contacts.ResolveUsernameRequest("nobody_here")) == (400, "USERNAME_NOT_OCCUPIED")
    assert sim.error(ctx, functions.contacts.ResolveUsernameRequest("a b")) == (400, "USERNAME_INVALID")


def test_channel_access_rules(sim, small, user):
    ctx = sim.ctx(account=user)
    full = lambda ch, h=None: functions.channels.GetFullChannelRequest(
        types.InputChannel(ch.id, ch.access_hash if h is None else h))
    r = sim.call(ctx, full(small.films))
    assert r.full_chat.id == small.films.id and r.chats[0].title == "Films"
    assert sim.error(ctx, full(small.films, 12345)) == (400, "CHANNEL_INVALID")
    assert sim.error(ctx, full(small.films, 0)) == (400, "CHANNEL_INVALID")   # hash 0 is for bots only
    assert sim.error(ctx, full(small.private)) == (400, "CHANNEL_PRIVATE")
    assert sim.call(ctx, full(small.news)).chats[0].left                          # public: readable
    chats = sim.call(ctx, functions.channels.GetChannelsRequest([types.InputChannel(small.films.id,
                                                                                      small.films.access_hash)]))
    assert chats.chats[0].broadcast and chats.chats[0].username is None
    history = functions.messages.GetHistoryRequest(types.InputPeerSelf(), 0, None, 0, 10, 0, 0, 0)
    assert sim.error(ctx, history) == (400, "PEER_ID_INVALID")


def test_messages_carry_documents_photos_and_attributes(sim, small, user):
    ctx = sim.ctx(account=user)
    r = sim.call(ctx, functions.messages.GetHistoryRequest(input_channel(small.films), 0, None, 0, 100, 0, 0, 0))
    by_name = {}
    for m in r.messages:
        if isinstance(m.media, types.MessageMediaDocument):
            d = m.media.document
            by_name[d.attributes[0].file_name] = d
    assert by_name["film.mp4"].dc_id == 3                   # advertised (stale) DC
    video = by_name["film.mp4"].attributes[1]
    assert (video.duration, video.w, video.h, video.supports_streaming) == (12.5, 640, 360, True)
    audio = by_name["song.mp3"].attributes[1]
    assert (audio.title, audio.performer, audio.duration) == ("Song", "Band", 3)
    assert by_name["big.bin"].size == 5 * MIB + 123 and by_name["big.bin"].file_reference
    photo = next(m.media.photo for m in r.messages if isinstance(m.media, types.MessageMediaPhoto))
    assert [s.type for s in photo.sizes] == ["m", "x"]


# --- paging -----------------------------------------------------------------------------------------
def test_dialogs_page_with_telethons_offsets(clock):
    w = World(seed=3)
    user = w.add_user("1000", "U")
    chans = [w.add_channel(f"C{i}", members=[user], date=1_700_000_000 + i) for i in range(7)]
    for i, c in enumerate(chans):
        w.add_text(c, "x", date=1_700_000_000 + (i * 37) % 7 * 100)
    sim = Sim(w, clock)
    ctx = sim.ctx(account=user)
    seen, offset_peer, offset_date, offset_id = [], types.InputPeerEmpty(), None, 0
    while True:
        r = sim.call(ctx, functions.messages.GetDialogsRequest(offset_date, offset_id, offset_peer, 3, 0))
        assert isinstance(r, types.messages.DialogsSlice) and r.count == 7
        seen += [d.peer.channel_id for d in r.dialogs]
        if len(r.dialogs) < 3:
            break
        last = r.dialogs[-1]
        msg = next(m for m in r.messages if m.peer_id.channel_id == last.peer.channel_id)
        offset_id, offset_date = msg.id, msg.date
        ch = w.channels[last.peer.channel_id]
        offset_peer = types.InputPeerChannel(ch.id, ch.access_hash)
    assert seen == [c.id for c in w.dialogs_of(user)] and len(set(seen)) == 7
    dates = [w.channels[c].top.date for c in seen]
    assert dates == sorted(dates, reverse=True)
    whole = sim.call(ctx, functions.messages.GetDialogsRequest(None, 0, types.InputPeerEmpty(), 100, 0))
    assert isinstance(whole, types.messages.Dialogs) and len(whole.dialogs) == 7
    sim.close()


def reference_history(ids_desc, dates_desc, offset_id, offset_date, add_offset, limit, max_id, min_id):
    """Telegram's getHistory spelled out naively: a window over the newest-first list, then filters."""
    if offset_id:
        pos = next((i for i, m in enumerate(ids_desc) if m < offset_id), len(ids_desc))
    elif offset_date:
        pos = next((i for i, d in enumerate(dates_desc) if d < offset_date), len(ids_desc))
    else:
        pos = 0
    limit = min(limit, 100)
    window = [ids_desc[i] for i in range(pos + add_offset, pos + add_offset + limit) if 0 <= i < len(ids_desc)]
    return [m for m in window if m > min_id and (not max_id or m < max_id)]


@pytest.fixture(scope="module")
def long_channel():
    w = World(seed=5)
    user = w.add_user("2000", "Reader")
    ch = w.add_channel("Long", members=[user])
    for i in range(250):
        w.add_text(ch, f"m{i}", date=1_700_000_000 + (i // 3) * 10)   # dates repeat: paging must use ids
    return w, user, ch


@settings(max_examples=150, deadline=None)
@given(offset_id=st.integers(0, 260), use_date=st.booleans(), date_step=st.integers(0, 90),
       add_offset=st.integers(-120, 120), limit=st.integers(0, 150), max_id=st.integers(0, 260),
       min_id=st.integers(0, 260))
def test_history_window_matches_telegrams_rules(long_channel, offset_id, use_date, date_step,
                                                add_offset, limit, max_id, min_id):
    w, user, ch = long_channel
    sim = Sim(w, lambda: 0.0)
    offset_date = 1_700_000_000 + date_step * 10 if use_date else 0
    r = sim.call(sim.ctx(account=user), functions.messages.GetHistoryRequest(
        input_channel(ch), offset_id, offset_date or None, add_offset, limit, max_id, min_id, 0))
    ids_desc = [m.id for m in reversed(ch.messages)]
    dates_desc = [m.date for m in reversed(ch.messages)]
    assert [m.id for m in r.messages] == reference_history(
        ids_desc, dates_desc, offset_id, offset_date, add_offset, limit, max_id, min_id)
    assert r.count == 250
    sim.close()


def test_history_pages_forward_and_in_reverse_like_telethon(long_channel, clock):
    w, user, ch = long_channel
    sim = Sim(w, clock)
    ctx = sim.ctx(account=user)
    seen, offset_id, offset_date = [], 0, None
    while True:     # iter_messages: offset_id and offset_date from the last message
        r = sim.call(ctx, functions.messages.GetHistoryRequest(input_channel(ch), offset_id, offset_date,
                                                               0, 100, 0, 0, 0))
        if not r.messages:
            break
        seen += [m.id for m in r.messages]
        offset_id, offset_date = r.messages[-1].id, r.messages[-1].date
    assert seen == list(range(250, 0, -1))
    seen, offset_id = [], 1
    while True:     # iter_messages(reverse=True): offset_id = last + 1, add_offset = -limit
        r = sim.call(ctx, functions.messages.GetHistoryRequest(input_channel(ch), offset_id, None,
                                                               -100, 100, 0, 0, 0))
        batch = [m.id for m in reversed(r.messages) if m.id >= offset_id]
        if not batch:
            break
        seen += batch
        offset_id = batch[-1] + 1
    assert seen == list(range(1, 251))
    assert sim.error(ctx, functions.messages.GetHistoryRequest(input_channel(ch), 0, None, 0, -1, 0, 0, 0)) == (
        400, "LIMIT_INVALID")
    sim.close()


# --- upload.getFile ----------------------------------------------------------------------------------
def test_getfile_returns_exact_bytes_short_at_the_end_and_counts_them(sim, small, user):
    films, big = small.films, small.big
    loc = doc_location(sim, sim.ctx(account=user), films, message_id_of(films, big))
    ctx = sim.ctx(dc=4, account=user)
    size = big.size
    for offset, limit, precise in [(0, 4096, False), (MIB, 512 * 1024, False), (3 * MIB + 1024, 3072, True),
                                   (5 * MIB, MIB, False), (5 * MIB + 1024, 1024, True), (6 * MIB, 4096, False)]:
        r = sim.call(ctx, get_file(loc, offset, limit, precise))
        expected = pattern(big.id, offset, max(0, min(limit, size - offset)))
        assert hashlib.sha256(r.bytes).digest() == hashlib.sha256(expected).digest()
        assert isinstance(r.type, types.storage.FileUnknown)
    served = 4096 + 512 * 1024 + 3072 + 123 + 0 + 0
    assert sim.counters.get(4, "getfile_bytes") == served
    assert sim.counters.get(4, "requests:GetFile") == 6


BAD_PARTS = [
    (0, 4096 + 1024, True, None),            # precise may use any multiple of 1 KiB ...
    (1024, 4096, False, "OFFSET_INVALID"),   # ... not precise needs 4 KiB offsets
    (0, 4096 * 3, False, "LIMIT_INVALID"),   # limit must divide 1 MiB
    (0, 1000, False, "LIMIT_INVALID"),
    (0, 0, False, "LIMIT_INVALID"),
    (-4096, 4096, False, "OFFSET_INVALID"),
    (512, 1024, True, "OFFSET_INVALID"),
    (0, 1500, True, "LIMIT_INVALID"),
    (0, 2 * MIB, False, "LIMIT_INVALID"),
    (0, MIB + 1024, True, "LIMIT_INVALID"),
    (4096, MIB, False, "LIMIT_INVALID"),                   # crosses the first MiB boundary
    (MIB - 4096, 8192, False, "LIMIT_INVALID"),
    (MIB - 1024, 2048, True, "LIMIT_INVALID"),
    (2 * MIB + 512 * 1024, 1024 * 1024, False, "LIMIT_INVALID"),
    (MIB - 1024, 1024, True, None),                        # ends exactly at the boundary
]


@pytest.mark.parametrize("offset,limit,precise,error", BAD_PARTS)
def test_getfile_part_rules(sim, small, user, offset, limit, precise, error):
    loc = doc_location(sim, sim.ctx(account=user), small.films, message_id_of(small.films, small.home))
    ctx = sim.ctx(dc=2, account=user)
    if error is None:
        r = sim.call(ctx, get_file(loc, offset, limit, precise))
        assert r.bytes == pattern(small.home.id, offset, max(0, min(limit, small.home.size - offset)))
    else:
        assert sim.error(ctx, get_file(loc, offset, limit, precise)) == (400, error)
        assert sim.counters.get(2, f"errors:{error}") == 1


def test_getfile_migrates_to_the_dc_holding_the_bytes(sim, small, user):
    films = small.films
    ctx = sim.ctx(account=user)
    big = doc_location(sim, ctx, films, message_id_of(films, small.big))
    assert sim.error(ctx, get_file(big, 0, 4096)) == (303, "FILE_MIGRATE_4")
    stale = doc_location(sim, ctx, films, message_id_of(films, small.stale))
    on_3 = sim.ctx(dc=3, account=user)
    assert sim.error(on_3, get_file(stale, 0, 4096)) == (303, "FILE_MIGRATE_5")   # advertised 3, held by 5
    on_5 = sim.ctx(dc=5, account=user)
    assert sim.call(on_5, get_file(stale, 0, 4096)).bytes == pattern(small.stale.id, 0, 4096)
    assert sim.counters.get(2, "errors:FILE_MIGRATE_X") == 1 and sim.counters.get(3, "errors:FILE_MIGRATE_X") == 1


def test_getfile_bad_locations(sim, small, user):
    ctx = sim.ctx(account=user)
    loc = doc_location(sim, ctx, small.films, message_id_of(small.films, small.home))
    wrong_hash = types.InputDocumentFileLocation(loc.id, loc.access_hash + 1, loc.file_reference, "")
    assert sim.error(ctx, get_file(wrong_hash, 0, 4096)) == (400, "FILE_ID_INVALID")
    other = doc_location(sim, ctx, small.films, message_id_of(small.films, small.big))
    swapped = types.InputDocumentFileLocation(loc.id, loc.access_hash, other.file_reference, "")
    assert sim.error(ctx, get_file(swapped, 0, 4096)) == (400, "FILE_REFERENCE_INVALID")
    empty = types.InputDocumentFileLocation(loc.id, loc.access_hash, b"", "")
    assert sim.error(ctx, get_file(empty, 0, 4096)) == (400, "FILE_REFERENCE_EMPTY")
    peer_photo = types.InputPeerPhotoFileLocation(types.InputPeerSelf(), 1)
    assert sim.error(ctx, get_file(peer_photo, 0, 4096)) == (400, "LOCATION_INVALID")


def test_photo_sizes_download_by_type(sim, small, user):
    ctx = sim.ctx(account=user)
    r = sim.call(ctx, functions.channels.GetMessagesRequest(
        types.InputChannel(small.films.id, small.films.access_hash), [types.InputMessageID(small.photo_message_id)]))
    p = r.messages[0].media.photo
    loc = lambda t: types.InputPhotoFileLocation(p.id, p.access_hash, p.file_reference, t)
    got = b""
    while len(got) < 70001:
        got += sim.call(ctx, get_file(loc("x"), len(got), 65536)).bytes
    assert got == pattern(12, 0, 70001)
    assert sim.error(ctx, get_file(loc("w"), 0, 4096)) == (400, "LOCATION_INVALID")


def test_file_references_expire_by_ttl_and_on_demand_and_refetching_renews(sim, small, user, clock):
    films, home = small.films, small.home
    ctx = sim.ctx(account=user)
    mid = message_id_of(films, home)
    loc = doc_location(sim, ctx, films, mid)
    sim.controls.apply_faults({"file_reference_ttl": 30}, now=clock())
    clock.advance(29)
    assert sim.call(ctx, get_file(loc, 0, 4096)).bytes == pattern(home.id, 0, 4096)
    clock.advance(2)
    assert sim.error(ctx, get_file(loc, 0, 4096)) == (400, "FILE_REFERENCE_EXPIRED")
    loc = doc_location(sim, ctx, films, mid)
    assert sim.call(ctx, get_file(loc, 0, 4096)).bytes == pattern(home.id, 0, 4096)

    clock.advance(1)
    sim.controls.apply_faults({"file_reference_ttl": None, "expire_file_references": True}, now=clock())
    assert sim.error(ctx, get_file(loc, 0, 4096)) == (400, "FILE_REFERENCE_EXPIRED")
    clock.advance(1)
    history = sim.call(ctx, functions.messages.GetHistoryRequest(input_channel(films), mid + 1, None, 0, 1, 0, 0, 0))
    d = history.messages[0].media.document
    fresh = types.InputDocumentFileLocation(d.id, d.access_hash, d.file_reference, "")
    assert sim.call(ctx, get_file(fresh, 4096, 4096)).bytes == pattern(home.id, 4096, 4096)
    assert sim.counters.get(2, "errors:FILE_REFERENCE_EXPIRED") == 2


# --- floods -----------------------------------------------------------------------------------------
def test_injected_floods(sim, small, user, clock):
    ctx = sim.ctx(account=user)
    loc = doc_location(sim, ctx, small.films, message_id_of(small.films, small.home))
    sim.controls.apply_faults({"flood_wait": [
        {"dc": 2, "method": "GetFile", "seconds": 5, "count": 2},
        {"dc": 3, "method": "*", "seconds": 7, "premium": True}]}, now=clock())
    assert sim.error(ctx, get_file(loc, 0, 4096)) == (420, "FLOOD_WAIT_5")
    assert sim.error(ctx, get_file(loc, 0, 4096)) == (420, "FLOOD_WAIT_5")
    assert sim.call(ctx, get_file(loc, 0, 4096)).bytes == pattern(small.home.id, 0, 4096)
    assert sim.error(sim.ctx(dc=3), wrapped(functions.help.GetConfigRequest())) == (420, "FLOOD_PREMIUM_WAIT_7")
    assert sim.call(sim.ctx(dc=3), functions.help.GetConfigRequest()).this_dc == 3
    assert sim.counters.get(2, "errors:FLOOD_WAIT_X") == 2 and sim.counters.get(3, "errors:FLOOD_PREMIUM_WAIT_X") == 1


def test_getfile_rate_rule_floods_the_account_on_that_dc(sim, small, user, clock):
    ctx = sim.ctx(account=user)
    loc = doc_location(sim, ctx, small.films, message_id_of(small.films, small.home))
    sim.controls.apply_faults({"getfile_rate_limit": {"per_second": 3, "seconds": 4}}, now=clock())
    for _ in range(3):
        sim.call(ctx, get_file(loc, 0, 4096))
        clock.advance(0.1)
    assert sim.error(ctx, get_file(loc, 0, 4096)) == (420, "FLOOD_WAIT_4")
    clock.advance(1.5)
    assert sim.error(sim.ctx(account=user), get_file(loc, 0, 4096)) == (420, "FLOOD_WAIT_3")   # any connection
    big = doc_location(sim, ctx, small.films, message_id_of(small.films, small.big))
    assert sim.call(sim.ctx(dc=4, account=user), get_file(big, 0, 4096)).bytes   # other DCs are unaffected
    clock.advance(3)
    assert sim.call(ctx, get_file(loc, 0, 4096)).bytes == pattern(small.home.id, 0, 4096)


def test_worlds_with_the_same_seed_give_interchangeable_references(clock):
    a, b = build_small_world(), build_small_world()
    sim_a, sim_b = Sim(a.world, clock), Sim(b.world, clock)
    user_a, user_b = (s.world.account_by_phone("15550001111") for s in (a, b))
    loc = doc_location(sim_a, sim_a.ctx(account=user_a), a.films, message_id_of(a.films, a.home))
    r = sim_b.call(sim_b.ctx(account=user_b), get_file(loc, 0, 4096))    # a restarted sandbox accepts it
    assert r.bytes == pattern(b.home.id, 0, 4096)
    sim_a.close(), sim_b.close()


def test_dates_travel_as_telegram_dates(sim, small, user):
    r = sim.call(sim.ctx(account=user), functions.messages.GetHistoryRequest(
        input_channel(small.films), 0, datetime(2030, 1, 1, tzinfo=timezone.utc), 0, 1, 0, 0, 0))
    top = small.films.top
    assert r.messages[0].id == top.id and r.messages[0].date.timestamp() == top.date


def test_gethistory_rate_rule_is_on_by_default_and_floods_the_account(sim, small, user, clock):
    """30 calls at once, then one a second (HISTORY_RULE); beyond it FLOOD_WAIT_3 on any connection and
    DC of that account until the deadline; the rule is configurable and can be switched off."""
    history = functions.messages.GetHistoryRequest(input_channel(small.films), 0, None, 0, 10, 0, 0, 0)
    for _ in range(30):
        sim.call(sim.ctx(account=user), history)
    assert sim.error(sim.ctx(account=user), history) == (420, "FLOOD_WAIT_3")
    clock.advance(1)
    assert sim.error(sim.ctx(dc=3, account=user), history) == (420, "FLOOD_WAIT_2")   # still flooded
    clock.advance(2)
    sim.call(sim.ctx(account=user), history)          # 3 s of refill: three calls, not a fourth
    sim.call(sim.ctx(account=user), history)
    sim.call(sim.ctx(account=user), history)
    assert sim.error(sim.ctx(account=user), history)[0] == 420
    sim.controls.apply_faults({"history_rate_limit": {"per_second": 50, "burst": 2, "seconds": 7}}, now=clock())
    clock.advance(10)
    for _ in range(2):
        sim.call(sim.ctx(account=user), history)
    assert sim.error(sim.ctx(account=user), history) == (420, "FLOOD_WAIT_7")
    sim.controls.apply_faults({"history_rate_limit": None}, now=clock())
    clock.advance(10)
    for _ in range(100):
        sim.call(sim.ctx(account=user), history)
