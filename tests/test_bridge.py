import asyncio
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from tgdav.bridge import Bridge, BridgeClosed

LIVENESS = 10   # seconds: only ever a bound for something that should happen at once, never a measure


@pytest.fixture
def bridge():
    with Bridge() as b:
        yield b


def test_64_threads_get_their_own_results(bridge):
    barrier = threading.Barrier(64)

    async def work(i):
        await asyncio.sleep(0.001 * (i % 5))
        return i * i, threading.current_thread().name

    def caller(i):
        barrier.wait()
        return bridge.call(work(i))

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(caller, range(64)))
    assert [r for r, _ in results] == [i * i for i in range(64)]
    assert {name for _, name in results} == {"tgdav-loop"}


def test_call_propagates_exception_type(bridge):
    class Custom(Exception):
        pass

    async def fail():
        raise Custom("boom")

    with pytest.raises(Custom, match="boom"):
        bridge.call(fail())


async def _forever(cancelled: threading.Event) -> None:
    """Waits until cancelled, and says so."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.set()
        raise


def test_call_timeout_cancels_the_coroutine(bridge):
    cancelled = threading.Event()
    with pytest.raises(TimeoutError):
        bridge.call(_forever(cancelled), timeout=0.01)
    assert cancelled.wait(LIVENESS)
    assert bridge.call(asyncio.sleep(0, "still works")) == "still works"


def test_call_timeout_raises_the_callers_exception(bridge):
    """on_timeout: the caller's words for what did not happen in time; the coroutine is cancelled
    all the same, and a call that finishes in time never builds the exception."""
    cancelled = threading.Event()

    class Late(Exception):
        pass

    def late():
        raise AssertionError("on_timeout called for a call that finished in time")

    with pytest.raises(Late, match="Telegram did not answer") as e:
        bridge.call(_forever(cancelled), 0.01, on_timeout=lambda: Late("Telegram did not answer"))
    assert e.value.__cause__ is None and e.value.__suppress_context__
    assert cancelled.wait(LIVENESS)
    assert bridge.call(asyncio.sleep(0, "in time"), LIVENESS, on_timeout=late) == "in time"


def test_loop_thread_is_refused(bridge):
    async def reenter():
        with pytest.raises(RuntimeError, match="deadlock"):
            bridge.call(asyncio.sleep(0))
        with pytest.raises(RuntimeError, match="deadlock"):
            bridge.stream(numbers(3))
        return "refused"

    with warnings.catch_warnings():
        warnings.simplefilter("error")    # a refused coroutine is closed, not left unawaited
        assert bridge.call(reenter()) == "refused"


def test_not_running_is_refused_cleanly():
    b = Bridge()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(BridgeClosed):
            b.call(asyncio.sleep(0))
    b.start()
    b.stop()
    b.stop()      # twice is fine
    with pytest.raises(BridgeClosed):
        b.stream(numbers(3))


async def numbers(n, finished=None, produced=None):
    try:
        for i in range(n):
            if produced is not None:
                produced.append(i)
            yield i
            await asyncio.sleep(0)
    finally:
        if finished is not None:
            finished.set()


def test_stream_delivers_every_item_in_order(bridge):
    finished = threading.Event()
    with bridge.stream(numbers(1000, finished), max_buffered=3) as s:
        assert list(s) == list(range(1000))
        with pytest.raises(StopIteration):
            s.next()
    assert finished.is_set()


def test_partly_consumed_stream_close_cancels_producer(bridge):
    finished = threading.Event()
    s = bridge.stream(numbers(10**9, finished))
    assert [s.next() for _ in range(5)] == [0, 1, 2, 3, 4]
    s.close()
    assert finished.is_set()          # close() waited for the producer's finally
    s.close()                         # twice is fine
    with pytest.raises(StopIteration):
        s.next()


def test_close_cancels_producer_blocked_upstream(bridge):
    finished, cancelled = threading.Event(), threading.Event()

    async def stalls():
        try:
            yield b"first"
            await asyncio.Event().wait()      # upstream never answers
            yield b"never"
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finally:
            finished.set()

    s = bridge.stream(stalls())
    assert s.next() == b"first"
    with pytest.raises(TimeoutError):
        s.next(timeout=0.01)              # a timeout leaves the stream usable
    s.close()
    assert cancelled.is_set() and finished.is_set()


def test_close_before_first_item(bridge):
    finished = threading.Event()
    s = bridge.stream(numbers(10, finished))
    s.close()
    # the producer may or may not have started; either way the stream is dead and nothing leaks
    with pytest.raises(StopIteration):
        s.next()

    async def tasks():
        return asyncio.all_tasks()

    assert len(bridge.call(tasks())) == 1     # only this probe: the producer is gone


def test_stream_exception_reraises_after_items(bridge):
    async def breaks():
        yield 1
        yield 2
        raise LookupError("upstream broke")

    s = bridge.stream(breaks())
    assert s.next() == 1 and s.next() == 2
    for _ in range(2):                        # again: a failed stream never looks complete
        with pytest.raises(LookupError, match="upstream broke"):
            s.next()
    s.close()


def test_backpressure_bounds_the_buffer(bridge):
    produced, consumed = [], []
    s = bridge.stream(numbers(200, produced=produced), max_buffered=4)
    for _ in range(20):
        bridge.call(asyncio.sleep(0.002))     # give an unbounded producer every chance to run ahead
        assert len(produced) - len(consumed) <= 4 + 1   # the buffer plus the item in hand
        consumed.append(s.next())
    assert consumed == list(range(20))
    s.close()


def test_a_consumer_ahead_of_its_producer_does_not_wake_the_loop_per_item(bridge, monkeypatch):
    """An HTTP client reading faster than Telegram sends: the consumer takes each item as it comes,
    so the producer never waits for room and the consumer never wakes the loop to say there is
    some (it did for every item it took from a full buffer: a self-pipe write and a turn of the
    loop per piece served)."""
    wakes = []
    real = bridge.loop.call_soon_threadsafe

    def counting(callback, *args, **kwargs):
        wakes.append(callback)
        return real(callback, *args, **kwargs)

    monkeypatch.setattr(bridge.loop, "call_soon_threadsafe", counting)

    async def upstream(n):
        for i in range(n):
            await asyncio.sleep(0.005)        # Telegram is slower than the client
            yield i

    with bridge.stream(upstream(40), max_buffered=1) as s:
        room = s._space.set
        assert list(s) == list(range(40))
        assert sum(1 for w in wakes if w == room) < 20, len(wakes)


def test_a_producer_ahead_of_its_consumer_is_woken_for_each_item(bridge):
    """The other way round, the producer waits for room each time and gets it: every item arrives."""
    produced = []
    s = bridge.stream(numbers(50, produced=produced), max_buffered=1)
    got = []
    for _ in range(50):
        bridge.call(asyncio.sleep(0.001))     # the producer fills the buffer and waits
        assert len(produced) - len(got) <= 1 + 1
        got.append(s.next())
    assert got == list(range(50))
    with pytest.raises(StopIteration):
        s.next()
    s.close()


def test_plain_async_iterator_is_accepted(bridge):
    class Countdown:
        def __init__(self):
            self.n = 3

        def __aiter__(self):
            return self

        async def __anext__(self):
            if self.n == 0:
                raise StopAsyncIteration
            self.n -= 1
            return self.n

    assert list(bridge.stream(Countdown())) == [2, 1, 0]


def test_stop_with_work_in_flight_does_not_hang():
    b = Bridge()
    b.start()
    finished = threading.Event()

    async def forever():
        await asyncio.Event().wait()

    pool = ThreadPoolExecutor(4)
    calls = [pool.submit(b.call, forever()) for _ in range(4)]
    s = b.stream(numbers(10**9, finished), max_buffered=2)
    assert s.next() == 0
    b.call(asyncio.sleep(0.01))               # let the calls reach the loop
    b.stop(timeout=LIVENESS)
    assert not b.running and finished.is_set()
    for c in calls:
        with pytest.raises(BridgeClosed):
            c.result(LIVENESS)
    rest = []
    with pytest.raises(BridgeClosed):         # a cut stream must not look complete
        while True:
            rest.append(s.next())
    assert rest == [1, 2][:len(rest)]         # what was buffered before the stop
    pool.shutdown()
