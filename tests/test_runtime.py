"""pipelines.runtime: the loop primitives the core uses, and waiting through a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pipelines import runtime
from pipelines.runtime import clock, current_task, new_future, shield, spawn, wait_through_cancel
from pipelines.testing import virtual_time


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CancelledError", asyncio.CancelledError),
        ("Event", asyncio.Event),
        ("Future", asyncio.Future),
        ("QueueFull", asyncio.QueueFull),
        ("Task", asyncio.Task),
        ("TaskGroup", asyncio.TaskGroup),
    ],
)
def test_the_aliases_are_asyncios(name: str, expected: Any) -> None:
    assert getattr(runtime, name) is expected


async def test_on_asyncio_the_factories_make_asyncios_own_objects() -> None:
    assert runtime.library() == "asyncio"
    assert type(runtime.new_event()) is asyncio.Event
    assert type(runtime.task_group()) is asyncio.TaskGroup
    assert type(runtime.timeout(1)) is asyncio.Timeout
    nap = runtime.sleep(0)
    assert nap.cr_code is asyncio.sleep.__code__  # type: ignore[attr-defined]
    await nap
    assert runtime.hosted()
    coro = asyncio.sleep(0)
    assert runtime.cancel_region(coro) is coro  # no frame added on asyncio
    await coro


def test_without_a_running_loop_the_library_is_unknown_and_events_are_asyncios() -> None:
    with pytest.raises(RuntimeError, match=r"^no running event loop$"):
        runtime.library()
    assert type(runtime.new_event()) is asyncio.Event  # made before the loop runs, as asyncio allows


async def test_new_future_is_a_pending_future_of_the_running_loop() -> None:
    fut = new_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is asyncio.get_running_loop()
    assert not fut.done()
    assert new_future() is not fut
    fut.set_result("x")
    assert await fut == "x"


def test_new_future_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match=r"^no running event loop$"):
        new_future()


async def test_spawn_starts_a_named_task_of_the_running_loop() -> None:
    async def double(x: int) -> int:
        return 2 * x

    task = spawn(double(21), name="pipelines:double")
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is asyncio.get_running_loop()
    assert task.get_name() == "pipelines:double"
    assert await task == 42


async def test_spawn_without_a_name_leaves_the_default_name() -> None:
    async def seven() -> int:
        return 7

    task = spawn(seven())
    assert task.get_name().startswith("Task-")
    assert await task == 7


async def test_current_task_is_the_task_running_the_caller() -> None:
    async def me() -> asyncio.Task[Any]:
        return current_task()

    task = spawn(me())
    assert await task is task
    assert current_task() is asyncio.current_task()


async def test_clock_reads_the_running_loops_clock() -> None:
    loop = asyncio.get_running_loop()
    now = clock()
    before = loop.time()
    read = now()
    after = loop.time()
    assert before <= read <= after


@pytest.mark.asyncio(loop_factories=["asyncio"])  # virtual time needs asyncio's own loop
async def test_clock_follows_the_loops_virtual_time() -> None:
    async with virtual_time() as virtual:
        now = clock()
        start = now()
        await asyncio.sleep(3600)
        assert (now() - start, virtual.elapsed) == (3600.0, 3600.0)


def cancel_counter() -> tuple[list[asyncio.Future[int]], Callable[[], None]]:
    """An on_cancel callback resolving, at its n-th call, the n-th of the returned futures."""
    calls: list[asyncio.Future[int]] = [new_future() for _ in range(3)]
    count = 0

    def on_cancel() -> None:
        nonlocal count
        calls[count].set_result(count + 1)
        count += 1

    return calls, on_cancel


async def test_wait_through_cancel_returns_when_the_future_is_done_and_the_caller_not_cancelled() -> None:
    fut = new_future()
    calls, on_cancel = cancel_counter()
    asyncio.get_running_loop().call_soon(fut.set_result, "value")
    await wait_through_cancel(fut, on_cancel)
    assert fut.result() == "value"
    assert [c.done() for c in calls] == [False, False, False]


async def test_wait_through_cancel_of_a_done_future_returns_at_once() -> None:
    fut = new_future()
    fut.set_result(1)
    coro = wait_through_cancel(fut)
    with pytest.raises(StopIteration):
        coro.send(None)


async def test_wait_through_cancel_passes_on_the_futures_exception() -> None:
    fut = new_future()
    asyncio.get_running_loop().call_soon(fut.set_exception, LookupError("gone"))
    with pytest.raises(LookupError, match=r"^gone$"):
        await wait_through_cancel(fut)


async def test_wait_through_cancel_keeps_waiting_while_cancelled_then_reraises() -> None:
    fut = new_future()
    calls, on_cancel = cancel_counter()
    entered = asyncio.Event()
    finished: list[str] = []

    async def caller() -> None:
        entered.set()
        await wait_through_cancel(fut, on_cancel)
        finished.append("after wait")  # never: the cancellation is re-raised

    task = spawn(caller())
    await entered.wait()
    task.cancel()
    assert await calls[0] == 1  # on_cancel ran, and the caller went back to waiting
    assert (task.done(), fut.done()) == (False, False)
    task.cancel()
    assert await calls[1] == 2
    assert (task.done(), fut.done()) == (False, False)
    fut.set_result("cleanup done")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert finished == []
    assert fut.result() == "cleanup done"
    assert calls[2].done() is False  # called once per cancellation, not once more at the end


async def test_wait_through_cancel_without_on_cancel_still_waits_then_reraises() -> None:
    fut = new_future()
    entered = asyncio.Event()
    resumed = new_future()

    async def caller() -> None:
        entered.set()
        try:
            await wait_through_cancel(fut)
        finally:
            resumed.set_result(fut.done())

    task = spawn(caller())
    await entered.wait()
    task.cancel()
    # Callbacks run in the order they were scheduled: the caller receives its cancellation first,
    # while the future is still pending, and the future is resolved after that.
    asyncio.get_running_loop().call_soon(fut.set_result, None)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert resumed.result() is True  # the caller left only once the future was done


async def test_shield_returns_the_result_and_keeps_the_future_from_the_callers_cancellation() -> None:
    fut = new_future()
    entered = asyncio.Event()

    async def caller() -> Any:
        entered.set()
        return await shield(fut)

    task = spawn(caller())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not fut.done()
    fut.set_result(5)
    assert await shield(fut) == 5
