"""The event loop's primitives, in one place: futures, events, tasks, shielding, time.

The core (edges, sources, the worker loop, the plumber) reaches the loop only through this module,
so that what a run needs from its loop is written down here and nowhere else.

Two backends: asyncio's (and uvloop's, which implements the same loop), and trio's
(pipelines.trio_runtime, also reached through ``anyio.run(..., backend="trio")``). Each call asks
asyncio for the running loop, as asyncio's own calls do; where there is none, the caller runs under
trio and the call goes to trio's backend, imported the first time a trio run needs it (so
``import pipelines`` never imports trio). The asyncio path does what it did before, no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from types import ModuleType
from typing import Any, NoReturn, TypeVar, cast

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
    "cancel_region",
    "clock",
    "current_task",
    "first_of",
    "hosted",
    "hosting",
    "is_cancellation",
    "library",
    "new_event",
    "new_future",
    "raise_cancelled",
    "require_asyncio",
    "running_loop",
    "run_in_executor",
    "sleep",
    "spawn",
    "task_group",
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
TaskGroup = asyncio.TaskGroup  # the type; `task_group()` makes one


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio (or uvloop) loop running the caller; None when none does (under trio, or no loop).

    asyncio's own `get_running_loop()`, which raises where there is none: it keeps to asyncio's
    public API (its `_get_running_loop` is private).
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_trio: ModuleType | None = None
"""pipelines.trio_runtime, once a trio run has needed it."""

_cancellations: tuple[type[BaseException], ...] = (asyncio.CancelledError,)


def _foreign() -> Any:
    """The trio backend, for a caller with no asyncio loop running; RuntimeError when trio runs none either."""
    global _trio, _cancellations
    trio = sys.modules.get("trio")  # not imported: nothing can be running under trio
    if trio is None or not trio.lowlevel.in_trio_run():
        raise RuntimeError("no running event loop")
    if _trio is not None:
        return _trio
    from . import trio_runtime

    _trio = trio_runtime
    _cancellations = (asyncio.CancelledError, trio.Cancelled)
    return trio_runtime


def library() -> str:
    """'asyncio' (uvloop included) or 'trio': the async library running the caller.

    RuntimeError when none runs. A plumber's run asks once, at its start.
    """
    if running_loop() is not None:
        return "asyncio"
    _foreign()
    return "trio"


def require_asyncio(what: str, instead: str) -> None:
    """Raise AsyncioOnlyError when the caller runs under trio: `what` runs on asyncio alone, `instead`
    says what to do. One check, where such a part is first used in a run."""
    if running_loop() is None and (trio := sys.modules.get("trio")) is not None and trio.lowlevel.in_trio_run():
        from .errors import AsyncioOnlyError

        raise AsyncioOnlyError(f"{what} runs on asyncio only, not under trio; {instead}")


def is_cancellation(exc: BaseException) -> bool:
    """Whether `exc` is the running library's cancellation (asyncio's CancelledError, trio's Cancelled)."""
    return isinstance(exc, _cancellations) or (_trio is not None and _trio.is_cancellation(exc))


def hosting() -> AbstractAsyncContextManager[Any]:
    """What owns the tasks of a run for the time of an ``async with`` block (Plumber.run).

    asyncio needs nothing (its tasks belong to the loop); trio gets a nursery, shielded, so that
    a cancellation from outside reaches the run through the Plumber, which ends every task first.
    """
    if running_loop() is not None:
        return contextlib.nullcontext()
    return cast("AbstractAsyncContextManager[Any]", _foreign().hosting())


def hosted() -> bool:
    """Whether the caller may start tasks: always on asyncio, inside `hosting()` on trio."""
    return running_loop() is not None or _foreign().hosted()


def new_future() -> asyncio.Future[Any]:
    """A future of the running loop."""
    loop = running_loop()
    if loop is None:
        return cast("asyncio.Future[Any]", _foreign().new_future())
    return loop.create_future()


def future_maker() -> Callable[[], asyncio.Future[Any]]:
    """What makes a future of the running loop, to keep where futures are made many times in a run."""
    loop = running_loop()
    if loop is None:
        return cast("Callable[[], asyncio.Future[Any]]", _foreign().new_future)
    return loop.create_future


def new_event() -> asyncio.Event:
    """An event of the running library (asyncio's where none runs): set, clear, is_set, wait."""
    if running_loop() is None and (trio := sys.modules.get("trio")) is not None and trio.lowlevel.in_trio_run():
        return cast("asyncio.Event", _foreign().Event())
    return asyncio.Event()


def task_group() -> asyncio.TaskGroup:
    """A task group of the running library: ``async with``, create_task; failures in an exception group."""
    if running_loop() is None:
        return cast("asyncio.TaskGroup", _foreign().TaskGroup())
    return asyncio.TaskGroup()


