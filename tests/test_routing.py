"""Routing (pipelines.routing): each output to the successors it is routed to, joins never blocked."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import pytest
from aiohttp import web

from pipelines import Failure, GraphError, Plumber, Routed, RouteError, node, parse_flow, route
from pipelines.flow import apply_flow
from pipelines.web import PLUMBER, Inbox, ItemDropped, attach

from .backends import trio_twins
from .helpers import until
from .web_helpers import serving

N = 200


@node
async def numbers(n: int) -> Any:
    for i in range(n):
        yield i


class Sinks:
    """Sinks that record what reaches them, in arrival order."""

    def __init__(self) -> None:
        self.seen: dict[str, list[Any]] = {}

    def __call__(self, name: str) -> dict[str, Any]:
        seen = self.seen.setdefault(name, [])

        @node
        async def sink(item: Any) -> Any:
            seen.append(item)
            return item

        return {"coro": sink}


def size_route(x: int) -> Any:
    """Big ones to 'big', small ones to descriptor 3, the rest unrouted."""
    if x >= 150:
        return route(x, "big")
    if x < 20:
        return route(x, 3)
    return x


@node
async def by_size(x: int) -> Any:
    return size_route(x)


def sized_graph(sinks: Sinks, **props: Any) -> dict[str, Any]:
    flow = parse_flow("src -> b (1 -> s, 2 -> big, 3 -> small)")
    return apply_flow(
        flow,
        {
            "src": {"coro": numbers, "args": {"n": N}},
            "b": {"coro": by_size, "properties": props},
            "s": sinks("s"),
            "big": sinks("big"),
            "small": sinks("small"),
        },
    )


async def test_routed_returns_reach_exactly_their_successors_in_order() -> None:
    sinks = Sinks()
    result = await Plumber(sized_graph(sinks, workers=1)).run()
    assert sinks.seen == {"s": list(range(20, 150)), "big": list(range(150, N)), "small": list(range(20))}
    b = result["b"]
    assert (b.items_in, b.completed, b.items_out, b.dropped) == (N, N, N, 0)
    assert [result[n].items_in for n in ("s", "big", "small")] == [130, 50, 20]


async def test_routing_with_several_workers_loses_and_repeats_nothing() -> None:
    @node
    async def jittery(x: int) -> Any:
        for _ in range(random.Random(x).randrange(4)):
            await anyio.lowlevel.checkpoint()
        return size_route(x)

    sinks = Sinks()
    graph = sized_graph(sinks, workers=4)
    graph["nodes"]["b"]["coro"] = jittery
    result = await Plumber(graph).run()
    assert {name: sorted(seen) for name, seen in sinks.seen.items()} == {
        "s": list(range(20, 150)),
        "big": list(range(150, N)),
        "small": list(range(20)),
    }
    assert result["b"].peak_workers == 4


async def test_an_ordered_routing_node_keeps_input_order_on_each_route() -> None:
    @node
    async def slow_first(x: int) -> Any:
        for _ in range((N - x) % 5):
            await anyio.lowlevel.checkpoint()
        return size_route(x)

    sinks = Sinks()
    graph = sized_graph(sinks, workers=4, ordered=True)
    graph["nodes"]["b"]["coro"] = slow_first
    await Plumber(graph).run()
    assert sinks.seen == {"s": list(range(20, 150)), "big": list(range(150, N)), "small": list(range(20))}


async def test_a_routing_function_chooses_by_name_descriptor_list_or_default() -> None:
    def pick(x: int) -> Any:
        return {0: "even", 1: ["even", "odd"], 2: 2, 3: None, 4: []}[x % 5]

    @node
    async def same(x: int) -> int:
        return x

    sinks = Sinks()
    graph = {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": 20}},
            "b": {"coro": same, "properties": {"route": pick, "routes": {2: "odd"}}},
            "even": sinks("even"),
            "odd": sinks("odd"),
        },
        "graph": {"src": ["b"], "b": ["even", "odd"], "even": None, "odd": None},
    }
    result = await Plumber(graph).run()
    # 0 -> even; 1 -> both; 2 -> descriptor 2 (odd); 3 -> default (even: odd is routed-only); 4 -> nowhere
    assert sinks.seen == {
        "even": [x for x in range(20) if x % 5 in (0, 1, 3)],
        "odd": [x for x in range(20) if x % 5 in (1, 2)],
    }
    b = result["b"]
    assert (b.completed, b.dropped, b.items_out) == (16, 4, 16)  # routed to no successor: dropped


async def test_a_routing_function_is_resolved_through_coro_map() -> None:
    sinks = Sinks()

    @node
    async def same(x: int) -> int:
        return x

    registry: dict[str, Any] = {"same": same, "numbers": numbers, "parity": lambda x: "odd" if x % 2 else "even"}
    registry.update({name: sinks(name)["coro"] for name in ("even", "odd")})
    graph = {
        "nodes": {
            "src": {"coro": "numbers", "args": {"n": 6}},
            "b": {"coro": "same", "properties": {"route": "parity"}},
            "even": {"coro": "even"},
            "odd": {"coro": "odd"},
        },
        "graph": {"src": ["b"], "b": ["even", "odd"], "even": None, "odd": None},
    }
    await Plumber(graph, registry.__getitem__).run()
    assert sinks.seen == {"even": [0, 2, 4], "odd": [1, 3, 5]}


async def test_an_item_routed_away_from_a_join_discards_its_group_and_blocks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # src feeds b and the join; b routes odd items to 'odd' (into the join) and even ones to 'even'.
    @node
    async def parity(x: int) -> Any:
        for _ in range(x % 3):
            await anyio.lowlevel.checkpoint()
        return route(x, "odd" if x % 2 else "even")

    @node
    async def tag(x: int) -> tuple[str, int]:
        return ("odd", x)

    sinks = Sinks()
    graph = {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": N}},
            "b": {"coro": parity, "properties": {"routes": {2: "odd", 3: "even"}, "workers": 3}},
            "odd": {"coro": tag},
            "even": sinks("even"),
            "join": {**sinks("join"), "properties": {"queue_size": 2}},
        },
        "graph": {"src": ["b", "join"], "b": ["odd", "even"], "odd": ["join"], "even": None, "join": None},
    }
    result = await Plumber(graph).run()
    pairs = sinks.seen["join"]
    assert sorted(pairs) == [(x, ("odd", x)) for x in range(1, N, 2)]
    assert [pair for pair in pairs if pair[0] != pair[1][1]] == []  # no mismatched group
    assert sorted(sinks.seen["even"]) == list(range(0, N, 2))
    join = result["join"]
    assert (join.items_in, join.completed, join.dropped, join.in_flight) == (N, N // 2, N // 2, 0)
    # Each group was discarded when its tombstone came, none left waiting for the end of the stream.
    assert "never completed" not in caplog.text
    # Only the successor that leads to the join hears of the items routed away from it.
    assert (result["odd"].items_in, result["odd"].completed) == (N // 2, N // 2)
    assert result["even"].items_in == N // 2


async def test_an_async_generator_routes_each_output() -> None:
    @node
    async def spread(x: int) -> Any:
        yield route(x, "low")
        yield route(10 * x, "high" if x % 2 else "low")
        yield route(100 * x)  # nowhere

    @node
    async def tag(x: int) -> int:
        return x

    sinks = Sinks()
    graph = {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": 6}},
            "g": {"coro": spread, "properties": {"routes": {2: "low", 3: "high"}, "workers": 1}},
            "low": {"coro": tag},
            "high": sinks("high"),
            "pair": sinks("pair"),
        },
        # pair joins src with low: each item's group is (src item, low output), lineage through g
        "graph": {"src": ["g"], "g": ["low", "high"], "low": ["pair"], "high": None, "pair": None},
    }
    result = await Plumber(graph).run()
    assert sinks.seen["high"] == [10 * x for x in range(6) if x % 2]
    assert sinks.seen["pair"] == [y for x in range(6) for y in ([x, 10 * x] if x % 2 == 0 else [x])]
    g = result["g"]
    assert (g.items_in, g.completed, g.items_out) == (6, 6, 12)


async def test_a_generator_routing_into_a_join_discards_the_groups_it_routed_away() -> None:
    @node
    async def split(x: int) -> Any:
        for i in range(3):
            yield route((x, i), "keep", 1) if (x + i) % 2 else route((x, i), "other")

    @node
    async def same(x: Any) -> Any:
        return x

    sinks = Sinks()
    graph = {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": 50}},
            "g": {"coro": split, "properties": {"routes": {2: "keep", 3: "other"}}},
            "keep": {"coro": same},
            "mirror": {"coro": same},
            "other": sinks("other"),
            "join": sinks("join"),
        },
        "graph": {
            "src": ["g"],
            "g": ["keep", "other", "mirror"],
            "keep": ["join"],
            "mirror": ["join"],
            "other": None,
            "join": None,
        },
    }
    result = await Plumber(graph).run()
    kept = [(x, i) for x in range(50) for i in range(3) if (x + i) % 2]
    assert sorted(sinks.seen["join"]) == [(k, k) for k in kept]  # to keep and to mirror, g's default (1)
    assert sorted(sinks.seen["other"]) == [(x, i) for x in range(50) for i in range(3) if (x + i) % 2 == 0]
    assert (result["join"].items_in, result["join"].dropped) == (150, 150 - len(kept))


# -- bad routes ------------------------------------------------------------------------------------


def graph_with(b_props: dict[str, Any], coro: Any = None) -> dict[str, Any]:
    @node
    async def same(x: int) -> int:
        return x

    sinks = Sinks()
    return {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": 3}},
            "b": {"coro": coro or same, "properties": b_props},
            "x": sinks("x"),
            "y": sinks("y"),
        },
        "graph": {"src": ["b"], "b": ["x", "y"], "x": None, "y": None},
    }


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"routes": {2: "z"}}, "node 'b': routes 2 names 'z', which is not a successor (successors: x, y)"),
        ({"routes": {2: "x", "3": ["x"]}}, "node 'b': property 'routes': successor 'x' is under descriptors 2 and 3"),
        (
            {"routes": {1: "x"}},
            "node 'b': property 'routes': descriptor 1 is not a route (1 is the default outcome: its successors are "
            "those no descriptor names)",
        ),
        (
            {"routes": {0: "x"}},
            "node 'b': property 'routes': descriptor 0 is not a route (0 is the default outcome: on_error names the "
            "error node)",
        ),
        ({"routes": {12: "x"}}, "node 'b': property 'routes': descriptor 12 must be an int from 2 to 9"),
        (
            {"routes": {2: []}},
            "node 'b': property 'routes': descriptor 2 must name a successor or a non-empty list of them, got []",
        ),
        (
            {"routes": ["x"]},
            "node 'b': property 'routes' must be a dict of descriptors 2..9 to successor names, got list",
        ),
        ({"route": 5}, "node 'b': route 5 resolved to 5, which is not a function"),
    ],
)
def test_bad_routes_are_refused_when_the_graph_is_built(props: dict[str, Any], message: str) -> None:
    with pytest.raises(GraphError) as caught:
        Plumber(graph_with(props), coro_map=lambda x: x)
    assert str(caught.value) == message


def test_an_async_routing_function_is_refused() -> None:
    async def pick(x: int) -> str:
        return "x"

    with pytest.raises(GraphError, match=r"^node 'b': route 'pick' is async; a routing function is a plain"):
        Plumber(graph_with({"route": pick}))


def test_a_sink_or_a_source_cannot_route() -> None:
    graph = graph_with({})
    graph["nodes"]["x"]["properties"] = {"route": lambda v: "x"}
    with pytest.raises(GraphError, match=r"^node 'x': property 'route': a node without successors has nowhere"):
        Plumber(graph)
    graph = graph_with({})
    graph["nodes"]["src"]["properties"] = {"routes": {2: "b"}}
    with pytest.raises(GraphError, match=r"^node 'src': property 'routes' does not apply to a source"):
        Plumber(graph)


async def test_a_route_to_a_name_that_is_not_a_successor_fails_the_item() -> None:
    @node
    async def astray(x: int) -> Any:
        return route(x, "nope") if x == 1 else route(x, "y")

    graph = graph_with({"routes": {2: "y"}, "on_error": "skip"}, astray)
    result = await Plumber(graph).run()
    assert (result["b"].skipped, result["y"].completed) == (1, 2)

    signals: list[Any] = []
    plumber = Plumber(graph_with({"routes": {2: "y"}}, astray))
    plumber.signals.connect("item_failed", lambda **kw: signals.append(kw))
    with pytest.raises(RouteError) as caught:
        await plumber.run()
    assert str(caught.value) == (
        "node 'b': route to 'nope', which is not a successor or a descriptor of 'b' (successors: x, y; routes: 2 -> y)"
    )
    assert caught.value.__notes__ == ["pipelines: node 'b' failed on item 1"]


async def test_an_unrouted_output_with_only_routed_successors_goes_to_the_error_node() -> None:
    @node
    async def half(x: int) -> Any:
        return route(x, 2) if x % 2 else x

    failures: list[Failure] = []

    @node
    async def report(failure: Failure) -> None:
        failures.append(failure)

    graph = graph_with({"routes": {2: "x", 3: "y"}, "on_error": "errors"}, half)
    graph["nodes"]["errors"] = {"coro": report}
    graph["graph"]["errors"] = None
    await Plumber(graph).run()
    assert [(f.node, f.item, type(f.exception), str(f.exception)) for f in failures] == [
        (
            "b",
            x,
            RouteError,
            f"node 'b': output {x} has no route, and every successor is reached only through one "
            "(successors: x, y; routes: 2 -> x, 3 -> y); return route(value, name)",
        )
        for x in (0, 2)
    ]


def test_route_is_a_value_with_its_targets() -> None:
    assert route(5, "big", 2) == Routed(5, ("big", 2))
    assert repr(route("a", "x")) == "route('a', 'x')"


# -- hooks, the Inbox and the journal ---------------------------------------------------------------


class Heard:
    """A hook recording what node 'b' reports."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any, int]] = []
        self.settled: list[tuple[Any, str, int]] = []

    def node_hooks(self, processor: Any) -> Any:
        if processor.name != "b":
            return None
        heard = self

        class Methods:
            def sent(self, key: Any, value: Any, copies: int) -> None:
                heard.sent.append((key, value, copies))

            def settled(self, key: Any, outcome: str, value: Any, copies: int) -> None:
                heard.settled.append((key, outcome, copies))

        return Methods()


