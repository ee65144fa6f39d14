"""An unmodified Telethon against the whole sandbox over real sockets: the cluster's MTProto servers
calling these services. What a client sees (errors as Telethon's classes, exact bytes) and what the
sandbox counted are both asserted."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

import pytest
from telethon import TelegramClient, errors
from telethon.crypto import rsa as telethon_rsa
from telethon.sessions import StringSession
from telethon.tl import functions, types

from tests.helpers import run
from tests.sandbox.conftest import MIB, PASSWORD, Small, build_small_world
from tgdav.sandbox.cluster import ClusterThread
from tgdav.sandbox.content import pattern
from tgdav.sandbox.controls import Controls
from tgdav.sandbox.counters import Counters
from tgdav.sandbox.demo import MEDIA, build_demo_world
from tgdav.sandbox.keys import AuthKeyStore
from tgdav.sandbox.rsakey import load_or_create
from tgdav.sandbox.services import Services
from tgdav.sandbox.world import Channel, World
from tgdav.telegram.mtproto import forget_config

LONG = 10_000


def new_client(ports: dict[int, int], dc: int = 2) -> TelegramClient:
    forget_config()           # Telethon caches help.config on the class
    client = TelegramClient(StringSession(), api_id=1, api_hash="x", connection_retries=1,
                            retry_delay=0, timeout=10, flood_sleep_threshold=0)
    client.session.set_dc(dc, "127.0.0.1", ports[dc])
    return client


@dataclass
class Running:
    small: Small
    long_channel: Channel
    counters: Counters
    controls: Controls
    services: Services
    ports: dict[int, int]

    @property
    def world(self):
        return self.small.world

    def client(self, dc: int = 2) -> TelegramClient:
        return new_client(self.ports, dc)

    async def bot(self) -> TelegramClient:
        client = self.client()
        await client.connect()
        await client.sign_in(bot_token=self.world.bots()[0].bot_token)
        return client

    async def user(self) -> TelegramClient:
        """Ada, who has no 2FA password (Bob's login is its own test)."""
        client = self.client()
        await client.connect()
        await client.send_code_request("15550001111")
        await client.sign_in("15550001111", self.world.login_code)
        return client


@contextlib.contextmanager
def serve(world: World):
    """The cluster with these services on 127.0.0.1, the world told its ports, Telethon its RSA key."""
    rsa_key = load_or_create(None)
    telethon_rsa.add_key(rsa_key.public_pem, old=False)
    keys, counters, controls = AuthKeyStore(), Counters(), Controls()
    services = Services(world, keys, counters, controls)
    with ClusterThread(services, keys, counters, controls, rsa_key, world.dc_ids) as cluster:
        world.dcs.clear()
        world.dcs.update({dc: ("127.0.0.1", port) for dc, port in cluster.ports.items()})
        yield counters, controls, services, dict(cluster.ports)


@pytest.fixture(scope="module")
def running():
    small = build_small_world()
    world = small.world
    user = world.account_by_phone("15550001111")
    long_channel = world.add_channel("Ten thousand", members=[user])
    for i in range(LONG):
        world.add_text(long_channel, f"message {i + 1}", date=1_700_000_000 + i // 5)
    with serve(world) as (counters, controls, services, ports):
        yield Running(small, long_channel, counters, controls, services, ports)


@pytest.fixture
def sandbox(running):
    running.counters.reset()
    running.controls.apply_faults({"clear": True}, now=running.services.clock())
    return running



def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def films_peer(sb: Running) -> types.InputPeerChannel:
    return types.InputPeerChannel(sb.small.films.id, sb.small.films.access_hash)


def message_id_of(channel, media) -> int:
    return next(m.id for m in channel.messages if m.media is media)


def forget_floods(client: TelegramClient) -> None:
    """Telethon remembers a FLOOD_WAIT per request type and refuses locally until it passes; forget
    it so the next call reaches the sandbox."""
    client._flood_waited_requests.clear()


def test_bot_login_get_me_and_messages_by_id(sandbox):
    async def go():
        client = await sandbox.bot()
        try:
            me = await client.get_me()
            msgs = await client.get_messages(films_peer(sandbox), ids=[1, 999])
            with pytest.raises(errors.BotMethodInvalidError):
                await client.get_messages(films_peer(sandbox), limit=5)
            return me, msgs
        finally:
            await client.disconnect()
    me, msgs = run(go())
    assert me.bot and me.id == sandbox.world.bots()[0].id
    assert msgs[0].message == "hello" and msgs[1] is None
    assert sandbox.counters.get(2, "requests:ImportBotAuthorization") == 1


def test_user_login_with_2fa(sandbox):
    async def go():
        client = sandbox.client()
        await client.connect()
        try:
            await client.send_code_request("+15550002222")
            with pytest.raises(errors.SessionPasswordNeededError):
                await client.sign_in("+15550002222", sandbox.world.login_code)
            with pytest.raises(errors.PasswordHashInvalidError):
                await client.sign_in(password="not it")
            await client.sign_in(password=PASSWORD)
            return await client.get_me()
        finally:
            await client.disconnect()
    me = run(go())
    assert me.first_name == "Bob" and me.phone == "15550002222"
    assert sandbox.counters.get(2, "errors:SESSION_PASSWORD_NEEDED") == 1
    assert sandbox.counters.get(2, "errors:PASSWORD_HASH_INVALID") == 1


def test_user_dialogs_entities_and_a_wrong_code(sandbox):
    async def go():
        client = sandbox.client()
        await client.connect()
        try:
            await client.send_code_request("15550001111")
            with pytest.raises(errors.PhoneCodeInvalidError):
                await client.sign_in("15550001111", "0" if sandbox.world.login_code != "0" else "1")
            await client.sign_in("15550001111", sandbox.world.login_code)
            dialogs = [d.title async for d in client.iter_dialogs()]
            news = await client.get_entity("sandboxnews")
            with pytest.raises(ValueError):
                await client.get_entity("nobody_here")
            private = types.InputPeerChannel(sandbox.small.private.id, sandbox.small.private.access_hash)
            with pytest.raises(errors.ChannelPrivateError):
                await client.get_messages(private, limit=1)
            return dialogs, news
        finally:
            await client.disconnect()
    dialogs, news = run(go())
    assert dialogs == ["Ten thousand", "Films"]
    assert news.id == sandbox.small.news.id and news.broadcast
    assert sandbox.counters.get(2, "errors:USERNAME_NOT_OCCUPIED") == 1


def test_paging_ten_thousand_messages(sandbox):
    channel = sandbox.long_channel
    # Telethon pages as fast as it can (wait_time=0): this test is about paging, not the rate rule
    sandbox.controls.apply_faults({"history_rate_limit": None}, now=sandbox.services.clock())

    async def go():
        client = await sandbox.user()
        try:
            peer = types.InputPeerChannel(channel.id, channel.access_hash)
            newest_first = [m.id async for m in client.iter_messages(peer, wait_time=0)]
            oldest_first = [m.id async for m in client.iter_messages(peer, reverse=True, wait_time=0)]
            return newest_first, oldest_first
        finally:
            await client.disconnect()
    newest_first, oldest_first = run(go())
    assert newest_first == list(range(LONG, 0, -1))
    assert oldest_first == list(range(1, LONG + 1))
    assert sandbox.counters.get(2, "requests:GetHistory") >= 2 * LONG // 100


def test_download_from_a_foreign_dc_exports_and_imports(sandbox):
    small = sandbox.small

    async def go():
        client = await sandbox.user()
        try:
            msg = await client.get_messages(films_peer(sandbox), ids=message_id_of(small.films, small.big))
            return await client.download_media(msg, bytes)
        finally:
            await client.disconnect()
    data = run(go())
    assert sha(data) == sha(pattern(small.big.id, 0, small.big.size))
    assert sandbox.counters.get(2, "exports") == 1
    assert sandbox.counters.get(4, "imports") == 1
    assert sandbox.counters.get(4, "getfile_bytes") == small.big.size


def test_photo_download_takes_the_largest_size(sandbox):
    small = sandbox.small

    async def go():
        client = await sandbox.user()
        try:
            msg = await client.get_messages(films_peer(sandbox), ids=small.photo_message_id)
            return await client.download_media(msg, bytes)
        finally:
            await client.disconnect()
    data = run(go())
    assert sha(data) == sha(pattern(12, 0, 70001))       # the "x" size's bytes, not the "m" thumbnail
    assert sandbox.counters.get(2, "getfile_bytes") == 70001


def test_stale_dc_id_is_answered_with_file_migrate(sandbox):
    small = sandbox.small

    async def go():
        client = await sandbox.user()
        try:
            msg = await client.get_messages(films_peer(sandbox), ids=message_id_of(small.films, small.stale))
            assert msg.media.document.dc_id == 3
            return b"".join([chunk async for chunk in client.iter_download(msg.media.document)])
        finally:
            await client.disconnect()
    data = run(go())
    assert sha(data) == sha(pattern(small.stale.id, 0, small.stale.size))
    assert sandbox.counters.get(3, "errors:FILE_MIGRATE_X") == 1        # the advertised DC redirects ...
    assert sandbox.counters.get(3, "getfile_bytes") == 0
    assert sandbox.counters.get(5, "imports") == 1                       # ... to the one holding the bytes
    assert sandbox.counters.get(5, "getfile_bytes") == small.stale.size


BAD_PARTS = [
    (1024, 4096, False, errors.OffsetInvalidError),
    (2048, 1024, True, None),
    (512, 1024, True, errors.OffsetInvalidError),
    (0, 12288, False, errors.LimitInvalidError),
    (0, 1500, True, errors.LimitInvalidError),
    (0, 2 * MIB, False, errors.LimitInvalidError),
    (4096, MIB, False, errors.LimitInvalidError),
    (MIB - 4096, 8192, False, errors.LimitInvalidError),
    (MIB - 1024, 2048, True, errors.LimitInvalidError),
    (256 * 1024, 256 * 1024, False, None),
]


def test_misaligned_and_boundary_crossing_getfile_are_refused(sandbox):
    small = sandbox.small

    async def go():
        client = await sandbox.user()
        try:
            msg = await client.get_messages(films_peer(sandbox), ids=message_id_of(small.films, small.home))
            d = msg.media.document
            loc = types.InputDocumentFileLocation(d.id, d.access_hash, d.file_reference, "")
            outcomes = []
            for offset, limit, precise, error in BAD_PARTS:
                request = functions.upload.GetFileRequest(loc, offset, limit, precise=precise)
                try:
                    outcomes.append((await client(request)).bytes)
                except errors.RPCError as e:
                    outcomes.append(type(e))
            return outcomes
        finally:
            await client.disconnect()
    outcomes = run(go())
    for (offset, limit, precise, error), got in zip(BAD_PARTS, outcomes):
        if error is None:
            assert got == pattern(small.home.id, offset, min(limit, small.home.size - offset))
        else:
            assert got is error, (offset, limit, precise)
    assert sandbox.counters.get(2, "errors:LIMIT_INVALID") == 6
    assert sandbox.counters.get(2, "errors:OFFSET_INVALID") == 2


def test_injected_faults_reach_telethon_as_its_errors(sandbox):
    small = sandbox.small
    controls, clock = sandbox.controls, sandbox.services.clock

    async def go():
        client = await sandbox.user()
        try:
            msg = await client.get_messages(films_peer(sandbox), ids=message_id_of(small.films, small.home))
            d = msg.media.document
            loc = types.InputDocumentFileLocation(d.id, d.access_hash, d.file_reference, "")
            part = functions.upload.GetFileRequest(loc, 0, 4096)
            seen = {}
            controls.apply_faults({"flood_wait": [{"dc": 2, "method": "GetFile", "seconds": 17}]}, now=clock())
            with pytest.raises(errors.FloodWaitError) as e:
                await client(part)
            seen["flood"] = e.value.seconds
            forget_floods(client)
            controls.apply_faults({"flood_wait": [{"dc": 2, "method": "GetHistory", "seconds": 9,
                                                   "premium": True}]}, now=clock())
            with pytest.raises(errors.FloodPremiumWaitError) as e:
                await client.get_messages(films_peer(sandbox), limit=1)
            seen["premium"] = e.value.seconds
            controls.apply_faults({"expire_file_references": True}, now=clock())
            with pytest.raises(errors.FileReferenceExpiredError):
                await client(part)
            seen["refreshed"] = await client.download_media(msg, bytes)   # Telethon refetches the message
            controls.apply_faults({"getfile_rate_limit": {"per_second": 2, "seconds": 30}}, now=clock())
            fresh = (await client.get_messages(films_peer(sandbox), ids=msg.id)).media.document
            part.location = types.InputDocumentFileLocation(fresh.id, fresh.access_hash, fresh.file_reference, "")
            with pytest.raises(errors.FloodWaitError) as e:
                for _ in range(100):
                    await client(part)
            seen["rate"] = e.value.seconds
            forget_floods(client)
            with pytest.raises(errors.FloodWaitError) as e:
                await client(part)                    # the account stays flooded on this DC
            seen["still"] = e.value.seconds
            return seen
        finally:
            await client.disconnect()
    seen = run(go())
    assert seen["flood"] == 17 and seen["premium"] == 9 and seen["rate"] == 30
    assert 0 < seen["still"] <= 30
    assert sha(seen["refreshed"]) == sha(pattern(small.home.id, 0, small.home.size))
    assert sandbox.counters.get(2, "errors:FILE_REFERENCE_EXPIRED") == 2
    assert sandbox.counters.get(2, "errors:FLOOD_WAIT_X") == 3
    assert sandbox.counters.get(2, "errors:FLOOD_PREMIUM_WAIT_X") == 1


def test_demo_world_media_download_byte_exact():
    world = build_demo_world(password="demo pw")
    wav = next(d for d in world.documents.values() if d.name == "c-major.wav")

    async def go(ports):
        client = new_client(ports)
        await client.connect()
        try:
            await client.sign_in(bot_token=world.bots()[0].bot_token)
            found = {}
            for channel in world.channels.values():
                peer = types.InputPeerChannel(channel.id, channel.access_hash)
                for msg in await client.get_messages(peer, ids=[m.id for m in channel.messages]):
                    if msg.file and msg.file.name in ("clip.mp4", "c-major.wav"):
                        found[msg.file.name] = (await client.download_media(msg, bytes), msg.file.duration)
            return found
        finally:
            await client.disconnect()
    with serve(world) as (counters, controls, services, ports):
        found = run(go(ports))
    assert sha(found["clip.mp4"][0]) == sha((MEDIA / "clip.mp4").read_bytes()) and found["clip.mp4"][1] == 6
    assert sha(found["c-major.wav"][0]) == sha(wav.source.read(0, wav.size)) and found["c-major.wav"][1] == 3
