"""pipelines.streams: feeding a running graph from application code and iterating its results."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import (
    GraphError,
    PipelineCancelled,
    PipelineStateError,
    Plumber,
    Processor,
    Registry,
    Stream,
    node,
    open_stream,
    stream,
)
from pipelines.testing import VirtualClock, leftover_tasks


@node
async def double(x: int) -> int:
    return 2 * x


@node
async def plus_one(x: int) -> int:
    return x + 1


@node
async def minus_one(x: int) -> int:
    return x - 1


@node
async def evens(x: int) -> int | None:
    return x if x % 2 == 0 else None


@node
async def jitter(x: int) -> int:
    for _ in range(x % 4):  # items overtake each other in a pool of workers
        await asyncio.sleep(0)
    return x * x


@node
async def copies(x: int) -> AsyncIterator[str]:
    for i in range(x % 3):  # 0, 1 or 2 outputs per input
        yield f"{x}.{i}"


@node
async def spread(x: int) -> AsyncIterator[int]:
    for i in range(x % 3):
        yield 10 * x + i


@node(on_error="errors")
async def odd_fails(x: int) -> int:
    if x % 2:
        raise ValueError(x)
    return x


@node
async def errors(failure: Any) -> str:
    return f"failed: {failure.item}"


@node
async def pair(joined: tuple[int, int]) -> tuple[int, int]:
    return joined


@node
async def count() -> AsyncIterator[int]:
    for i in range(3):
        yield i


@node
async def boom(x: int) -> int:
    if x == 3:
        raise ValueError(f"no {x}")
    return x


def chain(*stages: Any, entry: dict[str, Any] | None = None) -> dict[str, Any]:
    """entry -> the stages in a line; the last one is the sink."""
    names = ["numbers", *(f"s{i}" for i in range(len(stages)))]
    nodes = {"numbers": entry or {}} | {
        name: (stage if isinstance(stage, dict) else {"coro": stage})
        for name, stage in zip(names[1:], stages, strict=True)
    }
    graph = {a: [b] for a, b in itertools.pairwise(names)} | {names[-1]: None}
    return {"nodes": nodes, "graph": graph}


DIAMOND = {
    "nodes": {"numbers": {}, "plus": {"coro": plus_one}, "twice": {"coro": double}, "join": {"coro": pair}},
    "graph": {"numbers": ["plus", "twice"], "plus": ["join"], "twice": ["join"], "join": None},
}

TWO_SINKS = {
    "nodes": {"numbers": {}, "plus": {"coro": plus_one}, "twice": {"coro": double}},
    "graph": {"numbers": ["plus", "twice"], "plus": None, "twice": None},
}


VIRTUAL = pytest.mark.asyncio(loop_factories=["asyncio"])  # virtual time needs asyncio's own loop


async def settle() -> None:
    """On virtual time: return once every task of the run waits (the clock jumps only then)."""
    await asyncio.sleep(1)


# -- stream(): the items fed for you --------------------------------------------------------------


async def test_stream_yields_the_sinks_results_in_input_order_through_ordered_workers() -> None:
    graph = chain({"coro": jitter, "properties": {"workers": 4, "ordered": True}}, plus_one)
    assert [y async for y in stream(graph, range(12))] == [x * x + 1 for x in range(12)]


async def test_stream_takes_an_async_iterable() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(5):
            await asyncio.sleep(0)
            yield i

    assert [y async for y in stream(chain(double), numbers())] == [0, 2, 4, 6, 8]


async def test_pairs_match_each_output_with_its_input_through_unordered_workers() -> None:
    graph = chain({"coro": jitter, "properties": {"workers": 4}})
    got = [p async for p in stream(graph, range(30), pairs=True)]
    assert sorted(got) == [(x, x * x) for x in range(30)]
    assert [y for _, y in got] != sorted(y for _, y in got)  # the workers did overtake each other


async def test_a_filter_emits_nothing_for_an_item_and_frees_its_place() -> None:
    async with open_stream(chain(evens, double), max_pending=2) as run:
        feeding = asyncio.create_task(feed(run, range(10)))
        got = [p async for p in run.results(with_inputs=True)]
        await feeding
    assert got == [(0, 0), (2, 4), (4, 8), (6, 12), (8, 16)]
    assert run.pending == 0
    assert run.plumber.state == "completed"


async def test_fan_out_gives_every_sinks_results_paired_with_their_input() -> None:
    got = [p async for p in stream(TWO_SINKS, [1, 5], pairs=True)]
    assert sorted(got) == [(1, 2), (1, 2), (5, 6), (5, 10)]


async def test_a_generator_gives_several_results_or_none_per_input() -> None:
    got = [p async for p in stream(chain(copies), range(6), pairs=True)]
    assert sorted(got) == [(1, "1.0"), (2, "2.0"), (2, "2.1"), (4, "4.0"), (5, "5.0"), (5, "5.1")]


async def test_a_join_pairs_branches_by_lineage_and_its_result_by_input() -> None:
    graph = {**DIAMOND, "nodes": {**DIAMOND["nodes"], "plus": {"coro": jitter, "properties": {"workers": 3}}}}
    got = [p async for p in stream(graph, range(10), pairs=True)]
    assert sorted(got) == [(x, (x * x, 2 * x)) for x in range(10)]


async def test_a_filter_before_a_join_discards_the_group_and_frees_the_item() -> None:
    graph = {**DIAMOND, "nodes": {**DIAMOND["nodes"], "plus": {"coro": evens}}}
    async with open_stream(graph, items=range(7), max_pending=2) as run:
        got = [p async for p in run.results(with_inputs=True)]
    assert sorted(got) == [(0, (0, 0)), (2, (2, 4)), (4, (4, 8)), (6, (6, 12))]
    assert run.pending == 0
    assert run.plumber.stats()["join"].dropped == 3


async def test_an_error_nodes_results_are_paired_with_the_input_that_failed() -> None:
    got = [p async for p in stream(SHAPES["routed"], range(4), pairs=True)]
    assert sorted(got, key=str) == [(0, -1), (1, "failed: 1"), (2, 1), (3, "failed: 3")]


async def test_a_graph_with_its_own_source_is_fed_the_streams_items_instead() -> None:
    @node
    async def real_numbers() -> AsyncIterator[int]:
        raise AssertionError("the stream feeds the entry: its own coroutine never runs")
        yield 0

    registry = Registry({"real_numbers": real_numbers, "double": double})
    graph = {
        "nodes": {"numbers": {"coro": "real_numbers"}, "d": {"coro": "double"}},
        "graph": {"numbers": ["d"], "d": None},
    }
    assert [y async for y in stream(graph, [3, 4], registry)] == [6, 8]
    assert [y async for y in stream(graph, [5], registry, entry="numbers")] == [10]


# -- open_stream(): send, close, read ---------------------------------------------------------------


async def feed(run: Stream, items: Any) -> None:
    for item in items:
        await run.send(item)
    run.close()


async def test_iteration_ends_once_the_input_is_closed_and_the_graph_has_drained() -> None:
    async with open_stream(chain(double)) as run:
        for x in (1, 2, 3):
            await run.send(x)
        run.close()
        assert [y async for y in run] == [2, 4, 6]
        assert [y async for y in run] == []  # ended: iterating again gives nothing
    assert run.plumber.state == "completed"
    assert run.plumber.stats()["s0"].completed == 3


async def test_request_and_answer_one_at_a_time_then_leaving_ends_the_run_normally() -> None:
    ended = []

    async def teardown(processor: Processor) -> None:
        ended.append(processor.name)

    graph = chain({"coro": double, "properties": {"teardown": teardown}})
    async with open_stream(graph) as run:
        results = aiter(run)
        for x in (10, 20):
            await run.send(x)
            assert await anext(results) == 2 * x
    assert run.plumber.state == "completed"
    assert ended == ["s0"]
    with pytest.raises(
        PipelineStateError, match=r"^send\(\) after the `async with` block was left: the stream's input has ended$"
    ):
        await run.send(30)  # a sender still at work when the reader left is told so, not "after close()"


@VIRTUAL
async def test_send_waits_after_exactly_max_pending_items_when_nobody_reads(virtual_clock: VirtualClock) -> None:
    async with open_stream(chain(double), max_pending=5) as run:
        for x in range(5):
            await run.send(x)  # returns at once: room for 5
        late = asyncio.create_task(run.send(5))
        await settle()  # the graph has done all it can: 5 results wait, nobody reads
        assert not late.done()
        assert (run.pending, run.buffered) == (5, 5)
        assert run.plumber.stats()["s0"].completed == 5
        assert await anext(aiter(run)) == 0  # reading one result frees one place
        await late
        assert run.pending == 5
        run.close()
        assert [y async for y in run] == [2, 4, 6, 8, 10]


@VIRTUAL
async def test_stream_takes_no_more_items_than_max_pending_ahead_of_its_reader(virtual_clock: VirtualClock) -> None:
    taken = []

    def numbers() -> Any:
        for i in range(100):
            taken.append(i)
            yield i

    async with open_stream(chain(double), items=numbers(), max_pending=3) as run:
        results = aiter(run)
        await settle()
        assert taken == [0, 1, 2]
        assert await anext(results) == 0
        await settle()
        assert taken == [0, 1, 2, 3]


@VIRTUAL
async def test_a_sink_whose_results_wait_unread_is_held(virtual_clock: VirtualClock) -> None:
    @node(workers=1)
    async def ten(x: int) -> AsyncIterator[int]:
        for i in range(10):
            yield 10 * x + i

    async with open_stream(chain(ten), max_pending=4) as run:
        await run.send(1)
        await settle()
        await run.send(2)
        await settle()
        assert run.buffered == 10  # the first item's results; the sink is held after its batch
        assert run.plumber.stats()["s0"].items_in == 1
        results = aiter(run)
        assert [await anext(results) for _ in range(6)] == [10, 11, 12, 13, 14, 15]
        assert run.plumber.stats()["s0"].items_in == 1  # 4 still wait: the sink stays held
        assert await anext(results) == 16  # 3 wait now, fewer than max_pending: the sink goes on
        await settle()
        assert run.buffered == 13
        run.close()
        assert [y async for y in run] == [17, 18, 19, *range(20, 30)]


async def test_several_senders_and_readers_share_a_stream() -> None:
    async with open_stream(chain(double), max_pending=3) as run:

        async def sender(items: range) -> None:
            for item in items:
                await run.send(item)

        async def reader() -> list[tuple[int, int]]:
            return [p async for p in run.results(with_inputs=True)]

        readers = [asyncio.create_task(reader()) for _ in range(2)]
        await asyncio.gather(sender(range(0, 50)), sender(range(50, 100)))
        run.close()
        got = [p for r in readers for p in await r]
    assert sorted(got) == [(x, 2 * x) for x in range(100)]


# -- leaving early, and failures ----------------------------------------------------------------------


async def test_leaving_the_block_early_cancels_the_run_and_leaves_no_task() -> None:
    async with open_stream(chain(double), items=range(10_000)) as run:
        async for y in run:
            if y == 8:
                break
    assert run.plumber.state == "cancelled"
    assert leftover_tasks() == []


async def test_an_exception_in_the_block_cancels_the_run_and_propagates() -> None:
    run = open_stream(chain(double))

    async def body() -> None:
        async with run:
            await run.send(1)
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await body()
    assert run.plumber.state == "cancelled"
    assert leftover_tasks() == []


async def test_leaving_with_results_unread_cancels_and_never_hangs() -> None:
    async with open_stream(chain(double), max_pending=2) as run:
        await run.send(1)
        await run.send(2)
        blocked = asyncio.create_task(run.send(3))
        await asyncio.sleep(0)
    assert run.plumber.state == "cancelled"
    with pytest.raises(PipelineCancelled):
        await blocked  # the send that waited for room learns that the run is gone


async def test_closing_the_generator_early_cancels_the_run() -> None:
    async with contextlib.aclosing(stream(chain(double), range(10_000))) as results:
        async for y in results:
            if y == 4:
                break
    assert leftover_tasks() == []


class Ends:
    """A hook noting how the run ended."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self.ended = asyncio.Event()

    def run_ended(self, plumber: Plumber, state: str) -> None:
        self.states.append(state)
        self.ended.set()