async def test_hooks_hear_each_routed_output_with_its_tombstones_counted() -> None:
    @node
    async def pick(x: int) -> Any:
        return None if x == 3 else route(x, *(("j",) if x % 2 else ("k",) if x else ()))

    @node
    async def same(x: int) -> int:
        return x

    heard = Heard()
    sinks = Sinks()
    graph = {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": 4}},
            "b": {"coro": pick, "properties": {"routes": {2: ["j", "k"]}, "workers": 1}},
            "j": {"coro": same},
            "k": sinks("k"),
            "join": sinks("join"),
        },
        "graph": {"src": ["b", "join"], "b": ["j", "k"], "j": ["join"], "k": None, "join": None},
    }
    result = await Plumber(graph, hooks=[heard]).run()
    # 0: routed nowhere (a tombstone to j); 1: to j; 2: to k and a tombstone to j; 3: None (a tombstone to j)
    assert heard.sent == [(("src", 1), 1, 1), (("src", 2), 2, 2)]
    assert heard.settled == [(("src", 0), "dropped", 2), (("src", 3), "dropped", 2)]
    assert sinks.seen == {"k": [2], "join": [(1, 1)]}
    assert (result["join"].items_in, result["join"].dropped) == (4, 3)


def inbox_app(inbox: Inbox, graph: dict[str, Any]) -> web.Application:
    app = web.Application()
    attach(app, lambda: Plumber(graph), inbox=inbox)

    async def handle(request: web.Request) -> web.Response:
        try:
            return web.json_response(await inbox.submit(int(request.query["x"]), timeout=10))
        except ItemDropped as exc:
            return web.json_response({"dropped": exc.node})

    app.router.add_get("/work", handle)
    return app


