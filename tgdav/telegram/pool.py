"""Per-DC pools of MTProto senders for one account: opening, choosing, cancelling, flood gates, reaping.

Choosing a sender (cf. gotd's pool: a free one, a new one while under the maximum, else wait), with
three kinds of request, in priority order (after TDLib's ResourceManager in Baseline mode: what is
asked goes to the highest priority first, lower ones get what is left; tdesktop's several download
priorities per DC):
- urgent: what a reader waits for right now (a stream's first part, the part at its position). It
  takes a sender with nothing in flight and nothing draining, else opens one (up to `max_senders`
  plus one spare), else pipelines on the sender with the fewest bytes queued before it.
- interactive read-ahead: a stream a person waits on (it just seeked, or reads at a media bitrate;
  the reader decides). It goes before any bulk request: an idle sender, else a pipeline slot (up
  to INTERACTIVE_QUEUE bytes) on a sender that carries no bulk request (answers on one connection
  come in order: a small part behind a big bulk one would wait for it), with a new sender opened
  in the background while the DC has fewer than `max_senders`, else a new one to wait for. Alone, interactive streams use at most `max_senders` senders (the spare stays free
  for the next seek); while bulk work is about, `max_senders + spare - BULK_SHARE * max_senders`,
  so a backup keeps its share of the link.
- bulk read-ahead (a reader that takes everything as fast as it can): at most `max_senders` senders
  carry it, so the spare stays free for the next seek; while interactive or urgent requests wait,
  it keeps only its share (BULK_SHARE of `max_senders`) and lets its other senders drain for them;
  otherwise it prefers an idle sender, then a new one, then a free pipeline slot. When read-ahead
  fills every sender it may use, the spare is opened in the background, so the next seek does not
  pay a connection.

A sender counts as loaded by its requests in flight AND by answers it no longer wants that are still
arriving (draining): a cancelled request that reached Telegram keeps its answer coming unless we send
rpc_drop_answer, so cancelling does both (mtproto.Call.cancel). Telegram answers the drop with
rpc_answer_dropped (the answer was still queued: it never comes), rpc_answer_dropped_running (the
original is answered with the same, small object) or rpc_answer_unknown (its bytes are on the way);
the sender drains until the original answer is in. A request cancelled before Telethon sent it is
taken back instead: Telegram never hears of it.

Opening senders (DH, export/import) runs in tasks the pool owns: a caller that is cancelled (a seek)
stops waiting, the open completes and the sender joins the pool.

FLOOD_WAIT is a deadline, not an error to retry at once, and Telegram's limits are the account's, not
a connection's: one FLOOD_WAIT (or FLOOD_PREMIUM_WAIT) gates the method that was flooded on the whole
DC, every sender of this account there and any sender opened later, until the deadline (Telegram
floods per method: a flooded saveBigFilePart does not stop getFile). No request of that kind goes to
that DC before then: a short wait (<= max_wait) is waited out, a long one raises RetryLater at once so
the HTTP client is told when to come back (promise 7 of DESIGN.md; replicas learn it through the
flood board). A flooded export gates every method of the DC.

Timeouts count silence, not queueing: a request fails with a timeout only when its sender delivered
no answer at all for `request_timeout` seconds (and the expected transfer time of the request at the
DC's measured speed). Such a sender is dead: it is dropped, and every request it carried is re-sent
on another sender; a request fails only for its own reasons. A request fails with ConnectionsLost
when MAX_ATTEMPTS senders died under it after it was sent; a sender found disconnected before the
request left it (a DC that cuts every connection at once leaves all of them so) is dropped and is
no attempt (cf. gotd: only a request that never reached the server is retried freely).

Senders are sent requests directly (sender.send), never through TelegramClient.__call__, so
Telethon's per-request-type flood memory cannot block GetFile on other DCs. A connection is seen
only through mtproto.Sender (send -> Call, connected, disconnected(), close) and Call (future,
cancel); this module imports no Telethon (tests fake those two classes).

Lock order: only DcPool._cond (an asyncio.Condition, one per DC) exists; nothing else is locked.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from tgdav.errors import ConnectionsLost, RetryLater, UpstreamUnavailable
from tgdav.telegram.mtproto import FLOOD_WAITS, Unauthorized, account_wide, retrieve

log = logging.getLogger("tgdav.pool")

MAX_SENDERS_PER_DC = 20   # Telegram tolerates about this many connections per DC per account
SPARE_SENDERS = 1         # kept free of read-ahead for the next stream's first part (within the 20)
MAX_ATTEMPTS = 2          # sends of one request on senders that died under it (then the
                          # fetcher asks for it in halves: a part too big for the link fits then)
MAX_UNSENT = MAX_SENDERS_PER_DC   # dead senders one request may meet before it left them (not
                          # attempts: a DC that cut every connection leaves that many; beyond, one
                          # more counts as an attempt, so a DC cutting each new connection ends)
SPEED_WEIGHT = 0.3        # weight of the newest sample in a DC's speed estimate
BULK_SHARE = 0.5          # of max_senders, what bulk read-ahead keeps while interactive streams wait
INTERACTIVE_QUEUE = 256 * 1024   # bytes of small parts one sender carries for interactive streams
                          # (about a round trip at 2 MiB/s: more would wait at Telegram, where a
                          # seek cannot take them back; what waits here is never sent)
URGENT, INTERACTIVE, BULK = 0, 1, 2     # request priorities, highest first


class SenderLost(ConnectionError):
    """The sender carrying a request went away (dropped by us or by Telethon): send it elsewhere."""


class NotSent(SenderLost):
    """The sender was disconnected before the request left it: Telegram never saw the request."""


@dataclass(eq=False)
class Sender:
    number: int                 # 1-based, for log lines a user can follow
    conn: object                # mtproto.Sender (or a test's fake of it)
    in_flight: int = 0
    draining: int = 0           # answers nobody awaits any more, still arriving
    bulk: int = 0               # of in_flight, bulk read-ahead requests
    interactive: int = 0        # of in_flight, interactive read-ahead requests
    last_used: float = field(default_factory=time.monotonic)
    last_answer: float = 0.0    # when it last delivered an answer (progress)
    queued_bytes: int = 0       # bytes asked of it and not yet arrived (its queue on the wire)
    generation: int = 0         # the DC's authorisation generation it was opened under
    _gone: asyncio.Future | None = field(default=None, repr=False)

    @property
    def load(self) -> int:
        return self.in_flight + self.draining

    def gone(self) -> asyncio.Future:
        """Done when its connection ends: one conn.disconnected() for every request it carries
        (each request waited on a new one, made and cancelled again), cancelled when it is
        closed (_disconnect)."""
        if self._gone is None:
            self._gone = self.conn.disconnected()
            self._gone.add_done_callback(retrieve)
        return self._gone


class DcPool:
    def __init__(self, dc_id: int, open_sender, *, max_senders: int, slots_per_sender: int,
                 max_wait: float, request_timeout: float, clock: Callable[[], float],
                 forget_auth=None, metrics=None, flood_board=None, hand_back_floods=False) -> None:
        self._forget_auth = forget_auth
        self._board = flood_board        # flood deadlines other replicas saw (cache/shared.py)
        # with helper accounts (telegram/accounts.py): a getFile that meets FLOOD_WAIT raises
        # RetryLater at once, so it goes to another account rather than this account's other senders
        self._hand_back_floods = hand_back_floods
        self.dc_id = dc_id
        self._open_sender = open_sender
        self.max_senders = max_senders
        self._limit = min(MAX_SENDERS_PER_DC, max_senders + SPARE_SENDERS)
        self._slots = slots_per_sender
        self._max_wait = max_wait
        self._timeout = request_timeout
        self._clock = clock
        self._metrics = metrics
        self.senders: list[Sender] = []
        self._opening: set[asyncio.Task] = set()
        self._gates: dict[str, float] = {}   # method ("*": all) -> DC-wide (account-wide) flood deadline
        self._cond = asyncio.Condition()
        self._numbers = 0
        self._generation = 0             # bumped each time the DC's authorisation is renewed
        self._waiting = [0, 0, 0]        # requests waiting for a sender, per priority
        self._bulk_share = max(1, int(max_senders * BULK_SHARE))
        self._background: set[asyncio.Task] = set()
        self.speed = 0.0                 # measured bytes/s of one sender of this DC (0: unknown)
        self.dropped_answers = 0         # rpc_drop_answer sent

    # --- sending ------------------------------------------------------------------------------
    async def invoke(self, request, *, urgent: bool = False, interactive: bool = False):
        """Send `request` on a sender of this DC; FLOOD_WAIT and dead connections move it elsewhere.
        urgent: a reader waits for it now; interactive: read-ahead of a stream a person waits on;
        neither: bulk read-ahead."""
        priority = URGENT if urgent else INTERACTIVE if interactive else BULK
        attempts = unsent = 0
        reauthorised = False
        kind = _method(request)
        while True:
            if self._board is not None:      # another replica's FLOOD_WAIT gates this DC here too
                await self._board.sync(self.dc_id, kind)
            sender = await self._acquire(priority, kind)
            try:
                return await self._send(sender, request)
            except FLOOD_WAITS as e:
                self._gate(sender, e.seconds, account_wide(e), kind)
                if self._board is not None:
                    await self._board.publish(self.dc_id, kind, e.seconds)
                if self._hand_back_floods and kind == "GetFile":
                    raise RetryLater(e.seconds, f"Telegram DC {self.dc_id} asked this account to wait "
                                                f"{e.seconds} s (FLOOD_WAIT)") from None
            except Unauthorized:
                if sender.generation != self._generation:
                    await self._drop(sender)   # opened before the renewal: retry on a fresh sender
                    continue
                # the DC forgot the authorisation these senders share: export it again, once
                if reauthorised or self._forget_auth is None or not self._forget_auth(self.dc_id):
                    raise
                reauthorised = True
                self._generation += 1
                log.warning("DC %d: the authorisation was revoked; authorising again", self.dc_id)
                async with self._cond:
                    dead, self.senders = self.senders, []
                    self._cond.notify_all()
                for s in dead:
                    await _disconnect(s)
            except (ConnectionError, OSError, EOFError, asyncio.TimeoutError) as e:
                # EOFError: asyncio.IncompleteReadError, which Telethon sets on pending requests
                # when the connection ends in the middle of a frame
                if isinstance(e, NotSent) and unsent < MAX_UNSENT:
                    # a sender that died before this request left it (a DC that cut every
                    # connection at once leaves several): Telegram never saw the request, so it is
                    # not an attempt; it goes to the next sender, or a new one
                    unsent += 1
                    log.info("DC %d: sender %d is disconnected; dropping it", self.dc_id, sender.number)
                    await self._drop(sender)
                    continue
                attempts += 1
                if self._metrics is not None:
                    self._metrics.getfile_failed(self.dc_id, "TIMEOUT" if isinstance(e, TimeoutError)
                                                 else "DISCONNECTED")
                if sender in self.senders:
                    log.warning("DC %d: sender %d failed (%s); dropping it, its requests go elsewhere",
                                self.dc_id, sender.number, type(e).__name__)
                    await self._drop(sender)
                if attempts >= MAX_ATTEMPTS:
                    raise ConnectionsLost(
                        f"Telegram DC {self.dc_id} is not answering ({type(e).__name__}); "
                        "check the network, tgdav retries on the next request") from None
            finally:
                await self._release(sender, priority)

    async def _send(self, sender: Sender, request):
        """sender.conn.send(request) and its answer. SenderLost when the sender goes away under it;
        TimeoutError when the sender stays silent too long; a cancelled caller drops the answer."""
        conn = sender.conn
        if not conn.connected:
            raise NotSent(f"DC {self.dc_id}: sender {sender.number} is disconnected")
        call = conn.send(request)
        answer = call.future
        sent_at = self._clock()
        dead = sender.gone()
        size = getattr(request, "limit", 0)
        sender.queued_bytes += size
        answer.add_done_callback(lambda _f: setattr(sender, "queued_bytes", sender.queued_bytes - size))
        try:
            while not answer.done():
                quiet_since = max(sent_at, sender.last_answer)
                # silence allowed: the timeout, plus the time the bytes queued on it take to arrive
                expected = sender.queued_bytes / self.speed if self.speed else 0.0
                left = quiet_since + self._timeout + expected - self._clock()
                if left <= 0:
                    silent = self._clock() - quiet_since
                    if sender.queued_bytes and silent > 0:      # it is at most this fast
                        self.speed = min(self.speed or float("inf"), sender.queued_bytes / silent)
                    self._abandon(sender, call)
                    raise asyncio.TimeoutError()
                await _first(answer, dead, left)
                if dead.done() and not answer.done():
                    # Telethon fails (or cancels) what it sent before it says the connection ended:
                    # an answer still open then is a request that never left the sender
                    raise NotSent(f"DC {self.dc_id}: sender {sender.number} lost its connection "
                                  f"before sending")
        except asyncio.CancelledError:
            self._abandon(sender, call)
            raise
        if answer.cancelled():    # Telethon cancels what is pending when the sender disconnects
            raise SenderLost(f"DC {self.dc_id}: sender {sender.number} was closed")
        now = self._clock()
        nbytes = len(getattr(answer.result(), "bytes", b"") or b"") if answer.exception() is None else 0
        if nbytes:
            busy = max(now - max(sent_at, sender.last_answer), 1e-3)
            sample = nbytes / busy
            if not self.speed or sample < self.speed / 2:     # down at once (a DC turned slow)
                self.speed = sample
            else:                                             # up gently
                self.speed = (1 - SPEED_WEIGHT) * self.speed + SPEED_WEIGHT * sample
        sender.last_answer = now
        return answer.result()

    def _abandon(self, sender: Sender, call) -> None:
        """The caller no longer wants `call`'s answer: taken back if unsent, else dropped; the
        sender counts it as draining until its answer is in (or known never to come)."""
        drain = call.cancel(self._timeout)
        if drain is None:
            return
        sender.draining += 1
        call.future.add_done_callback(lambda _f, s=sender: self._drained(s))
        self._background.add(drain)
        drain.add_done_callback(self._background.discard)
        self.dropped_answers += 1
        if self._metrics is not None:
            self._metrics.dropped_answer(self.dc_id)

    def _drained(self, sender: Sender) -> None:
        sender.draining -= 1
        sender.last_answer = self._clock()
        self._notify_soon()

    def _notify_soon(self) -> None:
        async def notify():
            async with self._cond:
                self._cond.notify_all()
        task = asyncio.get_running_loop().create_task(notify())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- choosing a sender --------------------------------------------------------------------
    async def _acquire(self, priority: int, kind: str) -> Sender:
        async with self._cond:
            self._waiting[priority] += 1
            try:
                while True:
                    sender = self._choose(priority, kind)
                    if isinstance(sender, Sender):
                        sender.in_flight += 1
                        sender.bulk += priority == BULK
                        sender.interactive += priority == INTERACTIVE
                        sender.last_used = self._clock()
                        self._open_spare_if_needed()
                        return sender
                    if sender == "open":
                        task = self._start_open()
                        self._cond.release()
                        try:
                            await asyncio.shield(task)
                        finally:
                            await self._reacquire()
                        continue
                    await self._wait_for_gates_or_slots(kind)
            finally:
                self._waiting[priority] -= 1
                if priority != BULK:
                    # read-ahead held back for it may go now: wake it, however this one leaves
                    # (with a sender, cancelled by a seek, or refused by a long flood)
                    self._cond.notify_all()

    async def _reacquire(self) -> None:
        """Take the condition's lock back even if cancelled while waiting for it (as
        asyncio.Condition.wait does), so that `async with self._cond` always exits holding it."""
        cancelled = False
        while True:
            try:
                await self._cond.acquire()
                break
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    def _choose(self, priority: int, kind: str):
        """A sender to use now, "open" to open one first, or None to wait."""
        now = self._clock()
        if self._dc_gate(kind) > now:
            return None
        idle = [s for s in self.senders if s.load == 0]
        count = len(self.senders) + len(self._opening)
        if priority == URGENT:
            if idle:
                return idle[0]
            if count < self._limit:
                return "open"
            # behind the fewest bytes, on a sender that carries no bulk part if there is one
            return min(self.senders, key=lambda s: (bool(s.bulk), s.queued_bytes, s.load), default=None)
        bulk = [s for s in self.senders if s.bulk]
        if priority == INTERACTIVE:
            mine = [s for s in self.senders if s.interactive]
            # alone: max_senders (the spare stays free for the next seek); beside bulk work: what
            # bulk's share leaves, and the spare (the seek's first part then goes behind the
            # fewest bytes)
            room = (self._limit - self._bulk_share if bulk or self._waiting[BULK] else self.max_senders)
            if idle and len(mine) < room and not self._waiting[URGENT]:
                return idle[0]
            free = [s for s in mine if not s.bulk and s.queued_bytes < INTERACTIVE_QUEUE]
            if count < self.max_senders:
                if not free:
                    return "open"
                # a window opening while the DC has few senders: one more opens in the background
                # and this part goes now on a connected one (the parts nearest the reader are asked
                # first; waiting the round trips of a new connection held its first MiB back)
                self._start_open()
            return min(free, key=lambda s: s.load) if free else None
        carrying = sum(1 for s in self.senders if s.bulk or s.interactive or s.draining)
        others = self._waiting[URGENT] + self._waiting[INTERACTIVE]
        share = self._bulk_share if others else self.max_senders
        if idle and not self._waiting[URGENT]:
            if len(bulk) < self._bulk_share:        # its share, always
                return idle[0]
            if not others and carrying < self.max_senders:
                return idle[0]
        if count < self.max_senders and len(bulk) < share:
            return "open"
        # pipelining: while others wait, only on the senders of its share (the rest drain for them)
        keep = sorted(bulk, key=lambda s: s.number)[:share]
        free = [s for s in keep if not s.interactive and s.load < self._slots]
        return min(free, key=lambda s: s.load) if free else None

    def _open_spare_if_needed(self) -> None:
        carrying = sum(1 for s in self.senders if s.bulk or s.interactive or s.draining)
        idle = any(s.load == 0 for s in self.senders)
        if (carrying >= self.max_senders and not idle and not self._opening
                and len(self.senders) < self._limit):
            self._start_open()

    def _dc_gate(self, kind: str) -> float:
        """Until when `kind` is gated on the whole DC: by this account's own flood, or one another
        replica of the account saw."""
        shared = self._board.until(self.dc_id, kind) if self._board is not None else 0.0
        return max(_until(self._gates, kind), shared)

    def flooded_for(self, kind: str) -> float:
        """Seconds until `kind` may be sent to this DC again (telegram/accounts.py)."""
        return max(0.0, self._dc_gate(kind) - self._clock())

    @property
    def load(self) -> int:
        """Requests in flight and answers draining on this DC's senders (telegram/accounts.py)."""
        return sum(s.load for s in self.senders)

    async def _wait_for_gates_or_slots(self, kind: str) -> None:
        wait = self._dc_gate(kind) - self._clock()
        if wait <= 0:
            await self._wait(None)
            return
        if wait > self._max_wait:
            raise RetryLater(wait, f"Telegram DC {self.dc_id} asked tgdav to wait "
                                   f"{wait:.0f} s (FLOOD_WAIT); try again then")
        await self._wait(wait)

    async def _wait(self, seconds: float | None) -> None:
        try:
            await asyncio.wait_for(self._cond.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _start_open(self) -> asyncio.Task:
        """Open a sender in a task the pool owns (a cancelled caller does not abort it)."""
        self._numbers += 1
        task = asyncio.get_running_loop().create_task(self._open(self._numbers, self._generation))
        self._opening.add(task)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())   # retrieved by waiters or here
        log.info("DC %d: opening sender %d (%d open, at most %d + %d spare)", self.dc_id, self._numbers,
                 len(self.senders), self.max_senders, self._limit - self.max_senders)
        return task

    async def _open(self, number: int, generation: int) -> None:
        task = asyncio.current_task()
        try:
            try:
                conn = await self._open_sender(self.dc_id)
            except (ConnectionError, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                raise UpstreamUnavailable(f"cannot connect to Telegram DC {self.dc_id}: "
                                          f"{e or type(e).__name__}") from None
            except FLOOD_WAITS as e:
                # exporting/importing the authorisation was flooded: no sender can open until then
                self._gates["*"] = max(self._gates.get("*", 0.0), self._clock() + e.seconds)
                raise RetryLater(e.seconds, f"Telegram asked tgdav to wait {e.seconds} s before "
                                            f"connecting to DC {self.dc_id} (FLOOD_WAIT)") from None
            async with self._cond:
                self.senders.append(Sender(number, conn, last_used=self._clock(), generation=generation))
        finally:
            async with self._cond:
                self._opening.discard(task)
                self._cond.notify_all()

    async def _release(self, sender: Sender, priority: int) -> None:
        async with self._cond:
            sender.in_flight -= 1
            sender.bulk -= priority == BULK
            sender.interactive -= priority == INTERACTIVE
            sender.last_used = self._clock()
            self._cond.notify_all()

    def _gate(self, sender: Sender, seconds: float, account_wide: bool, kind: str) -> None:
        """Telegram's flood limits are the account's: `kind` waits on every sender of this DC."""
        until = self._clock() + seconds
        if self._metrics is not None:
            self._metrics.flood_wait(self.dc_id, seconds, account_wide)
        self._gates[kind] = max(self._gates.get(kind, 0.0), until)
        log.warning("DC %d: %s %d s on %s (met on sender %d): no %s goes to this DC until then",
                    self.dc_id, "FLOOD_PREMIUM_WAIT" if account_wide else "FLOOD_WAIT", seconds, kind,
                    sender.number, kind)

    async def _drop(self, sender: Sender) -> None:
        async with self._cond:
            if sender in self.senders:
                self.senders.remove(sender)
            self._cond.notify_all()
        await _disconnect(sender)

    def warm(self) -> None:
        """Open and authorise one sender in the background if none is open or opening (a listing
        names files here): the first read does not pay the key exchange and the export/import."""
        if self.senders or self._opening or self._dc_gate("*") > self._clock():
            return
        task = self._start_open()
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None or log.info(
            "DC %d: could not open a connection ahead of use: %s", self.dc_id, t.exception()))

    # --- maintenance --------------------------------------------------------------------------
    async def reap(self, idle_seconds: float) -> int:
        """Close senders idle for longer than idle_seconds; they reopen on demand."""
        async with self._cond:
            now = self._clock()
            idle = [s for s in self.senders if s.load == 0 and now - s.last_used > idle_seconds]
            for s in idle:
                self.senders.remove(s)
        for s in idle:
            log.info("DC %d: closing idle sender %d", self.dc_id, s.number)
            await _disconnect(s)
        return len(idle)

    async def close(self) -> None:
        for task in list(self._opening) + list(self._background):
            task.cancel()
        async with self._cond:
            senders, self.senders = self.senders, []
        for s in senders:
            await _disconnect(s)

    def stats(self) -> dict:
        now = self._clock()
        board = self._board.until(self.dc_id, "GetFile") if self._board is not None else 0.0
        gate = max([board] + list(self._gates.values()))
        return {"senders": len(self.senders),
                "busy": sum(1 for s in self.senders if s.in_flight),
                "in_flight": sum(s.in_flight for s in self.senders),
                "draining": sum(1 for s in self.senders if s.draining),
                "gated": len(self.senders) if gate > now else 0,
                "gate_seconds": max(0.0, gate - now),
                "speed": self.speed,
                "dropped_answers": self.dropped_answers}


