"""The runtime's primitives on trio: what pipelines.runtime hands the core when the running async
library is trio (directly, or through ``anyio.run(..., backend="trio")``).

Each object keeps the meaning its asyncio counterpart has for the core, so that the core's code is
the same on both libraries:

- `Future`: a one-shot result; awaiting it parks the trio task until it is set (no checkpoint when
  it is set already, as with asyncio). A waiter that is cancelled cancels the future, as asyncio
  does, unless it waits through `shield`.
- `Task`: a handle on a cancel scope. `cancel()` cancels the scope (a trio cancellation is
  level-triggered: every later checkpoint inside the scope raises `trio.Cancelled`);
  `cancelling()`/`uncancel()` count requests as asyncio does. A task either runs in a nursery of
  its own trio task (`spawn`, `TaskGroup.create_task`) or is a region of the caller's
  (`cancel_region`): a source's coroutine is such a region, so stopping a source cancels its
  coroutine and nothing after it.
- The tasks of a run live in a nursery that `hosting()` opens around `Plumber.run()`, shielded, so
  that a cancellation from outside reaches the run through `Plumber.cancel()` (teardown hooks run,
  every task ends) and is then raised again: never swallowed.
- `call_soon` runs callbacks from one task of the run, woken without a system call.

Importing this module imports trio: pipelines.runtime does so only when a trio run asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Executor
from concurrent.futures import Future as ConcurrentFuture
from contextlib import asynccontextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import anyio
import trio

__all__ = [
    "Event",
    "Future",
    "Host",
    "Task",
    "TaskGroup",
    "call_later",
    "call_soon",
    "call_soon_of_running_loop",
    "cancel_region",
    "current_task",
    "first_of",
    "hosted",
    "hosting",
    "is_cancellation",
    "new_future",
    "raise_cancelled",
    "run_in_executor",
    "shield",
    "sleep",
    "spawn",
    "timeout",
    "wait_through_cancel",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

_PENDING, _DONE, _CANCELLED = 0, 1, 2

_current_task: ContextVar[Task | None] = ContextVar("pipelines_trio_task", default=None)
_host: ContextVar[Host | None] = ContextVar("pipelines_trio_host", default=None)


class Future:
    """A result set once, awaited by trio tasks: asyncio.Future's calls, without a loop."""

    __slots__ = ("_callbacks", "_exception", "_result", "_state", "_waiters")

    def __init__(self) -> None:
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._waiters: list[trio.lowlevel.Task] | None = None
        self._callbacks: list[Callable[[Future], object]] | None = None

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> Any:
        if self._state == _CANCELLED:
            raise asyncio.CancelledError
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("Result is not set.")
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        if self._state == _CANCELLED:
            raise asyncio.CancelledError
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("Exception is not set.")
        return self._exception

    def set_result(self, value: Any) -> None:
        if self._state != _PENDING:
            raise asyncio.InvalidStateError(f"invalid state: the future is already {self._describe()}")
        self._result = value
        self._finish(_DONE)

    def set_exception(self, exc: BaseException) -> None:
        if self._state != _PENDING:
            raise asyncio.InvalidStateError(f"invalid state: the future is already {self._describe()}")
        self._exception = exc
        self._finish(_DONE)

    def cancel(self, msg: object = None) -> bool:
        if self._state != _PENDING:
            return False
        self._finish(_CANCELLED)
        return True

    def add_done_callback(self, callback: Callable[[Future], object]) -> None:
        """Call `callback(self)` soon after the future is done (soon from now if it is)."""
        if self._state != _PENDING:
            call_soon(functools.partial(callback, self))
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def _describe(self) -> str:
        return "cancelled" if self._state == _CANCELLED else "done"

    def _finish(self, state: int) -> None:
        self._state = state
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for task in waiters:
                trio.lowlevel.reschedule(task)
        callbacks = self._callbacks
        if callbacks:
            self._callbacks = None
            for callback in callbacks:
                call_soon(functools.partial(callback, self))

    async def wait(self, *, cancel_on_abort: bool) -> None:
        """Park the caller until the future is done; with `cancel_on_abort`, a cancelled caller
        cancels the future (asyncio's `await fut`), else leaves it be (asyncio's shield)."""
        if self._state != _PENDING:
            return
        task = trio.lowlevel.current_task()
        if self._waiters is None:
            self._waiters = [task]
        else:
            self._waiters.append(task)

        def abort(_: Any) -> trio.lowlevel.Abort:
            waiters = self._waiters
            if waiters is not None and task in waiters:
                waiters.remove(task)
            if cancel_on_abort:
                self.cancel()
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def __await__(self) -> Any:
        if self._state == _PENDING:
            yield from self.wait(cancel_on_abort=True).__await__()
        return self.result()


def new_future() -> Future:
    return Future()


