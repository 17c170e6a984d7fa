"""Fusion (`Plumber(fuse=True)`, pipelines.fusion): which nodes fuse, and that a fused run gives what
the same run gives unfused: the same outputs in the same order, the same counts at every node, the
same failure; pause, stop and results kept as without fusion."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import PipelineCancelled, PipelineStateError, Plumber, Processor, node

from .backends import BACKENDS, run_on, started, trio_twins
from .helpers import until, yield_now

COUNTS = ("items_in", "items_out", "completed", "dropped", "skipped", "failed")


@node
async def numbers(count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i


async def count_up(processor: Processor, output_q: Any, count: int) -> None:
    for i in range(count):
        await output_q.put(i)


@node
async def step(x: int, add: int, drop: int, fail: int) -> int | None:
    """x + add; None (a drop) where x % 7 == drop; raises where x % 5 == fail (-1: never)."""
    if x % 7 == drop:
        return None
    if x % 5 == fail:
        raise ValueError(f"bad {x}")
    return x + add


async def step_q(processor: Processor, q_elt: tuple[int], add: int) -> int:
    return q_elt[0] + add


async def step_original(processor: Processor, q_elt: tuple[int], add: int, drop: int, fail: int) -> int | None:
    """`step` in the original style."""
    (x,) = q_elt
    if x % 7 == drop:
        return None
    if x % 5 == fail:
        raise ValueError(f"bad {x}")
    return x + add


@node
async def into(x: int, seen: list[int]) -> int:
    seen.append(x)
    return x * 10


def line(length: int, *, source: Any = numbers, count: int = 50, **props: Any) -> dict[str, Any]:
    names = ["src", *(f"s{i}" for i in range(length)), "sink"]
    nodes: dict[str, Any] = {"src": {"coro": source, "args": {"count": count}}}
    for i in range(length):
        nodes[f"s{i}"] = {"coro": step, "args": {"add": i + 1, "drop": -1, "fail": -1}}
    nodes["sink"] = {"coro": into, "args": {"seen": []}}
    for name, extra in props.items():
        nodes[name]["properties"] = extra
    graph = {a: [b] for a, b in itertools.pairwise(names)} | {"sink": None}
    return {"nodes": nodes, "graph": graph}


def counts(result: Any) -> dict[str, tuple[int, ...]]:
    return {name: tuple(getattr(stats, field) for field in COUNTS) for name, stats in result.stats.items()}


async def test_a_linear_run_fuses_from_its_source_to_its_sink() -> None:
    graph = line(3)
    plumber = Plumber(graph, fuse=True, collect_outputs=True)
    result = await plumber.run()
    assert plumber.fused == (("src", "s0", "s1", "s2", "sink"),)
    assert graph["nodes"]["sink"]["args"]["seen"] == [i + 6 for i in range(50)]
    assert result.outputs["sink"] == [(i + 6) * 10 for i in range(50)]
    assert counts(result) == {
        "src": (0, 50, 0, 0, 0, 0),
        "s0": (50, 50, 50, 0, 0, 0),
        "s1": (50, 50, 50, 0, 0, 0),
        "s2": (50, 50, 50, 0, 0, 0),
        "sink": (50, 0, 50, 0, 0, 0),
    }
    assert result.stats["s1"].queue_depth == 0
    assert result.stats["s1"].in_flight == 0


async def test_without_fuse_nothing_fuses() -> None:
    plumber = Plumber(line(3))
    await plumber.run()
    assert plumber.fused == ()


@pytest.mark.parametrize(
    ("props", "fused"),
    [
        ({"s1": {"workers": 2}}, (("src", "s0"), ("s2", "sink"))),  # a node asked for concurrency leads its own
        ({"s1": {"setup": "no_setup"}}, (("src", "s0"), ("s1", "s2", "sink"))),  # it leads: its setup runs first
        ({"s0": {"retry": {"max_attempts": 2}}, "s2": {"timeout": 5.0}}, (("src", "s0", "s1", "s2", "sink"),)),
    ],
    ids=["workers", "setup", "retry-and-timeout"],
)
async def test_what_a_node_asks_for_decides_where_segments_end(props: dict[str, Any], fused: tuple[Any, ...]) -> None:
    graph = line(3, **props)
    plumber = Plumber(graph, fuse=True, coro_map=_resolve)
    result = await plumber.run()
    assert plumber.fused == fused
    assert graph["nodes"]["sink"]["args"]["seen"] == [i + 6 for i in range(50)]
    assert result.stats["sink"].completed == 50


async def no_setup(processor: Processor) -> None:
    return None


def _resolve(value: Any) -> Any:
    return no_setup if value == "no_setup" else value


async def test_a_run_whose_items_need_keys_fuses_nothing() -> None:
    graph = line(2)
    graph["nodes"]["other"] = {"coro": step, "args": {"add": 0, "drop": -1, "fail": -1}}
    graph["graph"]["src"] = ["s0", "other"]
    graph["graph"]["other"] = ["sink"]  # the sink has two producers: the run needs keys
    graph["nodes"]["sink"]["properties"] = {"aggregate_inputs": False}
    plumber = Plumber(graph, fuse=True)
    await plumber.run()
    assert plumber.keys_needed == "node 'sink' has 2 producers"
    assert plumber.fused == ()


async def test_a_fan_out_fuses_each_branch_from_its_first_node() -> None:
    seen_a: list[int] = []
    seen_b: list[int] = []
    nodes = {
        "src": {"coro": numbers, "args": {"count": 30}},
        "a0": {"coro": step, "args": {"add": 1, "drop": 3, "fail": -1}},
        "a1": {"coro": step, "args": {"add": 2, "drop": -1, "fail": -1}},
        "a_sink": {"coro": into, "args": {"seen": seen_a}},
        "b0": {"coro": step, "args": {"add": 100, "drop": -1, "fail": -1}},
        "b_sink": {"coro": into, "args": {"seen": seen_b}},
    }
    graph = {"src": ["a0", "b0"], "a0": ["a1"], "a1": ["a_sink"], "a_sink": None, "b0": ["b_sink"], "b_sink": None}
    plumber = Plumber({"nodes": nodes, "graph": graph}, fuse=True)
    result = await plumber.run()
    assert plumber.fused == (("a0", "a1", "a_sink"), ("b0", "b_sink"))
    assert seen_a == [i + 3 for i in range(30) if i % 7 != 3]
    assert seen_b == [i + 100 for i in range(30)]
    assert counts(result)["a0"] == (30, 26, 26, 4, 0, 0)
    assert counts(result)["a1"] == (26, 26, 26, 0, 0, 0)


async def test_the_original_style_fuses_too() -> None:
    nodes = {
        "src": {"coro": count_up, "args": {"count": 20}},
        "a": {"coro": step_q, "args": {"add": 1}},
        "b": {"coro": step_q, "args": {"add": 2}},
        "sink": {"coro": into, "args": {"seen": []}},
    }
    graph = {"src": ["a"], "a": ["b"], "b": ["sink"], "sink": None}
    plumber = Plumber({"nodes": nodes, "graph": graph}, fuse=True)
    result = await plumber.run()
    assert plumber.fused == (("src", "a", "b", "sink"),)
    assert nodes["sink"]["args"]["seen"] == [i + 3 for i in range(20)]
    assert counts(result)["b"] == (20, 20, 20, 0, 0, 0)


@pytest.mark.parametrize("source", [numbers, count_up], ids=["yields", "puts"])
async def test_a_failure_in_a_fused_node_fails_the_run_naming_that_node(source: Any) -> None:
    graph = line(3, source=source)
    graph["nodes"]["s1"]["args"]["fail"] = 4  # s1 gets x + 1: fails on the item 3
    with pytest.raises(ValueError, match="bad 4") as caught:
        await Plumber(graph, fuse=True).run()
    assert any("node 's1' failed on item 4" in note for note in caught.value.__notes__)
    assert graph["nodes"]["sink"]["args"]["seen"] == [6, 7, 8]


# A class of shapes: a source feeding branches of plain steps, each ending in its own sink; every
# step may drop some items and fail on others (skipped). Fused and unfused give the same.

branch = st.lists(
    st.tuples(st.integers(0, 9), st.integers(-1, 6), st.integers(-1, 4), st.booleans()),
    min_size=0,
    max_size=4,
)


async def into_original(processor: Processor, q_elt: tuple[int], seen: list[int]) -> int:
    """`into` in the original style."""
    seen.append(q_elt[0])
    return q_elt[0] * 10


def shape(
    branches: list[list[tuple[int, int, int, bool]]], style: str, count: int, sink_style: str = "item"
) -> dict[str, Any]:
    source = numbers if style == "item" else count_up
    nodes: dict[str, Any] = {"src": {"coro": source, "args": {"count": count}}}
    graph: dict[str, Any] = {"src": []}
    for b, steps in enumerate(branches):
        names = [*(f"b{b}s{i}" for i in range(len(steps))), f"b{b}sink"]
        graph["src"].append(names[0])
        for name, (add, drop, fail, original) in zip(names, steps, strict=False):
            nodes[name] = {  # a failing step skips the item ('fail' is tested above); either style
                "coro": step_original if original else step,
                "args": {"add": add, "drop": drop, "fail": fail},
                "properties": {"on_error": "skip"},
            }
        nodes[names[-1]] = {"coro": into if sink_style == "item" else into_original, "args": {"seen": []}}
        for a, after in itertools.pairwise(names):
            graph[a] = [after]
        graph[names[-1]] = None
    return {"nodes": nodes, "graph": graph}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(branch, min_size=1, max_size=3),
    st.sampled_from(["item", "processor"]),
    st.integers(0, 260),
    st.sampled_from(["item", "processor"]),
    st.booleans(),
)
def test_fused_and_unfused_runs_give_the_same_outputs_and_counts(
    branches: list[list[tuple[int, int, int, bool]]], style: str, count: int, sink_style: str, kept: bool
) -> None:
    """Sources, steps and sinks in either style, the sinks' results kept or not: each way a fused
    source runs its items (pipelines.sources.FusedSourceOutput)."""

    async def both() -> None:
        outcomes = []
        for fuse in (False, True):
            graph = shape(branches, style, count, sink_style)
            plumber = Plumber(graph, fuse=fuse, collect_outputs=kept)
            result = await plumber.run()
            seen = {name: spec["args"]["seen"] for name, spec in graph["nodes"].items() if "seen" in spec["args"]}
            outcomes.append((seen, result.outputs, counts(result)))
            if fuse:  # one branch: all of it from the source; else each branch of two nodes or more
                fused = {name for segment in plumber.fused for name in segment}
                many = [
                    name
                    for b, steps in enumerate(branches)
                    if steps
                    for name in graph["nodes"]
                    if name.startswith(f"b{b}s")
                ]
                assert fused == (set(graph["nodes"]) if len(branches) == 1 else set(many))
        assert outcomes[0] == outcomes[1]

    asyncio.run(both())


async def test_pausing_a_fused_node_holds_its_segment_and_resume_loses_nothing() -> None:
    drawn: list[int] = []

    @node
    async def counted(count: int) -> AsyncIterator[int]:
        for i in range(count):
            drawn.append(i)
            yield i

    graph = line(2, source=counted, count=30)
    seen = graph["nodes"]["sink"]["args"]["seen"]
    plumber = Plumber(graph, fuse=True)
    plumber.pause("s1")
    running = started(plumber.run)
    await until(lambda: drawn == [0])
    await yield_now(50)  # the source holds its first item at the valve: nothing goes through, nothing more is drawn
    assert drawn == [0]
    assert seen == []
    assert plumber.paused_nodes == ("s1",)
    plumber.resume("s1")
    result = await running
    assert seen == [i + 3 for i in range(30)]
    assert result.stats["s1"].completed == 30


async def test_stop_lets_the_item_inside_a_segment_through() -> None:
    inside = anyio.Event()
    release = anyio.Event()

    @node
    async def slow(x: int) -> int:
        if x == 5:
            inside.set()
            await release.wait()
        return x

    seen: list[int] = []
    nodes = {
        "src": {"coro": numbers, "args": {"count": 1000}},
        "slow": {"coro": slow},
        "sink": {"coro": into, "args": {"seen": seen}},
    }
    plumber = Plumber({"nodes": nodes, "graph": {"src": ["slow"], "slow": ["sink"], "sink": None}}, fuse=True)
    running = started(plumber.run)
    await inside.wait()
    stopping = started(plumber.stop)
    await until(lambda: plumber.nodes[0].stopped)
    release.set()
    await stopping
    result = await running
    assert seen == list(range(6))  # item 5 was in the segment when the stop came: it went through
    assert result.state == "stopped"
    assert counts(result)["slow"] == (6, 6, 6, 0, 0, 0)


async def test_cancel_ends_a_fused_run_while_an_item_waits_inside() -> None:
    inside = anyio.Event()

    @node
    async def stuck(x: int) -> int:
        inside.set()
        await anyio.Event().wait()  # never set: only a cancel ends it
        return x

    nodes = {
        "src": {"coro": numbers, "args": {"count": 10}},
        "stuck": {"coro": stuck},
        "sink": {"coro": into, "args": {"seen": []}},
    }
    plumber = Plumber({"nodes": nodes, "graph": {"src": ["stuck"], "stuck": ["sink"], "sink": None}}, fuse=True)
    running = started(plumber.run)
    await inside.wait()
    plumber.cancel()
    with pytest.raises(PipelineCancelled):
        await running
    assert plumber.state == "cancelled"
    assert nodes["sink"]["args"]["seen"] == []


async def test_a_fused_node_retries_and_its_teardown_runs_after_the_segment() -> None:
    attempts: dict[int, int] = {}
    order: list[str] = []

    @node
    async def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if x == 2 and attempts[x] == 1:
            raise ConnectionError("once")
        return x

    async def closing(processor: Processor) -> None:
        order.append(f"teardown after {len(seen)} items")

    seen: list[int] = []
    nodes = {
        "src": {"coro": numbers, "args": {"count": 5}},
        "flaky": {
            "coro": flaky,
            "properties": {"retry": {"max_attempts": 2, "backoff_factor": 0}, "teardown": closing},
        },
        "sink": {"coro": into, "args": {"seen": seen}},
    }
    plumber = Plumber({"nodes": nodes, "graph": {"src": ["flaky"], "flaky": ["sink"], "sink": None}}, fuse=True)
    result = await plumber.run()
    assert plumber.fused == (("src", "flaky", "sink"),)
    assert seen == [0, 1, 2, 3, 4]
    assert attempts == {0: 1, 1: 1, 2: 2, 3: 1, 4: 1}
    assert result.stats["flaky"].retried == 1
    assert order == ["teardown after 5 items"]


@pytest.mark.parametrize("length", [1, 2, 3])
@pytest.mark.parametrize("style", ["item", "processor"])
@pytest.mark.parametrize("loss", ["drop", "skip"])
@pytest.mark.parametrize("sink_style", ["item", "processor"])
async def test_each_fused_node_counts_its_own_losses(length: int, style: str, loss: str, sink_style: str) -> None:
    """Every place in the chain, in turn, loses the items it gets at x % 5 == 1 (a drop, or a failure
    skipped): the counts land on that node alone, as without fusion."""
    for where in range(length):
        branches = [[(1, -1, -1, style == "processor") for _ in range(length)]]
        graph = shape(branches, style, 30, sink_style)
        args = graph["nodes"][f"b0s{where}"]["args"]
        if loss == "drop":
            args["drop"] = 1 + where  # x % 7 == drop: this node gets x + where
        else:
            args["fail"] = (1 + where) % 5
        results = [
            await Plumber(graph_copy, fuse=fuse).run()
            for fuse, graph_copy in ((False, graph), (True, shape_like(graph)))
        ]
        unfused, fused = (counts(result) for result in results)
        assert fused == unfused
        lost = unfused[f"b0s{where}"][3 if loss == "drop" else 4]
        assert lost > 0
        assert all(unfused[f"b0s{other}"][3:] == (0, 0, 0) for other in range(length) if other != where)


def shape_like(graph: dict[str, Any]) -> dict[str, Any]:
    """The same graph with fresh sinks' lists (a run appends to them)."""
    nodes = {name: {**spec, "args": {**spec["args"]}} for name, spec in graph["nodes"].items()}
    for spec in nodes.values():
        if "seen" in spec["args"]:
            spec["args"]["seen"] = []
    return {"nodes": nodes, "graph": graph["graph"]}