def test_a_loop_left_without_aclosing_still_ends_the_run_when_the_generator_is_collected() -> None:
    async def main() -> tuple[list[str], list[str]]:
        ends = Ends()
        async for y in stream(chain(double), range(10_000), hooks=[ends]):
            if y == 4:
                break
        await ends.ended.wait()  # the loop closes the abandoned generator on one of its next turns
        return ends.states, leftover_tasks()

    assert asyncio.run(main()) == (["cancelled"], [])


async def test_a_failing_node_raises_its_own_exception_from_the_iterator_after_earlier_results() -> None:
    got = []

    async def read() -> None:
        async for y in stream(chain({"coro": boom, "properties": {"ordered": True}}), range(10), max_pending=1):
            got.append(y)

    with pytest.raises(ValueError, match="no 3") as caught:
        await read()
    assert got == [0, 1, 2]
    assert any("s0" in note for note in caught.value.__notes__)


async def test_a_failure_nobody_read_is_raised_on_leaving_the_block() -> None:
    run = open_stream(chain(boom))

    async def body() -> None:
        async with run:
            await run.send(3)
            await wait_end(run)  # the block ends normally: the failure is raised on leaving it

    with pytest.raises(ValueError, match="no 3"):
        await body()
    assert run.plumber.state == "failed"