def is_cancellation(exc: BaseException) -> bool:
    """Whether `exc` is trio's cancellation, alone or as every leaf of an exception group."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        rest = exc.split(trio.Cancelled)[1]
        return rest is None
    return False


class Task:
    """A cancel scope with asyncio.Task's calls: cancel, cancelling, uncancel, done, result."""

    __slots__ = ("_cancels", "_name", "_outcome", "_scope")

    def __init__(self, name: str | None) -> None:
        self._name = name or "pipelines:task"
        self._scope = trio.CancelScope()
        self._cancels = 0
        self._outcome = Future()

    def get_name(self) -> str:
        return self._name

    def cancel(self, msg: object = None) -> bool:
        if self._outcome.done():
            return False
        self._cancels += 1
        self._scope.cancel()
        return True

    def cancelling(self) -> int:
        return self._cancels

    def uncancel(self) -> int:
        """Count one cancellation request as handled (the scope stays cancelled: see `cancel_region`)."""
        if self._cancels > 0:
            self._cancels -= 1
        return self._cancels

    def done(self) -> bool:
        return self._outcome.done()

    def cancelled(self) -> bool:
        return self._outcome.cancelled()

    def result(self) -> Any:
        return self._outcome.result()

    def exception(self) -> BaseException | None:
        return self._outcome.exception()

    def add_done_callback(self, callback: Callable[[Task], object]) -> None:
        self._outcome.add_done_callback(lambda _: callback(self))

    async def wait(self, *, cancel_on_abort: bool) -> None:
        """Park the caller until the task is done; with `cancel_on_abort`, a cancelled caller cancels
        the task (asyncio's `await task`), else leaves it running (asyncio's shield)."""
        try:
            await self._outcome.wait(cancel_on_abort=False)
        except trio.Cancelled:
            if cancel_on_abort:
                self.cancel()
            raise

    def __await__(self) -> Any:
        if not self._outcome.done():
            yield from self.wait(cancel_on_abort=True).__await__()
        return self._outcome.result()

    async def run(self, coro: Coroutine[Any, Any, Any], keep: bool) -> None:
        """Run `coro` in this task's scope. With `keep` (a task of its own, as asyncio's), its
        exception is kept for whoever looks (`exception()`); else it goes on up (a task group's
        child, a region). A cancellation of an enclosing scope always goes on up."""
        reset = _current_task.set(self)
        try:
            with self._scope:
                result = await coro
        except BaseException as exc:
            if is_cancellation(exc):
                self._outcome.cancel()
                raise  # an enclosing scope's: never kept
            self._outcome.set_exception(exc)
            if not keep:
                raise
        else:
            if self._scope.cancelled_caught:
                self._outcome.cancel()
            else:
                self._outcome.set_result(result)
        finally:
            _current_task.reset(reset)


def task_or_none() -> Task | None:
    return _current_task.get()


def current_task() -> Task:
    task = _current_task.get()
    assert task is not None, "called outside a task of pipelines"
    return task


async def cancel_region(coro: Coroutine[Any, Any, T], name: str | None = None) -> None:
    """Run `coro` as a task of its own for `cancel()` and `current_task()`, inside the caller's."""
    await Task(name).run(coro, keep=False)


async def raise_cancelled(task: Task) -> NoReturn:
    """Cancel `task` (the caller's own) and raise its cancellation here."""
    task.cancel()
    await trio.lowlevel.checkpoint()
    raise AssertionError("a cancelled scope let a checkpoint pass")  # pragma: no cover


class TaskGroup:
    """asyncio.TaskGroup's shape over a trio nursery (its exception groups are trio's, as strict)."""

    def __init__(self) -> None:
        self._manager = trio.open_nursery()
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> TaskGroup:
        self._nursery = await self._manager.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            return await self._manager.__aexit__(exc_type, exc, tb)
        finally:
            self._nursery = None

    def create_task(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> Task:
        task = Task(name)
        if self._nursery is None:
            coro.close()
            raise RuntimeError("TaskGroup is not running")
        self._nursery.start_soon(task.run, coro, False)
        return task


class Host:
    """The nursery of one run's tasks and its call_soon queue (see `hosting`)."""

    def __init__(self) -> None:
        self.nursery: trio.Nursery | None = None
        self._soon: deque[Callable[[], object]] = deque()
        self._idle: trio.lowlevel.Task | None = None

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        # Shielded: a cancellation from outside reaches the run's tasks only through Plumber.cancel().
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._pump)
                task_status.started()

    def close(self) -> None:
        """End what is left of the run's helpers (timers, the callback pump)."""
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    def call_soon(self, callback: Callable[[], object]) -> None:
        self._soon.append(callback)
        idle = self._idle
        if idle is not None:
            self._idle = None
            trio.lowlevel.reschedule(idle)

    async def _pump(self) -> None:
        def abort(_: Any) -> trio.lowlevel.Abort:
            self._idle = None
            return trio.lowlevel.Abort.SUCCEEDED

        soon = self._soon
        while True:
            if not soon:
                self._idle = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(abort)
            else:
                await trio.lowlevel.checkpoint()  # callbacks added while running a batch wait for the next turn
            for _ in range(len(soon)):
                callback = soon.popleft()
                try:
                    callback()
                except Exception:
                    logger.exception("exception in callback %r", callback)


