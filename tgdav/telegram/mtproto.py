"""Telethon behind one boundary: the only tgdav module (outside the sandbox) that uses Telethon's
private client and sender API, and the one place the rest of tgdav imports Telethon's public names
from, and the one that reads Telethon's exceptions back into the error Telegram sent
(`error_record`; rpc.py's one table then says what each error means).

What is private, and why it is needed:
- MTProtoSender and AuthKey, with `client._get_dc`, `client._connection`, `client._log`,
  `client._proxy`, `client._local_addr` and `client._init_request`: senders of our own on their
  own connections (Telethon lends one sender per DC and drops it after a minute idle), each sent a
  fresh initConnection (never Telethon's shared, mutated one). Policy (which key, export/import,
  persisting it) stays in senders.py.
- MTProtoSender's send queue (`_send_queue._deque`) and its sent-request table (`_pending_state`):
  a request cancelled before Telethon sent it is taken back out of the queue (Telegram never hears
  of it); one already sent is dropped with rpc_drop_answer and forgotten when its answer is known
  never to come (Telethon 1.45 only cancels its local future).
- MTProtoSender's handler table (`_handlers`) and session state (`_state.reset()`): the main
  client hears new_session_created (Telethon only takes its salt) and begins a new session when it
  connects again by itself, as Telethon's own reconnect does (Client); and it hands every Updates
  Telegram pushes to tgdav as it arrives, before Telethon's message box, which drops the edits and
  deletions of the gaps it fills itself (Client).
- Telethon's error tables (`rpcerrorlist`) read backwards and an error's pickled capture
  (`__reduce__`): the only way back to the name and number Telegram sent.
- `TelegramClient._config`: Telethon caches help.config on the class; a client pointed at a
  sandbox must not use another cluster's.
- The receive side of a pool sender's connection (ConnectionTcpIntermediate's `_connect`, `recv`,
  `_recv_loop`, `send` and `_send_loop`, MTProtoSender's `_state` and `_handle_rpc_result`,
  MTProtoState's `decrypt_message_data`, BinaryReader's `tgread_object`): `_Frames`, `_State`,
  `_Reader` and `_PoolSender` below. Telethon's path copied every byte of a 1 MiB getFile answer seven times
  between the socket and the file's bytes (and TcpFull's CRC32 read them once more); now twice:
  the ciphertext into bytes (cryptg takes nothing else) and the file's bytes out of the plaintext,
  and the socket's bytes land in a buffer reused from one answer to the next.
- MTProtoSender's acks owed (`_pending_ack`, `_last_acks`): a pool sender sends them in front of
  its next request (`_PoolSender.send`), not in a packet of their own after it.

The pool (pool.py) sees a connection only as a `Sender`: `send(request) -> Call`, `connected`,
`disconnected()`, `close()`; a `Call` is its answer (`future`) and `cancel()`. (gotd's pool sees a
connection only as Invoke / Ready / Dead.) Its fakes in tests implement the same two classes.

Telethon's version is pinned to the releases tested (TESTED, pyproject.toml); `check_version()`
refuses another one at start, in one line, rather than failing later in a private attribute.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import struct
import sys
import time
from hashlib import sha256
from typing import Callable

import telethon
from telethon import TelegramClient, errors, events, functions, types   # noqa: F401 - re-exported
from telethon.crypto import AES, AuthKey, rsa
from telethon.extensions import BinaryReader
from telethon.network import ConnectionTcpFull, ConnectionTcpIntermediate, MTProtoSender
from telethon.network.mtprotostate import MSG_TOO_NEW_DELTA, MSG_TOO_OLD_DELTA, MTProtoState
from telethon.network.requeststate import RequestState
from telethon.tl.alltlobjects import LAYER
from telethon.tl.core import RpcResult, TLMessage
from telethon.tl.tlobject import TLRequest

from tgdav.errors import ConfigError, RpcErrorRecord

log = logging.getLogger("tgdav.pool")

TESTED = "1.45"       # Telethon releases (major.minor) CI runs; pyproject.toml pins the same range

# Telegram's flood errors (both carry .seconds): FLOOD_PREMIUM_WAIT is the account's on every DC
FLOOD_WAITS = (errors.FloodWaitError, errors.FloodPremiumWaitError)
Unauthorized = errors.UnauthorizedError


_NAMES = {cls: name for name, cls in errors.rpcerrorlist.rpc_errors_dict.items()}
_PATTERNS = {cls: regex for regex, cls in errors.rpcerrorlist.rpc_errors_re}


def error_record(error: BaseException) -> RpcErrorRecord | None:
    """FileMigrateError(new_dc=4) -> RpcErrorRecord(303, "FILE_MIGRATE", 4, "FILE_MIGRATE_4");
    None for anything that is not an RPC error Telegram answered.

    Telethon turns rpc_error into one class per error name and keeps neither the name nor the
    number in a uniform place (FileMigrateError.new_dc, FloodWaitError.seconds; the `message` of a
    named class is its generic code name, BAD_REQUEST): its own tables (rpc_errors_dict,
    rpc_errors_re) map names to classes, so they are read backwards."""
    if not isinstance(error, errors.RPCError):
        return None
    cls = type(error)
    code = getattr(error, "code", None) or 0
    if cls in _NAMES:
        return RpcErrorRecord.parse(code, _NAMES[cls])
    if cls in _PATTERNS:
        capture = error.__reduce__()[1][1]       # Telethon pickles these as (request, capture)
        return RpcErrorRecord.parse(code, _PATTERNS[cls].replace("(\\d+)", str(int(capture or 0))))
    return RpcErrorRecord.parse(code, getattr(error, "message", None) or str(error))


def check_version(version: str | None = None) -> None:
    """Refuse, in one line, a Telethon release other than the ones tested: this module relies on
    its private sender API, which changes between releases without notice."""
    version = version or telethon.__version__
    if version != TESTED and not version.startswith(TESTED + "."):
        raise ConfigError(f"tgdav is tested with Telethon {TESTED}.x, but Telethon {version} is "
                          f"installed — `pip install 'telethon=={TESTED}.*'`")


def account_wide(flood: BaseException) -> bool:
    """A FLOOD_PREMIUM_WAIT (the account's, on every DC) rather than a FLOOD_WAIT."""
    return isinstance(flood, errors.FloodPremiumWaitError)


def point_at_sandbox(rsa_public_key: str) -> None:
    """Let new clients talk to a sandbox: trust its RSA key, forget the cluster config Telethon
    cached on the class (another sandbox's ports)."""
    rsa.add_key(rsa_public_key, old=False)
    forget_config()


def forget_config() -> None:
    """Forget the help.config Telethon caches on TelegramClient (one per process, not per client)."""
    TelegramClient._config = None
    Client._config = None            # Telethon caches it on the client's own class


# what Telegram pushes: the constructors of the Updates type (Telethon's sender gives anything that
# is no service message to its update handler)
PUSHED = (types.Updates, types.UpdatesCombined, types.UpdateShort, types.UpdatesTooLong,
          types.UpdateShortMessage, types.UpdateShortChatMessage, types.UpdateShortSentMessage)


class Client(TelegramClient):
    """The account's main client: a TelegramClient whose every request, tgdav's and Telethon's own
    (help.getConfig when a pool sender needs a DC's address), is answered or fails within
    `answer_timeout` seconds (None: as long as Telethon takes), and that says when Telegram begins a
    new session on it (what it pushed meanwhile is lost).

    Telethon's main sender, when its connection is cut, reconnects in the background
    (connection_retries times, retry_delay apart) and only then sends what was queued meanwhile;
    when it gives up, it fails the requests it had sent but leaves the ones still queued waiting
    forever (a MKCOL hung for minutes with the home DC down), and the client stays disconnected
    until someone connects it again. So here:
    - a request not answered within `answer_timeout` raises TimeoutError (rpc.py: Telegram not
      reachable, 503) and is taken back out of the sender's queue and sent-request table: it is
      never sent later behind the client's back (a MKCOL answered 503 must not happen on reconnect);
    - once Telethon has given up (its `disconnected` future holds the error), the next request
      connects again first, within the same bound, one attempt shared by every request waiting,
      and so does a watcher every `answer_timeout` seconds, then asks for updates again
      (updates.getState when updates were asked for): the drive's writes work again as soon as
      Telegram answers, without a restart. disconnect() stops all that.

    Updates: Telegram pushes them to the connection that last made a request, and what it pushed
    while no connection was there is lost. Every reconnect (Telethon's own, and the ones above)
    starts a new MTProto session (a new session id, drawn by Telethon or here), which Telegram
    announces with new_session_created; Telegram's rule for that message is "fetch the difference"
    (core.telegram.org/api/updates, Recovering gaps). Telethon 1.45 only takes the salt from it
    (and after its own reconnects calls get_me, so pushes resume, but nothing missed is fetched):
    here each callback given to add_new_session_handler() is called then (updates.LiveUpdates
    catches its listings up).

    Pushed updates reach the callbacks given to add_updates_handler() as Telegram sent them (every
    `Updates` constructor, in the order they arrive), before Telethon's message box sees them.
    Telethon's box checks each update's pts and fills a gap it sees with its own
    getChannelDifference; in Telethon 1.45 it sets its pts to the difference's before it applies
    the difference's edits and deletions, so it skips them all, and it dispatches only the new
    messages (without their pts). An edit or deletion whose push was lost, followed only by edits
    and deletions (the last steps of a folder copy), never reached its event handlers."""

    def __init__(self, *args, answer_timeout: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.answer_timeout = answer_timeout
        self._reconnecting: asyncio.Future | None = None
        self._watcher: asyncio.Task | None = None
        self._closed = False
        self._wants_updates = False
        self._new_session_handlers: list[Callable[[], None]] = []
        self._updates_handlers: list[Callable[[object], None]] = []
        handlers = self._sender._handlers       # Telethon's sender: constructor id -> its handler
        telethons_update = self._sender._handle_update     # its default: what is no service message

        async def pushed(message) -> None:
            for callback in list(self._updates_handlers):
                try:
                    callback(message.obj)
                except Exception:
                    log.exception("an updates handler failed")
            await telethons_update(message)
        for kind in PUSHED:
            handlers[kind.CONSTRUCTOR_ID] = pushed
        telethons = handlers[types.NewSessionCreated.CONSTRUCTOR_ID]

        async def new_session(message) -> None:
            await telethons(message)            # the new salt
            for callback in list(self._new_session_handlers):
                try:
                    callback()
                except Exception:
                    log.exception("a new-session handler failed")
        handlers[types.NewSessionCreated.CONSTRUCTOR_ID] = new_session

    def add_new_session_handler(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (on the client's loop; it must not block) whenever Telegram begins a new
        session on the main connection: updates pushed before it may be lost."""
        self._new_session_handlers.append(callback)

    def remove_new_session_handler(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._new_session_handlers.remove(callback)

    def add_updates_handler(self, callback: Callable[[object], None]) -> None:
        """Call `callback(updates)` (on the client's loop; it must not block) with every `Updates`
        constructor Telegram pushes on the main connection, as it arrives."""
        self._updates_handlers.append(callback)

    def remove_updates_handler(self, callback: Callable[[object], None]) -> None:
        with contextlib.suppress(ValueError):
            self._updates_handlers.remove(callback)

    async def connect(self) -> None:
        self._closed = False
        await super().connect()
        if self.answer_timeout is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.ensure_future(self._keep_connected())

    async def set_receive_updates(self, receive_updates: bool) -> None:
        self._wants_updates = bool(receive_updates)
        await super().set_receive_updates(receive_updates)

    def disconnect(self):
        self._closed = True
        for task in (self._watcher, self._reconnecting):
            if task is not None:
                task.cancel()
        return super().disconnect()

    async def _keep_connected(self) -> None:
        """The watcher: every answer_timeout seconds while Telethon has given up, one attempt."""
        while not self._closed:
            with contextlib.suppress(Exception):
                await self.disconnected          # the connection ended: on purpose, or Telethon gave up
            await asyncio.sleep(self.answer_timeout)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connect_again(), self.answer_timeout)

    async def __call__(self, request, ordered=False, flood_sleep_threshold=None):
        if self.answer_timeout is None:
            return await super().__call__(request, ordered, flood_sleep_threshold)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.answer_timeout
        try:
            await asyncio.wait_for(self._connect_again(), self.answer_timeout)
            return await asyncio.wait_for(super().__call__(request, ordered, flood_sleep_threshold),
                                          max(0.0, deadline - loop.time()))
        except BaseException as e:
            _take_back(self._sender, request)
            if isinstance(e, asyncio.TimeoutError):
                raise TimeoutError(f"no answer from Telegram within {self.answer_timeout:g} s") from None
            raise

    async def _connect_again(self) -> None:
        """Connect again if Telethon gave up reconnecting (not after disconnect(), nor before the
        first connect(): then Telethon answers ConnectionError as always)."""
        if self._closed or self.is_connected():
            return
        gone = self.disconnected
        if not gone.done() or gone.cancelled() or gone.exception() is None:
            return
        if self._reconnecting is None or self._reconnecting.done():
            log.info("the main connection to Telegram was lost (%s); connecting again", gone.exception())
            self._reconnecting = asyncio.ensure_future(_connect_once(self))
            self._reconnecting.add_done_callback(_reconnected)
        await asyncio.shield(self._reconnecting)


async def _connect_once(self: Client) -> None:
    """One attempt at connecting the client again, within its answer_timeout: an attempt that hangs
    (the connection made but initConnection never answered) is cut, so the next one can start."""
    try:
        # a new session, as Telethon's own reconnect begins one: Telegram announces it
        # (new_session_created) and the new-session handlers catch up; an attempt cut after its
        # first message left the old id known to Telegram, which would then say nothing
        self._sender._state.reset()
        await asyncio.wait_for(TelegramClient.connect(self), self.answer_timeout)
        if self._wants_updates:     # Telegram pushes updates to a connection only after a request
            await self.set_receive_updates(True)
    except asyncio.TimeoutError:
        error = ConnectionError(f"connecting took longer than {self.answer_timeout:g} s")
        await self._sender._disconnect(error=error)     # not connected: the next attempt may start
        raise error from None


def _reconnected(attempt: asyncio.Future) -> None:
    if not attempt.cancelled():
        error = attempt.exception()
        if error is None:
            log.info("connected to Telegram again")
        else:
            log.info("connecting to Telegram again failed: %s", error)


def _take_back(mtp: MTProtoSender, request) -> None:
    """Take whatever of `request` (one request or a list, as given to the client) is still queued
    or waiting for its answer out of `mtp`, so that no reconnect sends it again."""
    mine = {id(r) for r in (request if isinstance(request, (list, tuple)) else [request])}

    def ours(state) -> bool:
        return id(state.request) in mine or id(getattr(state.request, "query", None)) in mine
    queue = mtp._send_queue._deque
    for state in [s for s in queue if ours(s)]:
        queue.remove(state)
        state.future.cancel()
    for msg_id, state in [(m, s) for m, s in mtp._pending_state.items() if ours(s)]:
        del mtp._pending_state[msg_id]
        state.future.cancel()


class Call:
    """One request sent on a Sender: `future` is its answer (Telegram's error as its exception)."""

    def __init__(self, mtp: MTProtoSender, state) -> None:
        self._mtp = mtp
        self._state = state              # Telethon's RequestState
        self.future: asyncio.Future = state.future

    def cancel(self, timeout: float) -> asyncio.Task | None:
        """Stop wanting the answer. None when nothing more arrives for it: it was answered, or it
        was not sent yet (taken back out of Telethon's send queue: Telegram never hears of it).

        Otherwise it went out: its bytes may still be coming (draining) until `future` is done. The
        task returned sends rpc_drop_answer and ends when the answer is in, when Telegram says it
        never comes (rpc_answer_dropped), or after `timeout` seconds more (then it is given up
        here); `future` is done by then, and its error counts as retrieved."""
        answer = self.future
        if answer.done():
            return None
        queue = self._mtp._send_queue._deque
        if self._state in queue:         # never sent
            queue.remove(self._state)
            answer.cancel()
            return None
        answer.add_done_callback(retrieve)
        return asyncio.get_running_loop().create_task(self._drop(timeout))

    async def _drop(self, timeout: float) -> None:
        state, mtp = self._state, self._mtp
        try:
            reply = await asyncio.wait_for(mtp.send(functions.RpcDropAnswerRequest(state.msg_id)),
                                           timeout)
        except (Exception, asyncio.TimeoutError) as e:
            log.debug("rpc_drop_answer failed: %s", e)
            reply = None
        if isinstance(reply, types.RpcAnswerDropped) or reply is None and not state.future.done():
            # never coming (or we cannot tell): stop waiting for it
            mtp._pending_state.pop(state.msg_id, None)
            state.future.cancel()
            return
        try:   # rpc_answer_unknown / _dropped_running: the original answer is on its way
            await asyncio.wait_for(asyncio.shield(state.future), timeout)
        except (Exception, asyncio.CancelledError):
            if not state.future.done():
                mtp._pending_state.pop(state.msg_id, None)
                state.future.cancel()


def retrieve(future: asyncio.Future) -> None:
    """A done callback: the future's error is read, so asyncio never logs it as never retrieved
    (whoever cares has read it already, or nobody will)."""
    if not future.cancelled():
        future.exception()


class Sender:
    """One MTProto connection of the account to one DC, authorised. It does not reconnect by itself
    (auto_reconnect off): Telethon would re-send every pending request on the new connection behind
    the pool's back, answers it dropped included, and a connection cut again and again would loop.
    When its connection ends, `disconnected()` completes; the pool drops it, re-sends its requests
    on other senders and opens new ones as it needs them."""

    def __init__(self, mtp: MTProtoSender) -> None:
        self._mtp = mtp
        # the error that ends the connection is read here: the pool waits on shields of this
        # future and cancels them, so asyncio would log it as never retrieved
        mtp._disconnected.add_done_callback(retrieve)

    @classmethod
    async def connect(cls, client: TelegramClient, dc_id: int, key: bytes | None, *, retries: int,
                      connect_timeout: float) -> "Sender":
        """A new connection to `client`'s dc_id with auth key `key` (None: a new one, by DH);
        nothing is sent yet: `introduce()` sends its first request."""
        dc = await client._get_dc(dc_id)
        mtp = _PoolSender(AuthKey(key) if key else None, loggers=client._log, retries=retries,
                          delay=0.5, auto_reconnect=False, connect_timeout=connect_timeout)
        connection = client._connection
        if connection is ConnectionTcpFull and not client._proxy:   # Telethon's default
            connection = _Intermediate
        await mtp.connect(connection(dc.ip_address, dc.port, dc.id, loggers=client._log,
                                     proxy=client._proxy, local_addr=client._local_addr))
        return cls(mtp)

    async def introduce(self, client: TelegramClient, query):
        """Send `query` as the connection's first request, inside invokeWithLayer(initConnection)
        with `client`'s app identity; its answer. The connection is closed if it fails."""
        try:
            return await self._mtp.send(functions.InvokeWithLayerRequest(LAYER, _init(client, query)))
        except BaseException:
            await self._mtp.disconnect()
            raise

    @property
    def auth_key(self) -> bytes:
        return bytes(self._mtp.auth_key.key)

    @property
    def connected(self) -> bool:
        return self._mtp.is_connected()

    def send(self, request) -> Call:
        """Queue `request` (inside invokeWithoutUpdates: Telegram pushes updates only to the
        client's main connection, and a pool sender has no queue for them)."""
        answer = self._mtp.send(functions.InvokeWithoutUpdatesRequest(request))
        state = self._mtp._send_queue._deque[-1]      # Telethon's RequestState, just appended
        assert state.future is answer
        return Call(self._mtp, state)

    def disconnected(self) -> asyncio.Future:
        """A new future, done when the connection ends; cancel it when no longer waiting."""
        return self._mtp.disconnected

    async def close(self) -> None:
        await self._mtp.disconnect()


def _init(client: TelegramClient, query) -> functions.InitConnectionRequest:
    """A fresh initConnection around `query` (never Telethon's shared, mutated one), inside
    invokeWithoutUpdates: Telegram pushes updates only to the client's main connection, and a pool
    sender has no queue for them (Sender.send wraps every later request the same way)."""
    t = client._init_request
    return functions.InitConnectionRequest(
        api_id=t.api_id, device_model=t.device_model, system_version=t.system_version,
        app_version=t.app_version, system_lang_code=t.system_lang_code,
        lang_pack=t.lang_pack, lang_code=t.lang_code, query=functions.InvokeWithoutUpdatesRequest(query),
        proxy=t.proxy)


# ---- the receive side of a pool sender's connection ----

SCRATCH = 64 * 1024          # socket reads between big frames: headers and whole small frames
MAX_FRAME = 8 * 1024 * 1024  # larger than any answer Telegram sends (getFile: 1 MiB + 64 bytes)
MAX_QUEUED = 4 * 1024 * 1024  # frames waiting for Telethon beyond which the socket is not read


class _Intermediate(ConnectionTcpIntermediate):
    """A pool sender's connection: MTProto's intermediate transport (tag 0xeeeeeeee, then each
    packet as a 4-byte length and the payload: what tdesktop and TDLib speak; TcpFull's CRC32 adds
    nothing over TCP to MTProto's own SHA-256 msg_key check), its packets read by _Frames.
    Telethon's writer and send loop are unchanged.

    recv() (which only the sender's receive loop calls, and the plain sender while it makes an auth
    key) takes each packet from _Frames itself, and send() writes each packet to the transport
    itself (waiting only while the transport's buffer is full): Telethon's Connection moved every
    packet through a task of its own and a queue, each way. A big packet recv() returns is valid
    until it is called again (_Frames.next); the sender decrypts it before that, into bytes of its
    own."""

    _frames: "_Frames | None" = None

    async def _connect(self, timeout=None, ssl=None):
        await super()._connect(timeout=timeout, ssl=ssl)
        # Telegram sends nothing before the first request, so Telethon's reader holds no bytes yet
        transport = self._writer.transport
        self._frames = _Frames(transport)
        transport.set_protocol(self._frames)

    async def recv(self):
        if self._frames is None:
            raise ConnectionError("Not connected")
        return await self._frames.next()     # the packets that came before the end, then ConnectionError

    async def _recv_loop(self):
        """Telethon's reading task: now it only disconnects once the connection ended, as Telethon's
        does after its last packet."""
        try:
            await self._frames.ended()
        finally:
            await self.disconnect()

    async def send(self, data):
        if not self._connected:
            raise ConnectionError("Not connected")
        self._send(data)
        await self._writer.drain()       # (an error reaches the sender's send loop, which disconnects)

    async def _send_loop(self):
        """Telethon's sending task: nothing to do, send() writes."""


class _Frames(asyncio.BufferedProtocol):
    """The packets of one intermediate-transport connection, read with recv_into: a packet larger
    than SCRATCH (with its length) is received straight into a buffer of its own size, in as few socket reads as the
    kernel allows, and handed on as a memoryview of it; smaller ones are cut out of the scratch
    buffer as bytes (the plain sender that makes auth keys reads only those). The transport's
    protocol until then (Telethon's StreamReaderProtocol, which its StreamWriter waits on) still
    hears of flow control and of the connection's end.

    next() gives the payloads in order, InvalidBufferError for a length no packet has (then the
    connection is closed), and ConnectionError once the connection ended.

    A big payload is lent until the next call of next(): that call releases its memoryview (any
    later use of it raises ValueError) and keeps its buffer for the next big packet, unless a view
    of it still lives elsewhere (then it is left to that view, and a new buffer is made): no fresh
    megabyte to allocate and clear for each answer, and no byte overwritten while anyone can read it."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._streams = transport.get_protocol()
        self._scratch = bytearray(SCRATCH)
        self._have = 0                       # bytes in _scratch
        self._big: memoryview | None = None  # the packet being received into its own buffer
        self._filled = 0
        self._lent: memoryview | None = None     # the big payload next() returned last
        self._spare: bytearray | None = None     # its buffer, once released
        self._ready: collections.deque = collections.deque()   # payloads, then maybe an error
        self._queued = 0                     # bytes of payloads in _ready
        self._paused = False
        self._ended: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._end_waiter: asyncio.Future | None = None
        self.reads = 0                       # socket reads (tests)
        self.buffers = 0                     # big-packet buffers made (tests)

    # ---- transport side ----

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:
            return self._big[self._filled:]
        return memoryview(self._scratch)[self._have:]

    def buffer_updated(self, nbytes: int) -> None:
        self.reads += 1
        if self._big is not None:
            self._filled += nbytes
            if self._filled == len(self._big):
                self._put(self._big)
                self._big = None
        else:
            self._have += nbytes
            self._split()
        if self._queued >= MAX_QUEUED and not self._paused and self._ended is None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def _split(self) -> None:
        """Cut every whole packet out of the scratch buffer; start a big packet's own buffer."""
        at = 0
        while self._have - at >= 4 and self._ended is None:
            length, = struct.unpack_from("<i", self._scratch, at)
            if not 4 <= length <= MAX_FRAME:
                self._put(errors.InvalidBufferError(bytes(self._scratch[at:at + 4])))
                self._ended = ConnectionError(f"Telegram sent a packet of length {length}")
                self._transport.close()
                break
            got = self._have - at - 4
            if 4 + length > SCRATCH:
                self._big = self._buffer(length)
                self._big[:got] = memoryview(self._scratch)[at + 4:self._have]
                self._filled, at = got, self._have
                break
            if got < length:
                break
            self._put(bytes(self._scratch[at + 4:at + 4 + length]))
            at += 4 + length
        if at:
            rest = self._have - at
            self._scratch[:rest] = self._scratch[at:self._have]
            self._have = rest

    def _buffer(self, length: int) -> memoryview:
        """A view of `length` bytes to receive a big packet into: the spare buffer if it is large
        enough and nothing refers to it any more (only `buf` here and getrefcount's argument: a
        memoryview of it, or of a slice of one, holds a reference too), else a new one."""
        buf, self._spare = self._spare, None
        if buf is None or len(buf) < length or sys.getrefcount(buf) > 2:
            buf = bytearray(length)
            self.buffers += 1
        return memoryview(buf)[:length]

    def _give_back(self) -> None:
        """The big payload lent last is done with: release its view, keep its buffer."""
        lent, self._lent = self._lent, None
        if lent is not None:
            buf = lent.obj
            try:
                lent.release()
            except BufferError:     # a C call still holds it: let it keep the buffer
                return
            self._spare = buf

    def _put(self, item) -> None:
        self._ready.append(item)
        if not isinstance(item, BaseException):
            self._queued += len(item)

    def eof_received(self) -> bool:
        self._end(ConnectionError("Telegram closed the connection"))
        return False                          # the transport closes: connection_lost follows

    def connection_lost(self, exc: BaseException | None) -> None:
        self._end(ConnectionError(f"the connection was lost: {exc}" if exc else "the connection was closed"))
        self._streams.connection_lost(exc)

    def pause_writing(self) -> None:
        self._streams.pause_writing()

    def resume_writing(self) -> None:
        self._streams.resume_writing()

    def _end(self, error: BaseException) -> None:
        if self._ended is None:
            self._ended = error
        self._wake()
        if self._end_waiter is not None and not self._end_waiter.done():
            self._end_waiter.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done() and (self._ready or self._ended):
            self._waiter.set_result(None)

    # ---- Telethon's side ----

    async def ended(self) -> None:
        """Return once the connection ended."""
        while self._ended is None:
            self._end_waiter = asyncio.get_running_loop().create_future()
            await self._end_waiter

    async def next(self):
        """The next payload: bytes, or a memoryview of a big packet's buffer, lent until the next
        call (see the class)."""
        self._give_back()
        while not self._ready:
            if self._ended is not None:
                raise self._ended
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._ready.popleft()
        if isinstance(item, BaseException):
            raise item
        self._queued -= len(item)
        if self._paused and self._queued < MAX_QUEUED // 2 and self._ended is None:
            self._paused = False
            self._transport.resume_reading()
        if type(item) is memoryview:
            self._lent = item
        return item


class _State(MTProtoState):
    """MTProtoState whose decrypt_message_data takes a memoryview as well as bytes, and copies the
    ciphertext once (cryptg takes bytes only) instead of three times. The checks after decryption
    are Telethon 1.45's, in the same order (mtprotostate.py)."""

    def decrypt_message_data(self, body):
        now = time.time()
        if len(body) < 8:
            raise errors.InvalidBufferError(bytes(body))
        key_id, = struct.unpack_from("<Q", body)
        if key_id != self.auth_key.key_id:
            raise errors.SecurityError("Server replied with an invalid auth key")
        msg_key = bytes(body[8:24])
        aes_key, aes_iv = self._calc_key(self.auth_key.key, msg_key, False)
        plain = AES.decrypt_ige(bytes(body[24:]), aes_key, aes_iv)
        check = sha256(self.auth_key.key[96:96 + 32])
        check.update(plain)
        if msg_key != check.digest()[8:24]:
            raise errors.SecurityError("Received msg_key doesn't match with expected one")

        reader = _Reader(plain)
        reader.read_long()  # remote_salt
        if reader.read_long() != self.id:
            raise errors.SecurityError("Server replied with a wrong session ID (see FAQ for details)")
        remote_msg_id = reader.read_long()
        if remote_msg_id % 2 != 1:
            raise errors.SecurityError("Server sent an even msg_id")
        if remote_msg_id <= self._highest_remote_id and remote_msg_id in self._recent_remote_ids:
            self._log.warning("Server resent the older message %d, ignoring", remote_msg_id)
            self._count_ignored()
            return None
        remote_sequence = reader.read_int()
        reader.read_int()  # msg_len for the inner object, padding ignored
        obj = reader.tgread_object()
        if obj.CONSTRUCTOR_ID in (types.BadServerSalt.CONSTRUCTOR_ID, types.BadMsgNotification.CONSTRUCTOR_ID):
            if not self._highest_remote_id and not self.time_offset:
                self.update_time_offset(remote_msg_id)
        else:
            time_delta = (now + self.time_offset) - (remote_msg_id >> 32)
            if time_delta > MSG_TOO_OLD_DELTA:
                self._log.warning("Server sent a very old message with ID %d, ignoring", remote_msg_id)
                self._count_ignored()
                return None
            if -time_delta > MSG_TOO_NEW_DELTA:
                self._log.warning("Server sent a very new message with ID %d, ignoring", remote_msg_id)
                self._count_ignored()
                return None
        self._recent_remote_ids.append(remote_msg_id)
        self._highest_remote_id = remote_msg_id
        self._ignore_count = 0
        return TLMessage(remote_msg_id, remote_sequence, obj)


# ---- a getFile answer parsed once ----

_FILE = types.upload.File.CONSTRUCTOR_ID
# storage.FileType: constructors without fields (each one's from_reader reads nothing)
_FILE_TYPES = {cls.CONSTRUCTOR_ID: cls for cls in vars(types.storage).values()
               if getattr(cls, "SUBCLASS_OF_ID", None) == types.storage.FileUnknown.SUBCLASS_OF_ID}
# rpc_result#f35c6d01 req_msg_id:long result:(upload.file#96a18d5 type:storage.FileType mtime:int
# bytes:bytes), the bytes' long form: 254 and a 3-byte length, then the bytes, padded to 4
_FILE_HEAD = struct.Struct("<IqIIiI")


class _FileAnswer(RpcResult):
    """rpc_result with an upload.file in it, read by _Reader: `result` is the upload.File Telethon's
    parser makes of it; `body` (what Telethon's RpcResult keeps: the bytes from the result on) is
    made only if asked for."""

    def __init__(self, req_msg_id: int, result, stream: bytes, start: int) -> None:
        self.req_msg_id, self.error, self.result = req_msg_id, None, result
        self._stream, self._start = stream, start

    @property
    def body(self) -> bytes:
        return self._stream[self._start:]


class _Reader(BinaryReader):
    """Telethon's reader, but an rpc_result holding an upload.file (a getFile answer) is read in one
    step: the file's bytes are copied out of the plaintext once (Telethon copies them twice:
    RpcResult.from_reader takes the rest of the message, then File.from_reader its bytes). Anything
    else, a file whose type or length it does not read exactly as Telethon would included, goes to
    Telethon's parser. Containers call this reader's tgread_object for each message they hold."""

    def tgread_object(self):
        stream, at = self.stream, self.position
        if len(stream) - at >= _FILE_HEAD.size:
            rpc, req_msg_id, file, kind, mtime, size = _FILE_HEAD.unpack_from(stream, at)
            if rpc == RpcResult.CONSTRUCTOR_ID and file == _FILE and kind in _FILE_TYPES and size & 0xff == 254:
                start, length = at + _FILE_HEAD.size, size >> 8
                if start + length + -length % 4 <= len(stream):       # Telethon reads the padding too
                    self.position = len(stream)     # (RpcResult.from_reader reads to the end)
                    file = types.upload.File(_FILE_TYPES[kind](), mtime, stream[start:start + length])
                    return _FileAnswer(req_msg_id, file, stream, at + 12)
        return super().tgread_object()


class _PoolSender(MTProtoSender):
    """A pool connection's MTProtoSender: its state decrypts with _State, and a getFile answer read
    by _Reader is handed over as it is, exactly where Telethon's _handle_rpc_result would have read
    the same upload.File out of the body again (an upload.File for no request is dropped silently,
    as Telethon does; a request whose read_result is its own gets Telethon's path)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._state.__class__ = _State    # the same object (its send queue holds it too), our decrypt

    def send(self, request, ordered=False):
        """Telethon's send, the acks the connection owes put in front of the request, as MTProto
        means them to travel ("a client normally acknowledges the receipt of a message from a
        server by adding an acknowledgment to the next RPC query", core.telegram.org/mtproto/
        service_messages_about_messages): Telethon's send loop takes them only after the request
        that woke it has gone, so each request was followed by a packet holding nothing but an ack
        (encrypted, sent and read by Telegram on its own); now both leave in one container, as
        Telethon packs whatever it finds queued."""
        if self._pending_ack and self._user_connected:
            ack = RequestState(types.MsgsAck(list(self._pending_ack)))
            self._send_queue.append(ack)
            self._last_acks.append(ack)        # (Telethon's loop keeps them for a bad salt's resend)
            self._pending_ack.clear()
        return super().send(request, ordered)

    async def _handle_rpc_result(self, message):
        answer = message.obj
        if type(answer) is not _FileAnswer:
            return await super()._handle_rpc_result(message)
        state = self._pending_state.get(answer.req_msg_id)
        if state is not None and type(state.request).read_result is not TLRequest.read_result:
            return await super()._handle_rpc_result(message)
        self._pending_state.pop(answer.req_msg_id, None)
        if state is not None and not state.future.cancelled():
            state.future.set_result(answer.result)    # (_store_own_updates: nothing in an upload.File)
