"""Plumber: running to the end, backpressure, stats, stop, cancel, and the run's lifecycle."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from pipelines import PipelineCancelled, PipelineError, PipelineStateError, Plumber, Processor, RunResult
from pipelines.testing import leftover_tasks

from .backends import Background, trio_twins
from .helpers import add_one, chain, collector, source_of, until


def three_stage(items: list[Any], sink: Any, **props: Any) -> dict[str, Any]:
    return chain(
        "inp", "a", "b", "out", coros={"inp": source_of(items), "a": add_one, "b": add_one, "out": sink}, props=props
    )


async def test_run_returns_the_stats_of_every_node() -> None:
    seen, sink = collector()
    result = await Plumber(three_stage(list(range(1000)), sink)).run()
    assert isinstance(result, RunResult)
    assert result.state == "completed"
    assert seen == [(i + 2,) for i in range(1000)]
    assert list(result.stats) == ["inp", "a", "b", "out"]
    assert result["inp"].items_out == 1000
    for name in ("a", "b"):
        s = result[name]
        assert (s.items_in, s.items_out, s.completed, s.in_flight, s.failed, s.dropped) == (1000, 1000, 1000, 0, 0, 0)
    assert (result["out"].items_in, result["out"].completed, result["out"].items_out) == (1000, 1000, 0)
    assert result["a"].queue_bound == 100
    assert result.elapsed > 0


async def test_create_pipeline_then_join_in_the_original_style() -> None:
    seen, sink = collector()
    plumber = Plumber(three_stage([1, 2, 3], sink))
    plumber.create_pipeline()
    assert plumber.state == "running"
    result = await plumber.join()
    assert plumber.state == "completed"
    assert seen == [(3,), (4,), (5,)]
    assert await plumber.join() == result or (await plumber.join()).state == "completed"


async def test_run_after_create_pipeline_waits_for_the_same_run() -> None:
    seen, sink = collector()
    plumber = Plumber(three_stage([1], sink))
    plumber.create_pipeline()
    assert (await plumber.run()).state == "completed"
    assert seen == [(3,)]


async def test_starting_twice_is_a_clear_error() -> None:
    _, sink = collector()
    plumber = Plumber(three_stage([1], sink))
    await plumber.run()
    with pytest.raises(PipelineStateError, match=re.escape("run() was already called on this Plumber")):
        await plumber.run()
    with pytest.raises(PipelineStateError, match="this Plumber was already started \\(state 'completed'\\)"):
        plumber.create_pipeline()
    assert len(plumber.nodes) == 4


def test_create_pipeline_needs_a_running_loop() -> None:
    _, sink = collector()
    with pytest.raises(PipelineStateError, match=re.escape("create_pipeline() needs a running event loop")):
        Plumber(three_stage([1], sink)).create_pipeline()


async def test_join_and_stop_before_start_are_errors() -> None:
    _, sink = collector()
    plumber = Plumber(three_stage([1], sink))
    with pytest.raises(PipelineStateError, match=re.escape("join() before the run started")):
        await plumber.join()
    with pytest.raises(PipelineStateError, match=re.escape("stop() before the run started")):
        await plumber.stop()


async def test_slow_sink_throttles_the_source() -> None:
    bound = 10
    put = 0
    leads: list[int] = []
    tasks_seen: set[int] = set()

    async def source(processor: Processor, output_q: Any) -> None:
        nonlocal put
        for i in range(2000):
            await output_q.put(i)
            put += 1

    async def slow_sink(processor: Processor, q_elt: tuple[int]) -> None:
        leads.append(put - q_elt[0])
        tasks_seen.add(len(asyncio.all_tasks()))
        for _ in range(3):
            await anyio.lowlevel.checkpoint()

    graph = chain(
        "inp",
        "a",
        "b",
        "out",
        coros={"inp": source, "a": add_one, "b": add_one, "out": slow_sink},
        props={n: {"queue_size": bound} for n in ("a", "b", "out")},
    )
    result = await Plumber(graph).run()
    assert len(leads) == 2000
    # Three edges of 10, plus at most one batch of 10 in the hands of each of the three nodes.
    assert max(leads) <= 6 * bound
    assert max(leads) >= bound  # the source did run ahead, up to the bounds
    # The sink awaits, so its pool grew, up to its cap (its bound); a and b never suspend: one worker each.
    peaks = {name: s.peak_workers for name, s in result.stats.items()}
    assert peaks["a"] == peaks["b"] == 1
    assert 2 <= peaks["out"] <= bound
    # The test's own task, one per node, and one per extra worker: never a task per item.
    assert max(tasks_seen) <= 1 + 4 + (peaks["out"] - 1)
    assert result["inp"].blocked_seconds > 0


async def test_stats_during_the_run_show_queues_and_in_flight() -> None:
    release = anyio.Event()
    entered = anyio.Event()

    async def gated(processor: Processor, q_elt: tuple[int]) -> int:
        entered.set()
        await release.wait()
        return q_elt[0]

    seen, sink = collector()
    graph = chain(
        "inp",
        "g",
        "out",
        coros={"inp": source_of(list(range(50))), "g": gated, "out": sink},
        props={"g": {"queue_size": 5, "workers": 2}},
    )
    plumber = Plumber(graph)
    async with anyio.create_task_group() as group:
        running = Background(group, plumber.run)
        await entered.wait()
        edge = plumber.processor("g").inputs[0]
        await until(lambda: edge.qsize() == 5 and plumber.stats()["g"].in_flight == 2)
        stats = plumber.stats()
        g = stats["g"]
        assert (g.queue_bound, g.completed, g.workers) == (5, 0, 2)
        # Each of the two (blocked) workers is in one item; the items they took and have not started
        # are queued, with those of the full edge.
        assert g.in_flight == g.items_in == 2
        assert g.queue_depth >= 5
        # Every item the source put is queued at g or in the hands of one of its two workers.
        assert stats["inp"].items_out == g.queue_depth + g.in_flight
        release.set()
    result = await running.result()
    assert len(seen) == 50
    assert result["g"].in_flight == 0


async def test_stop_drains_everything_the_sources_put() -> None:
    seen: list[int] = []
    enough = anyio.Event()

    async def endless(processor: Processor, output_q: Any) -> None:
        i = 0
        while True:
            await output_q.put(i)
            i += 1

    async def sink(processor: Processor, q_elt: tuple[int]) -> None:
        seen.append(q_elt[0])
        if len(seen) == 500:
            enough.set()
        await anyio.lowlevel.checkpoint()

    plumber = Plumber(chain("inp", "a", "out", coros={"inp": endless, "a": add_one, "out": sink}))
    async with anyio.create_task_group() as group:
        running = Background(group, plumber.run)
        await enough.wait()
        await plumber.stop()
    result = await running.result()
    assert result.state == "stopped"
    assert plumber.state == "stopped"
    put = result["inp"].items_out
    assert put >= 500
    assert seen == [i + 1 for i in range(put)]  # every item the source put reached the sink, in order
    assert result["a"].items_in == put


async def test_cancel_ends_everything_and_run_raises() -> None:
    entered = anyio.Event()

    async def stuck(processor: Processor, q_elt: tuple[int]) -> None:
        entered.set()
        await anyio.Event().wait()

    plumber = Plumber(chain("inp", "s", coros={"inp": source_of(list(range(1000))), "s": stuck}))
    async with anyio.create_task_group() as group:
        running = Background(group, plumber.run)
        await entered.wait()
        plumber.cancel()
    with pytest.raises(PipelineCancelled, match=r"^the run was cancelled with \d+ items queued or in flight$"):
        await running.result()
    assert plumber.state == "cancelled"


async def test_cancelling_the_caller_of_run_cancels_the_run() -> None:
    entered = anyio.Event()
    torn_down: list[str] = []

    async def stuck(processor: Processor, q_elt: tuple[int]) -> None:
        entered.set()
        await anyio.Event().wait()

    async def teardown(processor: Processor) -> None:
        torn_down.append(processor.name)

    graph = chain("inp", "s", coros={"inp": source_of([1, 2]), "s": stuck}, props={"s": {"teardown": teardown}})
    plumber = Plumber(graph)
    async with anyio.create_task_group() as group:
        running = Background(group, plumber.run)
        await entered.wait()
        running.scope.cancel()
    assert running.scope.cancelled_caught  # run() raised the cancellation: it was not swallowed
    assert plumber.state == "cancelled"
    assert torn_down == ["s"]


async def test_async_with_cancels_what_still_runs_on_exit() -> None:
    started = anyio.Event()

    async def endless(processor: Processor, output_q: Any) -> None:
        started.set()
        while True:
            await output_q.put(0)

    _, sink = collector()
    async with Plumber(chain("inp", "out", coros={"inp": endless, "out": sink})) as plumber:
        plumber.create_pipeline()
        await started.wait()
    assert plumber.state == "cancelled"


async def test_setup_and_teardown_run_once_per_node() -> None:
    events: list[str] = []

    async def setup(processor: Processor) -> None:
        events.append(f"setup {processor.name}")

    async def teardown(processor: Processor) -> None:
        events.append(f"teardown {processor.name}")

    seen, sink = collector()
    hooks = {"setup": setup, "teardown": teardown}
    graph = chain(
        "inp",
        "a",
        "out",
        coros={"inp": source_of([1, 2, 3]), "a": add_one, "out": sink},
        props={"inp": hooks, "a": {**hooks, "workers": 3}, "out": hooks},
    )
    await Plumber(graph).run()
    assert sorted(events) == sorted(f"{what} {n}" for what in ("setup", "teardown") for n in ("inp", "a", "out"))
    for n in ("inp", "a", "out"):
        assert events.index(f"setup {n}") < events.index(f"teardown {n}")
    assert sorted(seen) == [(2,), (3,), (4,)]


async def test_teardown_runs_after_a_failure() -> None:
    events: list[str] = []

    async def boom(processor: Processor, q_elt: tuple[int]) -> None:
        raise ValueError("boom")

    async def teardown(processor: Processor) -> None:
        events.append(processor.name)

    graph = chain(
        "inp",
        "b",
        coros={"inp": source_of([1]), "b": boom},
        props={"inp": {"teardown": teardown}, "b": {"teardown": teardown}},
    )
    with pytest.raises(ValueError, match="boom"):
        await Plumber(graph).run()
    assert sorted(events) == ["b", "inp"]


async def test_a_failing_setup_fails_the_run_and_skips_its_teardown() -> None:
    events: list[str] = []

    async def setup(processor: Processor) -> None:
        raise OSError("no database")

    async def teardown(processor: Processor) -> None:
        events.append(processor.name)

    _, sink = collector()
    graph = chain(
        "inp", "out", coros={"inp": source_of([1]), "out": sink}, props={"out": {"setup": setup, "teardown": teardown}}
    )
    with pytest.raises(OSError, match="no database") as info:
        await Plumber(graph).run()
    assert info.value.__notes__ == ["pipelines: setup of node 'out' failed"]
    assert events == []


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
@pytest.mark.parametrize("where", ["setup", "teardown"])
async def test_a_base_exception_from_setup_or_teardown_fails_the_run_like_any_error(
    where: str, raised: BaseException
) -> None:
    """As from the node's function: the run fails, with every task ended, and the loop goes on."""
    done: list[str] = []

    async def hook(processor: Processor) -> None:
        raise raised

    async def other_teardown(processor: Processor) -> None:
        done.append(processor.name)

    _, sink = collector()
    props = {"out": {where: hook}, "mid": {"teardown": other_teardown}}
    graph = chain("inp", "mid", "out", coros={"inp": source_of([1, 2]), "mid": add_one, "out": sink}, props=props)
    plumber = Plumber(graph)
    with pytest.raises(PipelineError) as info:
        await plumber.run()
    name = type(raised).__name__
    assert str(info.value) == f"node 'out': the coroutine raised {name}({raised})"
    assert info.value.__notes__ == [f"pipelines: {where} of node 'out' failed"]
    assert isinstance(info.value.__cause__, type(raised))
    assert plumber.state == "failed"
    assert done == ["mid"]  # every other node's teardown still ran
    assert leftover_tasks() == []


