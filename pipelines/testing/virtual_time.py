"""Virtual time: when every task waits on a timer, the clock jumps to that timer at once.

A test of timeouts, retries with backoff, or a sink that sleeps 10 s per item then runs in
milliseconds and can assert exact durations. Only the time the event loop sees is virtual:
`loop.time()`, and so `asyncio.sleep`, `asyncio.timeout` and `call_later`.

Real work is waited for in real time: while a `run_in_executor` (or `asyncio.to_thread`) call is
outstanding the clock does not jump, it follows the real time that passes. Sockets and pipes
registered with the loop get a real poll of `IO_GRACE` seconds before each jump, enough for a
reply over loopback; a test that waits longer on real I/O should not run on virtual time.
Callbacks that other threads post with `call_soon_threadsafe` are not waited for.

Two ways in: `VirtualTimeLoop()` is an event loop with its own virtual clock (a loop factory for
`asyncio.Runner` or pytest-asyncio); `async with virtual_time() as clock:` puts the running
loop on virtual time for the duration of the block. Both need asyncio's own selector event loop:
uvloop keeps its clock in C.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from ..errors import PipelineError

__all__ = ["IO_GRACE", "VirtualClock", "VirtualTimeLoop", "virtual_time"]

IO_GRACE = 0.001
"""Real seconds the loop polls its sockets and pipes before a jump, when it has any."""


class VirtualClock:
    """The virtual time of one event loop, in seconds. `elapsed` counts from when it was installed."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._start = start
        # run_in_executor calls not finished yet: while there are any, time is real
        self.pending_real_work = 0

    def time(self) -> float:
        return self._now

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the clock started."""
        return self._now - self._start

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` (timers that fall due run on the next loop pass)."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward, got {seconds!r}")
        self._now += seconds


class _JumpingSelector(selectors.BaseSelector):
    """A selector that, where the loop would sleep until its next timer, jumps the clock instead."""

    def __init__(self, real: selectors.BaseSelector, clock: VirtualClock, own_fds: set[int]) -> None:
        self.real = real
        self._clock = clock
        self._own_fds = own_fds  # the loop's self-pipe: not I/O of the code under test

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self.real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            return self.real.select(None)  # no timer at all: only I/O can wake the loop
        if timeout <= 0:
            return self.real.select(0)
        if self._clock.pending_real_work:
            # A thread is working for the loop: wait for it in real time, and let the clock follow.
            started = time.monotonic()
            events = self.real.select(timeout)
            self._clock.advance(min(timeout, time.monotonic() - started))
            return events
        has_io = any(fd not in self._own_fds for fd in self.real.get_map())
        events = self.real.select(IO_GRACE if has_io else 0)
        if not events:
            self._clock.advance(timeout)
        return events

    def close(self) -> None:
        self.real.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self.real.get_key(fileobj)

    def get_map(self) -> Any:
        return self.real.get_map()


def _install(loop: asyncio.AbstractEventLoop, clock: VirtualClock) -> None:
    if not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        raise PipelineError(
            f"virtual time needs asyncio's own selector event loop, not {type(loop).__module__}."
            f"{type(loop).__name__} (uvloop keeps its clock in C)"
        )
    selector = loop._selector  # type: ignore[attr-defined]
    if isinstance(selector, _JumpingSelector):
        raise PipelineError("this event loop already runs on virtual time")
    _shift_timers(loop, clock.time() - loop.time())
    own_fds = {loop._ssock.fileno(), loop._csock.fileno()}  # type: ignore[attr-defined]
    loop._selector = _JumpingSelector(selector, clock, own_fds)  # type: ignore[attr-defined]
    loop.time = clock.time  # type: ignore[method-assign]
    loop.run_in_executor = _counting(loop.run_in_executor, clock)  # type: ignore[method-assign,assignment]


def _counting(run_in_executor: Callable[..., asyncio.Future[Any]], clock: VirtualClock) -> Callable[..., Any]:
    """run_in_executor that keeps the clock from jumping while the call is outstanding."""

    def run(executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        future = run_in_executor(executor, func, *args)
        clock.pending_real_work += 1

        def finished(_: asyncio.Future[Any]) -> None:
            clock.pending_real_work -= 1

        future.add_done_callback(finished)
        return future

    return run


def _uninstall(loop: asyncio.AbstractEventLoop) -> None:
    selector = loop._selector  # type: ignore[attr-defined]
    if isinstance(selector, _JumpingSelector):
        loop._selector = selector.real  # type: ignore[attr-defined]
    virtual_now = loop.time()
    loop.__dict__.pop("time", None)
    loop.__dict__.pop("run_in_executor", None)
    _shift_timers(loop, loop.time() - virtual_now)


def _shift_timers(loop: asyncio.AbstractEventLoop, shift: float) -> None:
    """Move the timers already scheduled onto the other clock, each as far from now as it was.

    A uniform shift keeps the loop's heap of timers in order.
    """
    for handle in loop._scheduled:  # type: ignore[attr-defined]
        handle._when += shift


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on virtual time, starting at 0; its clock is `loop.clock`."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock()
        _install(self, self.clock)


@asynccontextmanager
async def virtual_time() -> AsyncIterator[VirtualClock]:
    """Run the rest of the block on virtual time, on the running loop; yields its clock.

    The clock starts at 0, so that durations come out exact (0.5 + 1.0 is 1.5, which a clock at
    12345.6 could not say); timers already scheduled keep their distance from now. On exit the
    loop goes back to real time, and so do the timers still scheduled.
    """
    loop = asyncio.get_running_loop()
    clock = VirtualClock()
    _install(loop, clock)
    try:
        yield clock
    finally:
        _uninstall(loop)
