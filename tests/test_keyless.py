"""Keyless runs: items travel without their lineage keys where nothing in the run needs them.

What decides it (`Plumber.keys_needed`, pipelines.lineage.needs_keys), and the property that a run
does the same without keys as with them: the same items reach the sinks, and every node counts the
same, on asyncio, uvloop and trio.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import Plumber, node
from pipelines.transport import MemoryTransport

from .backends import BACKENDS, run_on


@node
async def numbers(n: int) -> Any:
    for i in range(n):
        yield i


@node
async def inc(x: int) -> int:
    return x + 1


@node
async def add(pair: tuple[int, int]) -> int:
    return sum(pair)


@node
async def twice(x: int) -> Any:
    yield x
    yield x


@node
async def keep(x: int) -> None:
    return None


class Silent:
    """A hook that hears nothing: installing it is enough for the items to keep their keys."""


class MyTransport(MemoryTransport):
    """The in-memory transport under another name: a transport we do not know may read the keys."""


def spec(graph: dict[str, list[str] | None], **nodes: dict[str, Any]) -> dict[str, Any]:
    """A graph over `graph`'s edges: a source 's' of 3 numbers, `inc` everywhere else unless given."""
    made = {name: nodes.get(name, {"coro": inc}) for name in graph}
    made["s"] = nodes.get("s", {"coro": numbers, "args": {"n": 3}})
    return {"nodes": made, "graph": graph}


CHAIN = {"s": ["a"], "a": ["b"], "b": None}
TREE = {"s": ["a", "b"], "a": ["c", "d"], "b": None, "c": None, "d": None}


@pytest.mark.parametrize(
    ("graph", "why"),
    [
        (spec(CHAIN), None),
        (spec(TREE), None),
        (spec(CHAIN, b={"coro": inc, "properties": {"workers": 3, "ordered": True, "on_error": "skip"}}), None),
        (spec({"s": ["a", "b"], "a": ["c"], "b": ["c"], "c": None}, c={"coro": add}), "node 'c' is a join"),
        (spec(CHAIN, a={"coro": twice}), "node 'a' is an async generator"),
        (spec(CHAIN, a={"coro": inc, "properties": {"route": lambda x: "b"}}), "node 'a' routes its outputs"),
        (
            spec({"s": ["a"], "a": ["b"], "b": None, "e": None}, a={"coro": inc, "properties": {"on_error": "e"}}),
            "node 'a' sends its failures to an error node",
        ),
        (
            spec({"e": None, "s": ["a"], "a": ["b"], "b": None}, a={"coro": inc, "properties": {"on_error": "e"}}),
            "node 'e' is an error node",
        ),
        (spec(CHAIN, b={"coro": inc, "properties": {"input": "latest"}}), "node 'b' has a lossy input"),
        (
            spec(
                {"s": ["c"], "t": ["c"], "c": None},
                t={"coro": numbers, "args": {"n": 2}},
                c={"coro": inc, "properties": {"aggregate_inputs": False}},
            ),
            "node 'c' has 2 producers",
        ),
    ],
    ids=[
        "chain",
        "tree",
        "workers-ordered-skip",
        "join",
        "generator",
        "route",
        "error-node",
        "error-node-first",
        "lossy",
        "merge",
    ],
)
async def test_items_keep_their_keys_only_where_something_in_the_run_needs_them(
    graph: dict[str, Any], why: str | None
) -> None:
    plumber = Plumber(graph)
    assert plumber.keys_needed == why
    await plumber.run()
    assert {p.name: p.keyless for p in plumber.nodes} == {name: why is None for name in graph["nodes"]}


async def test_a_hook_or_another_transport_keeps_the_keys() -> None:
    hooked = Plumber(spec(CHAIN), hooks=[Silent()])
    assert hooked.keys_needed == "hooks are installed (Silent)"
    carried = Plumber(spec(CHAIN), transport=MyTransport())
    assert carried.keys_needed == "the transport is a MyTransport"
    for plumber in (hooked, carried):
        await plumber.run()
        assert not any(p.keyless for p in plumber.nodes)


