"""Processor: the original API, the calling styles, and what a node emits."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest

from pipelines import InputProcessor, PipelineError, Plumber, Processor, node

from .helpers import add_one, chain, collector, source_of


async def test_processors_keep_the_original_properties() -> None:
    seen, sink = collector()
    env = {"sid": "client-1"}
    plumber = Plumber(
        chain("inp", "rev", "out", coros={"inp": source_of([1]), "rev": add_one, "out": sink}),
        coro_map=lambda x: x,
        env_vars=env,
    )
    inp, rev, out = plumber.nodes
    assert isinstance(inp, InputProcessor)
    assert type(rev) is Processor
    assert [p.name for p in plumber.nodes] == ["inp", "rev", "out"]
    for p in plumber.nodes:
        assert str(p) == f"<Processor:{p.uuid};{p.name}>"
        assert uuid.UUID(p.uuid)
        assert p.env_vars is env
    assert rev.processor_coro is add_one
    assert inp.input_queue is None
    assert rev.input_queue is not None
    assert rev.input_queue.maxsize == 100
    assert out.input_queue is not None
    assert rev.liason_queues == ([rev.input_queue.edge], [out.input_queue.edge])
    assert inp.liason_queues == ([], [rev.input_queue.edge])
    assert out.liason_queues == ([out.input_queue.edge], [])
    assert plumber.create_pipeline() is None
    await plumber.join()
    assert seen == [(2,)]


async def test_nodes_follow_the_order_of_nodes_not_graph() -> None:
    seen, sink = collector()
    graph = {
        "nodes": {"out": {"coro": sink}, "inp": {"coro": source_of([1])}, "rev": {"coro": add_one}},
        "graph": {"inp": ["rev"], "rev": ["out"], "out": None},
    }
    plumber = Plumber(graph)
    assert [p.name for p in plumber.nodes] == ["out", "inp", "rev"]
    await plumber.run()
    assert seen == [(2,)]


async def test_args_reach_every_call_and_env_vars_are_shared() -> None:
    calls: list[Any] = []

    async def source(processor: Processor, output_q: Any, count: int) -> None:
        for i in range(count):
            await output_q.put(i)

    async def scale(processor: Processor, q_elt: tuple[int], factor: int) -> int:
        calls.append((processor.env_vars["tag"], factor))
        return q_elt[0] * factor

    seen, sink = collector()
    graph = chain("inp", "scale", "out", coros={"inp": source, "scale": scale, "out": sink})
    graph["nodes"]["inp"]["args"] = {"count": 3}
    graph["nodes"]["scale"]["args"] = {"factor": 10}
    await Plumber(graph, env_vars={"tag": "t"}).run()
    assert seen == [(0,), (10,), (20,)]
    assert calls == [("t", 10)] * 3


async def test_output_q_keeps_the_asyncio_queue_calls() -> None:
    observed: dict[str, Any] = {}

    async def source(processor: Processor, output_q: Any) -> None:
        observed["same"] = output_q is processor.output_queue
        observed["maxsize"] = output_q.maxsize
        output_q.put_nowait("a")
        output_q.put_nowait("b")
        observed["qsize"] = output_q.qsize()
        observed["full"] = output_q.full()
        with pytest.raises(asyncio.QueueFull):
            output_q.put_nowait("c")
        await output_q.put("c")  # waits for room

    seen, sink = collector()
    graph = chain("inp", "out", coros={"inp": source, "out": sink}, props={"out": {"queue_size": 2}})
    await Plumber(graph).run()
    assert observed == {"same": True, "maxsize": 2, "qsize": 2, "full": True}
    assert seen == [("a",), ("b",), ("c",)]


async def test_a_node_that_is_not_a_source_cannot_put() -> None:
    async def putter(processor: Processor, q_elt: tuple[int]) -> None:
        await processor.output_queue.put(q_elt[0])

    _, sink = collector()
    graph = chain("inp", "p", "out", coros={"inp": source_of([1]), "p": putter, "out": sink})
    with pytest.raises(PipelineError, match=re.escape("node 'p': only a source puts into its output queue")):
        await Plumber(graph).run()


async def test_returning_none_emits_nothing_and_counts_as_dropped() -> None:
    async def evens(processor: Processor, q_elt: tuple[int]) -> int | None:
        return q_elt[0] if q_elt[0] % 2 == 0 else None

    seen, sink = collector()
    result = await Plumber(
        chain("inp", "f", "out", coros={"inp": source_of(list(range(6))), "f": evens, "out": sink})
    ).run()
    assert seen == [(0,), (2,), (4,)]
    assert (result["f"].items_in, result["f"].completed, result["f"].dropped, result["f"].items_out) == (6, 3, 3, 3)
    assert (result["out"].items_in, result["out"].completed, result["out"].dropped) == (3, 3, 0)


async def test_an_async_generator_node_yields_any_number_of_outputs() -> None:
    async def repeat(processor: Processor, q_elt: tuple[int]) -> Any:
        for _ in range(q_elt[0]):
            yield q_elt[0]

    seen, sink = collector()
    result = await Plumber(
        chain("inp", "r", "out", coros={"inp": source_of([0, 1, 2, 3]), "r": repeat, "out": sink})
    ).run()
    assert seen == [(1,), (2,), (2,), (3,), (3,), (3,)]
    assert (result["r"].items_in, result["r"].completed, result["r"].dropped, result["r"].items_out) == (4, 3, 1, 6)


async def test_plain_item_functions_through_the_node_decorator() -> None:
    @node
    async def numbers(count: int) -> Any:
        for i in range(count):
            yield i

    @node
    async def square(x: int) -> int:
        return x * x

    out: list[int] = []

    @node
    async def keep(x: int) -> None:
        out.append(x)

    graph = chain("numbers", "square", "keep", coros={"numbers": numbers, "square": square, "keep": keep})
    graph["nodes"]["numbers"]["args"] = {"count": 4}
    await Plumber(graph).run()
    assert out == [0, 1, 4, 9]
    assert await square(3) == 9  # the decorator leaves the function callable as it was


async def test_plain_item_functions_through_the_style_property() -> None:
    async def triple(x: int) -> int:
        return 3 * x

    seen, sink = collector()
    graph = chain(
        "inp", "t", "out", coros={"inp": source_of([1, 2]), "t": triple, "out": sink}, props={"t": {"style": "item"}}
    )
    await Plumber(graph).run()
    assert seen == [(3,), (6,)]


async def test_an_item_style_join_receives_the_tuple() -> None:
    @node
    async def pair(values: tuple[int, int]) -> str:
        return f"{values[0]}+{values[1]}"

    seen, sink = collector()
    graph = {
        "nodes": {"s": {"coro": source_of([1, 2])}, "a": {"coro": add_one}, "j": {"coro": pair}, "out": {"coro": sink}},
        "graph": {"s": ["a", "j"], "a": ["j"], "j": ["out"], "out": None},
    }
    await Plumber(graph).run()
    assert seen == [("1+2",), ("2+3",)]  # inputs in the order of their keys in "graph": s, then a


async def test_a_source_with_no_successor_runs_for_its_effects() -> None:
    done: list[int] = []

    async def lone(processor: Processor, output_q: Any) -> None:
        await output_q.put(1)
        done.append(1)

    result = await Plumber({"nodes": {"s": {"coro": lone}}, "graph": {"s": None}}).run()
    assert done == [1]
    assert result["s"].items_out == 1


async def test_processor_repr_names_the_coroutine() -> None:
    plumber = Plumber(chain("inp", "rev", coros={"inp": source_of([]), "rev": add_one}))
    assert repr(plumber.nodes[1]) == f"<Processor:{plumber.nodes[1].uuid}, coro:add_one>"
    await plumber.run()