async def test_an_inbox_request_routed_to_a_branch_is_answered_by_its_sink() -> None:
    inbox = Inbox(sink="out")

    @node
    async def decide(x: int) -> Any:
        await anyio.sleep(random.random() / 1000)
        if x % 3 == 0:
            return route(x, "double")
        if x % 3 == 1:
            return route(x, "negate")
        return route(x, "elsewhere")

    @node
    async def double(x: int) -> int:
        return 2 * x

    @node
    async def negate(x: int) -> int:
        return -x

    @node
    async def answer(x: int) -> str:
        return f"<{x}>"

    @node
    async def elsewhere(x: int) -> None:
        return None

    graph = {
        "nodes": {
            "requests": {"coro": inbox.source},
            "b": {"coro": decide, "properties": {"routes": {2: "double", 3: "negate", 4: "elsewhere"}, "workers": 4}},
            "double": {"coro": double},
            "negate": {"coro": negate},
            "elsewhere": {"coro": elsewhere},
            "out": {"coro": answer, "properties": {"aggregate_inputs": False}},
        },
        "graph": {
            "requests": ["b"],
            "b": ["double", "negate", "elsewhere"],
            "double": ["out"],
            "negate": ["out"],
            "elsewhere": None,
            "out": None,
        },
    }
    app = inbox_app(inbox, graph)
    async with serving(app) as url, aiohttp.ClientSession() as session:

        async def ask(x: int) -> Any:
            async with session.get(f"{url}/work", params={"x": x}) as response:
                assert response.status == 200
                return await response.json()

        answers = await asyncio.gather(*(ask(x) for x in range(90)))
        expected = [
            f"<{2 * x}>" if x % 3 == 0 else f"<{-x}>" if x % 3 == 1 else {"dropped": "elsewhere"} for x in range(90)
        ]
        assert answers == expected
        await until(lambda: inbox.in_graph == 0)
        stats = app[PLUMBER].stats()
        assert (stats["b"].items_out, stats["out"].completed, stats["elsewhere"].completed) == (90, 60, 30)


