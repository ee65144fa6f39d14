"""channels.*: channel records, full info, participants (the admins of a supergroup), and messages
by id (the way bots and reference refreshes read messages); creating a broadcast channel (its creator holds every admin right) and deleting
messages (creator or an admin with delete_messages, else 403 MESSAGE_DELETE_FORBIDDEN); renaming
(change_info) and deleting a channel (its creator), else 400 CHAT_ADMIN_REQUIRED.
Counters: channels_created, channels_renamed, channels_deleted, messages_deleted.
"""

from __future__ import annotations

from telethon.tl import functions, types

from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.services import posting, tl
from tgdav.sandbox.services.state import State


def get_channels(s: State, ctx: CallContext, req: functions.channels.GetChannelsRequest):
    me = s.user(ctx)
    return types.messages.Chats(chats=[tl.channel(s.channel(peer, me), me) for peer in req.id])


def get_full_channel(s: State, ctx: CallContext, req: functions.channels.GetFullChannelRequest):
    me = s.user(ctx)
    channel = s.readable_channel(req.channel, me)
    top = channel.top.id if channel.top else 0
    full = types.ChannelFull(
        id=channel.id, about="", read_inbox_max_id=top, read_outbox_max_id=top, unread_count=0,
        chat_photo=types.PhotoEmpty(0), notify_settings=tl.notify_settings(), bot_info=[],
        pts=channel.pts, participants_count=len(channel.members))
    return types.messages.ChatFull(full_chat=full, chats=[tl.channel(channel, me)], users=[])


def get_messages(s: State, ctx: CallContext, req: functions.channels.GetMessagesRequest):
    """The asked ids in the asked order; a missing id gives messageEmpty."""
    me = s.user(ctx)
    channel = s.readable_channel(req.channel, me)
    if not req.id:
        raise RpcError(400, "MESSAGE_IDS_EMPTY")
    out = []
    for item in req.id:
        mid = item.id if isinstance(item, types.InputMessageID) else 0
        message = channel.message(mid)
        out.append(tl.message(channel, message, s.references, me) if message else tl.message_empty(channel, mid))
    return types.messages.ChannelMessages(pts=channel.pts, count=len(channel.messages), messages=out,
                                          topics=[], chats=[tl.channel(channel, me)], users=[])


TITLE_MAX = 128


def create_channel(s: State, ctx: CallContext, req: functions.channels.CreateChannelRequest):
    """A broadcast channel whose creator is the caller; answered with updateChannel and the channel."""
    me = s.user_not_bot(ctx)
    title = _title(req.title)
    channel = s.writes.create_channel(title, me.id, posting.now(), megagroup=bool(req.megagroup))
    s.counters.inc(ctx.dc_id, "channels_created")
    return types.Updates(updates=[types.UpdateChannel(channel_id=channel.id)], users=[],
                         chats=[tl.channel(channel, me)], date=posting.now(), seq=0)


def _title(title: str | None) -> str:
    title = (title or "").strip()
    if not title:
        raise RpcError(400, "CHAT_TITLE_EMPTY")
    if len(title) > TITLE_MAX:
        raise RpcError(400, "CHAT_TITLE_INVALID")
    return title


def edit_title(s: State, ctx: CallContext, req: functions.channels.EditTitleRequest):
    me = s.user(ctx)
    channel = s.readable_channel(req.channel, me)
    if "change_info" not in channel.rights_of(me):
        raise RpcError(400, "CHAT_ADMIN_REQUIRED")
    title = _title(req.title)
    if title == channel.title:
        raise RpcError(400, "CHAT_NOT_MODIFIED")
    s.writes.retitle(channel, title)
    s.counters.inc(ctx.dc_id, "channels_renamed")
    return types.Updates(updates=[types.UpdateChannel(channel_id=channel.id)], users=[],
                         chats=[tl.channel(channel, me)], date=posting.now(), seq=0)


def delete_channel(s: State, ctx: CallContext, req: functions.channels.DeleteChannelRequest):
    me = s.user(ctx)
    channel = s.readable_channel(req.channel, me)
    if channel.creator_id != me.id:
        raise RpcError(400, "CHAT_ADMIN_REQUIRED")
    s.writes.drop_channel(channel)
    s.counters.inc(ctx.dc_id, "channels_deleted")
    gone = types.ChannelForbidden(id=channel.id, access_hash=channel.access_hash, title=channel.title,
                                  broadcast=True)
    return types.Updates(updates=[types.UpdateChannel(channel_id=channel.id)], users=[], chats=[gone],
                         date=posting.now(), seq=0)


# ids one channels.deleteMessages call acts on: Telegram's server-side limit ("100 or a bit more",
# tdesktop's maintainer in tdesktop#2045; the Bot API's deleteMessages documents 1-100; Telethon
# sends chunks of 100). Telegram does not refuse a longer list: the ids past the limit stay
# (tdesktop#2692, "only 100 messages are deleted"), so a client must send 100 a call.
DELETE_IDS_MAX = 100


def delete_messages(s: State, ctx: CallContext, req: functions.channels.DeleteMessagesRequest):
    """Ids that do not exist are ignored, and ids past the first DELETE_IDS_MAX too; pts moves by
    the number deleted."""
    me = s.user(ctx)
    channel = s.readable_channel(req.channel, me)
    ids = list(req.id)[:DELETE_IDS_MAX]
    if not all(channel.may_delete(me, channel.message(i)) for i in ids):
        raise RpcError(403, "MESSAGE_DELETE_FORBIDDEN")
    gone = s.writes.delete(channel, ids)
    s.counters.inc(ctx.dc_id, "messages_deleted", len(gone))
    return types.messages.AffectedMessages(pts=channel.pts, pts_count=len(gone))


def get_participants(s: State, ctx: CallContext, req: functions.channels.GetParticipantsRequest):
    """channelParticipantsAdmins: the creator and the admins; any other filter: every member."""
    me = s.user(ctx)
    channel = s.readable_channel(req.channel, me)
    admins = isinstance(req.filter, types.ChannelParticipantsAdmins)
    ids = sorted(channel.members)
    if admins:
        ids = [i for i in ids if i == channel.creator_id or i in channel.admins]
    page = ids[max(0, req.offset):max(0, req.offset) + max(0, min(req.limit, 200))]
    out = []
    for uid in page:
        rights = types.ChatAdminRights(**{r: True for r in sorted(channel.admins.get(uid, ()))})
        if uid == channel.creator_id:
            out.append(types.ChannelParticipantCreator(uid, admin_rights=rights))
        elif uid in channel.admins:
            out.append(types.ChannelParticipantAdmin(uid, promoted_by=channel.creator_id or uid,
                                                     date=channel.date, admin_rights=rights))
        else:
            out.append(types.ChannelParticipant(uid, date=channel.date))
    users = [tl.user(s.world.accounts[uid], me) for uid in page if uid in s.world.accounts]
    return types.channels.ChannelParticipants(count=len(ids), participants=out, chats=[], users=users)


HANDLERS = {
    functions.channels.GetParticipantsRequest: get_participants,
    functions.channels.CreateChannelRequest: create_channel,
    functions.channels.DeleteMessagesRequest: delete_messages,
    functions.channels.EditTitleRequest: edit_title,
    functions.channels.DeleteChannelRequest: delete_channel,
    functions.channels.GetChannelsRequest: get_channels,
    functions.channels.GetFullChannelRequest: get_full_channel,
    functions.channels.GetMessagesRequest: get_messages,
}
