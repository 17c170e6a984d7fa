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

from .backends import trio_twins

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
        result = await Plumber(graph).run()
        assert clock.elapsed == 10.0  # the three sleeps overlap: the sink's pool grew to three workers
        assert result["k"].peak_workers == 3
    one_at_a_time = {**graph, "nodes": {**graph["nodes"], "k": {"coro": slow_sink, "properties": {"workers": 1}}}}
    async with virtual_time() as clock:
        await Plumber(one_at_a_time).run()
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

    run = await run_node(hangs, [1, 2], properties={"timeout": 2.5, "on_error": "skip", "workers": 1})
    assert run.stats is not None
    assert run.stats.skipped == 2
    assert virtual_clock.elapsed == 5.0  # one worker: the two timeouts one after the other
    run = await run_node(hangs, [1, 2], properties={"timeout": 2.5, "on_error": "skip"})
    assert run.stats is not None
    assert run.stats.skipped == 2
    assert virtual_clock.elapsed == 7.5  # by default the two waits overlap: 2.5 s more


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


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_virtual_time_waits_for_executor_work_in_real_time() -> None:
    import time

    async with virtual_time() as clock, asyncio.timeout(5):
        value = await asyncio.get_running_loop().run_in_executor(None, lambda: (time.sleep(0.05), "done")[1])
        assert value == "done"
        assert 0.04 < clock.elapsed < 5  # the clock followed the real wait, it did not jump to the deadline
        assert await asyncio.to_thread(sum, [1, 2]) == 3


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_virtual_time_still_talks_over_loopback() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with virtual_time() as clock:
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        assert await asyncio.wait_for(reader.readline(), timeout=10) == b"ping\n"
        assert clock.elapsed < 10
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()


async def test_run_graph_keeps_the_hooks_of_a_fed_source() -> None:
    events: list[str] = []

    async def setup(processor: Processor) -> None:
        events.append("setup")

    async def teardown(processor: Processor) -> None:
        events.append("teardown")

    graph = {
        "nodes": {
            "inp": {"coro": real_source, "args": {"path": "x"}, "properties": {"setup": setup, "teardown": teardown}},
            "out": {"coro": echo},
        },
        "graph": {"inp": ["out"], "out": None},
    }
    run = await run_graph(graph, inputs={"inp": ["a"]})
    assert run["out"] == ["got a"]
    assert events == ["setup", "teardown"]


async def test_run_graph_inputs_for_an_error_node_are_refused() -> None:
    graph = {
        "nodes": {
            "inp": {"coro": "real_source", "args": {"path": "x"}},
            "shout": {"coro": "shout", "properties": {"on_error": "errors"}},
            "out": {"coro": "echo"},
            "errors": {"coro": "echo"},
        },
        "graph": {"inp": ["shout"], "shout": ["out"], "out": None, "errors": None},
    }
    with pytest.raises(PipelineError, match=r"^inputs name 'errors', which is not a source: other nodes feed it$"):
        await run_graph(graph, REGISTRY.__getitem__, inputs={"errors": ["x"]})


async def test_run_graph_takes_any_iterable_or_async_iterable_of_items() -> None:
    async def letters() -> Any:
        for ch in "xy":
            yield ch

    run = await run_graph(GRAPH, REGISTRY.__getitem__, inputs={"inp": (c for c in "ab")})
    assert run == {"out": ["got A", "got B"]}  # a GraphRun compares as the mapping it is
    run = await run_graph(GRAPH, REGISTRY.__getitem__, inputs={"inp": letters()})
    assert run["out"] == ["got X", "got Y"]
    with pytest.raises(TypeError, match=r"^inputs\['inp'\]: items to feed must be a list or another iterable"):
        await run_graph(GRAPH, REGISTRY.__getitem__, inputs={"inp": "ab"})


async def test_run_node_keeps_the_on_error_of_the_node() -> None:
    @node(on_error="skip")
    async def parse(text: str) -> int:
        return int(text)

    run = await run_node(parse, ["1", "x", "3"])
    assert run.outputs == [1, 3]
    assert run.failures == []
    assert_counts(run.stats, skipped=1, failed=0)


def test_the_fixtures_refuse_a_test_on_another_loop_scope(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio(loop_scope="module")
        async def test_on_a_module_loop(virtual_clock):
            pass
        """
    )
    options = ["-o", "asyncio_mode=strict", "-o", "asyncio_default_fixture_loop_scope=function"]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *options, "-W", "error")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the virtual_clock fixture runs on the test's function-scoped event loop, but this test runs on a "
            "module-scoped loop*"
        ]
    )


globals().update(
    trio_twins(
        globals(),
        asyncio_only={
            "test_virtual_time_runs_a_slow_sink_at_once_and_measures_it_exactly": "virtual_time() is asyncio's "
            "(on trio: MockClock, see test_trio_runtime.py)",
            "test_retries_back_off_exactly_in_virtual_time": "the virtual_clock fixture is asyncio's",
            "test_timeouts_fire_exactly_in_virtual_time": "the virtual_clock fixture is asyncio's",
            "test_virtual_time_says_it_needs_asyncios_loop": "about asyncio's loops",
            "test_make_plumber_fixture_cancels_what_runs": "make_plumber is a pytest-asyncio fixture",
            "test_virtual_time_keeps_timers_already_scheduled_in_place": "virtual_time() is asyncio's",
            "test_virtual_time_waits_for_executor_work_in_real_time": "virtual_time() is asyncio's",
            "test_virtual_time_still_talks_over_loopback": "virtual_time() is asyncio's",
        },
    )
)
