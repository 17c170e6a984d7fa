"""pipelines.testing: run_graph, run_node, assert_counts, virtual time and the pytest plugin."""

from __future__ import annotations

import asyncio
import re
import textwrap
from typing import Any

import pytest

from pipelines import Failure, GraphError, Plumber, Processor, node
from pipelines.errors import PipelineError
from pipelines.testing import (
    GraphRun,
    NodeRun,
    VirtualClock,
    VirtualTimeLoop,
    assert_counts,
    run_graph,
    run_node,
    virtual_time,
)

pytest_plugins = ["pytester"]


async def shout(processor: Processor, q_elt: tuple[str]) -> str:
    return q_elt[0].upper()


async def real_source(processor: Processor, output_q: Any, path: str) -> None:
    raise AssertionError("run_graph must not call a source it feeds")


async def echo(processor: Processor, q_elt: tuple[str]) -> str:
    return f"got {q_elt[0]}"


GRAPH = {
    "nodes": {
        "inp": {"coro": "real_source", "args": {"path": "/nonexistent"}},
        "shout": {"coro": "shout"},
        "out": {"coro": "echo"},
    },
    "graph": {"inp": ["shout"], "shout": ["out"], "out": None},
}
REGISTRY = {"real_source": real_source, "shout": shout, "echo": echo}


async def test_run_graph_feeds_the_sources_and_collects_the_sinks() -> None:
    run = await run_graph(GRAPH, REGISTRY.__getitem__, inputs={"inp": ["a", "b", "c"]})
    assert isinstance(run, GraphRun)
    assert run["out"] == ["got A", "got B", "got C"]
    assert dict(run) == {"out": ["got A", "got B", "got C"]}
    assert run.state == "completed"
    assert_counts(run, "shout", items_in=3, completed=3, items_out=3)
    assert GRAPH["nodes"]["inp"]["coro"] == "real_source"  # the caller's graph is left as it was


async def test_run_graph_keeps_only_what_sinks_return() -> None:
    @node
    async def evens_only(x: int) -> int | None:
        return x if x % 2 == 0 else None

    graph = {"nodes": {"s": {"coro": evens_only}, "k": {"coro": evens_only}}, "graph": {"s": ["k"], "k": None}}
    run = await run_graph(graph, inputs={"s": [1, 2, 3, 4]})
    assert run["k"] == [2, 4]


async def test_run_graph_raises_the_original_exception() -> None:
    async def boom(processor: Processor, q_elt: tuple[str]) -> str:
        raise KeyError(q_elt[0])

    with pytest.raises(KeyError, match="'b'") as info:
        await run_graph(GRAPH, {**REGISTRY, "shout": boom}.__getitem__, inputs={"inp": ["b"]})
    assert info.value.__notes__ == ["pipelines: node 'shout' failed on item ('b',)"]


async def test_run_graph_refuses_inputs_for_a_node_that_is_not_a_source() -> None:
    with pytest.raises(PipelineError, match=r"^inputs name 'shout', which is not a source: other nodes feed it$"):
        await run_graph(GRAPH, REGISTRY.__getitem__, inputs={"shout": ["x"]})
    with pytest.raises(PipelineError, match=r"^inputs name 'nope', which is not a node of the graph$"):
        await run_graph(GRAPH, REGISTRY.__getitem__, inputs={"nope": ["x"]})
    with pytest.raises(GraphError, match=r"^graph must be a dict"):
        await run_graph([], inputs={})  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="'shout' is not a sink of this graph \\(sinks: out\\)"):
        (await run_graph(GRAPH, REGISTRY.__getitem__, inputs={"inp": []}))["shout"]


async def test_run_node_returns_outputs_and_failures() -> None:
    async def parse(processor: Processor, q_elt: tuple[str], base: int) -> int:
        return int(q_elt[0], base)

    run = await run_node(parse, ["10", "zz", "11"], base=2)
    assert isinstance(run, NodeRun)
    assert run.outputs == [2, 3]
    assert [(f.node, f.item, type(f.exception)) for f in run.failures] == [("parse", ("zz",), ValueError)]
    assert_counts(run.stats, items_in=3, completed=2, failed=1)


async def test_run_node_calls_a_plain_function_with_the_item() -> None:
    @node
    async def split(line: str) -> Any:
        for word in line.split():
            yield word

    run = await run_node(split, ["a b", "", "c"])
    assert run.outputs == ["a", "b", "c"]
    assert run.failures == []
    assert run.stats is not None
    assert (run.stats.completed, run.stats.dropped) == (2, 1)


async def test_run_node_can_let_failures_fail() -> None:
    async def boom(processor: Processor, q_elt: tuple[int]) -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        await run_node(boom, [1], properties={"on_error": "fail"})


