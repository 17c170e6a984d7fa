"""The event loop's primitives, in one place: futures, events, tasks, shielding, time.

The core (edges, sources, the worker loop, the plumber) reaches the loop only through this module,
so that what a run needs from its loop is written down here and nowhere else. It is asyncio's
(and uvloop's, which implements the same loop) today.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = [
    "CancelledError",
    "Event",
    "Future",
    "Queue",
    "QueueEmpty",
    "QueueFull",
    "Task",
    "TaskGroup",
    "call_later",
    "call_soon",
    "call_soon_of_running_loop",
    "clock",
    "current_task",
    "first_of",
    "new_future",
    "run_in_executor",
    "sleep",
    "spawn",
    "timeout",
    "wait_through_cancel",
]

T = TypeVar("T")

CancelledError = asyncio.CancelledError
QueueFull = asyncio.QueueFull
QueueEmpty = asyncio.QueueEmpty
Queue = asyncio.Queue  # a class: subclassed by pipelines.queues
Event = asyncio.Event
Future = asyncio.Future
Task = asyncio.Task
TaskGroup = asyncio.TaskGroup
sleep = asyncio.sleep
timeout = asyncio.timeout


def new_future() -> asyncio.Future[Any]:
    """A future of the running loop."""
    return asyncio.get_running_loop().create_future()


def spawn(coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
    """Start `coro` as a task of the running loop."""
    return asyncio.get_running_loop().create_task(coro, name=name)


def current_task() -> asyncio.Task[Any]:
    """The task running the caller (the core calls it only from inside its own tasks)."""
    task = asyncio.current_task()
    assert task is not None, "called outside a task"
    return task


def clock() -> Callable[[], float]:
    """The running loop's monotonic clock (virtual under pipelines.testing's virtual time)."""
    return asyncio.get_running_loop().time


async def wait_through_cancel(fut: asyncio.Future[Any], on_cancel: Callable[[], object] | None = None) -> None:
    """Wait until `fut` is done; if the caller is cancelled meanwhile, keep waiting, then re-raise.

    `on_cancel` is called at each cancellation of the caller. Used for cleanup that must run to
    its end (teardown hooks, the tasks of a run being cancelled); its own time bound lies in `fut`.
    """
    cancelled = False
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            cancelled = True
            if on_cancel is not None:
                on_cancel()
    if cancelled:
        raise asyncio.CancelledError


async def shield(fut: asyncio.Future[T]) -> T:
    """Wait for `fut` without cancelling it when the caller is cancelled."""
    return await asyncio.shield(fut)


def run_in_executor(executor: Any, call: Callable[[], T]) -> asyncio.Future[T]:
    """Run the plain function `call` in `executor`; the future resolves on the running loop."""
    return asyncio.get_running_loop().run_in_executor(executor, call)


def call_soon(callback: Callable[[], object]) -> None:
    """Call `callback()` when the running loop next turns."""
    asyncio.get_running_loop().call_soon(callback)


def call_soon_of_running_loop() -> Callable[[Callable[[], object]], object]:
    """The running loop's `call_soon`, to keep for calls from one place many times."""
    return asyncio.get_running_loop().call_soon


def call_later(delay: float, callback: Callable[[], object]) -> Callable[[], None]:
    """Call `callback()` in `delay` seconds of the running loop's clock; returns what cancels the call."""
    return asyncio.get_running_loop().call_later(delay, callback).cancel


async def first_of(gets: list[Coroutine[Any, Any, list[T]]]) -> list[T]:
    """Run the cancel-safe `gets` at once; return what they took by the time the first one returns.

    Every get that returned is kept (their lists are joined); the others are cancelled, which for
    a cancel-safe get means they took nothing.
    """
    tasks = [asyncio.ensure_future(get) for get in gets]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    taken: list[T] = []
    for task in tasks:
        if not task.cancelled():
            taken += task.result()
    return taken
