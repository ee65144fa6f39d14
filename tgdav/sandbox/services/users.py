"""users.*: who am I (InputUserSelf) and other accounts by id and access hash."""

from __future__ import annotations

from telethon.tl import functions, types

from tgdav.sandbox.context import CallContext
from tgdav.sandbox.services import tl
from tgdav.sandbox.services.state import State


def get_users(s: State, ctx: CallContext, req: functions.users.GetUsersRequest):
    me = s.user(ctx)
    out = []
    for item in req.id:
        if isinstance(item, types.InputUserSelf):
            out.append(tl.user(me, me))
            continue
        account = s.world.accounts.get(getattr(item, "user_id", None))
        if isinstance(item, types.InputUser) and account and item.access_hash == account.access_hash:
            out.append(tl.user(account, me))
        else:
            out.append(types.UserEmpty(getattr(item, "user_id", 0)))
    return out


HANDLERS = {functions.users.GetUsersRequest: get_users}
