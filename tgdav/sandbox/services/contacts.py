"""contacts.resolveUsername: @name -> a channel or an account."""

from __future__ import annotations

import re

from telethon.tl import functions, types

from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.services import tl
from tgdav.sandbox.services.state import State
from tgdav.sandbox.world import Channel

_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")


def resolve_username(s: State, ctx: CallContext, req: functions.contacts.ResolveUsernameRequest):
    me = s.user(ctx)
    if not _USERNAME.fullmatch(req.username or ""):
        raise RpcError(400, "USERNAME_INVALID")
    found = s.world.by_username(req.username)
    if found is None:
        raise RpcError(400, "USERNAME_NOT_OCCUPIED")
    if isinstance(found, Channel):
        return types.contacts.ResolvedPeer(peer=tl.peer(found), chats=[tl.channel(found, me)], users=[])
    return types.contacts.ResolvedPeer(peer=types.PeerUser(found.id), chats=[],
                                       users=[tl.user(found, me)])


HANDLERS = {functions.contacts.ResolveUsernameRequest: resolve_username}
