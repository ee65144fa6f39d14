"""One DC's MTProto listener: asyncio TCP around proto.ServerConnection, calling the dispatcher.

Every RPC runs as its own task, so a slow getFile blocks neither pings nor other RPCs on the same
connection; answers go out in the order they are ready, through the connection's LinkWriter. A
dispatcher RpcError becomes rpc_error; any other exception becomes rpc_error 500 INTERNAL and a log
line. A protocol error closes that one connection. Controls are read live: a down DC closes its open
connections and stops listening until it is up again, done before Controls.apply_faults returns (the
server registers its enforcer with the Controls); a drop fault cuts a new connection after N bytes.

rpc_drop_answer is answered here, as Telegram documents it (core.telegram.org/mtproto/service_messages):
rpc_answer_dropped_running while the call still runs (the call finishes, and its answer is replaced by
rpc_answer_dropped_running too), rpc_answer_dropped(msg_id, seq_no, bytes) when the answer waits in
the connection's outgoing queue (it is taken out and never sent), rpc_answer_unknown when the answer
is already on the wire or sent (its bytes keep coming) or the request is unknown.

Link jitter holds each answer back by a random 0..jitter_ms, so answers on one connection overtake
each other as real Telegram's do.

Counters: connections (accepted), connections_closed (accepted and since ended, whichever side
closed: connections minus connections_closed are open now), refused (accepted just as the DC went
down), dropped (drop fault), errors:<NAME> (rpc_error answers, digits replaced by X:
FLOOD_WAIT_X), drop_requests (rpc_drop_answer received), answers_dropped (answers never sent
because of one) and dropped_answer_bytes (their frames' bytes), unawaited_bytes (bytes of answers
the client had asked to drop, sent anyway because they were already on the wire).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import random
import re
from collections import OrderedDict
from dataclasses import dataclass

from telethon.tl.functions import RpcDropAnswerRequest
from telethon.tl.types import RpcAnswerDropped, RpcAnswerDroppedRunning, RpcAnswerUnknown

from .context import CallContext, Dispatcher, RpcError
from .controls import Controls
from .counters import Counters
from .keys import AuthKeyStore
from .link import LinkWriter, Ticket
from .proto.connection import Call, ServerConnection
from .proto.errors import ProtocolError
from .proto.session import Salts, Sessions
from .rsakey import SandboxRsaKey
from .uplink import ReadPacer

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
DOWN_POLL = 0.1           # seconds between retries to listen again when the port was not free yet
GOODBYE_TIMEOUT = 5.0     # how long a transport error may take to reach a client before we close
STOP_TIMEOUT = 5.0        # how long stop() lets connections wind down before cancelling them
REMEMBERED_ANSWERS = 1024  # per connection: answers an rpc_drop_answer can still name
ACK_AFTER = 0.5           # a call still unanswered after this many seconds gets a msgs_ack first
                          # (its answer acknowledges it otherwise: proto/connection.py)
_conn_ids = itertools.count(1)
_NUMBER = re.compile(r"_\d+(?=_|$)")


@dataclass(eq=False)
class _Answer:
    """One call's answer on one connection, as far as rpc_drop_answer cares."""
    ticket: Ticket | None = None    # None while the call runs
    msg_id: int = 0                 # the answer's own msg_id and seq_no, once packed
    seq_no: int = 0
    dropped: bool = False           # dropped while running: answer rpc_answer_dropped_running


class _Answers(OrderedDict):
    """(session_id, req_msg_id) -> _Answer, the most recent REMEMBERED_ANSWERS of one connection."""

    def start(self, call: Call) -> _Answer:
        answer = self[(call.session.session_id, call.msg_id)] = _Answer()
        if len(self) > REMEMBERED_ANSWERS:
            self.popitem(last=False)
        return answer


def error_counter(message: str) -> str:
    return "errors:" + _NUMBER.sub("_X", message)