async def test_an_inbox_request_routed_away_from_a_join_is_answered_as_dropped() -> None:
    inbox = Inbox(sink="pair")

    @node
    async def gate(x: int) -> Any:
        return route(x, "keep" if x % 2 else "bin")

    @node
    async def same(x: int) -> int:
        return x

    @node
    async def pair(values: tuple[int, int]) -> list[int]:
        return list(values)

    graph = {
        "nodes": {
            "requests": {"coro": inbox.source},
            "b": {"coro": gate, "properties": {"routes": {2: ["keep", "bin"]}}},
            "keep": {"coro": same},
            "bin": {"coro": same},
            "pair": {"coro": pair},
        },
        "graph": {"requests": ["b", "pair"], "b": ["keep", "bin"], "keep": ["pair"], "bin": None, "pair": None},
    }
    app = inbox_app(inbox, graph)
    async with serving(app) as url, aiohttp.ClientSession() as session:

        async def ask(x: int) -> Any:
            async with session.get(f"{url}/work", params={"x": x}) as response:
                return await response.json()

        answers = await asyncio.gather(*(ask(x) for x in range(20)))
        assert answers == [[x, x] if x % 2 else {"dropped": "bin"} for x in range(20)]  # where its path ended
        await until(lambda: inbox.in_graph == 0)


