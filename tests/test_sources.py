"""Sources: held back by a join they feed, concurrent puts from one source, a source raising."""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from pipelines import PipelineError, Plumber, Processor, node

from .backends import started, trio_twins
from .helpers import add_one, chain, collector, source_of


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
            await anyio.lowlevel.checkpoint()
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
    # every n-th pair meets whatever order slow's workers finish in (a node keeps no order by default)
    assert sorted(pairs) == [(i, i) for i in range(3000)]
    assert max(leads) <= 40  # the fast source's queue, and the pending groups, stay near the bound


async def test_concurrent_puts_from_one_source_keep_distinct_keys() -> None:
    async def source(processor: Processor, output_q: Any) -> None:
        async with anyio.create_task_group() as group:
            for i in range(200):
                group.start_soon(output_q.put, i)

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


async def test_a_source_raising_cancelled_error_fails_the_run() -> None:
    async def source(processor: Processor, output_q: Any) -> None:
        await output_q.put(1)
        raise asyncio.CancelledError

    _, sink = collector()
    message = "source 'inp': the coroutine raised CancelledError though the run was not cancelled"
    with pytest.raises(PipelineError, match=re.escape(message)):
        await Plumber(chain("inp", "out", coros={"inp": source, "out": sink})).run()


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


# -- a source that yields its items (an async generator) to several successors -----------------


def _branches(fast: list[int], slow: list[int], marks: dict[int, anyio.Event]) -> dict[str, Any]:
    """An endless generator source feeding a sink that keeps up (setting `marks[n]` once it has
    n items) and one that falls behind."""

    @node
    async def endless() -> Any:
        for i in itertools.count():  # never gives the loop away: it fills the slow one's input
            yield i

    @node
    async def keep_up(x: int) -> None:
        fast.append(x)
        mark = marks.get(len(fast))
        if mark is not None:
            mark.set()

    @node
    async def fall_behind(x: int) -> None:
        slow.append(x)
        await anyio.lowlevel.checkpoint()  # the source fills this one's input while it gives the loop away

    return {
        "nodes": {
            "source": {"coro": endless},
            "fast": {"coro": keep_up},
            "slow": {"coro": fall_behind, "properties": {"workers": 1}},
        },
        "graph": {"source": ["fast", "slow"], "fast": None, "slow": None},
    }


@pytest.mark.parametrize("queue_size", [1, 3, 100])
async def test_a_stopped_generator_source_gives_every_successor_the_same_whole_items(queue_size: int) -> None:
    fast: list[int] = []
    slow: list[int] = []
    enough = anyio.Event()
    plumber = Plumber(_branches(fast, slow, {300: enough}), queue_size=queue_size)
    running = started(plumber.run)
    await enough.wait()
    await plumber.stop()
    result = await running
    put = result["source"].items_out
    assert put >= 300
    assert fast == slow == list(range(put))  # no item reached one successor and not the other


async def test_a_paused_generator_source_with_several_successors_resumes_without_a_gap() -> None:
    fast: list[int] = []
    slow: list[int] = []
    enough, more = anyio.Event(), anyio.Event()
    plumber = Plumber(_branches(fast, slow, {200: enough, 400: more}), queue_size=5)
    running = started(plumber.run)
    await enough.wait()
    plumber.pause()
    paused_at = plumber.stats()["source"].items_out
    assert paused_at < 400  # bounded: what the source put is in the two inputs of 5 or in hand
    plumber.resume()
    await more.wait()  # the source went on where it was
    await plumber.stop()
    result = await running
    put = result["source"].items_out
    assert put >= 400
    assert fast == slow == list(range(put))


globals().update(trio_twins(globals()))
