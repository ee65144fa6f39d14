"""Per-DC pools of MTProto senders for one account, with flood gates and idle reaping.

A request is sent on a sender of its DC chosen this way (cf. gotd's pool): a sender that is not
flood-gated and has a free slot (fewest requests in flight first); else a new sender while the DC has
fewer than `max_senders`; else wait for a slot. FLOOD_WAIT is a deadline, not an error to retry at
once: the sender (FLOOD_WAIT) or the whole DC (FLOOD_PREMIUM_WAIT, account-wide) is gated until then
and new work goes elsewhere. When every sender of a DC is gated, a short wait (<= max_wait) is waited
out, a long one raises RetryLater so the HTTP client is told when to come back.

Senders are sent requests directly (sender.send), never through TelegramClient.__call__, so
Telethon's per-request-type flood memory cannot block GetFile on other DCs.

Lock order: only DcPool._cond (an asyncio.Condition, one per DC) exists; nothing else is locked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from telethon import errors

from tgdav.errors import RetryLater, UpstreamUnavailable

log = logging.getLogger("tgdav.pool")

MAX_SENDERS_PER_DC = 20   # Telegram tolerates about this many connections per DC per account


@dataclass(eq=False)
class Sender:
    number: int                 # 1-based, for log lines a user can follow
    mtp: object                 # telethon MTProtoSender
    in_flight: int = 0
    gated_until: float = 0.0
    last_used: float = field(default_factory=time.monotonic)
    generation: int = 0         # the DC's authorisation generation it was opened under


class DcPool:
    def __init__(self, dc_id: int, open_sender, *, max_senders: int, slots_per_sender: int,
                 max_wait: float, request_timeout: float, clock: Callable[[], float],
                 forget_auth=None) -> None:
        self._forget_auth = forget_auth
        self.dc_id = dc_id
        self._open_sender = open_sender
        self.max_senders = max_senders
        self._slots = slots_per_sender
        self._max_wait = max_wait
        self._timeout = request_timeout
        self._clock = clock
        self.senders: list[Sender] = []
        self._opening = 0
        self._gated_until = 0.0          # DC-wide (account-wide) flood deadline
        self._cond = asyncio.Condition()
        self._numbers = 0
        self._generation = 0             # bumped each time the DC's authorisation is renewed

    async def invoke(self, request):
        """Send `request` on a sender of this DC; FLOOD_WAIT and dead connections move it elsewhere."""
        attempts = 0
        reauthorised = False
        while True:
            sender = await self._acquire()
            try:
                return await self._send(sender, request)
            except (errors.FloodWaitError, errors.FloodPremiumWaitError) as e:
                account_wide = isinstance(e, errors.FloodPremiumWaitError)
                self._gate(sender, e.seconds, account_wide)
            except errors.UnauthorizedError:
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
            except (ConnectionError, asyncio.TimeoutError, TimeoutError) as e:
                attempts += 1
                log.warning("DC %d: sender %d failed (%s); dropping it", self.dc_id, sender.number,
                            type(e).__name__)
                await self._drop(sender)
                if attempts >= 3:
                    raise UpstreamUnavailable(
                        f"Telegram DC {self.dc_id} is not answering ({type(e).__name__}); "
                        "check the network, tgdav retries on the next request") from None
            finally:
                await self._release(sender)

    async def _send(self, sender: Sender, request):
        """sender.mtp.send(request), failing with ConnectionError as soon as Telethon gives up on
        the connection (a request queued while it reconnects is otherwise never answered)."""
        mtp = sender.mtp
        if not mtp.is_connected():
            raise ConnectionError(f"DC {self.dc_id}: sender {sender.number} is disconnected")
        answer = mtp.send(request)
        dead = mtp.disconnected
        try:
            done, _ = await asyncio.wait({answer, dead}, timeout=self._timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            dead.cancel()
            if not answer.done():
                answer.cancel()
        if answer in done:
            return answer.result()
        if dead in done:
            raise ConnectionError(f"DC {self.dc_id}: sender {sender.number} lost its connection")
        raise asyncio.TimeoutError()

    # --- choosing a sender --------------------------------------------------------------------
    async def _acquire(self) -> Sender:
        """Prefer an idle sender, then a new connection, then pipelining on the least busy one."""
        async with self._cond:
            while True:
                now = self._clock()
                dc_gated = self._gated_until > now
                usable = [] if dc_gated else [s for s in self.senders if s.gated_until <= now]
                free = [s for s in usable if s.in_flight < self._slots]
                can_open = not dc_gated and len(self.senders) + self._opening < self.max_senders
                if free and (min(s.in_flight for s in free) == 0 or not can_open):
                    sender = min(free, key=lambda s: s.in_flight)
                    sender.in_flight += 1
                    sender.last_used = now
                    return sender
                if can_open:
                    return await self._open_locked()
                if not usable and not self._opening:
                    deadline = self._gated_until if dc_gated else min(s.gated_until for s in self.senders)
                    wait = deadline - now
                    if wait > self._max_wait:
                        raise RetryLater(wait, f"Telegram DC {self.dc_id} asked tgdav to wait "
                                               f"{wait:.0f} s (FLOOD_WAIT); try again then")
                    await self._wait(wait)
                else:
                    await self._wait(None)

    async def _wait(self, seconds: float | None) -> None:
        try:
            await asyncio.wait_for(self._cond.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _open_locked(self) -> Sender:
        """Open a sender with the condition held on entry and on return (released while opening)."""
        self._opening += 1
        self._numbers += 1
        number = self._numbers
        generation = self._generation    # a renewal during the open makes this sender stale
        log.info("DC %d: opening sender %d/%d", self.dc_id, len(self.senders) + self._opening,
                 self.max_senders)
        self._cond.release()
        try:
            try:
                mtp = await self._open_sender(self.dc_id)
            except (ConnectionError, OSError, asyncio.TimeoutError) as e:
                raise UpstreamUnavailable(f"cannot connect to Telegram DC {self.dc_id}: {e}") from None
            except (errors.FloodWaitError, errors.FloodPremiumWaitError) as e:
                # exporting/importing the authorisation was flooded: no sender can open until then
                self._gated_until = max(self._gated_until, self._clock() + e.seconds)
                raise RetryLater(e.seconds, f"Telegram asked tgdav to wait {e.seconds} s before "
                                            f"connecting to DC {self.dc_id} (FLOOD_WAIT)") from None
        finally:
            await self._cond.acquire()
            self._opening -= 1
            self._cond.notify_all()
        sender = Sender(number, mtp, in_flight=1, last_used=self._clock(), generation=generation)
        self.senders.append(sender)
        return sender

    async def _release(self, sender: Sender) -> None:
        async with self._cond:
            sender.in_flight -= 1
            sender.last_used = self._clock()
            self._cond.notify_all()

    def _gate(self, sender: Sender, seconds: float, account_wide: bool) -> None:
        until = self._clock() + seconds
        if account_wide:
            self._gated_until = max(self._gated_until, until)
            log.warning("DC %d: FLOOD_PREMIUM_WAIT %d s for the whole account", self.dc_id, seconds)
        else:
            sender.gated_until = max(sender.gated_until, until)
            log.warning("DC %d: sender %d must wait %d s (FLOOD_WAIT); routing around it",
                        self.dc_id, sender.number, seconds)

    async def _drop(self, sender: Sender) -> None:
        async with self._cond:
            if sender in self.senders:
                self.senders.remove(sender)
            self._cond.notify_all()
        await _disconnect(sender)

    # --- maintenance --------------------------------------------------------------------------
    async def reap(self, idle_seconds: float) -> int:
        """Close senders idle for longer than idle_seconds; they reopen on demand."""
        async with self._cond:
            now = self._clock()
            idle = [s for s in self.senders if s.in_flight == 0 and now - s.last_used > idle_seconds]
            for s in idle:
                self.senders.remove(s)
        for s in idle:
            log.info("DC %d: closing idle sender %d", self.dc_id, s.number)
            await _disconnect(s)
        return len(idle)

    async def close(self) -> None:
        async with self._cond:
            senders, self.senders = self.senders, []
        for s in senders:
            await _disconnect(s)

    def stats(self) -> dict:
        now = self._clock()
        return {"senders": len(self.senders),
                "in_flight": sum(s.in_flight for s in self.senders),
                "gated": sum(1 for s in self.senders if max(s.gated_until, self._gated_until) > now)}


async def _disconnect(sender: Sender) -> None:
    try:
        await sender.mtp.disconnect()
    except Exception:   # a dead connection may fail to close; it is gone either way
        log.debug("DC sender %d: error while disconnecting", sender.number, exc_info=True)


class Pool:
    """All DCs of one account. open_sender(dc_id) -> connected, authorised MTProtoSender."""

    def __init__(self, open_sender, *, senders_per_dc: int = 4, slots_per_sender: int = 2,
                 idle_seconds: float = 120.0, max_wait: float = 10.0, request_timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, forget_auth=None) -> None:
        if not 1 <= senders_per_dc <= MAX_SENDERS_PER_DC:
            raise ValueError(f"senders_per_dc must be 1..{MAX_SENDERS_PER_DC}")
        self._open_sender = open_sender
        self._settings = dict(max_senders=senders_per_dc, slots_per_sender=slots_per_sender,
                              max_wait=max_wait, request_timeout=request_timeout, clock=clock,
                              forget_auth=forget_auth)
        self.idle_seconds = idle_seconds
        self._dcs: dict[int, DcPool] = {}
        self._reaper: asyncio.Task | None = None

    @property
    def senders_per_dc(self) -> int:
        return self._settings["max_senders"]

    @property
    def capacity(self) -> int:
        """Requests one DC can carry at once: what read-ahead should aim to keep in flight."""
        return self._settings["max_senders"] * self._settings["slots_per_sender"]

    def dc(self, dc_id: int) -> DcPool:
        pool = self._dcs.get(dc_id)
        if pool is None:
            pool = self._dcs[dc_id] = DcPool(dc_id, self._open_sender, **self._settings)
            if self._reaper is None:
                self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())
        return pool

    async def invoke(self, dc_id: int, request):
        return await self.dc(dc_id).invoke(request)

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