@node
async def count_down(x: int) -> int | None:
    """x - 1, and None (a drop) for 0: the same function at every stage, with no args."""
    return None if x == 0 else x - 1


@node
async def count_down_or_fail(x: int) -> int:
    if x == 0:
        raise ValueError("zero")
    return x - 1


@pytest.mark.parametrize("function", [count_down, count_down_or_fail], ids=["drops", "fails"])
async def test_nodes_sharing_one_function_each_count_their_own_losses(function: Any) -> None:
    """Item k is lost at the k-th of three nodes that run the very same function: each node, fused,
    counts its own one loss."""
    seen: list[int] = []
    nodes: dict[str, Any] = {"src": {"coro": numbers, "args": {"count": 6}}}
    for name in ("a", "b", "c"):
        nodes[name] = {"coro": function, "properties": {"on_error": "skip"}}
    nodes["sink"] = {"coro": into, "args": {"seen": seen}}
    graph = {"src": ["a"], "a": ["b"], "b": ["c"], "c": ["sink"], "sink": None}
    plumber = Plumber({"nodes": nodes, "graph": graph}, fuse=True)
    result = await plumber.run()
    assert plumber.fused == (("src", "a", "b", "c", "sink"),)
    assert seen == [0, 1, 2]
    lost = 3 if function is count_down else 4  # the column of COUNTS: dropped, or skipped
    for name, items_in in (("a", 6), ("b", 5), ("c", 4)):
        expected = [items_in, items_in - 1, items_in - 1, 0, 0, 0]
        expected[lost] = 1
        assert counts(result)[name] == tuple(expected)


