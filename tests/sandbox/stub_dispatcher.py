"""A minimal Dispatcher and fixtures to drive an unmodified Telethon against the sandbox's MTProto server.

The stub answers: invokeWithLayer / initConnection / invokeWithoutUpdates (unwrapped), help.getConfig
(dc_options = the cluster's real ports), help.getNearestDc, users.getUsers (401: nobody is logged in,
which is what Telethon's connect() expects of a fresh key), and upload.getFile, whose reply is the
deterministic content.pattern(location.id, offset, limit): the echo that makes traffic. A getFile
with a non-zero location.access_hash is held (a slow call) until the test calls release(). help.getCdnConfig crashes the stub (a dispatcher bug, which
the server must turn into 500 INTERNAL). Anything else is 400 METHOD_NOT_STUBBED.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from dataclasses import dataclass

import pytest
from telethon import TelegramClient
from telethon.crypto import rsa as telethon_rsa
from telethon.sessions import StringSession
from telethon.tl import functions, types

from tgdav.sandbox.cluster import ClusterThread
from tgdav.sandbox.content import pattern
from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.controls import Controls, Link
from tgdav.sandbox.counters import Counters
from tgdav.sandbox.keys import AuthKeyStore
from tgdav.sandbox.rsakey import SandboxRsaKey, load_or_create
from tgdav.telegram.mtproto import forget_config

_WRAPPERS = (functions.InvokeWithLayerRequest, functions.InitConnectionRequest,
             functions.InvokeWithoutUpdatesRequest)


class StubDispatcher:
    def __init__(self) -> None:
        self.ports: dict[int, int] = {}
        self.host = "127.0.0.1"
        self.calls: list[tuple[CallContext, object]] = []
        self.held = 0                       # held getFiles running now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gate: asyncio.Event | None = None

    async def call(self, ctx: CallContext, request):
        while isinstance(request, _WRAPPERS):
            request = request.query
        self.calls.append((ctx, request))
        if isinstance(request, functions.help.GetConfigRequest):
            return self.config(ctx.dc_id)
        if isinstance(request, functions.help.GetNearestDcRequest):
            return types.NearestDc(country="ZZ", this_dc=ctx.dc_id, nearest_dc=ctx.dc_id)
        if isinstance(request, functions.users.GetUsersRequest):
            raise RpcError(401, "AUTH_KEY_UNREGISTERED")
        if isinstance(request, functions.upload.GetFileRequest):
            location = request.location
            if location.access_hash:
                await self._held()
            return types.upload.File(type=types.storage.FilePartial(), mtime=0,
                                     bytes=pattern(location.id, request.offset, request.limit))
        if isinstance(request, functions.help.GetCdnConfigRequest):
            raise RuntimeError("the stub crashes on purpose")
        raise RpcError(400, "METHOD_NOT_STUBBED")

    async def _held(self) -> None:
        if self._gate is None:
            self._loop, self._gate = asyncio.get_running_loop(), asyncio.Event()
        self.held += 1
        try:
            await self._gate.wait()
        finally:
            self.held -= 1

    def release(self) -> None:
        """Let every held getFile answer (from any thread); later ones are held again."""
        def open_gate() -> None:
            if self._gate is not None:
                self._gate.set()
                self._gate = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(open_gate)

    def config(self, this_dc: int) -> types.Config:
        now = datetime.datetime.now(datetime.timezone.utc)
        return types.Config(
            date=now, expires=now + datetime.timedelta(hours=1), test_mode=False, this_dc=this_dc,
            dc_options=[types.DcOption(id=dc, ip_address=self.host, port=port) for dc, port in self.ports.items()],
            dc_txt_domain_name="sandbox.invalid", chat_size_max=200, megagroup_size_max=200000,
            forwarded_count_max=100, online_update_period_ms=210000, offline_blur_timeout_ms=5000,
            offline_idle_timeout_ms=30000, online_cloud_timeout_ms=300000, notify_cloud_delay_ms=30000,
            notify_default_delay_ms=1500, push_chat_period_ms=60000, push_chat_limit=2,
            edit_time_limit=172800, revoke_time_limit=172800, revoke_pm_time_limit=172800, rating_e_decay=2419200,
            stickers_recent_limit=200, channels_read_media_period=604800, call_receive_timeout_ms=20000,
            call_ring_timeout_ms=90000, call_connect_timeout_ms=30000, call_packet_timeout_ms=10000,
            me_url_prefix="https://t.me/", caption_length_max=1024, message_length_max=4096, webfile_dc_id=4)


def get_file(seed: int, offset: int, limit: int, held: bool = False) -> functions.upload.GetFileRequest:
    """A getFile the stub answers with pattern(seed, offset, limit), once released if `held`."""
    location = types.InputDocumentFileLocation(id=seed, access_hash=int(held), file_reference=b"", thumb_size="")
    return functions.upload.GetFileRequest(location=location, offset=offset, limit=limit)


@dataclass
class Sandbox:
    cluster: ClusterThread
    stub: StubDispatcher
    keys: AuthKeyStore
    counters: Counters
    controls: Controls
    rsa: SandboxRsaKey

    @property
    def ports(self) -> dict[int, int]:
        return self.cluster.ports

    def client(self, dc: int = 2, session: StringSession | None = None, **kwargs) -> TelegramClient:
        """An unmodified Telethon client pointed at `dc` (not connected yet), failing fast when refused."""
        forget_config()           # Telethon caches help.config on the class
        kwargs.setdefault("connection_retries", 1)
        kwargs.setdefault("retry_delay", 0)
        kwargs.setdefault("timeout", 10)
        client = TelegramClient(session or StringSession(), api_id=1, api_hash="x", **kwargs)
        if not client.session.auth_key:
            client.session.set_dc(dc, self.cluster.cluster.host, self.ports[dc])
        return client


@contextlib.contextmanager
def running_sandbox(dc_ids: tuple[int, ...] = (1, 2, 3, 4, 5)):
    """A stub-backed cluster in its own loop thread, its RSA key registered with Telethon."""
    rsa_key = load_or_create(None)
    telethon_rsa.add_key(rsa_key.public_pem, old=False)
    stub, keys, counters, controls = StubDispatcher(), AuthKeyStore(), Counters(), Controls()
    with ClusterThread(stub, keys, counters, controls, rsa_key, dc_ids) as cluster:
        stub.ports = cluster.ports
        yield Sandbox(cluster, stub, keys, counters, controls, rsa_key)


# The fixtures of the test modules that run against this stub (they import them by name).
@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox() as sb:
        yield sb


@pytest.fixture(autouse=True)
def clean(sandbox):
    """Each test starts with no faults, the default link, counters and the stub's calls at zero."""
    sandbox.controls.apply_faults({"clear": True}, now=time.monotonic())
    sandbox.controls.set_link(Link())
    sandbox.counters.reset()
    sandbox.stub.calls.clear()
    yield
    sandbox.controls.set_link(Link())
