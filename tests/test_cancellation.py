"""Cancellation: a coroutine raising CancelledError, a task cancelled from outside, cancel() after the end."""

from __future__ import annotations

import asyncio
import re

import pytest

from pipelines import PipelineError, Plumber, Processor

from .helpers import chain, collector, source_of, until


async def test_a_coroutine_raising_cancelled_error_fails_the_run_clearly() -> None:
    cancelled_future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cancelled_future.cancel()

    async def awaits_a_cancelled_future(processor: Processor, q_elt: tuple[int]) -> None:
        if q_elt[0] == 2:
            await cancelled_future

    graph = chain("inp", "n", coros={"inp": source_of(list(range(5))), "n": awaits_a_cancelled_future})
    plumber = Plumber(graph)
    message = "node 'n': the coroutine raised CancelledError though the run was not cancelled"
    with pytest.raises(PipelineError, match=re.escape(message)) as info:
        await plumber.run()
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert plumber.state == "failed"


async def test_a_coroutine_raising_cancelled_error_can_be_skipped() -> None:
    async def cancels_on_two(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] == 2:
            raise asyncio.CancelledError
        return q_elt[0]

    seen, sink = collector()
    graph = chain(
        "inp",
        "n",
        "out",
        coros={"inp": source_of(list(range(4))), "n": cancels_on_two, "out": sink},
        props={"n": {"on_error": "skip"}},
    )
    result = await Plumber(graph).run()
    assert seen == [(0,), (1,), (3,)]
    assert result["n"].skipped == 1


async def test_a_task_cancelled_from_outside_fails_the_run() -> None:
    entered = asyncio.Event()

    async def stuck(processor: Processor, q_elt: tuple[int]) -> None:
        entered.set()
        await asyncio.Event().wait()

    plumber = Plumber(chain("inp", "s", coros={"inp": source_of([1]), "s": stuck}))
    running = asyncio.ensure_future(plumber.run())
    await entered.wait()
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "pipelines:s"]
    task.cancel()
    with pytest.raises(PipelineError, match=re.escape("task 'pipelines:s' was cancelled from outside the run")):
        await running


async def test_cancel_after_everything_ended_keeps_the_outcome() -> None:
    seen, sink = collector()
    plumber = Plumber(chain("inp", "out", coros={"inp": source_of([1]), "out": sink}))
    plumber.create_pipeline()
    await until(lambda: all(t.done() for t in asyncio.all_tasks() if t.get_name().startswith("pipelines:")))
    plumber.cancel()
    assert (await plumber.join()).state == "completed"
    assert seen == [(1,)]