async def wait_end(run: Stream) -> None:
    with contextlib.suppress(ValueError):
        await run.plumber.join()


async def test_send_and_the_iterator_raise_the_runs_failure() -> None:
    run = open_stream(chain(boom))
    seen = []

    async def body() -> None:
        async with run:
            await run.send(3)
            await wait_end(run)
            with pytest.raises(ValueError, match="no 3") as on_send:
                await run.send(4)
            with pytest.raises(ValueError, match="no 3") as on_read:
                await anext(aiter(run))
            seen.extend([on_send.value, on_read.value])

    with pytest.raises(ValueError, match="no 3") as on_exit:
        await body()
    assert seen == [on_exit.value, on_exit.value]
    assert all(error is on_exit.value for error in seen)


async def test_an_error_in_the_items_fails_the_run_with_it() -> None:
    def numbers() -> Any:
        yield 1
        raise LookupError("the items broke")

    with pytest.raises(LookupError, match="the items broke"):
        async for _ in stream(chain(double), numbers()):
            pass


async def test_send_refuses_what_does_not_fit_the_streams_state() -> None:
    run = open_stream(chain(double))
    with pytest.raises(PipelineStateError, match=r"send\(\) before the stream started"):
        await run.send(1)
    async with run:
        run.close()
        with pytest.raises(PipelineStateError, match=r"send\(\) after close\(\)"):
            await run.send(1)
        assert [y async for y in run] == []
    with pytest.raises(PipelineStateError, match="a stream runs once"):
        async with run:
            pass
    async with open_stream(chain(double), items=[1]) as fed:
        with pytest.raises(PipelineStateError, match="fed from its items"):
            await fed.send(2)
        assert [y async for y in fed] == [2]


