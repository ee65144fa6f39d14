"""What clients write into the sandbox (channels, messages, documents, edits, deletions), applied to
the world and kept in the state dir so a restarted sandbox shows it again.

The world itself is rebuilt from its seed on every start; on top of it this module replays a journal:
    <state>/writes.jsonl          one JSON object per change, appended and flushed as it happens
    <state>/files/<doc id>/       an uploaded document's bytes: its upload parts, hard-linked
    <state>/uploads/              upload parts not yet used (parts.py)
Every change goes through `_commit`, which applies it with the same code that replays it, so what a
restart shows is what was served. A line cut short by a crash, or one that no longer fits the world
(another seed), is skipped with a log line. Without a state dir the same layout lives in a temporary
folder for the life of the process.

Journal records ("op"):
    channel   {"id", "access_hash", "title", "date", "creator", "megagroup"}
    document  {"id", "access_hash", "date", "mime", "size", "name", "dc", "part_size", "video", "audio"}
    post      {"channel", "id", "date", "text", "media": {"document": id} | {"photo": id} | null,
               "fwd": [channel, message, date] | null, "random": [account, random_id] | null,
               "author": account id (absent in older journals: 0)}
    edit      {"channel", "id", "date", "text": str | null, "media": ... | null}
    delete    {"channel", "ids": [...]}
    title     {"channel", "title"}
    drop      {"channel"}                              (channels.deleteChannel)
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from tgdav.sandbox.world import Audio, Channel, Document, Message, PartsSource, Photo, Video, World

log = logging.getLogger("tgdav.sandbox.writes")

JOURNAL = "writes.jsonl"


class Writes:
    def __init__(self, world: World, root: Path | None = None) -> None:
        self.world = world
        self._tmp = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tgdav-sandbox-")
            root = Path(self._tmp.name)
        self.root = Path(root)
        self.persistent = self._tmp is None
        self.files = self.root / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self._journal_path = self.root / JOURNAL
        self._lock = threading.Lock()
        self.random_ids: dict[tuple[int, int], tuple[int, int]] = {}  # (account, random_id) -> (channel, message)
        self.listener = None     # listener(op, result, channel) after each change made live, not replayed
        self.replayed = self._replay()

    # --- the changes -------------------------------------------------------------------------------
    def create_channel(self, title: str, creator_id: int, date: int, megagroup: bool = False) -> Channel:
        n = 0
        while (cid := self.world.new_channel_id(title, n)) in self.world.channels:
            n += 1
        access_hash = int.from_bytes(os.urandom(8), "big") >> 1
        return self._commit({"op": "channel", "id": cid, "access_hash": access_hash, "title": title,
                             "date": int(date), "creator": creator_id, "megagroup": megagroup})

    def add_document(self, *, doc_id: int, access_hash: int, date: int, mime: str, size: int, name: str,
                     dc: int, part_size: int, video: Video | None, audio: Audio | None) -> Document:
        """Record a document whose parts are already in `folder_of(doc_id)`."""
        return self._commit({
            "op": "document", "id": doc_id, "access_hash": access_hash, "date": int(date), "mime": mime,
            "size": size, "name": name, "dc": dc, "part_size": part_size,
            "video": vars(video) if video else None, "audio": vars(audio) if audio else None})

    def post(self, channel: Channel, text: str, media: Document | Photo | None, date: int, *,
             fwd_from: tuple[int, int, int] | None = None,
             random: tuple[int, int] | None = None, author: int = 0) -> Message:
        return self._commit({"op": "post", "channel": channel.id, "id": channel.last_id + 1,
                             "date": int(date), "text": text, "media": _media_ref(media),
                             "fwd": list(fwd_from) if fwd_from else None,
                             "random": list(random) if random else None, "author": author})

    def post_as(self, channel: Channel, sender: int, text: str, date: int, file: tuple[str, bytes] | None,
                dc: int) -> Message:
        """A post by another user (the admin API's way to play a second member): `file` is
        (name, bytes) of a new document stored on `dc`, or None for a text message."""
        media = None
        if file is not None:
            name, data = file
            doc_id = int.from_bytes(os.urandom(8), "big") >> 1
            folder = self.folder_of(doc_id)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "000000").write_bytes(data)
            media = self.add_document(doc_id=doc_id, access_hash=int.from_bytes(os.urandom(8), "big") >> 1,
                                      date=date, mime="application/octet-stream", size=len(data), name=name,
                                      dc=dc, part_size=max(1, len(data)), video=None, audio=None)
        return self.post(channel, text, media, date, author=sender)

    def edit(self, channel: Channel, message: Message, date: int, text: str | None,
             media: Document | Photo | None) -> Message:
        return self._commit({"op": "edit", "channel": channel.id, "id": message.id, "date": int(date),
                             "text": text, "media": _media_ref(media)})

    def delete(self, channel: Channel, ids: list[int]) -> list[int]:
        present = [i for i in ids if channel.message(i) is not None]
        if not present:
            return []
        return self._commit({"op": "delete", "channel": channel.id, "ids": present})

    def retitle(self, channel: Channel, title: str) -> None:
        self._commit({"op": "title", "channel": channel.id, "title": title})

    def drop_channel(self, channel: Channel) -> None:
        self._commit({"op": "drop", "channel": channel.id})

    def folder_of(self, doc_id: int) -> Path:
        return self.files / f"{doc_id & 0xFFFFFFFFFFFFFFFF:016x}"

    # --- journal -----------------------------------------------------------------------------------
    def _commit(self, op: dict):
        with self._lock:
            channel = self.world.channels.get(op.get("channel"))     # before a drop removes it
            result = self._apply(op)
            line = json.dumps(op, separators=(",", ":")) + "\n"
            with open(self._journal_path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
        if self.listener is not None:       # updates to connected clients (services/feed.py)
            self.listener(op, result, result if op["op"] == "channel" else channel)
        return result

    def _replay(self) -> int:
        if not self._journal_path.exists():
            return 0
        applied = 0
        with open(self._journal_path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    self._apply(json.loads(line))
                    applied += 1
                except (ValueError, KeyError, TypeError, AttributeError) as e:
                    log.warning("%s line %d skipped: %s", self._journal_path, number, e)
        log.info("replayed %d writes from %s", applied, self._journal_path)
        return applied

    def _apply(self, op: dict):
        w = self.world
        kind = op["op"]
        if kind == "channel":
            return w.restore_channel(op["id"], op["access_hash"], op["title"], op["date"], op["creator"],
                                     bool(op.get("megagroup")))
        if kind == "document":
            doc = Document(op["id"], op["access_hash"], op["date"], op["mime"], op["size"], op["name"],
                           op["dc"], op["dc"], PartsSource(self.folder_of(op["id"]), op["part_size"], op["size"]),
                           video=Video(**op["video"]) if op["video"] else None,
                           audio=Audio(**op["audio"]) if op["audio"] else None)
            w.documents[doc.id] = doc
            return doc
        channel = w.channels[op["channel"]]
        if kind == "post":
            fwd = tuple(op["fwd"]) if op["fwd"] else None
            message = w.post(channel, op["text"], self._media(op["media"]), op["date"],
                             message_id=op["id"], fwd_from=fwd, author=op.get("author") or 0)
            if op["random"]:
                self.random_ids[tuple(op["random"])] = (channel.id, message.id)
            return message
        if kind == "edit":
            message = channel.message(op["id"])
            if message is None:
                raise KeyError(f"message {op['id']} of channel {channel.id}")
            w.edit(channel, message, op["date"], op["text"], self._media(op["media"]))
            return message
        if kind == "delete":
            return w.delete(channel, op["ids"])
        if kind == "title":
            return w.retitle(channel, op["title"])
        if kind == "drop":
            return w.drop_channel(channel)
        raise ValueError(f"unknown op {kind!r}")

    def _media(self, ref: dict | None) -> Document | Photo | None:
        if not ref:
            return None
        if "document" in ref:
            return self.world.documents[ref["document"]]
        return self.world.photos[ref["photo"]]


def _media_ref(media: Document | Photo | None) -> dict | None:
    if isinstance(media, Document):
        return {"document": media.id}
    if isinstance(media, Photo):
        return {"photo": media.id}
    return None