async def test_a_fused_segment_waits_for_room_downstream() -> None:
    """A segment whose last node hands on to a node that is not fused (it has two workers): the
    segment waits for room in that node's input, which never holds more than its bound."""
    depths: list[int] = []
    plumber: Plumber

    @node
    async def slow_sink(x: int, seen: list[int]) -> None:
        stats = plumber.stats()["end"]
        depths.append(stats.queue_depth - stats.taken)  # what waits in its input edge (taken: its workers hold)
        await anyio.lowlevel.checkpoint()
        seen.append(x)

    seen: list[int] = []
    nodes = {
        "src": {"coro": numbers, "args": {"count": 500}},
        "a": {"coro": step, "args": {"add": 1, "drop": -1, "fail": -1}},
        "b": {"coro": step, "args": {"add": 1, "drop": -1, "fail": -1}},
        "end": {"coro": slow_sink, "args": {"seen": seen}, "properties": {"workers": 2}},
    }
    graph = {"src": ["a"], "a": ["b"], "b": ["end"], "end": None}
    plumber = Plumber({"nodes": nodes, "graph": graph}, fuse=True, queue_size=10)
    result = await plumber.run()
    assert plumber.fused == (("src", "a", "b"),)
    assert sorted(seen) == [i + 2 for i in range(500)]
    assert max(depths) == 10  # full, never over
    assert result.stats["b"].items_out == 500