# -- checking the graph -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("graph", "entry", "message"),
    [
        (chain(double, entry={"coro": count}), "s0", "entry 's0': it has inputs \\(from numbers\\)"),
        (chain(double), "nope", "entry 'nope' is not a node of the graph \\(nodes: numbers, s0\\)"),
        (
            {"nodes": {"a": {}, "b": {}, "c": {"coro": double}}, "graph": {"a": ["c"], "b": ["c"], "c": None}},
            None,
            "nodes 'a', 'b' have no 'coro'",
        ),
        (
            {
                "nodes": {"a": {"coro": double}, "b": {"coro": double}, "c": {"coro": pair}},
                "graph": {"a": ["c"], "b": ["c"], "c": None},
            },
            None,
            "the graph has 2 nodes without inputs \\('a', 'b'\\)",
        ),
        (
            {
                "nodes": {"a": {}, "b": {"coro": count}, "c": {"coro": pair}},
                "graph": {"a": ["c"], "b": ["c"], "c": None},
            },
            None,
            "node 'b' is a source too",
        ),
        ({"nodes": {"a": {}}, "graph": {"a": None}}, None, "entry 'a' has no successors"),
        ({"nodes": {"a": {}}}, None, "graph is missing its 'graph' dict"),
        (chain(double, entry={"corro": count}), None, "node 'numbers': unknown key 'corro'"),
    ],
)
def test_a_graph_a_stream_cannot_feed_is_refused_before_anything_runs(
    graph: dict[str, Any], entry: str | None, message: str
) -> None:
    with pytest.raises(GraphError, match=message):
        open_stream(graph, entry=entry)


