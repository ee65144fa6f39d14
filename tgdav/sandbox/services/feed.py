"""Updates pushed to clients, as Telegram pushes them (core.telegram.org/api/updates).

A connection is subscribed to its account's updates by its first request that is not wrapped in
invokeWithoutUpdates and is not a file query (upload.*), made on the account's home DC: "the main
connection". Every change a client writes (writes.py: post, edit, delete, a new title, a new or
deleted channel) is pushed to the subscribed connections of every member of the channel, except the
connection whose request made it (that one reads the change in its answer):
    post    updateNewChannelMessage(message, pts, pts_count=1)
    edit    updateEditChannelMessage(message, pts, pts_count=1)
    delete  updateDeleteChannelMessages(channel_id, ids, pts, pts_count=len(ids))
    channel, title, drop   updateChannel(channel_id)                         (no pts)
each in an `updates` constructor with the channel in `chats` and seq 0. The pts are the channel's
(world.Channel.box); a dropped update (the `drop_updates` fault) still moves pts, so the client
sees a gap and heals it with updates.getChannelDifference (services/updates.py).

Counters (on the DC of the receiving connection): updates_pushed, updates_dropped.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Callable

from telethon.tl import types

from tgdav.sandbox.services import tl

log = logging.getLogger("tgdav.sandbox.feed")

# the connection whose request is being handled: it is not sent the update its own write makes
current_conn: contextvars.ContextVar[int] = contextvars.ContextVar("current_conn", default=0)


class Feed:
    def __init__(self, world, references, counters, controls) -> None:
        self._world = world
        self._references = references
        self._counters = counters
        self._controls = controls
        # account id -> conn id -> (dc, push(obj))
        self._subscribers: dict[int, dict[int, tuple[int, Callable]]] = {}

    def subscribe(self, account_id: int, conn_id: int, dc_id: int, push: Callable) -> None:
        self._subscribers.setdefault(account_id, {})[conn_id] = (dc_id, push)

    def closed(self, conn_id: int) -> None:
        for conns in self._subscribers.values():
            conns.pop(conn_id, None)

    def subscribed(self, account_id: int) -> int:
        return len(self._subscribers.get(account_id, ()))

    def changed(self, op: dict, result, channel) -> None:
        """writes.Writes calls this after each change it applied (not while replaying)."""
        if channel is None:
            return
        update = self._update(op, result, channel)
        if update is None:
            return
        members = set(channel.members)
        if channel.creator_id is not None:
            members.add(channel.creator_id)
        me = current_conn.get()
        for account_id in members:
            account = self._world.accounts.get(account_id)
            for conn_id, (dc, push) in list(self._subscribers.get(account_id, {}).items()):
                if conn_id == me or account is None:
                    continue
                if self._controls.take_update_drop():
                    self._counters.inc(dc, "updates_dropped")
                    continue
                push(types.Updates(updates=[update], users=[], chats=[tl.channel(channel, account)],
                                   date=int(time.time()), seq=0))
                self._counters.inc(dc, "updates_pushed")

    def _update(self, op: dict, result, channel):
        kind = op["op"]
        if kind == "post":
            return types.UpdateNewChannelMessage(message=tl.message(channel, result, self._references),
                                                 pts=channel.pts, pts_count=1)
        if kind == "edit":
            return types.UpdateEditChannelMessage(message=tl.message(channel, result, self._references),
                                                  pts=channel.pts, pts_count=1)
        if kind == "delete":
            if not result:
                return None
            return types.UpdateDeleteChannelMessages(channel_id=channel.id, messages=list(result),
                                                     pts=channel.pts, pts_count=len(result))
        if kind in ("channel", "title", "drop"):
            return types.UpdateChannel(channel_id=channel.id)
        return None
