"""The contract between the MTProto server and the services that answer RPCs.

The server (server.py, proto/) owns transport, handshake, encryption, salts, sessions, containers,
gzip, acks and ping. For every decoded RPC it calls `Dispatcher.call(ctx, request)` and wraps what comes
back in rpc_result, or turns a raised RpcError into rpc_error. Wrappers such as invokeWithLayer,
initConnection and invokeWithoutUpdates reach the dispatcher as they are; the services unwrap them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from telethon.tl.tlobject import TLObject, TLRequest


@dataclass
class CallContext:
    dc_id: int          # the DC whose listener received the call
    auth_key_id: int    # unsigned 64-bit id of the connection's auth key (see keys.py)
    session_id: int     # the client's MTProto session id
    conn_id: int        # unique per TCP connection, for per-connection state and logs
    push: Callable[[TLObject], None] | None = None   # send an update on this connection and session


class RpcError(Exception):
    """An RPC error answer: code (303, 400, 401, 420, 500...) and Telegram's message, e.g. FLOOD_WAIT_5."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class Dispatcher(Protocol):
    async def call(self, ctx: CallContext, request: TLRequest) -> TLObject | bytes:
        """Answer one RPC. Return a TL object (or pre-serialized bytes); raise RpcError to refuse."""
        ...