def _method(request) -> str:
    """GetFileRequest -> "GetFile": what Telegram floods separately."""
    return type(request).__name__.removesuffix("Request")


def _until(gates: dict, kind: str) -> float:
    """The deadline gating `kind` (its own or one on every method)."""
    return max(gates.get(kind, 0.0), gates.get("*", 0.0))


async def _disconnect(sender: Sender) -> None:
    try:
        await sender.conn.close()
    except Exception:   # a dead connection may fail to close; it is gone either way
        log.debug("DC sender %d: error while disconnecting", sender.number, exc_info=True)
    if sender._gone is not None:
        sender._gone.cancel()


async def _first(answer: asyncio.Future, gone: asyncio.Future, timeout: float) -> None:
    """Return when `answer` or `gone` is done, or after `timeout` seconds: asyncio.wait's
    FIRST_COMPLETED without its sets and task wrapping (this runs for every part fetched)."""
    wake = asyncio.get_running_loop().create_future()
    ring = functools.partial(_ring, wake)
    answer.add_done_callback(ring)
    gone.add_done_callback(ring)
    timer = asyncio.get_running_loop().call_later(timeout, _ring, wake, None)
    try:
        await wake
    finally:
        timer.cancel()
        answer.remove_done_callback(ring)
        gone.remove_done_callback(ring)


