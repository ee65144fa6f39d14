"""Opening MTProto senders to any DC of one account: which auth key each uses, exporting and importing
the authorisation once per DC, keeping the key (the connections themselves: mtproto.Sender).

Why our own: Telethon keeps exactly one borrowed sender per DC, drops it after a minute idle, exports
the authorisation again after every restart and mutates its shared init request while doing so.
Here a DC's first sender exports/imports once, the key the DC accepted is persisted (store.dc_auth),
and every later sender to that DC, in this process or the next, reuses it on its own connection
(its own session id). The home DC's senders reuse the session's key on connections of their own, so
downloads never queue behind the main connection. (Senders do not reconnect by themselves:
mtproto.Sender says why.)
"""

from __future__ import annotations

import asyncio
import logging

from tgdav.telegram.mtproto import Sender, TelegramClient, errors, functions, types

log = logging.getLogger("tgdav.pool")

# A cheap request that needs an authorised key: tells a live key from a revoked one.
_PROBE = functions.users.GetUsersRequest([types.InputUserSelf()])


class SenderFactory:
    """Creates connected, authorised senders (mtproto.Sender) for `client`'s account on any DC."""

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

    async def open(self, dc_id: int) -> Sender:
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

    async def _export_to(self, dc_id: int) -> Sender:
        # connect (and create the auth key) first: an unreachable DC must fail before exporting
        sender = await self._transport(dc_id, None)
        try:
            auth = await self._client(functions.auth.ExportAuthorizationRequest(dc_id))
        except BaseException:
            await sender.close()
            raise
        await sender.introduce(self._client, functions.auth.ImportAuthorizationRequest(
            id=auth.id, bytes=auth.bytes))
        self._keep(dc_id, sender.auth_key)
        self._verified.add(dc_id)
        if self._metrics is not None:
            self._metrics.export(dc_id)
        log.info("DC %d: authorised (exported from DC %d)", dc_id, self.home_dc)
        return sender

    async def _transport(self, dc_id: int, key: bytes | None) -> Sender:
        return await Sender.connect(self._client, dc_id, key, retries=self._retries,
                                    connect_timeout=self._connect_timeout)

    async def _connect(self, dc_id: int, key: bytes | None, first_request) -> Sender:
        sender = await self._transport(dc_id, key)
        await sender.introduce(self._client, first_request)
        return sender
