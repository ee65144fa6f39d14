"""updates.*: the state and the differences a client heals gaps with (core.telegram.org/api/updates).

The sandbox keeps no account-wide pts (no private chats): getState gives pts 1 and the date, and
getDifference names, with updateChannelTooLong, every channel of the account changed since the
client's date, so a client catching up asks each of them for its channel difference.

updates.getChannelDifference answers from the channel's update box (world.Channel.box):
- channelDifferenceEmpty(pts) when nothing changed after the client's pts;
- channelDifference(new_messages, other_updates, pts, final) with up to `limit` changes (at most 100
  for users, 100000 for bots, as Telegram caps them): new messages still present go in new_messages,
  edits (updateEditChannelMessage) and deletions (updateDeleteChannelMessages) in other_updates;
  final is false while more changes follow (the client asks again from the pts given);
- channelDifferenceTooLong(dialog with the current pts, the latest messages) when the client's pts is
  older than what the box keeps (the `message_box` fault, 100000 changes by default, as on Telegram):
  the client must read the channel again.
Counters: channel_differences, channel_differences_too_long.
"""

from __future__ import annotations

import bisect
import time

from telethon.tl import functions, types

from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.services import tl
from tgdav.sandbox.services.state import State

PTS = 1
USER_LIMIT, BOT_LIMIT = 100, 100_000
TOO_LONG_MESSAGES = 20      # the latest messages a channelDifferenceTooLong carries
TIMEOUT = 30


def get_state(s: State, ctx: CallContext, req: functions.updates.GetStateRequest):
    s.user(ctx)
    return types.updates.State(pts=PTS, qts=0, date=int(time.time()), seq=0, unread_count=0)


def get_difference(s: State, ctx: CallContext, req: functions.updates.GetDifferenceRequest):
    me = s.user(ctx)
    since = int(req.date.timestamp()) if hasattr(req.date, "timestamp") else int(req.date or 0)
    changed = [c for c in s.world.channels.values()
               if me.id in c.members and c.box and c.box[-1][4] >= since]
    now = int(time.time())
    if not changed:
        return types.updates.DifferenceEmpty(date=now, seq=0)
    return types.updates.Difference(
        new_messages=[], new_encrypted_messages=[],
        other_updates=[types.UpdateChannelTooLong(channel_id=c.id, pts=c.pts) for c in changed],
        chats=[tl.channel(c, me) for c in changed], users=[],
        state=types.updates.State(pts=PTS, qts=0, date=now, seq=0, unread_count=0))


def get_channel_difference(s: State, ctx: CallContext, req: functions.updates.GetChannelDifferenceRequest):
    me = s.user(ctx)
    channel = s.readable_channel(req.channel, me)
    if req.pts <= 0:
        raise RpcError(400, "PERSISTENT_TIMESTAMP_EMPTY")
    if req.pts > channel.pts:
        raise RpcError(400, "PERSISTENT_TIMESTAMP_INVALID")
    s.counters.inc(ctx.dc_id, "channel_differences")
    box = channel.box
    start = bisect.bisect_right(box, req.pts, key=lambda e: e[0])     # the first change after req.pts
    if start >= len(box):
        return types.updates.ChannelDifferenceEmpty(pts=channel.pts, final=True, timeout=TIMEOUT)
    if len(box) - start > s.controls.message_box():
        s.counters.inc(ctx.dc_id, "channel_differences_too_long")
        latest = [tl.message(channel, m, s.references) for m in channel.messages[-TOO_LONG_MESSAGES:][::-1]]
        return types.updates.ChannelDifferenceTooLong(dialog=tl.dialog(channel), messages=latest,
                                                      chats=[tl.channel(channel, me)], users=[],
                                                      final=True, timeout=TIMEOUT)
    limit = max(1, min(req.limit or USER_LIMIT, BOT_LIMIT if me.is_bot else USER_LIMIT))
    picked = box[start:start + limit]
    final = start + limit >= len(box)
    new_ids = [i for _, _, kind, ids, _ in picked if kind == "new" for i in ids]
    new_set = set(new_ids)
    other: list = []
    for pts, count, kind, ids, _ in picked:
        if kind == "edit" and ids[0] not in new_set and (m := channel.message(ids[0])) is not None:
            other.append(types.UpdateEditChannelMessage(message=tl.message(channel, m, s.references),
                                                        pts=pts, pts_count=count))
        elif kind == "delete":
            other.append(types.UpdateDeleteChannelMessages(channel_id=channel.id, messages=list(ids),
                                                           pts=pts, pts_count=count))
    new_messages = [tl.message(channel, m, s.references) for i in new_ids if (m := channel.message(i))]
    return types.updates.ChannelDifference(
        pts=picked[-1][0], new_messages=new_messages, other_updates=other,
        chats=[tl.channel(channel, me)], users=[], final=final or None, timeout=TIMEOUT)


HANDLERS = {
    functions.updates.GetChannelDifferenceRequest: get_channel_difference,
    functions.updates.GetStateRequest: get_state,
    functions.updates.GetDifferenceRequest: get_difference,
}