async def test_a_fused_source_that_raises_fails_the_run_with_its_counts_kept() -> None:
    @node
    async def breaks(count: int) -> AsyncIterator[int]:
        for i in range(count):
            yield i
        raise OSError("the feed broke")

    graph = line(2, source=breaks, count=150)
    plumber = Plumber(graph, fuse=True)
    with pytest.raises(OSError, match="the feed broke"):
        await plumber.run()
    assert graph["nodes"]["sink"]["args"]["seen"] == [i + 3 for i in range(150)]
    stats = plumber.stats()
    assert (stats["src"].items_out, stats["s0"].completed, stats["s1"].items_out, stats["sink"].completed) == (
        150,
        150,
        150,
        150,
    )


async def test_puts_from_several_tasks_each_send_their_own_item_once() -> None:
    """An original-style source putting from two tasks at once, its segment waiting for room in a
    node that is not fused: every item arrives once."""

    async def two_putters(processor: Processor, output_q: Any, count: int) -> None:
        async def put_range(start: int) -> None:
            for i in range(start, start + count):
                await output_q.put(i)

        async with anyio.create_task_group() as group:
            group.start_soon(put_range, 0)
            group.start_soon(put_range, 1000)

    @node
    async def slow(x: int, seen: list[int]) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(x)

    seen: list[int] = []
    nodes = {
        "src": {"coro": two_putters, "args": {"count": 200}},
        "a": {"coro": step_q, "args": {"add": 0}},
        "end": {"coro": slow, "args": {"seen": seen}, "properties": {"workers": 2}},
    }
    plumber = Plumber({"nodes": nodes, "graph": {"src": ["a"], "a": ["end"], "end": None}}, fuse=True, queue_size=2)
    result = await plumber.run()
    assert plumber.fused == (("src", "a"),)
    assert sorted(seen) == [*range(200), *range(1000, 1200)]
    assert result.stats["a"].items_out == 400


