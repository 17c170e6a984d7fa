"""Processor: the original API, the calling styles, and what a node emits."""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Coroutine
from typing import Any

import pytest

from pipelines import GraphError, InputProcessor, PipelineError, Plumber, Processor, node

from .backends import trio_twins
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


# -- callables that return awaitables ------------------------------------------------------------


async def scaled(processor: Processor, q_elt: tuple[int], factor: int) -> int:
    return q_elt[0] * factor


class AsyncCall:
    """An object whose __call__ is async def."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    async def __call__(self, processor: Processor, q_elt: tuple[int]) -> int:
        return q_elt[0] * self.factor

    async def method(self, processor: Processor, q_elt: tuple[int]) -> int:
        return q_elt[0] * self.factor


class CoroutineReturningCall:
    """An object whose plain __call__ returns a coroutine, and says so in its annotation."""

    def __call__(self, processor: Processor, q_elt: tuple[int]) -> Coroutine[Any, Any, int]:
        return scaled(processor, q_elt, factor=10)


def awaitable_returning(processor: Processor, q_elt: tuple[int]) -> Awaitable[int]:
    return scaled(processor, q_elt, factor=10)


@pytest.mark.parametrize(
    "coro",
    [
        pytest.param(lambda p, q: scaled(p, q, factor=10), id="lambda"),
        pytest.param(functools.partial(scaled, factor=10), id="partial"),
        pytest.param(AsyncCall(10), id="async-call-object"),
        pytest.param(AsyncCall(10).method, id="bound-method"),
        pytest.param(functools.partial(AsyncCall(10)), id="partial-of-object"),
        pytest.param(CoroutineReturningCall(), id="object-returning-coroutine"),
        pytest.param(awaitable_returning, id="function-annotated-awaitable"),
    ],
)
async def test_a_callable_returning_an_awaitable_is_a_node(coro: Any) -> None:
    seen, sink = collector()
    result = await Plumber(chain("inp", "m", "out", coros={"inp": source_of([1, 2, 3]), "m": coro, "out": sink})).run()
    assert sorted(seen) == [(10,), (20,), (30,)]
    assert (result.state, result["m"].completed, result["m"].items_out) == ("completed", 3, 3)


async def test_a_partial_of_an_async_generator_function_expands() -> None:
    async def repeat(processor: Processor, q_elt: tuple[int], times: int) -> Any:
        for _ in range(times):
            yield q_elt[0]

    seen, sink = collector()
    graph = chain(
        "inp", "r", "out", coros={"inp": source_of([1, 2]), "r": functools.partial(repeat, times=2), "out": sink}
    )
    result = await Plumber(graph).run()
    assert sorted(seen) == [(1,), (1,), (2,), (2,)]
    assert (result["r"].items_in, result["r"].items_out) == (2, 4)


async def test_an_object_whose_call_is_an_async_generator_expands() -> None:
    class Repeat:
        async def __call__(self, processor: Processor, q_elt: tuple[int]) -> AsyncIterator[int]:
            for _ in range(q_elt[0]):
                yield q_elt[0]

    seen, sink = collector()
    result = await Plumber(chain("inp", "r", "out", coros={"inp": source_of([1, 2]), "r": Repeat(), "out": sink})).run()
    assert sorted(seen) == [(1,), (2,), (2,)]
    assert (result["r"].items_in, result["r"].items_out) == (2, 3)


async def test_a_lambda_source_may_return_an_async_generator() -> None:
    async def words(processor: Processor, output_q: Any, text: str) -> AsyncIterator[str]:
        for word in text.split():
            yield word

    seen, sink = collector()
    graph = chain("inp", "out", coros={"inp": lambda p, q: words(p, q, "a b c"), "out": sink})
    result = await Plumber(graph).run()
    assert sorted(seen) == [("a",), ("b",), ("c",)]
    assert result["inp"].items_out == 3


async def test_a_lambda_source_and_a_partial_of_a_node_function() -> None:
    async def count(processor: Processor, output_q: Any, n: int) -> None:
        for i in range(n):
            await output_q.put(i)

    @node
    async def add(item: int, n: int) -> int:
        return item + n

    seen, sink = collector()
    graph = chain(
        "inp",
        "add",
        "out",
        coros={"inp": lambda p, q: count(p, q, 3), "add": functools.partial(add, n=100), "out": sink},
    )
    result = await Plumber(graph).run()
    assert sorted(seen) == [(100,), (101,), (102,)]
    assert result["inp"].items_out == 3


@pytest.mark.parametrize(
    ("coro", "shown"),
    [
        pytest.param(lambda p, q: 3, "3 (int)", id="lambda"),
        pytest.param(functools.partial(lambda p, q, x: [x], x="a"), "['a'] (list)", id="partial-of-lambda"),
    ],
)
async def test_a_lambda_returning_a_non_awaitable_fails_its_item(coro: Any, shown: str) -> None:
    seen, sink = collector()
    graph = chain("inp", "m", "out", coros={"inp": source_of([1]), "m": coro, "out": sink})
    message = (
        f"node 'm': coro returned {shown}, expected an awaitable: a node's function must return a coroutine "
        "(or another awaitable) each time it is called; a plain blocking function needs the property 'executor': "
        "'thread'"
    )
    with pytest.raises(TypeError) as failed:
        await Plumber(graph).run()
    assert failed.value.args == (message,)
    assert seen == []


async def test_an_annotation_that_lies_fails_the_item_with_the_same_message() -> None:
    def liar(processor: Processor, q_elt: tuple[int]) -> Awaitable[int]:
        return q_elt[0]  # type: ignore[return-value]

    seen, sink = collector()
    graph = chain(
        "inp", "m", "out", coros={"inp": source_of([1, 2]), "m": liar, "out": sink}, props={"m": {"on_error": "skip"}}
    )
    result = await Plumber(graph).run()
    assert seen == []
    assert (result.state, result["m"].items_in, result["m"].skipped) == ("completed", 2, 2)


async def test_a_lambda_returning_an_async_generator_in_a_node_is_refused_at_its_call() -> None:
    async def repeat(processor: Processor, q_elt: tuple[int]) -> Any:
        yield q_elt[0]

    graph = chain(
        "inp", "m", "out", coros={"inp": source_of([1]), "m": lambda p, q: repeat(p, q), "out": collector()[1]}
    )
    with pytest.raises(TypeError) as failed:
        await Plumber(graph).run()
    assert re.fullmatch(
        r"node 'm': coro returned <async_generator object .*repeat at 0x[0-9a-f]+> \(async_generator\), "
        r"expected an awaitable: a node that yields its outputs must be known as one when the graph is built: give an "
        r"async generator function \(or a functools.partial of one\) rather than a lambda",
        failed.value.args[0],
    )


async def test_a_lambda_with_an_executor_runs_in_the_pool() -> None:
    seen, sink = collector()
    graph = chain(
        "inp",
        "m",
        "out",
        coros={"inp": source_of([1, 2]), "m": lambda x: x * 7, "out": sink},
        props={"m": {"executor": "thread"}},
    )
    await Plumber(graph).run()
    assert sorted(seen) == [(7,), (14,)]


def test_an_object_with_a_plain_call_needs_an_executor() -> None:
    class Plain:
        def __call__(self, item: int) -> int:
            return item * 7

    plain = Plain()
    graph = chain("inp", "m", "out", coros={"inp": source_of([1]), "m": plain, "out": collector()[1]})
    message = (
        f"node 'm': {plain!r} is a plain (blocking) function; give the node 'executor': 'thread' "
        "(or 'process' for CPU-heavy work) so that it does not block the event loop"
    )
    with pytest.raises(GraphError, match=f"^{re.escape(message)}$"):
        Plumber(graph)


async def test_an_object_with_a_plain_call_runs_with_an_executor() -> None:
    class Plain:
        def __call__(self, item: int) -> int:
            return item * 7

    seen, sink = collector()
    graph = chain(
        "inp",
        "m",
        "out",
        coros={"inp": source_of([1, 2]), "m": Plain(), "out": sink},
        props={"m": {"executor": "thread"}},
    )
    await Plumber(graph).run()
    assert sorted(seen) == [(7,), (14,)]


# -- the original's Processor parameters in 'args' -------------------------------------------------


async def test_queue_size_in_args_bounds_the_input_queue_and_is_not_passed_on() -> None:
    async def add(processor: Processor, q_elt: tuple[int], n: int) -> int:
        return q_elt[0] + n

    seen, sink = collector()
    graph = chain("inp", "add", "out", coros={"inp": source_of([1, 2]), "add": add, "out": sink})
    graph["nodes"]["add"]["args"] = {"n": 10, "queue_size": 5}
    plumber = Plumber(graph)
    assert plumber.nodes[1].input_queue is not None
    assert plumber.nodes[1].input_queue.maxsize == 5
    assert plumber.nodes[2].input_queue is not None
    assert plumber.nodes[2].input_queue.maxsize == 100
    await plumber.run()
    assert sorted(seen) == [(11,), (12,)]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"args": {"queue_size": 0}},
            "node 'add': 'args' entry 'queue_size' is the bound of the node's input queue (as in the original "
            "library) and must be an int >= 1 (every edge is bounded), got 0",
        ),
        (
            {"args": {"queue_size": 5}, "properties": {"queue_size": 6}},
            "node 'add': 'queue_size' is given both in 'args' (5) and in 'properties' (6); give it once",
        ),
    ],
)
def test_queue_size_in_args_is_checked(entry: dict[str, Any], message: str) -> None:
    graph = chain("inp", "add", "out", coros={"inp": source_of([1]), "add": add_one, "out": collector()[1]})
    graph["nodes"]["add"].update(entry)
    with pytest.raises(GraphError, match=f"^{re.escape(message)}$"):
        Plumber(graph)


def test_nodes_gives_the_same_processors_in_the_same_order_each_time() -> None:
    plumber = Plumber(chain("inp", "add", "out", coros={"inp": source_of([1]), "add": add_one, "out": collector()[1]}))
    first, second = plumber.nodes, plumber.nodes
    assert [p.name for p in first] == ["inp", "add", "out"]
    assert len(first) == len(second) == 3
    assert all(a is b for a, b in zip(first, second, strict=True))


globals().update(
    trio_twins(
        globals(),
        asyncio_only={"test_processors_keep_the_original_properties": "create_pipeline() is asyncio-only"},
    )
)
