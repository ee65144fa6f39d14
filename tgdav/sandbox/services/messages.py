"""messages.*: the dialog list and channel history, paged exactly as Telegram pages them; posting
(sendMedia, sendMessage), editing and forwarding, with the channel rights Telegram checks (posting.py).

Rights: sendMedia / sendMessage / forwardMessages (target) need the creator or an admin with
post_messages, editMessage needs post_messages or edit_messages; a member without them gets
403 CHAT_WRITE_FORBIDDEN, a non-member of a private channel 400 CHANNEL_PRIVATE. In a supergroup
every member posts and only a message's sender edits it (else 403 MESSAGE_AUTHOR_REQUIRED).
Texts: a caption is at most 1024 UTF-16 code units (4096 for premium accounts,
MEDIA_CAPTION_TOO_LONG), a text message at most 4096 (MESSAGE_TOO_LONG), as help.getConfig says.
Counters (on the DC that answered): messages_sent, messages_edited, messages_forwarded,
documents_created (on the DC that holds the new document).
"""

from __future__ import annotations

from datetime import datetime

from telethon.tl import functions, types

from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.services import posting, tl
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
    dialogs = [tl.dialog(c) for c in page]
    messages = [tl.message(c, c.top, s.references, me) for c in page if c.top]
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
    long and clipped to the channel; max_id and min_id then filter the window, as on Telegram.
    The account's getHistory rate rule (controls.history_rate_rule, on by default) is checked first."""
    me = s.user_not_bot(ctx)
    per_second, burst, seconds = s.controls.history_rate_rule()
    if per_second > 0:      # the rate rule first: Telegram counts every call
        s.history_rate.check(me.id, s.clock(), per_second, burst, seconds)
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
        pts=channel.pts, count=n, messages=[tl.message(channel, m, s.references, me) for m in picked],
        topics=[], chats=[tl.channel(channel, me)], users=[])


def send_media(s: State, ctx: CallContext, req: functions.messages.SendMediaRequest):
    me = s.user(ctx)
    channel = s.postable_channel(req.peer, me)
    posting.check_caption(me, req.message or "")
    random = posting.check_random_id(s, me, req.random_id)
    media = posting.media_of(s, ctx, me, req.media)
    message = s.writes.post(channel, req.message or "", media, posting.now(), random=random, author=me.id)
    s.counters.inc(ctx.dc_id, "messages_sent")
    return posting.new_messages_updates(s, channel, me, [(message, req.random_id)])


def send_message(s: State, ctx: CallContext, req: functions.messages.SendMessageRequest):
    me = s.user(ctx)
    channel = s.postable_channel(req.peer, me)
    if not (req.message or "").strip():
        raise RpcError(400, "MESSAGE_EMPTY")
    posting.check_message(req.message)
    random = posting.check_random_id(s, me, req.random_id)
    message = s.writes.post(channel, req.message, None, posting.now(), random=random, author=me.id)
    s.counters.inc(ctx.dc_id, "messages_sent")
    return posting.new_messages_updates(s, channel, me, [(message, req.random_id)])


def edit_message(s: State, ctx: CallContext, req: functions.messages.EditMessageRequest):
    """A new text (caption) and/or media; edit_date set. Answered with updateEditChannelMessage."""
    me = s.user(ctx)
    if not isinstance(req.peer, types.InputPeerChannel):
        raise RpcError(400, "PEER_ID_INVALID")
    channel = s.readable_channel(req.peer, me)
    message = channel.message(req.id)
    if channel.megagroup and message is not None and not channel.may_edit(me, message):
        raise RpcError(403, "MESSAGE_AUTHOR_REQUIRED")
    if not channel.megagroup and not channel.may_edit(me):
        raise RpcError(403, "CHAT_WRITE_FORBIDDEN")
    if message is None:
        raise RpcError(400, "MESSAGE_ID_INVALID")
    if req.message is not None:
        has_media = req.media is not None or message.media is not None
        if has_media:
            posting.check_caption(me, req.message)
        elif not req.message.strip():
            raise RpcError(400, "MESSAGE_EMPTY")
        else:
            posting.check_message(req.message)
    media = posting.media_of(s, ctx, me, req.media) if req.media is not None else None
    if media is None and (req.message is None or req.message == message.text):
        raise RpcError(400, "MESSAGE_NOT_MODIFIED")
    s.writes.edit(channel, message, posting.now(), req.message, media)
    s.counters.inc(ctx.dc_id, "messages_edited")
    update = types.UpdateEditChannelMessage(message=tl.message(channel, message, s.references, me),
                                            pts=channel.pts, pts_count=1)
    return types.Updates(updates=[update], users=[], chats=[tl.channel(channel, me)], date=posting.now(),
                         seq=0)


def forward_messages(s: State, ctx: CallContext, req: functions.messages.ForwardMessagesRequest):
    """Copies of the messages in the target channel, sharing their media (no bytes are copied).
    Without drop_author a copy names its origin (fwd_from); drop_media_captions drops the text."""
    me = s.user(ctx)
    if not isinstance(req.from_peer, types.InputPeerChannel):
        raise RpcError(400, "PEER_ID_INVALID")
    source = s.readable_channel(req.from_peer, me)
    target = s.postable_channel(req.to_peer, me)
    random_ids = list(req.random_id or [])
    if not req.id or len(random_ids) != len(req.id):
        raise RpcError(400, "RANDOM_ID_INVALID")
    originals = [(source.message(mid), rid) for mid, rid in zip(req.id, random_ids)]
    originals = [(m, rid) for m, rid in originals if m is not None]
    if not originals:
        raise RpcError(400, "MESSAGE_ID_INVALID")
    keys = [posting.check_random_id(s, me, rid) for _, rid in originals]
    posted = []
    for (original, rid), key in zip(originals, keys):
        text = "" if req.drop_media_captions and original.media is not None else original.text
        fwd = None if req.drop_author else (source.id, original.id, original.date)
        posted.append((s.writes.post(target, text, original.media, posting.now(), fwd_from=fwd, random=key,
                                     author=me.id), rid))
    s.counters.inc(ctx.dc_id, "messages_forwarded", len(posted))
    return posting.new_messages_updates(s, target, me, posted)


HANDLERS = {
    functions.messages.GetDialogsRequest: get_dialogs,
    functions.messages.GetHistoryRequest: get_history,
    functions.messages.SendMediaRequest: send_media,
    functions.messages.SendMessageRequest: send_message,
    functions.messages.EditMessageRequest: edit_message,
    functions.messages.ForwardMessagesRequest: forward_messages,
}