async def test_a_journaled_run_with_routes_resumes_without_repeating_anything(tmp_path: Path) -> None:
    from pipelines.journal.engine import RunJournal

    seen: dict[str, list[tuple[Any, Any]]] = {"small": [], "join": []}

    def recorder(name: str) -> Any:
        async def record(processor: Any, q_elt: tuple[Any, ...]) -> None:
            seen[name].append((processor.item_id, q_elt[0] if len(q_elt) == 1 else q_elt))

        return record

    @node
    async def by_parity(x: int) -> Any:
        return route(x, "big" if x % 2 else "small")

    @node
    async def same(x: int) -> int:
        return x

    def graph() -> dict[str, Any]:
        return {
            "nodes": {
                "src": {"coro": numbers, "args": {"n": N}},
                "b": {"coro": by_parity, "properties": {"routes": {2: "big", 3: "small"}}},
                "big": {"coro": same},
                "small": {"coro": recorder("small"), "properties": {"queue_size": 5}},
                "join": {"coro": recorder("join"), "properties": {"queue_size": 5}},
            },
            "graph": {"src": ["b", "join"], "b": ["big", "small"], "big": ["join"], "small": None, "join": None},
        }

    path = tmp_path / "j.db"
    first = Plumber(graph(), journal=path)
    first.create_pipeline()
    await until(lambda: len(seen["small"]) >= 30)
    await first.stop()
    assert (await first.join()).state == "stopped"
    before = {name: len(items) for name, items in seen.items()}
    assert before["small"] < N // 2
    second = Plumber(graph(), journal=path)
    result = await second.run()
    assert result.state == "completed"
    (journal,) = [hook for hook in second.hooks if isinstance(hook, RunJournal)]
    assert journal.counts == {}
    assert second.journal is not None
    assert second.journal.resumed
    small = Counter(seen["small"])
    joined = Counter(seen["join"])
    assert small == Counter({(("src", x), x): 1 for x in range(0, N, 2)})  # every item once
    assert joined == Counter({(("src", x), (x, x)): 1 for x in range(1, N, 2)})
    assert result["join"].dropped + result["join"].completed == result["join"].items_in


