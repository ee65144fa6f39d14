"""messages.*: the dialog list and channel history, paged exactly as Telegram pages them."""

from __future__ import annotations

from datetime import datetime

from telethon.tl import functions, types

from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.services import tl
from tgdav.sandbox.services.state import State
from tgdav.sandbox.world import Channel

MAX_LIMIT = 100


def _limit(limit: int) -> int:
    if limit < 0:
        raise RpcError(400, "LIMIT_INVALID")
    return min(limit, MAX_LIMIT)


def _timestamp(date: datetime | int | None) -> int:
    if date is None:
        return 0
    return int(date.timestamp()) if isinstance(date, datetime) else int(date)


def get_dialogs(s: State, ctx: CallContext, req: functions.messages.GetDialogsRequest):
    """The account's channels, newest first. The next page starts after offset_peer when it is one of
    them, else at the first dialog whose top message is older than offset_date."""
    me = s.user_not_bot(ctx)
    channels = s.world.dialogs_of(me)
    limit = _limit(req.limit)
    start = 0
    ids = [c.id for c in channels]
    if isinstance(req.offset_peer, types.InputPeerChannel) and req.offset_peer.channel_id in ids:
        start = ids.index(req.offset_peer.channel_id) + 1
    elif offset_date := _timestamp(req.offset_date):
        start = next((i for i, c in enumerate(channels) if _top_date(c) < offset_date), len(channels))
    page = channels[start:start + limit]
    dialogs = [types.Dialog(
        peer=tl.peer(c), top_message=c.top.id if c.top else 0,
        read_inbox_max_id=c.top.id if c.top else 0, read_outbox_max_id=c.top.id if c.top else 0,
        unread_count=0, unread_mentions_count=0, unread_reactions_count=0, unread_poll_votes_count=0,
        notify_settings=tl.notify_settings(), pts=c.pts) for c in page]
    messages = [tl.message(c, c.top, s.references) for c in page if c.top]
    chats = [tl.channel(c, me) for c in page]
    if start == 0 and len(page) == len(channels):
        return types.messages.Dialogs(dialogs=dialogs, messages=messages, chats=chats, users=[])
    return types.messages.DialogsSlice(count=len(channels), dialogs=dialogs, messages=messages,
                                       chats=chats, users=[])


def _top_date(c: Channel) -> int:
    return c.top.date if c.top else c.date


def get_history(s: State, ctx: CallContext, req: functions.messages.GetHistoryRequest):
    """Newest first. The window starts at the first message older than offset_id (else older than
    offset_date, else the newest), moved by add_offset (negative reaches newer messages), `limit`
    long and clipped to the channel; max_id and min_id then filter the window, as on Telegram."""
    me = s.user_not_bot(ctx)
    if not isinstance(req.peer, types.InputPeerChannel):
        raise RpcError(400, "PEER_ID_INVALID")
    channel = s.readable_channel(req.peer, me)
    limit = _limit(req.limit)
    n = len(channel.messages)
    if req.offset_id:
        position = channel.count_from_id(req.offset_id)
    elif offset_date := _timestamp(req.offset_date):
        position = channel.count_from_date(offset_date)
    else:
        position = 0
    start = max(0, position + req.add_offset)
    end = min(n, position + req.add_offset + limit)
    window = [channel.messages[n - 1 - i] for i in range(start, end)]
    picked = [m for m in window if m.id > req.min_id and (not req.max_id or m.id < req.max_id)]
    return types.messages.ChannelMessages(
        pts=channel.pts, count=n, messages=[tl.message(channel, m, s.references) for m in picked],
        topics=[], chats=[tl.channel(channel, me)], users=[])


HANDLERS = {
    functions.messages.GetDialogsRequest: get_dialogs,
    functions.messages.GetHistoryRequest: get_history,
}
