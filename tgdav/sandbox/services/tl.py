"""The world's records as the TL objects Telegram sends. Messages with media get a freshly minted
file reference each time they are presented, as fetching a message does on Telegram.
"""

from __future__ import annotations

from telethon.tl import types

from tgdav.sandbox.services.references import References
from tgdav.sandbox.world import Account, Channel, Document, Message, Photo


def wire(text):
    """A string as the TL string to send: UTF-8, and a str holding lone surrogates (the admin API's
    hostile posts) as the invalid UTF-8 bytes they stand for, which clients decode as U+FFFD."""
    if isinstance(text, str):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return text.encode("utf-8", "surrogatepass")
    return text


def user(account: Account, viewer: Account) -> types.User:
    """As `viewer` sees it: only one's own record carries is_self and the phone number."""
    is_self = account.id == viewer.id
    return types.User(
        id=account.id, is_self=is_self, bot=account.is_bot, access_hash=account.access_hash,
        first_name=account.first_name, username=account.username,
        phone=account.phone if is_self else None, premium=account.premium or None,
        bot_info_version=1 if account.is_bot else None, bot_nochats=account.is_bot or None)


def channel(ch: Channel, viewer: Account) -> types.Channel:
    """As `viewer` sees it: `creator` and `admin_rights` (chatAdminRights) tell whether it may post."""
    rights = ch.rights_of(viewer)
    return types.Channel(
        id=ch.id, title=wire(ch.title), photo=types.ChatPhotoEmpty(), date=ch.date, broadcast=not ch.megagroup,
        megagroup=ch.megagroup or None,
        access_hash=ch.access_hash, username=ch.username, left=viewer.id not in ch.members,
        creator=viewer.id == ch.creator_id or None,
        admin_rights=types.ChatAdminRights(**{r: True for r in sorted(rights)}) if rights else None,
        participants_count=len(ch.members))


def peer(ch: Channel) -> types.PeerChannel:
    return types.PeerChannel(ch.id)


def message(ch: Channel, msg: Message, refs: References, viewer: Account | None = None) -> types.Message:
    """As `viewer` sees it: `out` on the messages it posted itself (as Telegram marks them)."""
    fwd = None
    if msg.fwd_from:
        from_channel, from_id, from_date = msg.fwd_from
        fwd = types.MessageFwdHeader(date=from_date, from_id=types.PeerChannel(from_channel),
                                     channel_post=from_id)
    sender = types.PeerUser(msg.author) if ch.megagroup and msg.author else None
    return types.Message(
        id=msg.id, peer_id=peer(ch), date=msg.date, message=wire(msg.text), post=not ch.megagroup,
        out=bool(viewer is not None and msg.author and msg.author == viewer.id),
        from_id=sender, media=_media(msg.media, refs), edit_date=msg.edit_date, fwd_from=fwd)


def message_empty(ch: Channel, message_id: int) -> types.MessageEmpty:
    return types.MessageEmpty(id=message_id, peer_id=peer(ch))


def _media(media: Document | Photo | None, refs: References):
    if isinstance(media, Document):
        return types.MessageMediaDocument(document=document(media, refs.mint("document", media.id)))
    if isinstance(media, Photo):
        return types.MessageMediaPhoto(photo=photo(media, refs.mint("photo", media.id)))
    return None


def document(doc: Document, reference: bytes) -> types.Document:
    attributes: list = [types.DocumentAttributeFilename(wire(doc.name))] if doc.name else []
    if doc.video:
        v = doc.video
        attributes.append(types.DocumentAttributeVideo(
            duration=v.duration, w=v.w, h=v.h, supports_streaming=v.supports_streaming))
    if doc.audio:
        a = doc.audio
        attributes.append(types.DocumentAttributeAudio(duration=a.duration, title=a.title,
                                                       performer=a.performer))
    return types.Document(id=doc.id, access_hash=doc.access_hash, file_reference=reference,
                          date=doc.date, mime_type=wire(doc.mime), size=doc.size, dc_id=doc.dc_id,
                          attributes=attributes)


def photo(p: Photo, reference: bytes) -> types.Photo:
    return types.Photo(id=p.id, access_hash=p.access_hash, file_reference=reference, date=p.date,
                       sizes=[types.PhotoSize(s.type, s.w, s.h, s.size) for s in p.sizes],
                       dc_id=p.dc_id)


def dialog(c: Channel) -> types.Dialog:
    """The channel's dialog: its top message (all read) and its current pts."""
    top = c.top.id if c.top else 0
    return types.Dialog(
        peer=peer(c), top_message=top, read_inbox_max_id=top, read_outbox_max_id=top,
        unread_count=0, unread_mentions_count=0, unread_reactions_count=0, unread_poll_votes_count=0,
        notify_settings=notify_settings(), pts=c.pts)


def notify_settings() -> types.PeerNotifySettings:
    return types.PeerNotifySettings()
