"""What the handlers of every namespace share: the world, the key store, counters, controls, the
clock, file references, and the state of logins in progress. Also the lookups every namespace needs
(the caller's account, a channel from an input peer) with Telegram's error names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from telethon.tl import types

from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.controls import Controls
from tgdav.sandbox.counters import Counters
from tgdav.sandbox.keys import AuthKeyStore
from tgdav.sandbox.parts import PartStore
from tgdav.sandbox.services.feed import Feed
from tgdav.sandbox.services.passwords import Passwords
from tgdav.sandbox.services.ratelimit import GetFileRate, HistoryRate
from tgdav.sandbox.services.references import References
from tgdav.sandbox.world import Account, Channel, World
from tgdav.sandbox.writes import Writes


class State:
    def __init__(self, world: World, keys: AuthKeyStore, counters: Counters, controls: Controls,
                 clock: Callable[[], float], state_dir: Path | None = None) -> None:
        self.world = world
        self.keys = keys
        self.counters = counters
        self.controls = controls
        self.clock = clock
        # Derived from the seed so exported authorizations and file references survive a restart.
        self.secret = hashlib.sha256(f"tgdav-sandbox:{world.seed}".encode()).digest()
        self.references = References(self.secret, controls, clock)
        self.passwords = Passwords(world.seed)
        self.getfile_rate = GetFileRate()
        self.upload_rate = GetFileRate()
        self.history_rate = HistoryRate()
        # What clients write: replayed from the state dir (a temporary folder without one).
        self.writes = Writes(world, state_dir)
        self.parts = PartStore(self.writes.root, controls, clock)
        # updates pushed to subscribed connections (feed.py)
        self.feed = Feed(world, self.references, counters, controls)
        self.writes.listener = self.feed.changed

    def user(self, ctx: CallContext) -> Account:
        """The account the connection's auth key is logged in as; 401 AUTH_KEY_UNREGISTERED if none
        (what a foreign DC answers before auth.importAuthorization)."""
        record = self.keys.get(ctx.auth_key_id)
        account = None
        if record is not None and record.dc_id == ctx.dc_id and record.user_id is not None:
            account = self.world.accounts.get(record.user_id)
        if account is None:
            raise RpcError(401, "AUTH_KEY_UNREGISTERED")
        return account

    def user_not_bot(self, ctx: CallContext) -> Account:
        account = self.user(ctx)
        if account.is_bot:
            raise RpcError(400, "BOT_METHOD_INVALID")
        return account

    def bind(self, ctx: CallContext, account: Account) -> None:
        if self.keys.get(ctx.auth_key_id) is None:
            raise RpcError(401, "AUTH_KEY_UNREGISTERED")
        self.keys.bind(ctx.auth_key_id, account.id)

    def channel(self, peer, account: Account) -> Channel:
        """The channel named by an InputChannel / InputPeerChannel; CHANNEL_INVALID for a wrong id or
        access hash. Bots that are members may pass access_hash 0, as on Telegram."""
        if not isinstance(peer, (types.InputChannel, types.InputPeerChannel)):
            raise RpcError(400, "CHANNEL_INVALID")
        channel = self.world.channels.get(peer.channel_id)
        if channel is None or not (
                peer.access_hash == channel.access_hash
                or (peer.access_hash == 0 and account.is_bot and account.id in channel.members)):
            raise RpcError(400, "CHANNEL_INVALID")
        return channel

    def readable_channel(self, peer, account: Account) -> Channel:
        channel = self.channel(peer, account)
        if not channel.readable_by(account):
            raise RpcError(400, "CHANNEL_PRIVATE")
        return channel

    def postable_channel(self, peer, account: Account) -> Channel:
        """A channel the account may post in: its creator or an admin with post_messages. A reader
        gets 403 CHAT_WRITE_FORBIDDEN, as a non-admin member of a broadcast channel does on Telegram."""
        channel = self.readable_channel(_as_channel_peer(peer), account)
        if not channel.may_post(account):
            raise RpcError(403, "CHAT_WRITE_FORBIDDEN")
        return channel


def _as_channel_peer(peer):
    """messages.* name channels with InputPeerChannel; anything else is not a channel here."""
    if not isinstance(peer, (types.InputPeerChannel, types.InputChannel)):
        raise RpcError(400, "PEER_ID_INVALID")
    return peer
