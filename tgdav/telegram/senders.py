"""Opening MTProto senders to any DC of one account: the only module (with login) that touches
Telethon's private sender API (MTProtoSender, client._connection, client._get_dc, client._init_request).

Why our own: Telethon keeps exactly one borrowed sender per DC, drops it after a minute idle, exports
the authorisation again after every restart and mutates its shared init request while doing so.
Here a DC's first sender exports/imports once, the key the DC accepted is persisted (store.dc_auth),
and every later sender to that DC, in this process or the next, reuses it on its own connection
(its own session id). The home DC's senders reuse the session's key on connections of their own, so
downloads never queue behind the main connection.

Senders do not reconnect by themselves (auto_reconnect off): Telethon would re-send every pending
request on the new connection behind the pool's back, answers it dropped included, and a connection
cut again and again would loop. A sender whose connection ends is dropped; the pool re-sends its
requests on other senders and opens new ones as it needs them.
"""

from __future__ import annotations

import asyncio
import logging

from telethon import TelegramClient, errors, functions, types
from telethon.crypto import AuthKey
from telethon.network import MTProtoSender
from telethon.tl.alltlobjects import LAYER

log = logging.getLogger("tgdav.pool")

# A cheap request that needs an authorised key: tells a live key from a revoked one.
_PROBE = functions.users.GetUsersRequest([types.InputUserSelf()])


class SenderFactory:
    """Creates connected, authorised MTProtoSenders for `client`'s account on any DC."""

    def __init__(self, client: TelegramClient, store, *, connect_timeout: float = 10.0,
                 retries: int = 2, metrics=None) -> None:
        self._client = client
        self._metrics = metrics
        self._store = store
        self._connect_timeout = connect_timeout
        self._retries = retries
        self._verified: set[int] = set()          # DCs whose persisted key answered this process
        self._locks: dict[int, asyncio.Lock] = {}
        self._keys: dict[int, bytes | None] = {}  # the store's dc_auth, read once per DC

    async def _kept_key(self, dc_id: int) -> bytes | None:
        """The kept key, read from the store off the loop once per DC (every sender open asks)."""
        if dc_id not in self._keys:
            key = await asyncio.to_thread(self._store.dc_auth, dc_id)
            self._keys.setdefault(dc_id, key)
        return self._keys[dc_id]

    async def has_key(self, dc_id: int) -> bool:
        """Whether a sender to dc_id needs no export: the home DC, or a key kept for it (asked of
        the store each time until one is found: another replica may have exported since)."""
        if dc_id == self.home_dc or self._keys.get(dc_id):
            return True
        key = await asyncio.to_thread(self._store.dc_auth, dc_id)
        if key is not None:
            self._keys[dc_id] = key
        return key is not None

    def _keep(self, dc_id: int, key: bytes | None) -> None:
        """Remember (or forget) a DC's key, in the store at once: this happens once per export."""
        self._keys[dc_id] = key
        if key is None:
            self._store.forget_dc_auth(dc_id)
        else:
            self._store.remember_dc_auth(dc_id, key)

    @property
    def home_dc(self) -> int:
        return self._client.session.dc_id

    async def open(self, dc_id: int) -> MTProtoSender:
        """A new sender on its own connection to dc_id, authorised as the account.

        Only establishing a DC's authorisation is serialised (one export per DC); once a key is
        known to work, senders connect in parallel."""
        if dc_id == self.home_dc:
            return await self._connect(dc_id, self._client.session.auth_key.key,
                                       functions.help.GetNearestDcRequest())
        key = await self._kept_key(dc_id)
        if key is not None and dc_id in self._verified:
            return await self._connect(dc_id, key, functions.help.GetNearestDcRequest())
        async with self._locks.setdefault(dc_id, asyncio.Lock()):
            key = await self._kept_key(dc_id)
            if key is not None:
                if dc_id in self._verified:   # authorised by another sender while we waited
                    return await self._connect(dc_id, key, functions.help.GetNearestDcRequest())
                try:
                    sender = await self._connect(dc_id, key, _PROBE)
                    self._verified.add(dc_id)
                    log.info("DC %d: reusing the authorisation kept from an earlier run", dc_id)
                    return sender
                except (errors.RPCError, errors.AuthKeyNotFound) as e:
                    # revoked, unknown to the DC (Telethon 1.45 raises AuthKeyNotFound on -404), or
                    # any other refusal of the check: Telegram does not document users.getUsers on a
                    # foreign DC, so every RPC error here means "authorise again", never a failed read
                    log.info("DC %d: the kept authorisation is refused (%s); exporting a new one",
                             dc_id, getattr(e, "message", None) or type(e).__name__)
                    self._keep(dc_id, None)
            return await self._export_to(dc_id)

    def forget(self, dc_id: int) -> bool:
        """The DC refused the kept authorisation (401): forget it so the next sender exports
        again. False for the home DC (the session itself is gone: log in again)."""
        if dc_id == self.home_dc:
            return False
        self._keep(dc_id, None)
        self._verified.discard(dc_id)
        return True

    async def _export_to(self, dc_id: int) -> MTProtoSender:
        # connect (and create the auth key) first: an unreachable DC must fail before exporting
        sender = await self._transport(dc_id, None)
        try:
            auth = await self._client(functions.auth.ExportAuthorizationRequest(dc_id))
            await sender.send(functions.InvokeWithLayerRequest(LAYER, self._init(
                functions.auth.ImportAuthorizationRequest(id=auth.id, bytes=auth.bytes))))
        except BaseException:
            await sender.disconnect()
            raise
        self._keep(dc_id, bytes(sender.auth_key.key))
        self._verified.add(dc_id)
        if self._metrics is not None:
            self._metrics.export(dc_id)
        log.info("DC %d: authorised (exported from DC %d)", dc_id, self.home_dc)
        return sender

    async def _transport(self, dc_id: int, key: bytes | None) -> MTProtoSender:
        client = self._client
        dc = await client._get_dc(dc_id)
        sender = MTProtoSender(AuthKey(key) if key else None, loggers=client._log,
                               retries=self._retries, delay=0.5, auto_reconnect=False,
                               connect_timeout=self._connect_timeout)
        await sender.connect(client._connection(
            dc.ip_address, dc.port, dc.id, loggers=client._log, proxy=client._proxy,
            local_addr=client._local_addr))
        return sender

    async def _connect(self, dc_id: int, key: bytes | None, first_request) -> MTProtoSender:
        sender = await self._transport(dc_id, key)
        try:
            await sender.send(functions.InvokeWithLayerRequest(LAYER, self._init(first_request)))
        except BaseException:
            await sender.disconnect()
            raise
        return sender

    def _init(self, query) -> functions.InitConnectionRequest:
        """A fresh initConnection around `query` (never Telethon's shared, mutated one), inside
        invokeWithoutUpdates: Telegram pushes updates only to the client's main connection, and a
        pool sender has no queue for them (the pool wraps every later request the same way)."""
        t = self._client._init_request
        return functions.InitConnectionRequest(
            api_id=t.api_id, device_model=t.device_model, system_version=t.system_version,
            app_version=t.app_version, system_lang_code=t.system_lang_code,
            lang_pack=t.lang_pack, lang_code=t.lang_code, query=functions.InvokeWithoutUpdatesRequest(query),
            proxy=t.proxy)
