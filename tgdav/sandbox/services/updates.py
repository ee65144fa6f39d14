"""updates.*: the sandbox pushes no updates, so the common state is fixed and its difference always
empty; a channel's difference is empty at the channel's current pts (its new messages reach clients
in the answers to their own writes and by reading history)."""

from __future__ import annotations

import time

from telethon.tl import functions, types

from tgdav.sandbox.context import CallContext
from tgdav.sandbox.services.state import State

PTS = 1


def get_state(s: State, ctx: CallContext, req: functions.updates.GetStateRequest):
    s.user(ctx)
    return types.updates.State(pts=PTS, qts=0, date=int(time.time()), seq=0, unread_count=0)


def get_difference(s: State, ctx: CallContext, req: functions.updates.GetDifferenceRequest):
    s.user(ctx)
    return types.updates.DifferenceEmpty(date=int(time.time()), seq=0)


def get_channel_difference(s: State, ctx: CallContext, req: functions.updates.GetChannelDifferenceRequest):
    me = s.user(ctx)
    channel = s.readable_channel(req.channel, me)
    return types.updates.ChannelDifferenceEmpty(pts=channel.pts, final=True, timeout=30)


HANDLERS = {
    functions.updates.GetChannelDifferenceRequest: get_channel_difference,
    functions.updates.GetStateRequest: get_state,
    functions.updates.GetDifferenceRequest: get_difference,
}
