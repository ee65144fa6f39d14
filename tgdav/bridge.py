"""One asyncio loop in its own thread, owning everything async (Telethon); WSGI threads reach it
through call() for one result and stream() for a sequence of items.

Nothing on the loop may block, and no thread may wait on the loop from the loop itself: call(),
stream() and SyncStream.next() refuse to run on the loop thread instead of deadlocking.
Lock order: SyncStream._cond is the only lock; it is never held while touching the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from typing import Any, AsyncIterator, Callable, Coroutine, Generic, TypeVar

T = TypeVar("T")


class BridgeClosed(RuntimeError):
    """The bridge is not running, or stopped while the work was in flight."""


class Bridge:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise BridgeClosed("the bridge is not started")
        return self._loop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the loop thread; returns once the loop runs."""
        if self.running:
            raise RuntimeError("the bridge is already running")
        loop = asyncio.new_event_loop()
        started = threading.Event()
        loop.call_soon(started.set)
        self._thread = threading.Thread(target=self._run, args=(loop,), name="tgdav-loop", daemon=True)
        self._loop = loop
        self._thread.start()
        started.wait()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task, give them up to `timeout` seconds to finish, stop the loop and join."""
        if not self.running:
            return
        self._refuse_loop_thread("stop()")
        try:
            asyncio.run_coroutine_threadsafe(self._cancel_all(timeout), self.loop).result(timeout + 1)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    @staticmethod
    async def _cancel_all(timeout: float) -> None:
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        await asyncio.get_running_loop().shutdown_asyncgens()

    def __enter__(self) -> Bridge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _refuse_loop_thread(self, what: str) -> None:
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError(f"{what} on the bridge's own loop thread would deadlock; await instead")

    def _submit(self, what: str, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        try:
            self._refuse_loop_thread(what)
            if not self.running:
                raise BridgeClosed("the bridge is not running")
            return asyncio.run_coroutine_threadsafe(coro, self.loop)
        except BaseException:
            coro.close()          # never awaited: close it rather than leak a warning
            raise

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None, *,
             on_timeout: Callable[[], BaseException] | None = None) -> T:
        """Run `coro` on the loop and return its result; its exceptions propagate with their type.

        After `timeout` seconds the coroutine is cancelled and TimeoutError raised, or the exception
        `on_timeout()` makes (the caller's words for what did not happen in time).
        """
        future = self._submit("call()", coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            if on_timeout is not None:
                raise on_timeout() from None
            raise TimeoutError(f"no result within {timeout} s; the call was cancelled") from None
        except concurrent.futures.CancelledError:
            raise BridgeClosed("the call was cancelled: the bridge is stopping") from None

    def stream(self, agen: AsyncIterator[T], *, max_buffered: int = 4) -> SyncStream[T]:
        """Run the async iterator `agen` on the loop; consume its items from this (sync) thread.

        At most `max_buffered` items wait in between: the producer pauses when the consumer lags.
        """
        self._refuse_loop_thread("stream()")
        if not self.running:
            raise BridgeClosed("the bridge is not running")
        return SyncStream(self.loop, self._thread, agen, max_buffered)


class SyncStream(Generic[T]):
    """The sync end of Bridge.stream(): iterate, or call next(timeout); close() cancels the producer.

    Items come out in order; the producer's exception re-raises here after the items before it.

    The consumer wakes the loop (call_soon_threadsafe: a write to its self-pipe, one more turn of
    the loop) only when the producer is waiting for room, not for every item it takes from a full
    buffer: a consumer faster than its producer (an HTTP client reading what comes from Telegram)
    costs the loop no wakeup per item.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, loop_thread: threading.Thread,
                 agen: AsyncIterator[T], max_buffered: int) -> None:
        if max_buffered < 1:
            raise ValueError("max_buffered must be >= 1")
        self._loop, self._loop_thread, self._agen, self._max = loop, loop_thread, agen, max_buffered
        self._cond = threading.Condition()
        self._items: deque[T] = deque()
        self._done = False                 # the producer has finished (for whatever reason)
        self._error: BaseException | None = None
        self._closed = False
        self._finished = threading.Event()
        self._space = asyncio.Event()      # loop side: set when the consumer made room
        self._wants_space = False          # the producer waits on _space (under _cond)
        self._task: asyncio.Task[None] | None = None
        loop.call_soon_threadsafe(self._start)

    # ---- loop side ----

    def _start(self) -> None:
        self._task = self._loop.create_task(self._produce())
        self._task.add_done_callback(self._on_done)

    async def _produce(self) -> None:
        try:
            async for item in self._agen:
                while True:
                    with self._cond:
                        if self._closed:
                            return
                        if len(self._items) < self._max:
                            self._items.append(item)
                            self._cond.notify_all()
                            break
                        self._space.clear()
                        self._wants_space = True
                    await self._space.wait()
        finally:
            aclose = getattr(self._agen, "aclose", None)
            if aclose is not None:
                await aclose()

    def _on_done(self, task: asyncio.Task[None]) -> None:
        with self._cond:
            if task.cancelled():
                if not self._closed:
                    self._error = BridgeClosed("the stream was cancelled: the bridge is stopping")
            elif task.exception() is not None:
                self._error = task.exception()
            self._done = True
            self._cond.notify_all()
        self._finished.set()

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # ---- consumer side ----

    def _on_loop(self, callback: Callable[[], None]) -> bool:
        """Schedule callback on the loop; False when the loop is already gone (bridge stopped)."""
        try:
            self._loop.call_soon_threadsafe(callback)
            return True
        except RuntimeError:
            return False

    def next(self, timeout: float | None = None) -> T:
        """The next item; StopIteration at the end or once closed; the producer's exception once
        the items before it are out; TimeoutError after `timeout` seconds without an item (the
        stream stays usable)."""
        if threading.current_thread() is self._loop_thread:
            raise RuntimeError("SyncStream.next() on the bridge's loop thread would deadlock")
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._done or self._closed, timeout):
                raise TimeoutError(f"no item within {timeout} s")
            if self._items:
                item = self._items.popleft()
                wake, self._wants_space = self._wants_space, False
            elif self._error is not None and not self._closed:
                raise self._error              # every time: a failed stream never looks complete
            else:
                raise StopIteration
        if wake:
            self._on_loop(self._space.set)
        return item

    def __iter__(self) -> SyncStream[T]:
        return self

    def __next__(self) -> T:
        return self.next()

    def close(self, wait: float = 2.0) -> None:
        """Cancel the producer (even mid-await upstream), drop buffered items, and wait up to `wait`
        seconds for its cleanup (its finally blocks) to finish. Closing twice is fine."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._items.clear()
            self._cond.notify_all()
        if self._on_loop(self._cancel) and threading.current_thread() is not self._loop_thread:
            self._finished.wait(wait)

    def __enter__(self) -> SyncStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