def _ring(wake: asyncio.Future, _done) -> None:
    if not wake.done():
        wake.set_result(None)


class Pool:
    """All DCs of one account. open_sender(dc_id) -> connected, authorised mtproto.Sender."""

    def __init__(self, open_sender, *, senders_per_dc: int = 4, slots_per_sender: int = 2,
                 idle_seconds: float = 120.0, max_wait: float = 10.0, request_timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, forget_auth=None, metrics=None,
                 flood_board=None, hand_back_floods: bool = False) -> None:
        if not 1 <= senders_per_dc <= MAX_SENDERS_PER_DC:
            raise ValueError(f"senders_per_dc must be 1..{MAX_SENDERS_PER_DC}")
        self._open_sender = open_sender
        self._settings = dict(max_senders=senders_per_dc, slots_per_sender=slots_per_sender,
                              max_wait=max_wait, request_timeout=request_timeout, clock=clock,
                              forget_auth=forget_auth, metrics=metrics, flood_board=flood_board,
                              hand_back_floods=hand_back_floods)
        self.idle_seconds = idle_seconds
        self._dcs: dict[int, DcPool] = {}
        self._reaper: asyncio.Task | None = None

    @property
    def senders_per_dc(self) -> int:
        return self._settings["max_senders"]

    def dc(self, dc_id: int) -> DcPool:
        pool = self._dcs.get(dc_id)
        if pool is None:
            pool = self._dcs[dc_id] = DcPool(dc_id, self._open_sender, **self._settings)
            if self._reaper is None:
                self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())
        return pool

    async def invoke(self, dc_id: int, request, *, urgent: bool = False, interactive: bool = False):
        return await self.dc(dc_id).invoke(request, urgent=urgent, interactive=interactive)

    def warm(self, dc_ids) -> None:
        """One sender to each of dc_ids, opened in the background where none is (DcPool.warm)."""
        for dc_id in dc_ids:
            self.dc(dc_id).warm()

    def speed(self, dc_id: int) -> float:
        """Measured bytes/s of one sender to dc_id (0 while unknown)."""
        pool = self._dcs.get(dc_id)
        return pool.speed if pool is not None else 0.0

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.idle_seconds / 4))
            for pool in list(self._dcs.values()):
                await pool.reap(self.idle_seconds)

    async def close(self) -> None:
        if self._reaper:
            self._reaper.cancel()
            self._reaper = None
        for pool in list(self._dcs.values()):
            await pool.close()
        self._dcs.clear()

    def stats(self) -> dict:
        return {str(dc): p.stats() for dc, p in sorted(self._dcs.items())}
