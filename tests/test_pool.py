"""DcPool's choice of senders with fake senders (no network): interleavings of urgent requests,
read-ahead and opening senders that the sandbox makes too rare to hit on purpose."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from tgdav.errors import RetryLater
from tgdav.telegram.mtproto import errors
from tgdav.telegram.pool import DcPool


class FakeCall:
    """mtproto.Call: the answer's future and cancel(). `sent`: whether it went out (then a cancel
    drains until the answer comes, as rpc_answer_unknown does), else a cancel takes it back."""

    def __init__(self, request, sent: bool) -> None:
        self.request = request
        self.sent = sent
        self.future = asyncio.get_running_loop().create_future()

    def cancel(self, timeout: float):
        if self.future.done():
            return None
        if not self.sent:
            self.future.cancel()
            return None
        async def drain():
            await asyncio.wait({self.future})     # the answer arrives (the test releases it)
        return asyncio.get_running_loop().create_task(drain())


class FakeSender:
    """mtproto.Sender: requests are answered at once with an empty part, or held until release()
    (hold=True), or answered with an error from `fail` (request name -> exception, used once)."""

    def __init__(self, number: int = 1, *, hold: bool = False, sent: bool = False) -> None:
        self.number = number
        self.hold = hold
        self.on_wire = sent              # held requests count as sent (a cancel drains them)
        self.sent: list[object] = []
        self.pending: list[FakeCall] = []
        self.fail: dict[str, BaseException] = {}
        self.connected = True
        self._gone: asyncio.Future | None = None      # done when the connection ends (cut or close)

    def send(self, request) -> FakeCall:
        call = FakeCall(request, self.on_wire)
        self.sent.append(request)
        error = self.fail.pop(getattr(request, "name", None), None)
        if error is not None:
            call.future.set_exception(error)
        elif self.hold:
            self.pending.append(call)
        else:
            call.future.set_result(SimpleNamespace(bytes=b""))
        return call

    def disconnected(self) -> asyncio.Future:
        if self._gone is None:
            self._gone = asyncio.get_running_loop().create_future()
        return asyncio.shield(self._gone)

    def cut(self) -> None:
        """The connection ends under the sender, as Telethon reports it: what went out fails with
        the connection's error first, then disconnected() is done; what was still queued (not
        `sent`) stays unanswered."""
        self.connected = False
        for call in self.pending:
            if call.sent and not call.future.done():
                call.future.set_exception(ConnectionError("the server closed the connection"))
        self.disconnected()
        self._gone.done() or self._gone.set_result(None)

    def release(self) -> None:
        for call in self.pending:
            if not call.future.done():
                call.future.set_result(SimpleNamespace(bytes=b""))
        self.pending.clear()

    async def close(self) -> None:
        self.cut()


def _pool(opener) -> DcPool:
    return DcPool(4, opener, max_senders=1, slots_per_sender=2, max_wait=10, request_timeout=30,
                  clock=asyncio.get_running_loop().time)


@pytest.mark.timeout(30)
def test_read_ahead_held_back_for_an_urgent_request_goes_when_that_request_is_cancelled():
    """Read-ahead does not take an idle sender while an urgent request waits for one. When that
    urgent request goes away (its stream closed on a seek) while its own new sender is still being
    opened, the read-ahead must be woken to take the idle sender, not left waiting for an event that
    never comes."""
    async def scenario():
        gates = [asyncio.Event(), asyncio.Event()]      # the second open never completes
        opened = []

        async def opener(dc):
            gate = gates[len(opened)]
            opened.append(dc)
            await gate.wait()
            return FakeSender()

        pool = _pool(opener)
        bulk = asyncio.ensure_future(pool.invoke(SimpleNamespace(name="bulk")))
        await _settle()                              # bulk started the first open
        assert len(opened) == 1
        urgent = asyncio.ensure_future(pool.invoke(SimpleNamespace(name="urgent"), urgent=True))
        await _settle()                              # urgent started the second (the spare)
        assert len(opened) == 2
        gates[0].set()
        await _settle()                              # sender 1 is idle; bulk waits: urgent goes first
        assert not bulk.done()
        urgent.cancel()                              # the player seeks away
        try:
            return await asyncio.wait_for(bulk, 5)
        finally:
            await pool.close()

    assert asyncio.run(scenario()).bytes == b""


# --- priorities: urgent, interactive read-ahead, bulk read-ahead (issue 19) ------------------------

def _request(name: str, limit: int = 32 * 1024):
    return SimpleNamespace(name=name, limit=limit)


async def _held_pool(max_senders: int = 4, *, sent: bool = False, clock=None):
    senders: list[FakeSender] = []

    async def opener(dc):
        senders.append(FakeSender(len(senders) + 1, hold=True, sent=sent))
        return senders[-1]

    pool = DcPool(4, opener, max_senders=max_senders, slots_per_sender=2, max_wait=10,
                  request_timeout=30, clock=clock or asyncio.get_running_loop().time)
    return pool, senders


def _carried_by(senders, name: str) -> list[int]:
    return [m.number for m in senders if any(getattr(r, "name", None) == name for r in m.sent)]


async def _settle():
    for _ in range(20):
        await asyncio.sleep(0)


async def _finish(senders, tasks) -> None:
    """Answer everything until every task is done."""
    while not all(t.done() for t in tasks):
        for m in senders:
            m.release()
        await _settle()
    await asyncio.gather(*tasks)


@pytest.mark.timeout(30)
def test_interactive_read_ahead_never_queues_behind_a_bulk_part_and_bulk_keeps_its_share():
    """A bulk reader fills every sender it may use (2 parts each); a player's read-ahead then waits
    for a sender with no bulk part on it (answers on one connection come in order) rather than
    pipelining behind one, gets the senders bulk lets drain beyond its share, and bulk keeps that
    share (half of max_senders) meanwhile."""
    async def scenario():
        pool, senders = await _held_pool()
        bulk = [asyncio.ensure_future(pool.invoke(_request(f"bulk{i}", 512 * 1024))) for i in range(8)]
        await _settle()
        assert [len(m.sent) for m in senders] == [2, 2, 2, 2, 0]    # 4 senders, the spare opened idle
        player = [asyncio.ensure_future(pool.invoke(_request(f"play{i}"), interactive=True))
                  for i in range(12)]
        more_bulk = [asyncio.ensure_future(pool.invoke(_request(f"late{i}", 512 * 1024))) for i in range(4)]
        await _settle()
        # the player took the idle spare; none of its parts went on a sender carrying bulk
        assert set(_carried_by(senders, "play0")) == {5}
        assert all(len(m.sent) == 2 for m in senders[:4])
        # bulk senders 3 and 4 answer: beyond bulk's share (2 of 4), they go to the player
        senders[2].release()
        senders[3].release()
        await _settle()
        carried = {m.number for m in senders for r in m.sent if r.name.startswith("play")}
        assert carried == {3, 4, 5}
        late = {m.number for m in senders for r in m.sent if r.name.startswith("late")}
        assert late <= {1, 2}                     # bulk keeps to its share while the player waits
        await _finish(senders, bulk + player + more_bulk)
        await pool.close()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_urgent_goes_first_then_interactive_then_bulk():
    """Every sender busy: an urgent request pipelines at once on the sender with no bulk part; a
    sender that frees goes to the waiting interactive read-ahead, not to the bulk read-ahead
    waiting before it."""
    async def scenario():
        pool, senders = await _held_pool(max_senders=1)
        first = [asyncio.ensure_future(pool.invoke(_request(f"bulk{i}", 512 * 1024))) for i in range(2)]
        await _settle()
        urgent0 = asyncio.ensure_future(pool.invoke(_request("urgent0"), urgent=True))
        await _settle()                            # the spare (sender 2) is opened for it
        assert _carried_by(senders, "urgent0") == [2]
        bulk_n = asyncio.ensure_future(pool.invoke(_request("bulkN", 512 * 1024)))
        await _settle()
        play = asyncio.ensure_future(pool.invoke(_request("play"), interactive=True))
        urgent1 = asyncio.ensure_future(pool.invoke(_request("urgent1"), urgent=True))
        await _settle()
        assert _carried_by(senders, "urgent1") == [2]      # behind 32 KiB, not behind 1 MiB of bulk
        assert _carried_by(senders, "play") == _carried_by(senders, "bulkN") == []
        senders[1].release()                               # sender 2 is free: the player's
        await _settle()
        assert _carried_by(senders, "play") == [2]
        assert _carried_by(senders, "bulkN") == []
        senders[0].release()                               # sender 1 is free: now bulk's
        await _settle()
        assert _carried_by(senders, "bulkN") == [1]
        await _finish(senders, first + [urgent0, bulk_n, play, urgent1])
        await pool.close()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_a_players_window_waits_here_beyond_a_round_trip_per_sender_so_a_seek_takes_it_back():
    """Interactive read-ahead puts at most INTERACTIVE_QUEUE bytes on each sender; the rest of a
    player's window waits in the pool. When the player seeks away, what waited here never reaches
    Telegram (only what was sent needs an rpc_drop_answer)."""
    from tgdav.telegram.pool import INTERACTIVE_QUEUE

    async def scenario():
        pool, senders = await _held_pool()
        window = [asyncio.ensure_future(pool.invoke(_request(f"play{i}"), interactive=True))
                  for i in range(64)]                 # 2 MiB in 32 KiB parts
        await _settle()
        def plays():
            return [sum(1 for r in m.sent if getattr(r, "name", "").startswith("play")) for m in senders]
        sent = plays()
        assert 0 < sum(sent) < 64
        assert all(n * 32 * 1024 <= INTERACTIVE_QUEUE for n in sent), sent
        assert sent[pool.max_senders:] in ([], [0])   # alone: the spare is kept for the next seek
        for t in window:                              # the player seeks away
            t.cancel()
        await asyncio.gather(*window, return_exceptions=True)
        await _settle()
        assert plays() == sent                        # what waited here never went out
        await pool.close()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_a_window_opening_on_a_dc_with_few_senders_does_not_wait_for_new_connections():
    """While a DC has fewer senders than max_senders, an interactive part that a connected sender
    has room for goes on it at once, and the new sender opens in the background: the parts nearest
    the reader (asked first) no longer wait the round trips of a new connection while later ones
    land on the connected senders (a cold copy's first MiB)."""
    async def scenario():
        senders: list[FakeSender] = []
        gate = asyncio.Event()

        async def opener(dc):
            if senders:
                await gate.wait()                 # a new connection still opening
            senders.append(FakeSender(len(senders) + 1, hold=True))
            return senders[-1]

        pool = DcPool(4, opener, max_senders=4, slots_per_sender=2, max_wait=10, request_timeout=30,
                      clock=asyncio.get_running_loop().time)
        first = asyncio.ensure_future(pool.invoke(_request("p0"), interactive=True))
        await _settle()
        assert _carried_by(senders, "p0") == [1]
        nxt = asyncio.ensure_future(pool.invoke(_request("p1"), interactive=True))
        await _settle()
        assert _carried_by(senders, "p1") == [1]          # sent now, on the connected sender
        assert len(pool._opening) == 1                    # and one more sender is opening
        gate.set()
        await _finish(senders, [first, nxt])
        assert len(pool.senders) == 2
        await pool.close()

    asyncio.run(scenario())


# --- floods and cancelled calls, through the Sender/Call interface (issue 17) ----------------------

@pytest.mark.timeout(30)
def test_a_flood_gates_the_dc_until_its_deadline_on_the_pools_clock():
    """A FLOOD_WAIT met on one sender gates the method on the whole DC: nothing more is sent until
    the deadline (on the pool's injected clock), and a caller is told how long is left."""
    async def scenario():
        now = [1000.0]
        pool, senders = await _held_pool(max_senders=2, clock=lambda: now[0])
        first = asyncio.ensure_future(pool.invoke(_request("a")))
        await _settle()
        senders[0].pending[0].future.set_exception(errors.FloodWaitError(None, capture=60))
        with pytest.raises(RetryLater) as flood:
            await first
        assert flood.value.seconds == 60
        sent = sum(len(s.sent) for s in senders)
        now[0] += 30
        with pytest.raises(RetryLater) as flood:
            await pool.invoke(_request("b"), urgent=True)
        assert flood.value.seconds == 30
        assert sum(len(s.sent) for s in senders) == sent      # none went out, on any sender
        now[0] += 31
        later = asyncio.ensure_future(pool.invoke(_request("c"), urgent=True))
        await _finish(senders, [later])
        assert _carried_by(senders, "c")
        await pool.close()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sent", [True, False])
def test_a_cancelled_call_loads_its_sender_only_while_its_answer_may_still_come(sent):
    """A request cancelled after it went out (Call.cancel returns its drain) keeps its sender
    loaded until the answer is in: the next urgent request opens another sender rather than
    queueing behind it. One taken back before it went out leaves the sender idle at once."""
    async def scenario():
        pool, senders = await _held_pool(max_senders=1, sent=sent)
        part = asyncio.ensure_future(pool.invoke(_request("part"), urgent=True))
        await _settle()
        part.cancel()
        await asyncio.gather(part, return_exceptions=True)
        await _settle()
        assert pool.dropped_answers == (1 if sent else 0)
        assert pool.senders[0].draining == (1 if sent else 0)
        following = asyncio.ensure_future(pool.invoke(_request("next"), urgent=True))
        await _settle()
        assert _carried_by(senders, "next") == ([2] if sent else [1])
        senders[0].release()
        await _settle()
        assert pool.stats()["draining"] == 0
        await _finish(senders, [following])
        await pool.close()

    asyncio.run(scenario())


# --- connections cut: what is an attempt (MAX_ATTEMPTS) -------------------------------------------

async def _cut_pool(max_senders: int, *, sent: bool = True, dead_on_open: bool = False):
    """A pool whose senders hold their requests (`sent`: on the wire) and are opened already
    disconnected when `dead_on_open` (a DC that cuts every new connection before it is used)."""
    pool, senders = await _held_pool(max_senders, sent=sent)
    if dead_on_open:
        async def opener(dc):
            senders.append(FakeSender(len(senders) + 1, hold=True, sent=sent))
            senders[-1].connected = False
            return senders[-1]
        pool._open_sender = opener
    return pool, senders


async def _open_senders(pool, senders, n: int) -> None:
    """n senders open and idle (n requests held at once, then answered)."""
    tasks = [asyncio.ensure_future(pool.invoke(_request(f"warm{i}"), urgent=True)) for i in range(n)]
    await _settle()
    await _finish(senders, tasks)
    assert len(pool.senders) == n


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sent", [True, False])
def test_a_request_meets_every_sender_a_dc_cut_at_once_and_goes_on_a_new_one(sent):
    """A DC cuts every connection at once. The request in flight on one fails there (an attempt if
    it had gone out; if it was still queued on the sender, Telegram never saw it); the other senders,
    found disconnected before anything left them, are dropped and are no attempt: the request is
    sent on a new sender rather than failing with ConnectionsLost after meeting two dead ones."""
    async def scenario():
        pool, senders = await _cut_pool(max_senders=4, sent=sent)
        await _open_senders(pool, senders, 5)          # 4 and the spare
        part = asyncio.ensure_future(pool.invoke(_request("part"), urgent=True))
        await _settle()
        assert _carried_by(senders, "part") == [1]
        for m in senders:
            m.cut()
        await _settle()
        assert _carried_by(senders, "part") == [1, 6]  # the first dead one, then a new sender
        assert len(senders) == 6 and pool.senders == [s for s in pool.senders if s.conn is senders[5]]
        await _finish(senders, [part])
        await pool.close()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_a_request_still_fails_when_two_senders_died_under_it_after_it_went_out():
    """What is an attempt is unchanged: a part whose connection is cut under it twice raises
    ConnectionsLost (the fetcher then asks for it in halves: a part too big for the link fits)."""
    from tgdav.errors import ConnectionsLost

    async def scenario():
        pool, senders = await _cut_pool(max_senders=1)
        part = asyncio.ensure_future(pool.invoke(_request("part"), urgent=True))
        for _ in range(2):
            await _settle()
            senders[-1].cut()
        with pytest.raises(ConnectionsLost):
            await part
        assert _carried_by(senders, "part") == [1, 2]
        await pool.close()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_a_dc_that_cuts_each_new_connection_before_use_still_ends_in_connections_lost():
    """Dead senders a request meets before it left them are free only up to MAX_UNSENT; after that
    each counts as an attempt, so a DC that cuts every new connection fails the request rather
    than opening connections for ever."""
    from tgdav.errors import ConnectionsLost
    from tgdav.telegram.pool import MAX_ATTEMPTS, MAX_UNSENT

    async def scenario():
        pool, senders = await _cut_pool(max_senders=4, dead_on_open=True)
        with pytest.raises(ConnectionsLost):
            await asyncio.wait_for(pool.invoke(_request("part"), urgent=True), 10)
        assert len(senders) == MAX_UNSENT + MAX_ATTEMPTS
        assert not any(m.sent for m in senders)            # nothing ever went out
        await pool.close()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_requests_on_a_sender_share_one_wait_for_its_end_and_see_it_when_it_comes():
    """Every part fetched waited on a future of its own for its sender's end (a new shield, made
    and cancelled per request): now one per sender, which each request still sees the moment the
    connection ends (the ones it carried fail over to a new sender)."""
    async def scenario():
        made = []

        class Counting(FakeSender):
            def disconnected(self):
                made.append(self.number)
                return super().disconnected()

        senders = []

        async def opener(dc):
            senders.append(Counting(len(senders) + 1))
            return senders[-1]

        pool = _pool(opener)
        for i in range(20):
            await pool.invoke(SimpleNamespace(name=f"part{i}"), urgent=True)
        assert made == [1]                    # once for sender 1, not once per request
        senders[0].hold = senders[0].on_wire = True
        waiting = asyncio.ensure_future(pool.invoke(SimpleNamespace(name="held"), urgent=True))
        while not senders[0].pending:
            await asyncio.sleep(0)
        senders[0].cut()                      # the connection ends under the held request
        await asyncio.wait_for(waiting, 5)    # answered on a new sender
        assert len(senders) == 2 and [r.name for r in senders[1].sent] == ["held"]
        await pool.close()

    asyncio.run(scenario())
