"""Bugs found in review, each with the test that would have caught it."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from pipelines import PipelineError, Plumber, Processor

from .helpers import add_one, chain, collector, source_of, until


async def test_a_generator_node_is_held_back_by_the_bounded_queues() -> None:
    produced = 0
    leads: list[int] = []

    async def flood(processor: Processor, q_elt: tuple[int]) -> Any:
        nonlocal produced
        for i in range(5000):
            produced += 1
            yield i

    async def slow_sink(processor: Processor, q_elt: tuple[int]) -> None:
        leads.append(produced - len(leads))
        await asyncio.sleep(0)

    graph = chain(
        "inp",
        "flood",
        "out",
        coros={"inp": source_of([0]), "flood": flood, "out": slow_sink},
        props={"out": {"queue_size": 10}},
    )
    result = await Plumber(graph).run()
    assert len(leads) == 5000
    # one chunk of 10 in the generator's hands, 10 in the queue, a batch of 10 in the sink's
    assert max(leads) <= 30
    assert (result["flood"].items_in, result["flood"].items_out, result["flood"].completed) == (1, 5000, 1)


async def test_a_generator_node_retries_without_sending_twice() -> None:
    attempts = 0

    async def flaky(processor: Processor, q_elt: tuple[int]) -> Any:
        nonlocal attempts
        attempts += 1
        for i in range(25):
            if attempts == 1 and i == 17:
                raise ConnectionError("reset")
            yield i

    seen, sink = collector()
    graph = chain(
        "inp",
        "g",
        "out",
        coros={"inp": source_of([0]), "g": flaky, "out": sink},
        props={"g": {"retry": {"max_attempts": 2, "backoff_factor": 0}}, "out": {"queue_size": 5}},
    )
    result = await Plumber(graph).run()
    assert seen == [(i,) for i in range(25)]
    assert (attempts, result["g"].retried, result["g"].items_out) == (2, 1, 25)


async def test_a_join_of_independent_sources_holds_back_the_fast_one() -> None:
    leads: list[int] = []
    put = 0

    async def fast(processor: Processor, output_q: Any) -> None:
        nonlocal put
        for i in range(3000):
            await output_q.put(i)
            put += 1

    async def slow(processor: Processor, q_elt: tuple[int]) -> int:
        for _ in range(3):
            await asyncio.sleep(0)
        return q_elt[0]

    pairs: list[tuple[int, int]] = []

    async def pair(processor: Processor, q_elt: tuple[int, int]) -> None:
        pairs.append(q_elt)
        leads.append(put - len(pairs))

    bound = {"queue_size": 10}
    graph = {
        "nodes": {
            "fast": {"coro": fast},
            "other": {"coro": source_of(list(range(3000)))},
            "slow": {"coro": slow, "properties": bound},
            "zip": {"coro": pair, "properties": bound},
        },
        "graph": {"fast": ["zip"], "other": ["slow"], "slow": ["zip"], "zip": None},
    }
    await Plumber(graph).run()
    assert pairs == [(i, i) for i in range(3000)]
    assert max(leads) <= 40  # the fast source's queue, and the pending groups, stay near the bound


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


async def test_a_source_raising_cancelled_error_fails_the_run() -> None:
    async def source(processor: Processor, output_q: Any) -> None:
        await output_q.put(1)
        raise asyncio.CancelledError

    _, sink = collector()
    message = "source 'inp': the coroutine raised CancelledError though the run was not cancelled"
    with pytest.raises(PipelineError, match=re.escape(message)):
        await Plumber(chain("inp", "out", coros={"inp": source, "out": sink})).run()


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


async def test_concurrent_puts_from_one_source_keep_distinct_keys() -> None:
    async def source(processor: Processor, output_q: Any) -> None:
        await asyncio.gather(*(output_q.put(i) for i in range(200)))

    seen, sink = collector()
    graph = {
        "nodes": {
            "s": {"coro": source},
            "a": {"coro": add_one, "properties": {"queue_size": 2}},
            "j": {"coro": sink, "properties": {"queue_size": 2}},
        },
        "graph": {"s": ["a", "j"], "a": ["j"], "j": None},
    }
    await Plumber(graph).run()
    assert sorted(seen) == [(i, i + 1) for i in range(200)]


async def test_cancel_after_everything_ended_keeps_the_outcome() -> None:
    seen, sink = collector()
    plumber = Plumber(chain("inp", "out", coros={"inp": source_of([1]), "out": sink}))
    plumber.create_pipeline()
    await until(lambda: all(t.done() for t in asyncio.all_tasks() if t.get_name().startswith("pipelines:")))
    plumber.cancel()
    assert (await plumber.join()).state == "completed"
    assert seen == [(1,)]


async def test_a_source_raising_another_base_exception_fails_the_run_in_the_same_way() -> None:
    class Stop(BaseException):
        pass

    async def source(processor: Processor, output_q: Any) -> None:
        await output_q.put(1)
        raise Stop("halt")

    _, sink = collector()
    with pytest.raises(PipelineError, match=re.escape("source 'inp': the coroutine raised Stop(halt)")) as info:
        await Plumber(chain("inp", "out", coros={"inp": source, "out": sink})).run()
    assert isinstance(info.value.__cause__, Stop)
    assert info.value.__notes__ == ["pipelines: source 'inp' failed after putting 1 items"]