async def test_assert_counts_names_each_mismatch() -> None:
    run = await run_node(shout, ["a"])
    assert_counts(run.stats, items_in=1, completed=1)
    with pytest.raises(
        AssertionError, match=re.escape("node 'shout': items_in is 1, expected 2; failed is 0, expected 1")
    ):
        assert_counts(run.stats, items_in=2, failed=1)
    with pytest.raises(TypeError, match="unknown stats field 'items'"):
        assert_counts(run.stats, items=1)
    with pytest.raises(AssertionError, match=re.escape("no stats for node 'x' (nodes: shout)")):
        assert_counts({"shout": run.stats}, "x", items_in=1)


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_virtual_time_runs_a_slow_sink_at_once_and_measures_it_exactly() -> None:
    @node
    async def slow_sink(x: int) -> None:
        await asyncio.sleep(10)

    @node
    async def three() -> Any:
        for i in range(3):
            yield i

    graph = {"nodes": {"s": {"coro": three}, "k": {"coro": slow_sink}}, "graph": {"s": ["k"], "k": None}}
    async with virtual_time() as clock:
        await Plumber(graph).run()
        assert clock.elapsed == 30.0


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_retries_back_off_exactly_in_virtual_time(virtual_clock: VirtualClock) -> None:
    attempts: list[float] = []

    async def flaky(processor: Processor, q_elt: tuple[int]) -> int:
        attempts.append(virtual_clock.elapsed)
        if len(attempts) < 4:
            raise ConnectionError("again")
        return q_elt[0]

    run = await run_node(flaky, [7], properties={"retry": {"max_attempts": 4, "backoff_factor": 0.5}})
    assert run.outputs == [7]
    assert attempts == [0.0, 0.5, 1.5, 3.5]  # waits of 0.5, 1 and 2 s between the attempts


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_timeouts_fire_exactly_in_virtual_time(virtual_clock: VirtualClock) -> None:
    async def hangs(processor: Processor, q_elt: tuple[int]) -> None:
        await asyncio.Event().wait()

    run = await run_node(hangs, [1, 2], properties={"timeout": 2.5, "on_error": "skip"})
    assert run.stats is not None
    assert run.stats.skipped == 2
    assert virtual_clock.elapsed == 5.0


def test_a_virtual_time_loop_for_asyncio_runner() -> None:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, VirtualTimeLoop)
        runner.run(asyncio.sleep(3600))
        assert loop.clock.elapsed == 3600.0


@pytest.mark.asyncio(loop_factories=["uvloop"])
async def test_virtual_time_says_it_needs_asyncios_loop() -> None:
    with pytest.raises(PipelineError, match=r"^virtual time needs asyncio's own selector event loop, not uvloop"):
        async with virtual_time():
            pass


async def test_make_plumber_fixture_cancels_what_runs(make_plumber: Any) -> None:
    @node
    async def endless() -> Any:
        while True:
            yield 0
            await asyncio.sleep(0)

    @node
    async def sink(x: int) -> None:
        pass

    plumber = make_plumber({"nodes": {"e": {"coro": endless}, "k": {"coro": sink}}, "graph": {"e": ["k"], "k": None}})
    plumber.create_pipeline()
    await asyncio.sleep(0)
    assert plumber.state == "running"  # the fixture cancels it at teardown, and checks nothing is left


PLUGIN_TEST = """
import asyncio
import pytest
from pipelines import Plumber, node
from pipelines.testing import run_graph

@node
async def numbers():
    yield 100

@node
async def double(x):
    return 2 * x

GRAPH = {"nodes": {"s": {"coro": numbers}, "d": {"coro": double}}, "graph": {"s": ["d"], "d": None}}

{mark}
async def test_run_graph(make_plumber):
    run = await run_graph(GRAPH, inputs={"s": [1, 2]})
    assert run["d"] == [2, 4]
    plumber = make_plumber(GRAPH)
    plumber.create_pipeline()  # left running: the fixture cancels it

{mark}
async def test_virtual_clock(virtual_clock):
    await asyncio.sleep(100)
    assert virtual_clock.elapsed == 100
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_plugin_works_in_both_pytest_asyncio_modes(pytester: pytest.Pytester, mode: str) -> None:
    mark = "@pytest.mark.asyncio" if mode == "strict" else ""
    pytester.makepyfile(textwrap.dedent(PLUGIN_TEST).replace("{mark}", mark))
    options = ["-o", f"asyncio_mode={mode}", "-o", "asyncio_default_fixture_loop_scope=function"]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *options, "-W", "error")
    result.assert_outcomes(passed=2)


def test_failure_records_are_what_run_node_returns() -> None:
    assert NodeRun(outputs=[]).failures == []
    assert Failure("n", 1, ValueError()).node == "n"


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_virtual_time_keeps_timers_already_scheduled_in_place() -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    loop.call_later(50, lambda: fired.append(loop.time()))
    async with virtual_time() as clock:
        assert clock.time() == 0.0
        await asyncio.sleep(60)
        assert fired == [pytest.approx(50, abs=0.01)]  # the timer kept its distance from now
        assert clock.elapsed == 60.0
        loop.call_later(1000, lambda: None)
    (handle,) = loop._scheduled  # type: ignore[attr-defined]
    assert 990 < handle.when() - loop.time() <= 1000  # back on real time, still 1000 s away
    handle.cancel()
