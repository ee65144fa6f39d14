"""Writes against the whole sandbox with an unmodified Telethon over real sockets: uploads (small,
big, streamed), the upload rules and their error names, posting rights, edit / delete / forward /
createChannel, what survives a restart of the sandbox, and the upload bandwidth cap. Every check is
on bytes (SHA-256), on what Telethon parses, and on the sandbox's counters."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import pytest
from telethon import TelegramClient, errors
from telethon.crypto import rsa as telethon_rsa
from telethon.sessions import StringSession
from telethon.tl import functions, types

from tests.helpers import run
from tests.sandbox.conftest import build_small_world
from tgdav.sandbox.controls import EmulatedTime, Link
from tgdav.sandbox.demo import UPLOADS, build_demo_world
from tgdav.sandbox.runner import Sandbox
from tgdav.sandbox.uplink import BURST, ReadPacer
from tgdav.telegram.mtproto import forget_config

MIB = 1 << 20
KIB = 1024
USER_PHONE = "15550001111"


def build_world():
    """The small world (Films: user and bot read it) plus Uploads, created by the user, the bot an admin."""
    small = build_small_world()
    w = small.world
    user, bot = w.account_by_phone(USER_PHONE), w.bots()[0]
    w.add_channel(UPLOADS, members=[user, bot], creator=user, admins=[bot])
    return small


def start(state: Path) -> tuple[Sandbox, object]:
    small = build_world()
    sandbox = Sandbox(small.world, state_dir=state).start()
    telethon_rsa.add_key(sandbox.rsa.public_pem, old=False)
    return sandbox, small


@pytest.fixture
def sb(tmp_path):
    sandbox, small = start(tmp_path / "state")
    sandbox.small = small
    yield sandbox
    sandbox.stop()
    forget_config()           # Telethon caches help.config on the class
    # Telethon found a handler for everything it asked, and no handler failed
    assert counter(sandbox, "errors:INPUT_METHOD_INVALID") == 0
    assert counter(sandbox, "errors:INTERNAL") == 0



def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def counter(sandbox: Sandbox, name: str, dc: int | None = None) -> int:
    return sandbox.counters.total(name) if dc is None else sandbox.counters.get(dc, name)


async def login(sandbox: Sandbox, session: str = "") -> TelegramClient:
    forget_config()           # Telethon caches help.config on the class
    client = TelegramClient(StringSession(session), api_id=1, api_hash="x", connection_retries=1,
                            retry_delay=0, timeout=20, flood_sleep_threshold=0, request_retries=1)
    client.session.set_dc(2, "127.0.0.1", sandbox.cluster.ports[2])
    await client.connect()
    if not await client.is_user_authorized():
        await client.send_code_request(USER_PHONE)
        await client.sign_in(USER_PHONE, sandbox.world.login_code)
    return client


def peer_of(sandbox: Sandbox, title: str) -> types.InputPeerChannel:
    channel = next(c for c in sandbox.world.channels.values() if c.title == title)
    return types.InputPeerChannel(channel.id, channel.access_hash)


def channel_of(sandbox: Sandbox, title: str):
    return next(c for c in sandbox.world.channels.values() if c.title == title)


async def send_parts(client, file_id: int, parts: list[bytes], total: int | None) -> None:
    for i, part in enumerate(parts):
        if total is None:
            await client(functions.upload.SaveFilePartRequest(file_id, i, part))
        else:
            await client(functions.upload.SaveBigFilePartRequest(file_id, i, total, part))


def named(name: str) -> list:
    return [types.DocumentAttributeFilename(name)]


def uploaded(file, name: str, mime: str = "application/octet-stream", attributes=()) -> types.InputMediaUploadedDocument:
    return types.InputMediaUploadedDocument(
        file=file, mime_type=mime, attributes=[types.DocumentAttributeFilename(name), *attributes])


async def send_media(client, peer, media, caption: str = ""):
    result = await client(functions.messages.SendMediaRequest(peer, media, caption,
                                                              random_id=random.getrandbits(63)))
    return client._get_response_message(None, result, peer)


# --- uploads ------------------------------------------------------------------------------------
def test_send_file_small_and_big_round_trip_byte_exact(sb):
    small, big = blob(300 * KIB + 17, 1), blob(10 * MIB + 300 * KIB, 2)

    async def go():
        client = await login(sb)
        try:
            uploads = await client.get_entity(peer_of(sb, UPLOADS))
            m1 = await client.send_file(uploads, small, attributes=named("small.bin"), caption="a small one",
                                        force_document=True)
            m2 = await client.send_file(uploads, big, attributes=named("big.bin"), force_document=True)
            back1 = await client.download_media(m1, bytes)
            back2 = await client.download_media(m2, bytes)
            listed = [m.file.name async for m in client.iter_messages(uploads) if m.file]
            return m1, m2, back1, back2, listed
        finally:
            await client.disconnect()
    m1, m2, back1, back2, listed = run(go(), 120)
    assert (m1.file.name, m1.file.size, m1.message) == ("small.bin", len(small), "a small one")
    assert (m2.file.name, m2.file.size) == ("big.bin", len(big))
    assert m1.id + 1 == m2.id and m1.document.dc_id == 2
    assert sha(back1) == sha(small) and sha(back2) == sha(big)
    assert listed == ["big.bin", "small.bin"]
    assert counter(sb, "requests:SaveFilePart", 2) >= 1 and counter(sb, "requests:SaveBigFilePart", 2) == -(-len(big) // (128 * KIB))
    assert counter(sb, "upload_bytes", 2) == len(small) + len(big)
    assert counter(sb, "messages_sent", 2) == 2 and counter(sb, "documents_created", 2) == 2


def test_streamed_upload_with_unknown_total_until_the_last_part(sb):
    part = 64 * KIB
    data = blob(5 * part + 1000, 3)          # 5 whole parts and a short last one
    even = blob(4 * part, 4)                 # ends on a part boundary: an empty last part carries the count

    async def go():
        client = await login(sb)
        try:
            peer = peer_of(sb, UPLOADS)
            pieces = [data[i:i + part] for i in range(0, len(data), part)]
            for i, piece in enumerate(pieces[:-1]):
                await client(functions.upload.SaveBigFilePartRequest(77, i, -1, piece))
            await client(functions.upload.SaveBigFilePartRequest(77, len(pieces) - 1, len(pieces), pieces[-1]))
            m1 = await send_media(client, peer, uploaded(types.InputFileBig(77, len(pieces), "s.bin"), "s.bin"))
            for i in range(4):
                await client(functions.upload.SaveBigFilePartRequest(78, i, -1, even[i * part:(i + 1) * part]))
            await client(functions.upload.SaveBigFilePartRequest(78, 4, 5, b""))
            m2 = await send_media(client, peer, uploaded(types.InputFileBig(78, 5, "e.bin"), "e.bin"))
            return await client.download_media(m1, bytes), await client.download_media(m2, bytes), m1, m2
        finally:
            await client.disconnect()
    back1, back2, m1, m2 = run(go(), 120)
    assert sha(back1) == sha(data) and m1.file.size == len(data)
    assert sha(back2) == sha(even) and m2.file.size == len(even)
    assert counter(sb, "upload_parts", 2) == 6 + 5


def test_upload_rules_answer_telegrams_error_names(sb):
    peer = peer_of(sb, UPLOADS)

    async def go():
        client = await login(sb)
        seen = {}

        async def expect(name, coro):
            try:
                await coro
            except errors.RPCError as e:
                seen[name] = type(e).__name__ + ("" if not hasattr(e, "which") else f":{e.which}")
            else:
                seen[name] = "accepted"
        try:
            big = functions.upload.SaveBigFilePartRequest
            await expect("too big", client(functions.upload.SaveFilePartRequest(1, 0, bytes(512 * KIB + KIB))))
            await expect("bad size", client(big(2, 0, 4, bytes(1000))))
            await expect("not dividing", client(big(2, 0, 4, bytes(3 * KIB))))
            await client(big(3, 0, 4, bytes(64 * KIB)))
            await expect("changed", client(big(3, 1, 4, bytes(128 * KIB))))
            await expect("last bigger", client(big(3, 3, 4, bytes(128 * KIB))))
            await expect("empty", client(functions.upload.SaveFilePartRequest(4, 0, b"")))
            await expect("past total", client(big(5, 4, 4, bytes(KIB))))
            await expect("bad total", client(big(5, 0, 0, bytes(KIB))))
            await client(big(3, 1, 4, bytes(64 * KIB)))
            await expect("total changed", client(big(3, 2, 5, bytes(64 * KIB))))
            # using files: a missing part, a wrong count, a wrong md5, an unknown file
            await send_parts(client, 6, [bytes(KIB), bytes(KIB), bytes(KIB)], None)
            await expect("missing", send_media(client, peer, uploaded(types.InputFile(6, 4, "x", ""), "x")))
            await expect("too few", send_media(client, peer, uploaded(types.InputFile(6, 2, "x", ""), "x")))
            await expect("md5", send_media(client, peer, uploaded(types.InputFile(6, 3, "x", "0" * 32), "x")))
            await expect("unknown", send_media(client, peer, uploaded(types.InputFile(999, 1, "x", ""), "x")))
            await expect("big count", send_media(client, peer, uploaded(types.InputFileBig(3, 3, "x"), "x")))
            await send_parts(client, 7, [bytes(2 * KIB), bytes(KIB), bytes(KIB)], None)
            await expect("small changed", send_media(client, peer, uploaded(types.InputFile(7, 3, "x", ""), "x")))
            md5 = hashlib.md5(bytes(3 * KIB)).hexdigest()
            await expect("md5 ok", send_media(client, peer, uploaded(types.InputFile(6, 3, "x", md5), "x")))
            return seen
        finally:
            await client.disconnect()
    seen = run(go(), 120)
    assert seen == {
        "too big": "FilePartTooBigError", "bad size": "FilePartSizeInvalidError",
        "not dividing": "FilePartSizeInvalidError", "changed": "FilePartSizeChangedError",
        "last bigger": "FilePartSizeChangedError", "empty": "FilePartEmptyError",
        "past total": "FilePartInvalidError", "bad total": "FilePartsInvalidError",
        "total changed": "FilePartsInvalidError",
        "missing": "FilePartMissingError:3", "too few": "FilePartsInvalidError",
        "md5": "Md5ChecksumInvalidError", "unknown": "FilePart0MissingError",
        "big count": "FilePartsInvalidError", "small changed": "FilePartSizeChangedError",
        "md5 ok": "accepted"}
    assert counter(sb, "errors:FILE_PART_X_MISSING", 2) == 2
    assert counter(sb, "messages_sent") == 1


def test_part_limit_expiry_lost_part_and_upload_floods(sb):
    peer = peer_of(sb, UPLOADS)
    faults = lambda body: sb.controls.apply_faults(body, now=time.monotonic())   # noqa: E731

    async def go():
        client = await login(sb)
        seen = {}
        try:
            config = await client(functions.help.GetAppConfigRequest(0))
            seen["config"] = {v.key: v.value.value for v in config.config.value}
            faults({"upload_max_fileparts": {"default": 3}})
            with pytest.raises(errors.FilePartInvalidError):
                await client(functions.upload.SaveFilePartRequest(10, 3, bytes(KIB)))
            with pytest.raises(errors.FilePartsInvalidError):
                await client(functions.upload.SaveBigFilePartRequest(10, 0, 4, bytes(KIB)))
            faults({"upload_max_fileparts": {"default": 4000}})
            # parts expire: a file whose parts are gone cannot be used
            await send_parts(client, 11, [bytes(KIB)], None)
            faults({"expire_upload_parts": True})       # in force on return
            with pytest.raises(errors.FilePart0MissingError):
                await send_media(client, peer, uploaded(types.InputFile(11, 1, "x", ""), "x"))
            # a part lost once: FILE_PART_1_MISSING, then the part re-sent and the file used
            faults({"file_part_missing": [{"part": 1, "count": 1}]})
            parts = [blob(KIB, 5), blob(KIB, 6), blob(100, 7)]
            await send_parts(client, 12, parts, None)
            with pytest.raises(errors.FilePartMissingError) as e:
                await send_media(client, peer, uploaded(types.InputFile(12, 3, "x", ""), "x"))
            seen["lost"] = e.value.which
            await client(functions.upload.SaveFilePartRequest(12, 1, parts[1]))
            m = await send_media(client, peer, uploaded(types.InputFile(12, 3, "x", ""), "x"))
            seen["resent"] = await client.download_media(m, bytes) == b"".join(parts)
            # an injected flood and the rate rule
            faults({"flood_wait": [{"dc": 2, "method": "SaveBigFilePart", "seconds": 7}]})
            with pytest.raises(errors.FloodWaitError) as e:
                await client(functions.upload.SaveBigFilePartRequest(13, 0, 2, bytes(KIB)))
            seen["injected"] = e.value.seconds
            client._flood_waited_requests.clear()
            faults({"upload_rate_limit": {"per_second": 3, "seconds": 11}})
            with pytest.raises(errors.FloodWaitError) as e:
                for i in range(50):
                    await client(functions.upload.SaveFilePartRequest(14, i, bytes(KIB)))
            seen["rate"] = e.value.seconds
            return seen
        finally:
            await client.disconnect()
    seen = run(go(), 120)
    assert seen["config"] == {"upload_max_fileparts_default": 4000, "upload_max_fileparts_premium": 8000}
    assert seen["lost"] == 1 and seen["resent"] is True
    assert seen["injected"] == 7 and seen["rate"] == 11
    assert counter(sb, "upload_parts_lost", 2) == 1
    assert counter(sb, "errors:FLOOD_WAIT_X", 2) == 2


def test_a_random_id_is_used_once(sb):
    async def go():
        client = await login(sb)
        try:
            peer = peer_of(sb, UPLOADS)
            await client(functions.messages.SendMessageRequest(peer, "once", random_id=4242))
            with pytest.raises(ValueError, match="unsuccessful"):     # Telethon retries a 500, then gives up
                await client(functions.messages.SendMessageRequest(peer, "twice", random_id=4242))
            return [m.message async for m in client.iter_messages(peer)]
        finally:
            await client.disconnect()
    assert run(go(), 120) == ["once"]
    assert counter(sb, "messages_sent") == 1 and counter(sb, "errors:RANDOM_ID_DUPLICATE") >= 1


# --- rights, edit, delete, forward, createChannel -----------------------------------------------
def test_read_only_channels_refuse_writes_and_rights_are_visible(sb):
    films = peer_of(sb, "Films")

    async def go():
        client = await login(sb)
        seen = {}
        try:
            dialogs = {d.title: d.entity async for d in client.iter_dialogs()}
            seen["uploads"] = (dialogs[UPLOADS].creator, dialogs[UPLOADS].admin_rights.post_messages)
            seen["films"] = (dialogs["Films"].creator, dialogs["Films"].admin_rights)
            got = await client(functions.channels.GetChannelsRequest([types.InputChannel(films.channel_id,
                                                                                         films.access_hash)]))
            seen["getChannels"] = (got.chats[0].creator, got.chats[0].admin_rights)
            for name, call in [
                ("message", lambda: client.send_message(films, "hi")),
                ("file", lambda: client.send_file(films, b"x" * 2000, attributes=named("x.bin"))),
                ("edit", lambda: client.edit_message(films, 1, "changed")),
                ("delete", lambda: client.delete_messages(films, [1])),
                ("forward", lambda: client.forward_messages(films, 1, peer_of(sb, UPLOADS))),
            ]:
                try:
                    await call()
                    seen[name] = "accepted"
                except errors.RPCError as e:
                    seen[name] = type(e).__name__
            return seen
        finally:
            await client.disconnect()
    seen = run(go(), 120)
    assert seen["uploads"] == (True, True)
    assert seen["films"] == (False, None) and seen["getChannels"] == (False, None)
    assert seen["message"] == seen["file"] == seen["edit"] == "ChatWriteForbiddenError"
    assert seen["delete"] == "MessageDeleteForbiddenError"
    assert seen["forward"] == "ChatWriteForbiddenError"
    assert sb.small.films.message(1).text == "hello" and counter(sb, "messages_sent") == 0


def test_edit_delete_forward_and_create_channel(sb):
    films_doc = sb.small.home                         # 300 KiB on DC 2, in read-only Films
    films_msg = next(m.id for m in sb.small.films.messages if m.media is films_doc)

    async def go():
        client = await login(sb)
        seen = {}
        try:
            uploads = peer_of(sb, UPLOADS)
            m = await client.send_file(uploads, blob(5000, 8), attributes=named("doc.txt"), caption="first")
            edited = await client.edit_message(uploads, m.id, "second")
            seen["edited"] = (edited.message, edited.edit_date is not None, edited.file.name)
            with pytest.raises(errors.MessageNotModifiedError):
                await client.edit_message(uploads, m.id, "second")
            copies = await client(functions.messages.ForwardMessagesRequest(
                peer_of(sb, "Films"), [films_msg, 999_999], uploads, random_id=[11, 12], drop_author=True))
            kept = await client(functions.messages.ForwardMessagesRequest(
                peer_of(sb, "Films"), [films_msg], uploads, random_id=[13]))
            fwd = [u.message for u in copies.updates if isinstance(u, types.UpdateNewChannelMessage)]
            fwd_kept = [u.message for u in kept.updates if isinstance(u, types.UpdateNewChannelMessage)]
            seen["forward"] = (len(fwd), fwd[0].fwd_from, fwd[0].media.document.id, fwd_kept[0].fwd_from.channel_post)
            seen["forward bytes"] = await client.download_media(
                await client.get_messages(uploads, ids=fwd[0].id), bytes)
            # inputMediaDocument: the same document again without upload
            doc = (await client.get_messages(uploads, ids=m.id)).document
            again = await client.send_file(uploads, doc, caption="again")
            seen["again"] = (again.document.id == doc.id, again.message)
            photo = (await client.get_messages(peer_of(sb, "Films"), ids=sb.small.photo_message_id)).photo
            copy = await send_media(client, uploads, types.InputMediaPhoto(
                types.InputPhoto(photo.id, photo.access_hash, photo.file_reference)), "a photo again")
            seen["photo"] = (copy.photo.id == photo.id, len(await client.download_media(copy, bytes)))
            with pytest.raises(errors.FileReferenceExpiredError):
                sb.controls.apply_faults({"expire_file_references": True}, now=time.monotonic())
                await send_media(client, uploads, types.InputMediaPhoto(
                    types.InputPhoto(photo.id, photo.access_hash, photo.file_reference)), "stale")
            sb.controls.apply_faults({"clear": True}, now=time.monotonic())
            affected = await client.delete_messages(uploads, [m.id, again.id, 123456])
            seen["deleted"] = affected[0].pts_count
            seen["left"] = [x.id async for x in client.iter_messages(uploads)]
            created = await client(functions.channels.CreateChannelRequest("My Files", "", broadcast=True))
            new = created.chats[0]
            seen["created"] = (new.title, new.creator, new.admin_rights.post_messages)
            posted = await client.send_message(new, "in the new channel")
            with pytest.raises(errors.MessageTooLongError):
                await client.send_message(new, "x" * 4097)
            with pytest.raises(errors.MediaCaptionTooLongError):
                await client.send_file(new, b"y" * 100, attributes=named("y"), caption="é" * 1025)
            with pytest.raises(errors.ChatAdminRequiredError):
                await client(functions.channels.EditTitleRequest(peer_of(sb, "Films"), "Mine now"))
            with pytest.raises(errors.ChatAdminRequiredError):
                await client(functions.channels.DeleteChannelRequest(peer_of(sb, "Films")))
            await client(functions.channels.EditTitleRequest(new, "Renamed"))
            doomed = (await client(functions.channels.CreateChannelRequest("Doomed", "", broadcast=True))).chats[0]
            await client(functions.channels.DeleteChannelRequest(doomed))
            seen["dialogs"] = [d.title async for d in client.iter_dialogs()]
            seen["new messages"] = [x.message async for x in client.iter_messages(new)]
            seen["posted"] = posted.id
            return seen
        finally:
            await client.disconnect()
    seen = run(go(), 120)
    assert seen["edited"] == ("second", True, "doc.txt")
    n, header, doc_id, channel_post = seen["forward"]
    assert n == 1 and header is None and doc_id == films_doc.id and channel_post == films_msg
    assert sha(seen["forward bytes"]) == sha(films_doc.source.read(0, films_doc.size))
    assert seen["again"] == (True, "again") and seen["photo"] == (True, 70001)
    assert seen["deleted"] == 2 and len(seen["left"]) == 3
    assert seen["created"] == ("My Files", True, True)
    assert seen["new messages"] == ["in the new channel"]
    assert "Renamed" in seen["dialogs"] and not {"My Files", "Doomed"} & set(seen["dialogs"])
    assert counter(sb, "messages_edited") == 1 and counter(sb, "messages_deleted") == 2
    assert counter(sb, "messages_forwarded") == 2 and counter(sb, "channels_created") == 2
    assert counter(sb, "channels_renamed") == 1 and counter(sb, "channels_deleted") == 1
    assert counter(sb, "messages_sent") == 4


def test_writes_survive_a_sandbox_restart(tmp_path):
    state = tmp_path / "state"
    data = blob(700 * KIB + 3, 9)
    sandbox, _ = start(state)
    try:
        async def write():
            client = await login(sandbox)
            try:
                uploads = peer_of(sandbox, UPLOADS)
                keep = await client.send_file(uploads, data, attributes=named("keep.bin"), caption="v1")
                gone = await client.send_message(uploads, "to delete")
                await client.edit_message(uploads, keep.id, "v2")
                await client.delete_messages(uploads, [gone.id])
                created = await client(functions.channels.CreateChannelRequest("Draft", "", broadcast=True))
                await client.send_file(created.chats[0], data[:5000], attributes=named("small.bin"))
                await client(functions.channels.EditTitleRequest(created.chats[0], "Made"))
                other = await client(functions.channels.CreateChannelRequest("Other", "", broadcast=True))
                await client(functions.channels.EditTitleRequest(other.chats[0], "Gone soon"))
                await client(functions.channels.DeleteChannelRequest(other.chats[0]))
                return client.session.save(), keep.id
            finally:
                await client.disconnect()
        session, keep_id = run(write(), 120)
    finally:
        sandbox.stop()
    sandbox, _ = start(state)                       # a new process would rebuild the same world
    try:
        async def read():
            client = await login(sandbox, session)
            try:
                uploads = peer_of(sandbox, UPLOADS)
                msgs = [m async for m in client.iter_messages(uploads)]
                titles = [d.title async for d in client.iter_dialogs()]
                made = [d.entity async for d in client.iter_dialogs() if d.title == "Made"][0]
                small = [m async for m in client.iter_messages(made)]
                after = await client.send_message(uploads, "after restart")
                return msgs, await client.download_media(msgs[0], bytes), small, made, after.id, titles
            finally:
                await client.disconnect()
        msgs, back, small, made, after_id, titles = run(read(), 120)
    finally:
        sandbox.stop()
        forget_config()           # Telethon caches help.config on the class
    assert [(m.id, m.message, m.file.name) for m in msgs] == [(keep_id, "v2", "keep.bin")]
    assert msgs[0].edit_date is not None and sha(back) == sha(data)
    assert made.creator and [m.file.name for m in small] == ["small.bin"]
    assert not {"Gone soon", "Other", "Draft"} & set(titles)
    assert after_id == keep_id + 2                     # the deleted message's id is never reused
    assert (state / "writes.jsonl").exists() and any((state / "files").iterdir())


# --- the demo world and the upload bandwidth cap ------------------------------------------------
def test_demo_world_has_a_writable_uploads_channel_beside_read_only_ones():
    world = build_demo_world()
    user, bot = world.users()[0], world.bots()[0]
    writable = {c.title for c in world.channels.values() if c.may_post(user)}
    assert writable == {UPLOADS}
    assert all(c.may_post(bot) == (c.title == UPLOADS) for c in world.channels.values())


def test_read_pacer_lets_bytes_through_at_the_capped_rate():
    pacer = ReadPacer(lambda: Link())
    assert pacer.delay(10 * MIB, 0.0, 0) == 0.0
    waits = [pacer.delay(256 * KIB, 0.0, MIB) for _ in range(8)]       # 2 MiB read at once at 1 MiB/s
    assert waits[-1] == pytest.approx(2.0 - BURST / MIB)
    assert waits == sorted(waits)
    assert pacer.delay(KIB, 100.0, MIB) == 0.0                         # an idle link has its burst back


def test_upload_bandwidth_cap_slows_uploads_per_connection(sb):
    """In emulated link time (nothing waits, the emulation's waits add up on a clock): an upload
    over a capped uplink takes at least its bytes beyond the burst at the cap, and one over an
    uncapped uplink none. The real rate: bench/link_bench.py (medians)."""
    size, cap = 3 * MIB // 2, MIB                                       # 1.5 MiB at 1 MiB/s
    clock = sb.controls.link_time = EmulatedTime()

    async def upload(seed: int) -> float:
        client = await login(sb)
        try:
            start = clock.now()
            await client.upload_file(blob(size, seed), part_size_kb=512)
            return clock.now() - start
        finally:
            await client.disconnect()
    uncapped = run(upload(10), 120)
    sb.controls.apply_link({"dc": 2, "upload_bandwidth": cap})
    capped = run(upload(11), 120)
    assert counter(sb, "upload_bytes", 2) == 2 * size
    assert uncapped == 0
    assert capped >= (size - BURST) / cap - 1e-9, capped               # it cannot beat the cap


def test_a_killed_sandbox_process_keeps_what_was_written(tmp_path):
    """`tgdav sandbox --state DIR` killed with SIGKILL right after an upload: restarted on the same
    state dir it serves the same file (bytes), and the client's session still works."""
    import json
    import signal
    import subprocess
    import sys

    state = tmp_path / "state"
    data = blob(2 * MIB + 5, 11)

    def launch():
        proc = subprocess.Popen([sys.executable, "-m", "tgdav", "sandbox", "--dcs", "3", "--state", str(state)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                start_new_session=True)
        line = json.loads(proc.stdout.readline())
        telethon_rsa.add_key(line["rsa_public_key"], old=False)
        return proc, line

    async def connect(line, session=""):
        forget_config()           # Telethon caches help.config on the class
        client = TelegramClient(StringSession(session), line["api_id"], line["api_hash"], connection_retries=1,
                                retry_delay=0, timeout=20, flood_sleep_threshold=0, request_retries=1)
        client.session.set_dc(line["home_dc"], *line["dcs"][str(line["home_dc"])])
        await client.connect()
        if not await client.is_user_authorized():
            await client.send_code_request(line["user_phone"])
            await client.sign_in(line["user_phone"], line["login_code"])
        return client

    async def uploads_of(client):
        return [d.entity async for d in client.iter_dialogs() if d.title == UPLOADS][0]

    async def write(line):
        client = await connect(line)
        try:
            sent = await client.send_file(await uploads_of(client), data, attributes=named("kept.bin"))
            return client.session.save(), sent.id
        finally:
            await client.disconnect()

    async def read(line, session):
        client = await connect(line, session)
        try:
            msgs = [m async for m in client.iter_messages(await uploads_of(client))]
            return [(m.id, m.file.name) for m in msgs], await client.download_media(msgs[0], bytes)
        finally:
            await client.disconnect()

    proc, line = launch()
    try:
        session, sent_id = run(write(line), 120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    proc, line = launch()
    try:
        listed, back = run(read(line, session), 120)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        forget_config()           # Telethon caches help.config on the class
    assert listed == [(sent_id, "kept.bin")] and sha(back) == sha(data)


def test_one_delete_call_acts_on_the_first_100_ids_only(sb):
    """Telegram's server-side limit (services/channels.py DELETE_IDS_MAX): a longer list is not
    refused, the ids past the first 100 stay."""
    async def go():
        client = await login(sb)
        try:
            uploads = peer_of(sb, UPLOADS)
            ids = [(await client.send_message(uploads, f"m{i}")).id for i in range(130)]
            channel = types.InputChannel(uploads.channel_id, uploads.access_hash)
            affected = await client(functions.channels.DeleteMessagesRequest(channel, ids))
            left = [m.id async for m in client.iter_messages(uploads)]
            return ids, affected.pts_count, left
        finally:
            await client.disconnect()
    ids, count, left = run(go(), 120)
    assert count == 100 and sorted(left) == ids[100:]
    assert counter(sb, "messages_deleted") == 100