# -- a stop lands between two items, wherever the source's task waits ------------------------------

IN_GENERATOR = -1


@contextlib.asynccontextmanager
async def running(plumber: Plumber) -> AsyncIterator[tuple[anyio.abc.TaskGroup, list[Any]]]:
    """`plumber.run()` in a task group around the block; the list it yields holds the run's result
    once the block (and the run) has ended."""
    outcome: list[Any] = []
    async with anyio.create_task_group() as group:

        async def run() -> None:
            outcome.append(await plumber.run())

        group.start_soon(run)
        yield group, outcome


async def stopped_while_waiting(
    length: int, k: int, where: int, kept: bool, style: str
) -> tuple[list[int], list[int], Any]:
    """A fused line of `length` stages, every node in `style`; item `k` waits in the source
    (IN_GENERATOR, before it is yielded or put), at stage `where`, or at the sink (`where` == length)
    while the run is stopped. What the source gave, what the sink saw, and the run's result."""
    inside, release = anyio.Event(), anyio.Event()
    drawn: list[int] = []
    seen: list[int] = []

    async def hold(x: int, at: int) -> None:
        if x == k and at == where:
            inside.set()
            await release.wait()

    @node
    async def yielding(count: int) -> AsyncIterator[int]:
        for i in range(count):
            await hold(i, IN_GENERATOR)
            drawn.append(i)
            yield i

    async def putting(processor: Processor, output_q: Any, count: int) -> None:
        for i in range(count):
            await hold(i, IN_GENERATOR)
            drawn.append(i)
            await output_q.put(i)

    async def stage(x: int, at: int) -> int:
        await hold(x, at)
        return x

    async def sink(x: int) -> int:
        await hold(x, length)
        seen.append(x)
        return x

    if style == "item":
        source, stage_call, sink_call = yielding, node(stage), node(sink)
    else:
        source = putting

        async def stage_call(processor: Processor, q_elt: tuple[int], at: int) -> int:
            return await stage(q_elt[0], at)

        async def sink_call(processor: Processor, q_elt: tuple[int]) -> int:
            return await sink(q_elt[0])

    names = ["src", *(f"s{i}" for i in range(length)), "sink"]
    nodes: dict[str, Any] = {"src": {"coro": source, "args": {"count": k + 5}}, "sink": {"coro": sink_call}}
    nodes |= {f"s{i}": {"coro": stage_call, "args": {"at": i}} for i in range(length)}
    graph = {"nodes": nodes, "graph": {a: [b] for a, b in itertools.pairwise(names)} | {"sink": None}}
    plumber = Plumber(graph, fuse=True, collect_outputs=kept)
    async with running(plumber) as (group, outcome):
        await inside.wait()
        group.start_soon(plumber.stop)
        await until(lambda: plumber.nodes[0].stopped)
        release.set()
    assert plumber.fused == (tuple(names),)
    return drawn, seen, outcome[0]


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(1, 3),
    k=st.integers(0, 4),
    where=st.integers(IN_GENERATOR, 3),
    kept=st.booleans(),
    style=st.sampled_from(["item", "processor"]),
    backend=st.sampled_from(BACKENDS),
)
def test_a_stop_lands_between_two_items_of_a_fused_source(
    length: int, k: int, where: int, kept: bool, style: str, backend: str
) -> None:
    """Stopped while its own code works, the source ends there; stopped while an item is on its way
    through the segment, the item goes through and the source gives no other. A source that yields
    or puts, the sink's results kept or not: each way a fused source runs its items."""
    where = min(where, length)
    drawn, seen, result = run_on(backend, lambda: stopped_while_waiting(length, k, where, kept, style))
    through = k if where == IN_GENERATOR else k + 1
    assert drawn == list(range(through))
    assert seen == list(range(through))
    assert result.state == "stopped"
    sink = result.stats["sink"]
    assert (sink.items_in, sink.completed, sink.dropped, sink.failed) == (through, through, 0, 0)
    assert result.outputs == ({"sink": list(range(through))} if kept else {})


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stop_while_a_fused_source_holds_an_item_at_a_paused_valve_sends_it_nowhere(backend: str) -> None:
    async def main() -> tuple[list[int], list[int], Any]:
        drawn: list[int] = []
        seen: list[int] = []
        held = anyio.Event()

        @node
        async def source(count: int) -> AsyncIterator[int]:
            for i in range(count):
                drawn.append(i)
                if i == 3:
                    plumber.pause()  # this item is held at the valve: the stop finds it there
                    held.set()
                yield i

        @node
        async def sink(x: int) -> None:
            seen.append(x)

        graph = src_a_sink(source, 10, add_zero, sink)
        plumber = Plumber(graph, fuse=True)
        async with running(plumber) as (_, outcome):
            await held.wait()
            await yield_now(20)
            assert seen == [0, 1, 2]
            await plumber.stop()
        return drawn, seen, outcome[0]

    drawn, seen, result = run_on(backend, main)
    assert drawn == [0, 1, 2, 3]
    assert seen == [0, 1, 2]  # item 3 was not accepted: a stop cancels a held put, as without fusion
    assert result.state == "stopped"
    assert result.stats["a"].items_in == 3


