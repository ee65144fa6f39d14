"""What every test directory needs, once: waiting for a condition, running a coroutine, and a
fixture's factory of things that must be closed after the test (`closing_factory`).

wait_until (and `until`, its form for a test running on an event loop) is for effects that come after
the answer a test has (a server thread finishing its bookkeeping, a listing catching up with an update,
a pool draining): it polls the condition until it holds, and fails with a message naming it when the
deadline passes. It never stands for elapsed time
a behaviour needs; the deadline only bounds a hang. Everything a test injects is in force when the
injecting call returns (the sandbox's faults included), so no test waits after one.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

T = TypeVar("T")

INTERVAL = 0.02     # seconds between polls


def wait_until(condition: Callable[[], T], timeout: float = 30.0, what: str | Callable[[], Any] | None = None,
               interval: float = INTERVAL) -> T:
    """condition()'s first true value, polled every `interval` seconds; AssertionError when it is still
    false after `timeout` seconds. `what` names the condition in that error (a callable is called then,
    for details such as the pool's stats at that moment)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        _check(deadline, timeout, condition, value, what)
        time.sleep(interval)
    return value


async def until(condition: Callable[[], T], timeout: float = 30.0, what: str | Callable[[], Any] | None = None,
                interval: float = 0.001) -> T:
    """wait_until for a test that runs on an event loop: the loop runs on while it polls."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        _check(deadline, timeout, condition, value, what)
        await asyncio.sleep(interval)
    return value


def _check(deadline: float, timeout: float, condition, value, what) -> None:
    if time.monotonic() > deadline:
        detail = what() if callable(what) else what
        name = detail if detail is not None else getattr(condition, "__qualname__", repr(condition))
        raise AssertionError(f"not true within {timeout:g} s: {name} (last value {value!r})")


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    """Run a coroutine on a fresh event loop, bounded by `timeout` seconds (a hang fails the test)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def closing_factory(make: Callable[..., T], where: Path, prefix: str) -> Iterator[Callable[..., T]]:
    """A fixture's body (`yield from closing_factory(...)`): it yields new(state=None, *args, **kw)
    -> make(state or a fresh directory `where`/<prefix><n>, *args, **kw), and closes everything it
    made, in order, when the test is done. A test passes a state directory again to "restart" on it."""
    made: list = []

    def new(state: Path | None = None, *args, **kw) -> T:
        thing = make(state or where / f"{prefix}{len(made)}", *args, **kw)
        made.append(thing)
        return thing
    try:
        yield new
    finally:
        for thing in made:
            thing.close()