class DcServer:
    def __init__(self, dc_id: int, dispatcher: Dispatcher, keys: AuthKeyStore, counters: Counters,
                 controls: Controls, rsa_key: SandboxRsaKey, salts: Salts, host: str = "127.0.0.1") -> None:
        self.dc_id = dc_id
        self.host = host
        self.port = 0
        self._dispatcher = dispatcher
        self._keys = keys
        self._counters = counters
        self._controls = controls
        self._rsa = rsa_key
        self._salts = salts
        self._sessions = Sessions()            # the DC's: a session outlives its connection
        self._listener: asyncio.Server | None = None
        self._handlers: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._watch: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down_lock: asyncio.Lock | None = None
        self._unenforce = lambda: None
        self._stopping = False

    async def start(self, port: int = 0) -> int:
        await self._listen(port)
        self.port = self._listener.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._down_lock = asyncio.Lock()
        self._watch = asyncio.create_task(self._watch_down())
        self._unenforce = self._controls.enforce_with(self._enforce_from_anywhere)
        return self.port

    async def stop(self) -> None:
        if self._watch is None:
            return
        self._stopping = True         # an enforcement still scheduled must not listen again
        self._unenforce()
        self._watch.cancel()
        self._unlisten()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=STOP_TIMEOUT)
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(self._watch, *self._handlers, return_exceptions=True)
        self._watch = None

    async def _listen(self, port: int) -> None:
        self._listener = await asyncio.start_server(self._handle, self.host, port, limit=READ_SIZE)

    def _unlisten(self) -> None:
        """Stop accepting and cut every open connection (their handlers see the end and clean up)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for writer in list(self._writers):
            writer.transport.abort()

    def _enforce_from_anywhere(self) -> concurrent.futures.Future | None:
        """Controls' enforcer: _enforce_down on this server's loop; a Future to wait for from any other
        thread, None (scheduled only) from the loop itself, which must not block on itself."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return None
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            task = loop.create_task(self._enforce_down())
            self._handlers.add(task)                       # kept referenced; stop() waits for it
            task.add_done_callback(self._handlers.discard)
            return None
        return asyncio.run_coroutine_threadsafe(self._enforce_down(), loop)

    async def _enforce_down(self) -> None:
        """A down DC does not listen (clients get 'connection refused') and cuts what is open; it listens
        again when back up."""
        async with self._down_lock:
            if self._stopping:
                return
            down = self._controls.is_down(self.dc_id)
            if down and self._listener is not None:
                self._unlisten()
            elif not down and self._listener is None:
                try:
                    await self._listen(self.port)
                except OSError as e:
                    log.warning("DC %d: cannot listen on port %d again yet: %s", self.dc_id, self.port, e)

    async def _watch_down(self) -> None:
        """Retries what _enforce_down could not do at once (the port not free yet)."""
        while True:
            await asyncio.sleep(DOWN_POLL)
            await self._enforce_down()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            if self._controls.is_down(self.dc_id):
                self._counters.inc(self.dc_id, "refused")
                writer.transport.abort()
                self._unlisten()
                return
            self._counters.inc(self.dc_id, "connections")
            self._writers.add(writer)
            try:
                await self._serve(reader, writer, next(_conn_ids))
            finally:
                self._counters.inc(self.dc_id, "connections_closed")
        except Exception:
            log.exception("DC %d: connection handler failed", self.dc_id)
        finally:
            self._writers.discard(writer)
            writer.close()
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: int) -> None:
        proto = ServerConnection(self.dc_id, self._keys, self._rsa, self._salts, self._counters,
                                 sessions=self._sessions)
        link_time = self._controls.link_time
        link = LinkWriter(writer, lambda: self._controls.link_for(self.dc_id), self._controls.take_drop(self.dc_id),
                          link_time)
        link_task = asyncio.create_task(link.run())
        calls: set[asyncio.Task] = set()
        answers = _Answers()
        disconnect: asyncio.TimerHandle | None = None
        uplink = ReadPacer(lambda: self._controls.link_for(self.dc_id), link_time)   # upload cap (uplink.py)
        try:
            while data := await reader.read(READ_SIZE):
                await uplink.pace(len(data))
                if self._controls.is_down(self.dc_id):
                    self._unlisten()
                    break
                try:
                    incoming = proto.receive_data(data)
                except ProtocolError as e:
                    log.info("DC %d conn %d: closing: %s", self.dc_id, conn_id, e)
                    if (frame := proto.goodbye(e)) is not None:
                        link.send(frame)
                        link.finish()
                        await asyncio.wait_for(asyncio.shield(link_task), GOODBYE_TIMEOUT)
                    break
                for frame in incoming.frames:
                    link.send(frame)
                for call in incoming.calls:
                    if isinstance(call.request, RpcDropAnswerRequest):
                        self._drop_answer(proto, link, answers, call)
                        continue
                    task = asyncio.create_task(self._call(proto, link, call, conn_id, answers.start(call)))
                    calls.add(task)
                    task.add_done_callback(calls.discard)
                if incoming.disconnect_after is not None:
                    if disconnect:
                        disconnect.cancel()
                    disconnect = asyncio.get_running_loop().call_later(
                        incoming.disconnect_after, writer.transport.abort)
        except (ConnectionError, OSError, asyncio.TimeoutError) as e:
            log.debug("DC %d conn %d: %s", self.dc_id, conn_id, e)
        finally:
            if disconnect:
                disconnect.cancel()
            for task in (*calls, link_task):
                task.cancel()
            await asyncio.gather(*calls, link_task, return_exceptions=True)
            closed = getattr(self._dispatcher, "closed", None)     # no more updates to this connection
            if closed is not None:
                closed(conn_id)
            if link.dropped:
                self._counters.inc(self.dc_id, "dropped")

    async def _call(self, proto: ServerConnection, link: LinkWriter, call: Call, conn_id: int,
                    answer: _Answer) -> None:
        ctx = CallContext(self.dc_id, call.session.key_id, call.session.session_id, conn_id,
                          push=lambda obj, session=call.session: link.send(proto.push(session, obj)))
        ack = (asyncio.get_running_loop().call_later(ACK_AFTER, lambda: link.send(proto.acknowledge(call)))
               if call.content else None)
        try:
            frame = proto.answer(call, await self._dispatcher.call(ctx, call.request))
        except RpcError as e:
            self._counters.inc(self.dc_id, error_counter(e.message))
            frame = proto.refuse(call, e.code, e.message)
        except Exception:
            log.exception("DC %d: %s failed", self.dc_id, type(call.request).__name__)
            self._counters.inc(self.dc_id, error_counter("INTERNAL"))
            frame = proto.refuse(call, 500, "INTERNAL")
        finally:
            if ack is not None:
                ack.cancel()          # the answer acknowledges the call (or the connection ended)
        jitter = self._controls.link_for(self.dc_id).jitter_ms
        if jitter > 0:
            await asyncio.sleep(random.uniform(0, jitter) / 1000)
        if answer.dropped:
            self._counters.inc(self.dc_id, "dropped_answer_bytes", len(frame))
            frame = proto.answer(call, RpcAnswerDroppedRunning())
        answer.msg_id, answer.seq_no = call.session.last_sent
        answer.ticket = link.send(frame)

    def _drop_answer(self, proto: ServerConnection, link: LinkWriter, answers: _Answers, call: Call) -> None:
        """rpc_drop_answer(req_msg_id): stop what can still be stopped, say what happened."""
        self._counters.inc(self.dc_id, "drop_requests")
        answer = answers.pop((call.session.session_id, call.request.req_msg_id), None)
        if answer is None:
            reply = RpcAnswerUnknown()
        elif answer.ticket is None:
            answer.dropped = True
            self._counters.inc(self.dc_id, "answers_dropped")
            reply = RpcAnswerDroppedRunning()
        elif link.cancel(answer.ticket):
            self._counters.inc(self.dc_id, "answers_dropped")
            self._counters.inc(self.dc_id, "dropped_answer_bytes", answer.ticket.size)
            reply = RpcAnswerDropped(answer.msg_id, answer.seq_no, answer.ticket.size)
        else:
            self._counters.inc(self.dc_id, "unawaited_bytes", answer.ticket.size)
            reply = RpcAnswerUnknown()
        link.send(proto.answer(call, reply))
