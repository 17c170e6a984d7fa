"""The queues a user can reach: a node's input_queue, a sink's output_queue, a source's output_q."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipelines import PipelineError, PipelineStateError, Plumber, Processor
from pipelines.queues import ResultQueue

from .helpers import add_one, chain, collector, source_of


async def double(processor: Processor, q_elt: tuple[int]) -> int:
    return 2 * q_elt[0]


async def tens(processor: Processor, q_elt: tuple[int]) -> int:
    return 10 * q_elt[0]


class ResultKeys:
    """A hook recording the lineage key of every value a sink returned."""

    def __init__(self) -> None:
        self.keys: list[Any] = []

    def node_hooks(self, node: Processor) -> Any:
        return self if node.spec.is_sink else None

    def result(self, key: Any, value: Any) -> None:
        self.keys.append((key, value))


async def test_an_item_put_into_a_node_input_queue_is_processed_by_that_node_with_a_key_of_its_own() -> None:
    release = asyncio.Event()

    async def numbers(processor: Processor, output_q: Any) -> None:
        await output_q.put(1)
        await release.wait()

    keys = ResultKeys()
    plumber = Plumber(chain("numbers", "double", "show", coros={"numbers": numbers, "double": double, "show": tens}))
    plumber.add_hook(keys)
    _, double_p, show_p = plumber.nodes
    results = show_p.output_queue
    assert double_p.input_queue is not None
    plumber.create_pipeline()
    await double_p.input_queue.put(5)  # room now: in the node's input before the source's first item
    assert [await results.get(), await results.get()] == [100, 20]
    release.set()
    result = await plumber.join()
    assert keys.keys == [(("double:input", 0), 100), (("numbers", 0), 20)]
    assert (result["double"].items_in, result["double"].completed, result["show"].completed) == (2, 2, 2)
    assert results.empty()


async def test_a_node_input_queue_behaves_like_a_bounded_asyncio_queue() -> None:
    plumber = Plumber(
        chain("numbers", "double", "show", coros={"numbers": source_of([]), "double": double, "show": tens}),
        queue_size=2,
    )
    queue = plumber.processor("double").input_queue
    assert queue is not None
    assert (queue.maxsize, queue.qsize(), queue.empty(), queue.full()) == (2, 0, True, False)
    queue.put_nowait("a")
    await queue.put("b")
    assert (queue.qsize(), queue.empty(), queue.full()) == (2, False, True)
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait("c")
    assert queue.get_nowait() == "a"
    assert await queue.get() == "b"
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    stats = plumber.processor("double").stats()
    assert (stats.items_in, stats.dropped, stats.in_flight) == (2, 2, 0)  # taken out: they left the run


async def test_a_put_into_an_input_that_has_ended_raises_naming_the_node() -> None:
    plumber = Plumber(
        chain("numbers", "double", "show", coros={"numbers": source_of([1]), "double": double, "show": tens})
    )
    await plumber.run()
    queue = plumber.processor("double").input_queue
    assert queue is not None
    with pytest.raises(PipelineStateError, match="node 'double': its inputs have ended"):
        queue.put_nowait(1)
    with pytest.raises(PipelineStateError, match="node 'double': its inputs have ended"):
        await queue.put(1)
    with pytest.raises(PipelineStateError, match="node 'double': its inputs have ended and nothing is left"):
        await queue.get()


async def test_a_sink_output_queue_keeps_its_last_values_and_never_blocks_the_sink() -> None:
    plumber = Plumber(
        chain("numbers", "show", coros={"numbers": source_of([1, 2, 3, 4, 5]), "show": tens}), queue_size=2
    )
    results = plumber.processor("show").output_queue
    assert isinstance(results, ResultQueue)
    result = await plumber.run()
    assert result.state == "completed"
    assert (result["show"].completed, results.maxsize, results.discarded) == (5, 2, 3)
    assert [results.get_nowait(), results.get_nowait()] == [40, 50]
    with pytest.raises(asyncio.QueueEmpty):
        results.get_nowait()
    assert result.outputs == {}  # kept for the reader, not for RunResult.outputs (collect_outputs)


async def test_a_sink_output_queue_and_collect_outputs_both_get_every_value() -> None:
    plumber = Plumber(
        chain("numbers", "show", coros={"numbers": source_of([1, 2, 3]), "show": tens}), collect_outputs=True
    )
    results = plumber.processor("show").output_queue
    result = await plumber.run()
    assert result.outputs == {"show": [10, 20, 30]}
    assert [results.get_nowait() for _ in range(3)] == [10, 20, 30]


async def test_reading_a_sink_output_queue_after_the_sink_started_raises() -> None:
    plumber = Plumber(chain("numbers", "show", coros={"numbers": source_of([1]), "show": tens}))
    await plumber.run()
    with pytest.raises(PipelineStateError, match="sink 'show': read output_queue before the sink starts"):
        assert plumber.processor("show").output_queue is None


async def test_a_middle_node_output_queue_says_where_its_outputs_go() -> None:
    plumber = Plumber(
        chain("numbers", "double", "show", coros={"numbers": source_of([]), "double": double, "show": tens})
    )
    queue: Any = plumber.processor("double").output_queue
    with pytest.raises(PipelineError, match="node 'double': its outputs go to its successors"):
        queue.get_nowait()
    with pytest.raises(PipelineError, match="node 'double': only a source puts into its output queue"):
        queue.put_nowait(1)
    await plumber.run()


async def test_a_join_input_queue_refuses_items_from_outside() -> None:
    async def pair(processor: Processor, q_elt: tuple[int, int]) -> int:
        return q_elt[0] + q_elt[1]

    graph = {
        "nodes": {"a": {"coro": source_of([1])}, "b": {"coro": source_of([2])}, "pair": {"coro": pair}},
        "graph": {"a": ["pair"], "b": ["pair"], "pair": None},
    }
    plumber = Plumber(graph)
    queue = plumber.processor("pair").input_queue
    assert queue is not None
    with pytest.raises(PipelineError, match="node 'pair': put on its input_queue is not possible: it joins"):
        queue.put_nowait((1, 2))
    await plumber.run()


def test_nodes_whose_items_reach_a_zip_refuse_items_from_outside_and_the_others_take_them() -> None:
    """a -> m1 -> m2 -> zip <- b; m2 -> tail; c -> free. An item put into m1 or m2 would have no
    position among a's items, so the zip could not pair it: both refuse, naming the zip; `tail`
    (after the fork) and `free` (never reaching it) take items."""
    graph = {
        "nodes": {
            "a": {"coro": source_of([1])},
            "b": {"coro": source_of([2])},
            "c": {"coro": source_of([3])},
            "m1": {"coro": add_one},
            "m2": {"coro": add_one},
            "zip": {"coro": collector()[1]},
            "tail": {"coro": collector()[1]},
            "free": {"coro": collector()[1]},
        },
        "graph": {
            "a": ["m1"],
            "m1": ["m2"],
            "m2": ["zip", "tail"],
            "b": ["zip"],
            "c": ["free"],
            "zip": None,
            "tail": None,
            "free": None,
        },
    }
    plumber = Plumber(graph)
    refused = {}
    for name in ("m1", "m2", "tail", "free"):
        queue = plumber.processor(name).input_queue
        assert queue is not None
        try:
            queue.put_nowait(0)
        except PipelineError as exc:
            refused[name] = str(exc)
    reason = "a join of independent sources that pairs items by position"
    assert refused == {
        "m1": f"node 'm1': put on its input_queue is not possible: its items reach node 'zip', {reason}",
        "m2": f"node 'm2': put on its input_queue is not possible: its items reach node 'zip', {reason}",
    }


async def test_a_durable_run_refuses_items_from_outside(tmp_path: Any) -> None:
    plumber = Plumber(
        chain("numbers", "double", "show", coros={"numbers": source_of([1]), "double": double, "show": tens}),
        journal=tmp_path / "run.db",
    )
    queue = plumber.processor("double").input_queue
    assert queue is not None
    with pytest.raises(PipelineError, match="node 'double': put on its input_queue is not possible: a run with a"):
        await queue.put(5)
    await plumber.run()


async def test_a_source_output_q_takes_back_what_waits_in_its_successor_input() -> None:
    taken: list[int] = []

    async def numbers(processor: Processor, output_q: Any) -> None:
        await output_q.put(1)
        await output_q.put(2)
        taken.append(output_q.get_nowait())  # the successor has not run yet: both still wait
        assert (output_q.qsize(), output_q.maxsize, output_q.full(), output_q.empty()) == (1, 100, False, False)

    seen: list[int] = []

    async def show(processor: Processor, q_elt: tuple[int]) -> None:
        seen.append(q_elt[0])

    result = await Plumber(chain("numbers", "show", coros={"numbers": numbers, "show": show})).run()
    assert (taken, seen, result["numbers"].items_out, result["show"].items_in) == ([1], [2], 1, 1)


def test_liason_graph_names_each_node_input_and_output_edges() -> None:
    async def pair(processor: Processor, q_elt: tuple[int, int]) -> int:
        return q_elt[0] + q_elt[1]

    graph = {
        "nodes": {"a": {"coro": source_of([1])}, "b": {"coro": source_of([2])}, "pair": {"coro": pair}},
        "graph": {"a": ["pair"], "b": ["pair"], "pair": None},
    }
    assert Plumber(graph).liason_graph == {
        "a": ([], ["pair<-a"]),
        "b": ([], ["pair<-b"]),
        "pair": (["pair<-a", "pair<-b"], []),
    }
    diamond = chain("x", "y", coros={"x": source_of([]), "y": double})
    assert Plumber(diamond).liason_graph == {"x": ([], ["y"]), "y": (["y"], [])}