@node
async def add_zero(x: int) -> int:
    return x


def src_a_sink(source: Any, count: int, a: Any, sink: Any) -> dict[str, Any]:
    """src (`source` with `count`) -> a -> sink."""
    return {
        "nodes": {"src": {"coro": source, "args": {"count": count}}, "a": {"coro": a}, "sink": {"coro": sink}},
        "graph": {"src": ["a"], "a": ["sink"], "sink": None},
    }


# -- no item is let in after a stop, and none is left half-way (fused or not) ----------------------------


def balanced(result: Any) -> bool:
    """Every node's items ended somewhere: completed, dropped, skipped or failed."""
    return all(stats.items_in == sum(counts(result)[name][2:]) for name, stats in result.stats.items())


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "not fused"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stop_ends_an_original_style_source_that_puts_from_two_tasks(backend: str, fuse: bool) -> None:
    """While one task's item is on its way, the other's next put is not let in: the stop lands once
    the item has gone through (it used never to land, the two puts taking turns inside), and the
    refused put does not take the item on its way with it (on trio both tasks share one scope)."""

    async def main() -> tuple[list[int], list[int], Any]:
        drawn: list[int] = []
        seen: list[int] = []
        inside, release = anyio.Event(), anyio.Event()

        async def source(processor: Processor, output_q: Any, count: int) -> None:
            async def every_other(start: int) -> None:
                for i in range(start, count, 2):
                    drawn.append(i)
                    await output_q.put(i)

            async with anyio.create_task_group() as group:
                group.start_soon(every_other, 0)
                group.start_soon(every_other, 1)

        async def stage(processor: Processor, q_elt: tuple[int]) -> int:
            await anyio.lowlevel.checkpoint()
            return q_elt[0]

        async def sink(processor: Processor, q_elt: tuple[int]) -> None:
            if q_elt[0] == 20:
                inside.set()
                await release.wait()
            await anyio.lowlevel.checkpoint()
            seen.append(q_elt[0])

        graph = src_a_sink(source, 10_000, stage, sink)
        plumber = Plumber(graph, fuse=fuse, queue_size=1)
        async with running(plumber) as (_, outcome):
            await inside.wait()
            plumber.stop_nowait()
            await yield_now(50)  # the other task's puts come to the closed valve meanwhile
            release.set()
        assert plumber.fused == ((("src", "a", "sink"),) if fuse else ())
        return drawn, seen, outcome[0]

    drawn, seen, result = run_on(backend, main)
    assert result.state == "stopped"
    assert balanced(result)
    assert 20 in seen
    assert result.stats["sink"].completed == len(seen) < 100
    assert len(drawn) - len(seen) <= 2  # at most each task's last put, not accepted


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "not fused"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stop_that_comes_as_the_generator_is_woken_lets_no_item_in(backend: str, fuse: bool) -> None:
    """On trio a cancellation holds for the rest of its scope: the item the woken generator still
    gave used to enter the segment and vanish at its first node (counted in, never out)."""

    async def main() -> tuple[list[int], Any]:
        seen: list[int] = []
        woken, three = anyio.Event(), anyio.Event()

        @node
        async def source(count: int) -> AsyncIterator[int]:
            for i in range(count):
                if i == 3:
                    await woken.wait()
                yield i

        @node
        async def sink(x: int) -> None:
            await anyio.lowlevel.checkpoint()
            seen.append(x)
            if len(seen) == 3:
                three.set()

        graph = src_a_sink(source, 10, add_zero, sink)
        plumber = Plumber(graph, fuse=fuse)
        async with running(plumber) as (_, outcome):
            await three.wait()
            woken.set()
            plumber.stop_nowait()  # in the same turn: the generator is woken, not yet run
        return seen, outcome[0]

    seen, result = run_on(backend, main)
    assert sorted(seen) == [0, 1, 2]  # not fused, the sink's workers may finish them in any order
    assert result.state == "stopped"
    assert balanced(result)
    assert counts(result)["a"] == (3, 3, 3, 0, 0, 0)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "not fused"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_item_a_generator_gives_after_stopping_its_run_is_not_let_in(backend: str, fuse: bool) -> None:
    async def main() -> tuple[list[int], Any]:
        seen: list[int] = []

        @node
        async def source(count: int) -> AsyncIterator[int]:
            for i in range(count):
                if i == 5:
                    plumber.stop_nowait()  # then yields at once: the stop's cancellation is on its way
                yield i

        @node
        async def sink(x: int) -> None:
            seen.append(x)

        graph = src_a_sink(source, 10, add_zero, sink)
        plumber = Plumber(graph, fuse=fuse)
        return seen, await plumber.run()

    seen, result = run_on(backend, main)
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert result.state == "stopped"
    assert counts(result)["a"] == (5, 5, 5, 0, 0, 0)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "not fused"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stop_in_the_turn_of_a_resume_leaves_no_item_half_way(backend: str, fuse: bool) -> None:
    async def main() -> tuple[list[int], list[int], Any]:
        entered: list[int] = []
        seen: list[int] = []

        @node
        async def step_in(x: int) -> int:
            entered.append(x)
            await anyio.lowlevel.checkpoint()
            return x

        @node
        async def sink(x: int) -> None:
            await anyio.lowlevel.checkpoint()
            seen.append(x)

        graph = src_a_sink(numbers, 300, step_in, sink)
        plumber = Plumber(graph, fuse=fuse, queue_size=1)
        async with running(plumber) as (_, outcome):
            await until(lambda: len(seen) >= 5)
            plumber.pause()
            await yield_now(10)
            plumber.resume()
            plumber.stop_nowait()
        return entered, seen, outcome[0]

    entered, seen, result = run_on(backend, main)
    assert sorted(entered) == sorted(seen) == list(range(len(seen)))  # in any order when not fused
    assert result.state == "stopped"
    assert balanced(result)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "not fused"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_put_after_the_stop_from_a_task_outside_the_run_is_refused_once_the_source_ended(
    backend: str, fuse: bool
) -> None:
    """The refusal of a put after a stop never cancels a task the run does not own."""

    async def main() -> tuple[list[int], BaseException | None, Any]:
        seen: list[int] = []
        given: dict[str, Any] = {}
        ready = anyio.Event()
        refused: list[BaseException] = []

        async def source(processor: Processor, output_q: Any) -> None:
            given["q"] = output_q
            ready.set()
            await anyio.sleep_forever()

        @node
        async def sink(x: int) -> None:
            seen.append(x)

        graph = {"nodes": {"src": {"coro": source}, "sink": {"coro": sink}}, "graph": {"src": ["sink"], "sink": None}}
        plumber = Plumber(graph, fuse=fuse)
        async with running(plumber) as (group, outcome):
            await ready.wait()

            async def feeder() -> None:  # the user's own task, not the run's
                for i in range(1000):
                    if i == 5:
                        plumber.stop_nowait()
                    try:
                        await given["q"].put(i)
                    except PipelineStateError as exc:
                        refused.append(exc)
                        return

            group.start_soon(feeder)
        return seen, refused[0] if refused else None, outcome[0]

    seen, refused, result = run_on(backend, main)
    assert seen == [0, 1, 2, 3, 4]
    assert isinstance(refused, PipelineStateError)
    assert "source 'src' has ended" in str(refused)
    assert result.state == "stopped"


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "not fused"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_source_may_put_nowait_a_last_item_as_the_stop_reaches_it(backend: str, fuse: bool) -> None:
    async def main() -> tuple[list[Any], Any]:
        seen: list[Any] = []

        async def source(processor: Processor, output_q: Any) -> None:
            try:
                for i in range(1000):
                    if i == 5:
                        plumber.stop_nowait()
                    await output_q.put(i)
            except BaseException:
                output_q.put_nowait("last")  # there is room: it goes, and the stop still ends the run
                raise

        @node
        async def sink(x: Any) -> None:
            seen.append(x)

        graph = {"nodes": {"src": {"coro": source}, "sink": {"coro": sink}}, "graph": {"src": ["sink"], "sink": None}}
        plumber = Plumber(graph, fuse=fuse)
        result = await plumber.run()
        assert plumber.fused == ()  # a source that calls put_nowait leads no segment
        return seen, result

    seen, result = run_on(backend, main)
    assert seen == [0, 1, 2, 3, 4, "last"]
    assert result.state == "stopped"
    assert balanced(result)