def sleep(delay: float) -> Coroutine[Any, Any, None]:
    """Sleep `delay` seconds of the running library's clock."""
    if running_loop() is None:
        return cast("Coroutine[Any, Any, None]", _foreign().sleep(delay))
    return asyncio.sleep(delay)


def timeout(delay: float | None) -> asyncio.Timeout:
    """``async with timeout(s):`` raises TimeoutError when the block takes more than `s` seconds."""
    if running_loop() is None:
        return cast("asyncio.Timeout", _foreign().timeout(delay))
    return asyncio.timeout(delay)


def spawn(coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
    """Start `coro` as a task of the running loop (under trio: of the run hosting the caller)."""
    loop = running_loop()
    if loop is None:
        return cast("asyncio.Task[T]", _foreign().spawn(coro, name))
    return loop.create_task(coro, name=name)


def task_or_none() -> Any:
    """The task running the caller, or None outside any (in an executor's thread, say)."""
    if running_loop() is None:
        try:
            return _foreign().task_or_none()
        except RuntimeError:  # neither asyncio nor trio runs here
            return None
    return asyncio.current_task()


def current_task() -> asyncio.Task[Any]:
    """The task running the caller (the core calls it only from inside its own tasks)."""
    if running_loop() is None:
        return cast("asyncio.Task[Any]", _foreign().current_task())
    task = asyncio.current_task()
    assert task is not None, "called outside a task"
    return task


def cancel_region(coro: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None]:
    """`coro`, run so that cancelling `current_task()` inside it ends it and nothing after it.

    On asyncio that is `coro` itself (a task's cancellation is one exception, which `coro` may
    catch and `uncancel`); on trio, where a cancellation holds for the rest of its scope, `coro`
    gets a scope of its own. A source's coroutine runs so, to be stopped while its node drains.
    """
    if running_loop() is None:
        return cast("Coroutine[Any, Any, None]", _foreign().cancel_region(coro))
    return coro


async def raise_cancelled(task: asyncio.Task[Any]) -> NoReturn:
    """Raise, in `task` (the caller's own), the cancellation a `task.cancel()` would have brought."""
    if running_loop() is None:
        await _foreign().raise_cancelled(task)
    raise asyncio.CancelledError


def clock() -> Callable[[], float]:
    """The running loop's monotonic clock (virtual under pipelines.testing's virtual time).

    For an asyncio loop whose `time` is asyncio's own, `time.monotonic` itself: the same clock, read
    without a Python call in between (a worker reads it twice per piece of work).
    """
    loop = running_loop()
    if loop is None:
        _foreign()
        return cast("Callable[[], float]", sys.modules["trio"].current_time)
    read = loop.time
    if getattr(read, "__func__", None) is asyncio.BaseEventLoop.time:
        return time.monotonic
    return read


async def wait_through_cancel(fut: asyncio.Future[Any], on_cancel: Callable[[], object] | None = None) -> None:
    """Wait until `fut` is done; if the caller is cancelled meanwhile, keep waiting, then re-raise.

    `on_cancel` is called at each cancellation of the caller. Used for cleanup that must run to
    its end (teardown hooks, the tasks of a run being cancelled); its own time bound lies in `fut`.
    """
    if running_loop() is None:
        await _foreign().wait_through_cancel(fut, on_cancel)
        return
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
    if running_loop() is None:
        return cast("T", await _foreign().shield(fut))
    return await asyncio.shield(fut)


def run_in_executor(executor: Any, call: Callable[[], T]) -> asyncio.Future[T]:
    """Run the plain function `call` in `executor`; the future resolves on the running loop."""
    loop = running_loop()
    if loop is None:
        return cast("asyncio.Future[T]", _foreign().run_in_executor(executor, call))
    return loop.run_in_executor(executor, call)


def call_soon(callback: Callable[[], object]) -> None:
    """Call `callback()` when the running loop next turns."""
    loop = running_loop()
    if loop is None:
        _foreign().call_soon(callback)
    else:
        loop.call_soon(callback)


def call_soon_of_running_loop() -> Callable[[Callable[[], object]], object]:
    """The running loop's `call_soon`, to keep for calls from one place many times."""
    loop = running_loop()
    if loop is None:
        return cast("Callable[[Callable[[], object]], object]", _foreign().call_soon_of_running_loop())
    return loop.call_soon


def call_later(delay: float, callback: Callable[[], object]) -> Callable[[], None]:
    """Call `callback()` in `delay` seconds of the running loop's clock; returns what cancels the call."""
    loop = running_loop()
    if loop is None:
        return cast("Callable[[], None]", _foreign().call_later(delay, callback))
    return loop.call_later(delay, callback).cancel


async def first_of(gets: list[Coroutine[Any, Any, list[T]]]) -> list[T]:
    """Run the cancel-safe `gets` at once; return what they took by the time the first one returns.

    Every get that returned is kept (their lists are joined); the others are cancelled, which for
    a cancel-safe get means they took nothing.
    """
    if running_loop() is None:
        return cast("list[T]", await _foreign().first_of(gets))
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