async def test_stream_without_items_is_refused_at_once_instead_of_waiting_for_sends() -> None:
    with pytest.raises(
        TypeError, match=r"^stream\(graph, items\): items must be an iterable or an async iterable, got None"
    ):
        async for _ in stream(chain(double), None):  # type: ignore[arg-type]
            pass


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_pending must be an int >= 1, got 0"):
        open_stream(chain(double), max_pending=0)
    with pytest.raises(TypeError, match="items must be an iterable or an async iterable of items, got str"):
        open_stream(chain(double), items="abc")


# -- property: any items, a few shapes, the same results as a plain reference -------------------------


def reference(shape: str, items: list[int]) -> list[tuple[int, Any]]:
    """The (input, output) pairs each shape gives, computed without pipelines."""
    if shape == "chain":
        return [(x, x * x + 1) for x in items if x % 2 == 0]
    if shape == "diamond":
        return [(x, (x + 1, 2 * x)) for x in items]
    if shape == "two sinks":
        return [(x, y) for x in items for y in (x + 1, 2 * x)]
    if shape == "expand":
        return [(x, 10 * x + i + 1) for x in items for i in range(x % 3)]
    if shape == "routed":
        return [(x, x - 1 if x % 2 == 0 else f"failed: {x}") for x in items]
    return [(x, f"{x}.{i}") for x in items for i in range(x % 3)]


SHAPES = {
    "chain": chain(evens, {"coro": jitter, "properties": {"workers": 3}}, plus_one),
    "diamond": DIAMOND,
    "two sinks": TWO_SINKS,
    "generator": chain({"coro": copies, "properties": {"workers": 2}}),
    "expand": chain(spread, {"coro": plus_one, "properties": {"workers": 2}}),
    "routed": {
        "nodes": {"numbers": {}, "odd": {"coro": odd_fails}, "minus": {"coro": minus_one}, "errors": {"coro": errors}},
        "graph": {"numbers": ["odd"], "odd": ["minus"], "minus": None, "errors": None},
    },
}


@settings(max_examples=80, deadline=None)
@given(
    items=st.lists(st.integers(min_value=-50, max_value=50), max_size=40),
    shape=st.sampled_from(sorted(SHAPES)),
    max_pending=st.integers(min_value=1, max_value=8),
    by_send=st.booleans(),
)
def test_any_items_give_the_reference_pairs_and_leave_nothing_pending(
    items: list[int], shape: str, max_pending: int, by_send: bool
) -> None:
    async def main() -> tuple[list[tuple[int, Any]], int, str]:
        if by_send:  # a task sends while this one reads
            async with open_stream(SHAPES[shape], max_pending=max_pending) as run:
                feeding = asyncio.create_task(feed(run, items))
                got = [p async for p in run.results(with_inputs=True)]
                await feeding
        else:
            async with open_stream(SHAPES[shape], items=items, max_pending=max_pending) as run:
                got = [p async for p in run.results(with_inputs=True)]
        return got, run.pending, run.plumber.state

    got, pending, state = asyncio.run(main())
    assert Counter(got) == Counter(reference(shape, items))
    assert (pending, state) == (0, "completed")


async def test_a_plain_run_of_the_same_graph_still_works() -> None:
    """Streaming a graph does not change it: the dict given is left as it was."""
    graph = chain(double, entry={"coro": "numbers"})
    before = repr(graph)

    @node
    async def numbers() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    assert [y async for y in stream(graph, [7])] == [14]
    assert repr(graph) == before
    result = await Plumber(graph, lambda v: numbers if v == "numbers" else v, collect_outputs=True).run()
    assert result.outputs["s0"] == [0, 2, 4]