@asynccontextmanager
async def hosting() -> AsyncIterator[Host]:
    """Open the nursery that owns a run's tasks for the time of the block (Plumber.run).

    What the block raises is raised as it is, not in an exception group.
    """
    host = Host()
    error: BaseException | None = None
    reset = _host.set(host)  # before the host's tasks start: a trio task sees its spawner's context
    async with trio.open_nursery() as outer:
        await outer.start(host.serve)
        try:
            yield host
        except BaseException as exc:
            error = exc
        finally:
            _host.reset(reset)
            host.close()
    if error is not None:
        raise error


def hosted() -> bool:
    return _host.get() is not None


def _the_host(what: str) -> Host:
    host = _host.get()
    if host is None:
        raise RuntimeError(
            f"{what} has no owner, which only asyncio allows; under trio, start the graph with "
            "`await plumber.run()` (it owns its tasks)"
        )
    return host


def spawn(coro: Coroutine[Any, Any, Any], name: str | None = None) -> Task:
    try:
        host = _the_host("a task started outside Plumber.run()")
    except RuntimeError:
        coro.close()
        raise
    assert host.nursery is not None
    task = Task(name)
    host.nursery.start_soon(task.run, coro, True, name=name)
    return task


def call_soon(callback: Callable[[], object]) -> None:
    host = _host.get()
    if host is not None:
        host.call_soon(callback)
    else:
        trio.lowlevel.current_trio_token().run_sync_soon(callback)


def call_soon_of_running_loop() -> Callable[[Callable[[], object]], object]:
    host = _host.get()
    return host.call_soon if host is not None else call_soon


def call_later(delay: float, callback: Callable[[], object]) -> Callable[[], None]:
    host = _the_host("a timer set outside Plumber.run()")
    assert host.nursery is not None
    scope = trio.CancelScope()

    async def later() -> None:
        with scope:
            await trio.sleep(delay)
            callback()

    host.nursery.start_soon(later)
    return scope.cancel


async def wait_through_cancel(fut: Future | Task, on_cancel: Callable[[], object] | None = None) -> None:
    try:
        await fut.wait(cancel_on_abort=False)
    except trio.Cancelled:
        if on_cancel is not None:
            on_cancel()
        with trio.CancelScope(shield=True):
            await fut.wait(cancel_on_abort=False)
        raise


async def shield(fut: Future | Task) -> Any:
    await fut.wait(cancel_on_abort=False)
    return fut.result()


async def first_of(gets: list[Coroutine[Any, Any, list[T]]]) -> list[T]:
    results: list[list[T]] = [[] for _ in gets]

    async def first(i: int, get: Coroutine[Any, Any, list[T]], scope: trio.CancelScope) -> None:
        results[i] = await get
        scope.cancel()

    async with trio.open_nursery() as nursery:
        for i, get in enumerate(gets):
            nursery.start_soon(first, i, get, nursery.cancel_scope)
    return [item for taken in results for item in taken]


def run_in_executor(executor: Executor, call: Callable[[], T]) -> Future:
    """Run `call` in `executor` (the node's own pool, so its bound holds); the future settles in this run."""
    fut = Future()
    token = trio.lowlevel.current_trio_token()
    work = executor.submit(call)

    def settle(work: ConcurrentFuture[T]) -> None:
        if fut.done():
            return
        if work.cancelled():
            fut.cancel()
        elif (exc := work.exception()) is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(work.result())

    def settled(work: ConcurrentFuture[T]) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # the run has ended: nobody waits for this result
            token.run_sync_soon(settle, work)

    work.add_done_callback(settled)
    fut.add_done_callback(lambda f: work.cancel() if f.cancelled() else None)
    return fut


class _Timeout:
    """asyncio.timeout's shape: `async with`, TimeoutError when `delay` seconds pass (None: never)."""

    __slots__ = ("_scope",)

    def __init__(self, delay: float | None) -> None:
        self._scope = anyio.fail_after(delay)

    async def __aenter__(self) -> None:
        self._scope.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return self._scope.__exit__(exc_type, exc, tb)


def timeout(delay: float | None) -> _Timeout:
    return _Timeout(delay)


async def sleep(delay: float) -> None:
    await trio.sleep(delay)


class Event:
    """asyncio.Event's calls (set, clear, is_set, wait) for trio tasks."""

    __slots__ = ("_fut",)

    def __init__(self) -> None:
        self._fut = Future()

    def is_set(self) -> bool:
        return self._fut.done()

    def set(self) -> None:
        if not self._fut.done():
            self._fut.set_result(None)

    def clear(self) -> None:
        if self._fut.done():
            self._fut = Future()

    async def wait(self) -> bool:
        await self._fut.wait(cancel_on_abort=False)
        return True