async def test_a_crashed_journaled_run_with_routes_resumes(tmp_path: Path) -> None:
    class Crash(Exception):
        pass

    seen: list[Any] = []
    crash = [True]

    async def record(processor: Any, q_elt: tuple[Any, ...]) -> None:
        if crash[0] and q_elt[0] == 151:
            raise Crash
        seen.append((processor.item_id, q_elt[0]))

    @node
    async def by_parity(x: int) -> Any:
        return route(x, "odd" if x % 2 else "even")

    def graph() -> dict[str, Any]:
        return {
            "nodes": {
                "src": {"coro": numbers, "args": {"n": N}},
                "b": {"coro": by_parity, "properties": {"routes": {2: "odd", 3: "even"}}},
                "odd": {"coro": record, "properties": {"queue_size": 5}},
                "even": {"coro": record, "properties": {"queue_size": 5}},
            },
            "graph": {"src": ["b"], "b": ["odd", "even"], "odd": None, "even": None},
        }

    path = tmp_path / "j.db"
    with contextlib.suppress(Crash):
        await Plumber(graph(), journal=path).run()
    crash[0] = False
    result = await Plumber(graph(), journal=path).run()
    assert result.state == "completed"
    counts = Counter(seen)
    assert set(counts) == {(("src", x), x) for x in range(N)}
    assert sum(n - 1 for n in counts.values()) <= 10  # at most a batch of each sink redone


# -- the flow syntax and drawings -------------------------------------------------------------------


def test_descriptors_2_to_9_are_routes_in_the_flow() -> None:
    flow = parse_flow("src -> b (0 -> f, 1 -> s, 2 -> big, 3 -> small, 9 -> (x || y) -> z)")
    assert flow.successors["b"] == ["s", "big", "small", "x", "y"]
    assert flow.properties["b"] == {
        "on_error": "f",
        "routes": {2: ["big"], 3: ["small"], 9: ["x", "y"]},
    }
    assert flow.successors["x"] == flow.successors["y"] == ["z"]


