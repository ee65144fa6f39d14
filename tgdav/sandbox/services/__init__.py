"""The RPC methods of the sandbox's Telegram, one module per TL namespace, joined in one table from
request class to handler. `Services` is the Dispatcher the MTProto server calls (context.py): it
unwraps invokeWithLayer / initConnection / invokeWithoutUpdates / invokeAfterMsg(s), counts every
request (wrappers and the innermost one) and applies injected floods. The server counts the errors
answered (errors:<NAME>) and turns any non-RpcError exception into 500 INTERNAL.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from telethon.tl import functions
from telethon.tl.tlobject import TLObject, TLRequest

from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.controls import Controls
from tgdav.sandbox.counters import Counters
from tgdav.sandbox.keys import AuthKeyStore
from tgdav.sandbox.services import (account, auth, channels, contacts, feed, help, messages, updates,
                                    upload, users)
from tgdav.sandbox.services.state import State
from tgdav.sandbox.world import World

log = logging.getLogger("tgdav.sandbox.services")

WRAPPERS = (functions.InvokeWithLayerRequest, functions.InitConnectionRequest,
            functions.InvokeWithoutUpdatesRequest, functions.InvokeAfterMsgRequest,
            functions.InvokeAfterMsgsRequest)

HANDLERS: dict[type, Callable] = {
    **account.HANDLERS, **auth.HANDLERS, **channels.HANDLERS, **contacts.HANDLERS, **help.HANDLERS,
    **messages.HANDLERS, **updates.HANDLERS, **upload.HANDLERS, **users.HANDLERS,
}


def method_name(request: TLRequest) -> str:
    """GetFileRequest -> "GetFile", the name counters and fault injections use."""
    return type(request).__name__.removesuffix("Request")


class Services:
    def __init__(self, world: World, keys: AuthKeyStore, counters: Counters, controls: Controls,
                 clock: Callable[[], float] = time.monotonic, state_dir: Path | None = None) -> None:
        """`state_dir` keeps what clients write (writes.py, parts.py); None: a temporary folder."""
        self.state = State(world, keys, counters, controls, clock, state_dir)
        self.counters = counters
        self.controls = controls
        self.clock = clock

    async def call(self, ctx: CallContext, request: TLRequest) -> TLObject | list:
        self.counters.inc(ctx.dc_id, f"requests:{method_name(request)}")
        subscribes = True       # invokeWithoutUpdates and file queries leave the connection unsubscribed
        while isinstance(request, WRAPPERS):
            subscribes &= not isinstance(request, functions.InvokeWithoutUpdatesRequest)
            request = request.query
            self.counters.inc(ctx.dc_id, f"requests:{method_name(request)}")
        subscribes &= not type(request).__module__.endswith(".upload")
        name = method_name(request)
        handler = HANDLERS.get(type(request))
        if handler is None:
            log.warning("DC %d: no handler for %s", ctx.dc_id, name)
            raise RpcError(400, "INPUT_METHOD_INVALID")
        key = self.state.keys.get(ctx.auth_key_id)
        flood = self.controls.take_flood(ctx.dc_id, name, key.user_id if key is not None else None)
        if flood is not None:
            raise RpcError(420, f"FLOOD_{'PREMIUM_' if flood.premium else ''}WAIT_{flood.seconds}")
        feed.current_conn.set(ctx.conn_id)
        result = handler(self.state, ctx, request)
        if subscribes and ctx.push is not None:
            self._subscribe(ctx)
        return result

    def _subscribe(self, ctx: CallContext) -> None:
        """A request on the account's home DC subscribes its connection to updates (feed.py)."""
        key = self.state.keys.get(ctx.auth_key_id)
        account = self.state.world.accounts.get(key.user_id) if key is not None and key.user_id else None
        if account is not None and account.home_dc == ctx.dc_id:
            self.state.feed.subscribe(account.id, ctx.conn_id, ctx.dc_id, ctx.push)

    def closed(self, conn_id: int) -> None:
        """The server closed a connection: it gets no more updates."""
        self.state.feed.closed(conn_id)