async def test_ordered_workers_keep_input_order() -> None:
    async def jitter(processor: Processor, q_elt: tuple[int]) -> int:
        for _ in range((q_elt[0] * 7919) % 5):
            await anyio.lowlevel.checkpoint()
        return q_elt[0]

    seen, sink = collector()
    graph = chain(
        "inp",
        "j",
        "out",
        coros={"inp": source_of(list(range(500))), "j": jitter, "out": sink},
        props={"j": {"workers": 4, "ordered": True, "queue_size": 8}},
    )
    await Plumber(graph).run()
    assert seen == [(i,) for i in range(500)]


async def test_unordered_workers_run_concurrently() -> None:
    running = 0
    peak = 0
    gate = anyio.Event()

    async def slow(processor: Processor, q_elt: tuple[int]) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 4:
            gate.set()
        await gate.wait()
        running -= 1
        return q_elt[0]

    seen, sink = collector()
    graph = chain(
        "inp",
        "s",
        "out",
        coros={"inp": source_of(list(range(40))), "s": slow, "out": sink},
        props={"s": {"workers": 4}},
    )
    await Plumber(graph).run()
    assert peak == 4
    assert sorted(seen) == [(i,) for i in range(40)]


async def test_cancelling_a_join_leaves_the_run_going() -> None:
    release = anyio.Event()

    async def gated(processor: Processor, q_elt: tuple[int]) -> int:
        await release.wait()
        return q_elt[0]

    seen, sink = collector()
    plumber = Plumber(chain("inp", "g", "out", coros={"inp": source_of([1, 2]), "g": gated, "out": sink}))
    plumber.create_pipeline()
    waiter = asyncio.ensure_future(plumber.join())
    await until(lambda: plumber.stats()["g"].in_flight == 2)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert plumber.state == "running"
    release.set()
    result = await plumber.join()
    assert result.state == "completed"
    assert seen == [(1,), (2,)]


globals().update(
    trio_twins(
        globals(),
        asyncio_only={
            "test_create_pipeline_then_join_in_the_original_style": "create_pipeline() is asyncio-only",
            "test_run_after_create_pipeline_waits_for_the_same_run": "create_pipeline() is asyncio-only",
            "test_async_with_cancels_what_still_runs_on_exit": "create_pipeline() is asyncio-only",
            "test_cancelling_a_join_leaves_the_run_going": "create_pipeline() and join() are asyncio-only",
            "test_slow_sink_throttles_the_source": "it counts asyncio's tasks",
        },
    )
)