def test_without_a_success_branch_the_default_outputs_go_on() -> None:
    flow = parse_flow("a -> b (2 -> big) -> out")
    assert (flow.successors["b"], flow.successors["big"]) == (["big", "out"], ["out"])
    assert flow.properties["b"] == {"routes": {2: ["big"]}}
    assert flow.properties["out"] == {"aggregate_inputs": False}


def test_routes_given_in_a_statement_and_in_nodes_must_agree() -> None:
    flow = parse_flow("a -> b (2 -> x, 3 -> y)")
    nodes: dict[str, Any] = {name: {"coro": "f"} for name in flow.nodes}
    nodes["b"]["properties"] = {"routes": {"2": "x", 3: ["y"]}}  # the same, as JSON would write it
    assert apply_flow(flow, nodes)["nodes"]["b"]["properties"]["routes"] == {"2": "x", 3: ["y"]}
    nodes["b"]["properties"] = {"routes": {2: "y", 3: "x"}}
    with pytest.raises(GraphError, match=r"^node 'b': property 'routes' is \{2: \['x'\], 3: \['y'\]\} in the flow"):
        apply_flow(flow, nodes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "b (10 -> g)",
            "flow.txt:1:4: expected an outcome descriptor: 0 (failure), 1 (success) or a route 2..9, got '10' "
            "(there are ten descriptors, 0 to 9)\n    b (10 -> g)\n       ^",
        ),
        (
            "b (2.5 -> g)",
            "flow.txt:1:4: expected an outcome descriptor: 0 (failure), 1 (success) or a route 2..9, got '2.5'\n"
            "    b (2.5 -> g)\n       ^",
        ),
        ("b (2 g)", "flow.txt:1:6: expected '->' after outcome 2, got 'g'\n    b (2 g)\n         ^"),
        (
            "b (2 -> g, 2 -> h)",
            "flow.txt:1:12: outcome 2 is given twice for node 'b' (first at 1:4)\n"
            "    b (2 -> g, 2 -> h)\n               ^",
        ),
        (
            "b (1 -> x, 2 -> x)",
            "flow.txt:1:6: node 'x' follows 'b' both by default here and through route 2 at 1:12; a successor is "
            "one or the other\n    b (1 -> x, 2 -> x)\n         ^",
        ),
        (
            "b (2 -> x)\nb -> x",
            "flow.txt:2:3: node 'x' follows 'b' both by default here and through route 2 at 1:4; a successor is "
            "one or the other\n    b -> x\n      ^",
        ),
        (
            "b (2 -> x, 3 -> x)",
            "flow.txt:1:12: node 'x' follows 'b' through route 2 (at 1:4) and route 3; give it one descriptor, and "
            "route an output to both if need be\n    b (2 -> x, 3 -> x)\n               ^",
        ),
        (
            "2 -> b",
            "flow.txt:1:1: an outcome branch must follow a node, as in 'b (0 -> f, 1 -> s)'\n    2 -> b\n    ^",
        ),
        (
            "b[routes=2]",
            "flow.txt:1:3: 'routes' is not an option: write the routes as outcomes, as in 'b (1 -> s, 2 -> big)'\n"
            "    b[routes=2]\n      ^",
        ),
    ],
)
def test_malformed_routes_in_a_flow_are_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(GraphError) as caught:
        parse_flow(text, filename="flow.txt")
    assert str(caught.value) == message


def routed_spec() -> Plumber:
    flow = parse_flow("a -> b (0 -> e, 1 -> s, 2 -> big)")

    @node
    async def same(x: int) -> int:
        return x

    nodes: dict[str, Any] = {name: {"coro": same} for name in flow.nodes}
    nodes["a"] = {"coro": numbers, "args": {"n": 1}}
    return Plumber(apply_flow(flow, nodes))


