"""A fake Telegram for the catalog and the update tracker in one process: a channel whose messages a
test adds, edits and deletes; GetHistory answered from them (with the channel's pts a test sets),
calls counted per method; any call can be held on an asyncio.Event to make a race happen in a
chosen order."""

from __future__ import annotations

import asyncio
import datetime
from collections import Counter
from types import SimpleNamespace

from telethon import types
from telethon.tl import functions

DATE = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def document_message(channel_id: int, mid: int, name: str, size: int = 1000) -> types.Message:
    doc = types.Document(id=9000 + mid, access_hash=1, file_reference=b"r", date=DATE,
                         mime_type="application/octet-stream", size=size, dc_id=2,
                         attributes=[types.DocumentAttributeFilename(name)])
    return types.Message(id=mid, peer_id=types.PeerChannel(channel_id), date=DATE, message="",
                         media=types.MessageMediaDocument(document=doc))


class FakeClient:
    def __init__(self, channel_id: int = 77, title: str = "Films") -> None:
        self.channel = types.Channel(id=channel_id, title=title, photo=types.ChatPhotoEmpty(), date=DATE,
                                     access_hash=5, creator=True)
        self.messages: dict[int, types.Message] = {}
        self.pts = 0                                   # the channel's pts getHistory answers with
        self.calls: Counter[str] = Counter()
        self.hold: dict[str, asyncio.Event] = {}      # method name -> released when set
        self.handlers = []

    def post(self, name: str) -> types.Message:
        mid = max(self.messages, default=0) + 1
        m = self.messages[mid] = document_message(self.channel.id, mid, name)
        return m

    async def iter_dialogs(self):
        self.calls["GetDialogs"] += 1
        if "GetDialogs" in self.hold:
            await self.hold["GetDialogs"].wait()
        yield SimpleNamespace(entity=self.channel, date=DATE)

    async def __call__(self, request):
        name = type(request).__name__.removesuffix("Request")
        self.calls[name] += 1
        if name in self.hold:
            await self.hold[name].wait()
        if isinstance(request, functions.messages.GetHistoryRequest):
            picked = sorted((m for m in self.messages.values() if m.id > request.min_id),
                            key=lambda m: -m.id)
            if request.offset_id:
                picked = [m for m in picked if m.id < request.offset_id]
            return types.messages.ChannelMessages(pts=self.pts, count=len(self.messages),
                                                  messages=picked[:request.limit], topics=[], chats=[],
                                                  users=[])
        raise NotImplementedError(name)