# -- a segment in which nothing awaits still lets the loop turn; its counts keep up ----------------------


@node
async def endless() -> AsyncIterator[int]:
    for i in itertools.count():
        yield i


async def endless_q(processor: Processor, output_q: Any) -> None:
    for i in itertools.count():
        await output_q.put(i)


@pytest.mark.parametrize(
    ("source", "nodes"),
    [(endless, "item"), (endless, "processor"), (endless_q, "processor"), (endless_q, "item")],
    ids=["yields to @nodes", "yields to original-style nodes", "puts to original-style nodes", "puts to @nodes"],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stop_ends_an_endless_fused_source_whose_segment_never_awaits(backend: str, source: Any, nodes: str) -> None:
    """Nothing in the segment awaits: the source gives its items and the node and the sink return
    at once, so no other task would run until the segment let the loop turn. It does, every few
    milliseconds, between two items: the task that stops the run gets to run (before, it never
    did and the run went on for ever), and the stop lands between two items."""

    async def main() -> tuple[list[int], Any]:
        seen: list[int] = []
        enough = anyio.Event()

        @node
        async def sink(x: int) -> None:
            seen.append(x)
            if len(seen) == 1000:
                enough.set()

        async def sink_q(processor: Processor, q_elt: tuple[int]) -> None:
            await sink(q_elt[0])

        item = nodes == "item"
        graph = {
            "nodes": {
                "src": {"coro": source},
                "a": {"coro": add_zero if item else step_q, "args": {} if item else {"add": 0}},
                "sink": {"coro": sink if item else sink_q},
            },
            "graph": {"src": ["a"], "a": ["sink"], "sink": None},
        }
        plumber = Plumber(graph, fuse=True)
        async with running(plumber) as (_, outcome):
            await enough.wait()
            await plumber.stop()
        assert plumber.fused == (("src", "a", "sink"),)
        return seen, outcome[0]

    seen, result = run_on(backend, main)
    assert result.state == "stopped"
    assert len(seen) >= 1000
    assert seen == list(range(len(seen)))
    assert counts(result) == {
        "src": (0, len(seen), 0, 0, 0, 0),
        "a": (len(seen), len(seen), len(seen), 0, 0, 0),
        "sink": (len(seen), 0, len(seen), 0, 0, 0),
    }


@pytest.mark.parametrize("source", [numbers, count_up], ids=["yields", "puts"])
async def test_a_fused_source_that_fails_names_the_items_it_put(source: Any) -> None:
    """The note of a source's failure counts the items it put, its segment's counts added up first
    (it said 0 when fewer than the segment's flush had gone through)."""

    async def breaks(processor: Processor, output_q: Any, count: int) -> None:
        await count_up(processor, output_q, count)
        raise OSError("the feed broke")

    @node
    async def breaks_yielding(count: int) -> AsyncIterator[int]:
        for i in range(count):
            yield i
        raise OSError("the feed broke")

    graph = line(2, source=breaks if source is count_up else breaks_yielding, count=50)
    plumber = Plumber(graph, fuse=True)
    with pytest.raises(OSError, match="the feed broke") as failure:
        await plumber.run()
    assert failure.value.__notes__ == ["pipelines: source 'src' failed after putting 50 items"]
    assert plumber.stats()["src"].items_out == 50


@pytest.mark.asyncio(loop_factories=["asyncio"])  # virtual time needs asyncio's own loop
async def test_a_slow_fused_segment_keeps_its_counts_within_a_few_items(virtual_clock: Any) -> None:
    """Each item takes 10 ms of the sink's: the counts are added up every few items, not every
    hundred (which took a second here, and showed no item at all meanwhile)."""
    seen: list[int] = []

    @node
    async def slow(x: int) -> None:
        await asyncio.sleep(0.01)
        seen.append(x)

    graph = {
        "nodes": {"src": {"coro": endless}, "a": {"coro": add_zero}, "sink": {"coro": slow}},
        "graph": {"src": ["a"], "a": ["sink"], "sink": None},
    }
    plumber = Plumber(graph, fuse=True)
    async with running(plumber) as (_, outcome):
        await asyncio.sleep(0.505)
        stats, at = plumber.stats(), len(seen)
        behind = {name: at - stats[name].completed for name in ("a", "sink")}
        behind["src"] = at - stats["src"].items_out
        await plumber.stop()
    assert plumber.fused == (("src", "a", "sink"),)
    assert at == 50  # and item 50 in the sink: counted in as it entered (-1), let through by the stop
    assert all(-1 <= lag <= 8 for lag in behind.values()), behind
    assert outcome[0].stats["sink"].completed == len(seen) == 51


async def test_a_source_that_calls_put_nowait_leads_no_segment() -> None:
    """A put that cannot wait cannot take its item through a segment: such a source leads none,
    and the nodes after it fuse from the first. Each item then reaches that node through its input,
    in order, and its one worker handles them one at a time (before, the source led the segment and
    the items it put_nowait went to the first node's own input, handled by its task beside the
    segment: two calls at once, out of order)."""
    seen: list[int] = []
    calls, most = [0], [0]

    async def source(processor: Processor, output_q: Any) -> None:
        for i in range(40):
            try:
                output_q.put_nowait(i)
            except asyncio.QueueFull:
                await output_q.put(i)

    async def one_at_a_time(processor: Processor, q_elt: tuple[int]) -> int:
        calls[0] += 1
        most[0] = max(most[0], calls[0])
        await anyio.lowlevel.checkpoint()
        calls[0] -= 1
        return q_elt[0]

    async def sink(processor: Processor, q_elt: tuple[int]) -> None:
        seen.append(q_elt[0])

    graph = {
        "nodes": {
            "src": {"coro": source},
            "a": {"coro": one_at_a_time, "properties": {"max_workers": 1}},
            "sink": {"coro": sink},
        },
        "graph": {"src": ["a"], "a": ["sink"], "sink": None},
    }
    plumber = Plumber(graph, fuse=True, queue_size=4)
    result = await plumber.run()
    assert plumber.fused == (("a", "sink"),)
    assert seen == list(range(40))
    assert most[0] == 1
    assert counts(result)["a"] == (40, 40, 40, 0, 0, 0)


globals().update(
    trio_twins(
        globals(),
        asyncio_only={"test_a_slow_fused_segment_keeps_its_counts_within_a_few_items": "virtual time is asyncio's"},
    )
)