def test_drawings_label_each_route_with_its_descriptor() -> None:
    from pipelines import to_ascii, to_dot, to_mermaid

    plumber = routed_spec()
    assert '    n1 --> n3\n    n1 -->|"2"| n4\n    n1 -. on_error .-> n2\n' in to_mermaid(plumber)
    assert '    "b" -> "s";\n    "b" -> "big" [label="2"];\n' in to_dot(plumber)
    assert to_ascii(plumber).splitlines()[1] == "1  b    --> s, big (2)  ..> e (on_error)"


def test_drawings_note_a_routing_function() -> None:
    from pipelines import to_ascii

    def parity(x: int) -> str:
        return "x" if x % 2 else "y"

    text = to_ascii(Plumber(graph_with({"route": parity})))
    assert text.splitlines()[1] == "1  b    --> x, y  [route=parity]"


async def test_a_graph_file_routes_by_flow_and_by_a_registered_function(tmp_path: Path) -> None:
    from pipelines import Registry, load_graph

    seen = Sinks()

    @node
    async def same(x: int) -> int:
        return x

    def parity(x: int) -> str:
        return "even" if x % 2 == 0 else "odd"

    registry = Registry(
        {
            "numbers": numbers,
            "same": same,
            "parity": parity,
            **{name: seen(name)["coro"] for name in ("s", "big", "even", "odd")},
            "by_size": by_size,
        }
    )
    (tmp_path / "routes.yaml").write_text(
        "nodes:\n"
        "  src: {coro: numbers, args: {n: 200}}\n"
        "  b: {coro: by_size, properties: {workers: 1}}\n"
        "  s: {coro: s}\n"
        "  big: {coro: big}\n"
        "  small: {coro: same, properties: {route: parity}}\n"
        "  even: {coro: even}\n"
        "  odd: {coro: odd}\n"
        'flow: "src -> b (1 -> s, 2 -> big, 3 -> small -> (even || odd))"\n'
    )
    graph = load_graph(tmp_path / "routes.yaml")
    assert graph["nodes"]["b"]["properties"] == {"workers": 1, "routes": {2: ["big"], 3: ["small"]}}
    await Plumber(graph, registry).run()
    assert seen.seen == {
        "s": list(range(20, 150)),
        "big": list(range(150, N)),
        "even": list(range(0, 20, 2)),
        "odd": list(range(1, 20, 2)),
    }

    (tmp_path / "bad.yaml").write_text(
        "nodes:\n  src: {coro: numbers, args: {n: 1}}\n  b: {coro: same, properties: {route: 'os:system'}}\n"
        "  s: {coro: s}\ngraph: {src: [b], b: [s], s: null}\n"
    )
    with pytest.raises(GraphError, match=r"^node 'b': coro_map could not resolve route 'os:system': LookupError"):
        Plumber(load_graph(tmp_path / "bad.yaml"), registry)


async def test_descriptor_1_names_nothing_when_every_successor_is_routed_only() -> None:
    @node
    async def to_default(x: int) -> Any:
        return route(x, 1)

    with pytest.raises(RouteError) as caught:
        await Plumber(graph_with({"routes": {2: "x", 3: "y"}}, to_default)).run()
    assert str(caught.value) == (
        "node 'b': route to 1, which is not a successor or a descriptor of 'b' (successors: x, y; routes: 2 -> x, "
        "3 -> y)"
    )


def test_only_a_node_that_routes_gets_a_router() -> None:
    plumber = Plumber(sized_graph(Sinks()))
    assert {p.name: p.router is not None for p in plumber.nodes} == {
        "src": False,
        "b": True,
        "s": False,
        "big": False,
        "small": False,
    }


globals().update(
    trio_twins(
        globals(),
        asyncio_only={
            "test_an_inbox_request_routed_to_a_branch_is_answered_by_its_sink": "pipelines.web is asyncio-only",
            "test_an_inbox_request_routed_away_from_a_join_is_answered_as_dropped": "pipelines.web is asyncio-only",
            "test_a_journaled_run_with_routes_resumes_without_repeating_anything": "the journal is asyncio-only",
            "test_a_crashed_journaled_run_with_routes_resumes": "the journal is asyncio-only",
        },
    )
)
