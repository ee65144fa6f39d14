"""What the writing methods share: turning an InputMedia into a document of the world (a new one
from uploaded parts, or an existing one re-sent), and the Updates answer Telegram gives for a post.

New documents are stored on the world's upload DC (the uploader's home DC) and their bytes are the
upload's parts, hard-linked into the state dir (writes.py). A message's answer is an Updates with
updateMessageID(id, random_id) and updateNewChannelMessage(message, pts, pts_count=1) per new message,
the channel in `chats`, as Telegram answers messages.sendMedia / sendMessage / forwardMessages.
"""

from __future__ import annotations

import os
import time

from telethon.tl import types

from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.services import tl
from tgdav.sandbox.services.state import State
from tgdav.sandbox.world import Account, Audio, Channel, Document, Message, Photo, Video


def now() -> int:
    return int(time.time())


def media_of(s: State, ctx: CallContext, account: Account, media) -> Document | Photo:
    """The world's document for an inputMediaUploadedDocument (created now) or inputMediaDocument,
    or its photo for an inputMediaPhoto: existing media are re-sent as they are, no bytes copied,
    if the client presents a current file reference."""
    if isinstance(media, types.InputMediaUploadedDocument):
        return _uploaded_document(s, ctx, account, media)
    if isinstance(media, types.InputMediaDocument):
        ref = media.id
        if not isinstance(ref, types.InputDocument):
            raise RpcError(400, "MEDIA_EMPTY")
        doc = s.world.documents.get(ref.id)
        if doc is None or doc.access_hash != ref.access_hash:
            raise RpcError(400, "MEDIA_INVALID")
        s.references.check("document", doc.id, ref.file_reference)
        return doc
    if isinstance(media, types.InputMediaPhoto):
        ref = media.id
        if not isinstance(ref, types.InputPhoto):
            raise RpcError(400, "MEDIA_EMPTY")
        photo = s.world.photos.get(ref.id)
        if photo is None or photo.access_hash != ref.access_hash:
            raise RpcError(400, "MEDIA_INVALID")
        s.references.check("photo", photo.id, ref.file_reference)
        return photo
    raise RpcError(400, "MEDIA_INVALID")


def _uploaded_document(s: State, ctx: CallContext, account: Account,
                       media: types.InputMediaUploadedDocument) -> Document:
    file = media.file
    max_parts = s.controls.max_file_parts(account.premium)
    if isinstance(file, types.InputFile):
        done = s.parts.complete(account.id, ctx.dc_id, file.id, file.parts, big=False, max_parts=max_parts,
                                md5_hex=file.md5_checksum or "")
    elif isinstance(file, types.InputFileBig):
        done = s.parts.complete(account.id, ctx.dc_id, file.id, file.parts, big=True, max_parts=max_parts)
    else:
        raise RpcError(400, "MEDIA_INVALID")
    name, video, audio = file.name or "", None, None
    for attr in media.attributes or ():
        if isinstance(attr, types.DocumentAttributeFilename):
            name = attr.file_name
        elif isinstance(attr, types.DocumentAttributeVideo):
            video = Video(float(attr.duration), attr.w, attr.h, bool(attr.supports_streaming))
        elif isinstance(attr, types.DocumentAttributeAudio):
            audio = Audio(int(attr.duration), attr.title, attr.performer)
    doc_id = int.from_bytes(os.urandom(8), "big") >> 1
    while doc_id in s.world.documents:
        doc_id = int.from_bytes(os.urandom(8), "big") >> 1
    s.parts.link_into(done, s.writes.folder_of(doc_id))
    dc = s.world.upload_dc(account)
    doc = s.writes.add_document(
        doc_id=doc_id, access_hash=int.from_bytes(os.urandom(8), "big") >> 1, date=now(),
        mime=media.mime_type or "application/octet-stream", size=done.size, name=name, dc=dc,
        part_size=done.part_size, video=video, audio=audio)
    s.counters.inc(dc, "documents_created")
    return doc


CAPTION_MAX = 1024            # help.config caption_length_max (premium accounts: MESSAGE_MAX)
MESSAGE_MAX = 4096            # help.config message_length_max


def text_length(text: str) -> int:
    """Telegram counts message and caption lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def check_caption(account: Account, text: str) -> None:
    if text_length(text) > (MESSAGE_MAX if account.premium else CAPTION_MAX):
        raise RpcError(400, "MEDIA_CAPTION_TOO_LONG")


def check_message(text: str) -> None:
    if text_length(text) > MESSAGE_MAX:
        raise RpcError(400, "MESSAGE_TOO_LONG")


def check_random_id(s: State, account: Account, random_id: int | None) -> tuple[int, int] | None:
    """RANDOM_ID_DUPLICATE when the account already sent a message with this random_id."""
    if not random_id:
        return None
    key = (account.id, random_id)
    if key in s.writes.random_ids:
        raise RpcError(500, "RANDOM_ID_DUPLICATE")
    return key


def new_messages_updates(s: State, channel: Channel, viewer: Account,
                         posted: list[tuple[Message, int | None]]) -> types.Updates:
    """The answer to a post: per message updateMessageID (if it had a random_id) and
    updateNewChannelMessage, pts counting one per message."""
    updates: list = []
    first_pts = channel.pts - len(posted)
    for n, (message, random_id) in enumerate(posted, 1):
        if random_id:
            updates.append(types.UpdateMessageID(id=message.id, random_id=random_id))
        updates.append(types.UpdateNewChannelMessage(
            message=tl.message(channel, message, s.references, viewer), pts=first_pts + n, pts_count=1))
    return types.Updates(updates=updates, users=[], chats=[tl.channel(channel, viewer)], date=now(), seq=0)