async def test_a_keyless_node_input_queue_takes_and_gives_bare_items() -> None:
    graph = spec({"s": ["a"], "a": ["b"], "b": None}, s={"coro": numbers, "args": {"n": 0}}, b={"coro": keep})
    graph["nodes"]["a"] = {"coro": inc, "properties": {"queue_size": 4}}
    plumber = Plumber(graph, collect_outputs=True)
    a = plumber.processor("a")
    a.valve.close()  # hold `a`, so that what is put stays in its input
    plumber.create_pipeline()
    await a.input_queue.put(10)
    a.input_queue.put_nowait(20)
    await a.input_queue.put(30)
    assert a.input_queue.get_nowait() == 10
    assert await a.input_queue.get() == 20
    a.valve.open()
    result = await plumber.join()
    assert a.keyless
    stats = result.stats["a"]
    assert (stats.items_in, stats.completed, stats.dropped, stats.items_out) == (3, 1, 2, 1)
    assert result.stats["b"].items_in == 1


# -- the property: the same run with and without keys ---------------------------------------------

Tree = tuple[dict[str, Any], list[str]]


def _stage(kind: str, seed: int) -> Any:
    """A node's function: 'map' (suspends first), 'filter' (drops a third) or 'fail' (raises on a third)."""

    async def stage(x: int) -> int | None:
        if kind == "map":
            await anyio.lowlevel.checkpoint()
        out = (x * (seed % 7 + 2) + seed) % 1009
        if out % 3 == 0:
            if kind == "filter":
                return None
            if kind == "fail":
                raise ValueError(out)
        return out

    return stage


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    """A random tree of up to 10 nodes under one or two sources: each node has one producer."""
    size = draw(st.integers(2, 10))
    names = [f"n{i}" for i in range(size)]
    sources = names[: draw(st.integers(1, min(2, size - 1)))]
    succ: dict[str, list[str]] = {n: [] for n in names}
    for i, name in enumerate(names):
        if name not in sources:
            succ[draw(st.sampled_from(names[:i]))].append(name)
    nodes: dict[str, Any] = {}
    for name in names:
        if name in sources:
            items = draw(st.lists(st.integers(0, 1000), max_size=40))

            async def source(items: list[int] = items) -> Any:
                for item in items:
                    yield item

            nodes[name] = {"coro": node(source)}
            continue
        kind = draw(st.sampled_from(["map", "filter", "fail"]))
        props: dict[str, Any] = {"queue_size": draw(st.integers(1, 6))}
        workers = draw(st.sampled_from([None, 1, 3]))
        if workers is not None:
            props["workers"] = workers
        props["ordered"] = draw(st.booleans())
        if kind == "fail":
            props["on_error"] = "skip"
        nodes[name] = {"coro": node(_stage(kind, draw(st.integers(0, 1000)))), "properties": props}
    sinks = [name for name in names if not succ[name] and name not in sources]
    return {"nodes": nodes, "graph": {n: succ[n] or None for n in names}}, sinks


def _run(loop: str, graph: dict[str, Any], sinks: list[str], hooks: list[Any]) -> tuple[Any, ...]:
    seen: dict[str, Counter[int]] = defaultdict(Counter)
    nodes = dict(graph["nodes"])
    for name in sinks:
        call = nodes[name]["coro"]

        async def sink(x: int, name: str = name, call: Any = call) -> None:
            out = await call(x)
            if out is not None:
                seen[name][out] += 1

        nodes[name] = {**nodes[name], "coro": node(sink)}
    plumber = Plumber({"nodes": nodes, "graph": graph["graph"]}, hooks=hooks)

    async def main() -> Any:
        with anyio.fail_after(30):
            return await plumber.run()

    result = run_on(loop, main)
    counts = {
        name: (s.items_in, s.items_out, s.completed, s.dropped, s.skipped, s.failed, s.in_flight)
        for name, s in result.stats.items()
    }
    return plumber.keys_needed, dict(seen), counts


@pytest.mark.parametrize("loop", BACKENDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=trees())
def test_a_run_without_keys_gives_what_it_gives_with_them(loop: str, case: Tree) -> None:
    graph, sinks = case
    bare_why, bare_seen, bare_counts = _run(loop, graph, sinks, [])
    keyed_why, keyed_seen, keyed_counts = _run(loop, graph, sinks, [Silent()])
    assert (bare_why, keyed_why) == (None, "hooks are installed (Silent)")
    assert bare_seen == keyed_seen
    assert bare_counts == keyed_counts
    for items_in, _, completed, dropped, skipped, failed, in_flight in bare_counts.values():
        assert in_flight == 0
        assert items_in == completed + dropped + skipped + failed
