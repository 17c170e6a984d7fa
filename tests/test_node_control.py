"""Runtime control of one node: pause, resume, stop a source, and custom events, while the run goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from pipelines import GraphError, PipelineStateError, Plumber, Processor
from pipelines.signals import Signal

from .backends import started, trio_twins
from .helpers import source_of, until

N = 30
BOUND = 5


def collector() -> tuple[list[Any], Any]:
    seen: list[Any] = []

    async def sink(processor: Processor, q_elt: tuple[Any]) -> None:
        seen.append(q_elt[0])

    return seen, sink


def two_chains(first: Any, second: Any, middle: Any = None, props: dict[str, Any] | None = None) -> dict[str, Any]:
    """s1 -> a1 -> k1 and s2 -> a2 -> k2: two chains in one run."""

    async def double(processor: Processor, q_elt: tuple[int]) -> int:
        return q_elt[0] * 2

    return {
        "nodes": {
            "s1": {"coro": first},
            "a1": {"coro": double},
            "k1": {"coro": None},
            "s2": {"coro": second},
            "a2": {"coro": middle or double, "properties": props or {}},
            "k2": {"coro": None},
        },
        "graph": {"s1": ["a1"], "a1": ["k1"], "k1": None, "s2": ["a2"], "a2": ["k2"], "k2": None},
    }


def with_sinks(graph: dict[str, Any]) -> tuple[dict[str, Any], list[int], list[int]]:
    seen1, sink1 = collector()
    seen2, sink2 = collector()
    graph["nodes"]["k1"]["coro"] = sink1
    graph["nodes"]["k2"]["coro"] = sink2
    return graph, seen1, seen2


def waiting_putters(plumber: Plumber, node: str) -> int:
    return plumber.processor(node).inputs[0].statistics().waiting_putters


async def test_a_paused_node_holds_its_branch_alone_and_resume_delivers_everything() -> None:
    called = anyio.Event()
    release = anyio.Event()

    async def second(processor: Processor, output_q: Any) -> None:
        await output_q.put(0)
        await called.wait()  # the rest once a2 is in its call with item 0
        for i in range(1, N):
            await output_q.put(i)

    async def held(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] == 0:
            called.set()
            await release.wait()
        return q_elt[0] * 2

    graph, seen1, seen2 = with_sinks(two_chains(source_of(list(range(N))), second, held, {"workers": 1}))
    plumber = Plumber(graph, queue_size=BOUND)
    signals: list[tuple[str, str | None]] = []
    for event in ("paused", "resumed"):
        plumber.signals.connect(event, lambda signal: signals.append((signal.event, signal.node)))
    running = started(plumber.run)
    await called.wait()
    plumber.pause("a2")
    plumber.pause("a2")  # a second pause does nothing
    release.set()
    # a2 finishes the item it was in, then takes nothing: its input fills to its bound, s2 waits
    await until(
        lambda: len(seen1) == N and plumber.stats()["a2"].queue_depth == BOUND and waiting_putters(plumber, "a2")
    )
    assert seen1 == [2 * i for i in range(N)]
    assert plumber.state == "running"
    stats = plumber.stats()
    assert seen2 == [0]
    assert (stats["a2"].items_in, stats["a2"].queue_depth, stats["a2"].queue_bound) == (1, BOUND, BOUND)
    assert stats["s2"].items_out == 1 + BOUND  # the item a2 handled, and the ones its input holds
    assert (stats["a2"].paused, stats["a1"].paused) == (True, False)
    assert (plumber.paused_nodes, plumber.paused) == (("a2",), False)
    plumber.resume("a2")
    result = await running
    assert result.state == "completed"
    assert seen2 == [2 * i for i in range(N)]
    assert (result["a2"].items_in, result["k2"].items_in, result["a2"].paused) == (N, N, False)
    assert signals == [("paused", "a2"), ("resumed", "a2")]


async def test_a_node_paused_before_the_run_takes_nothing_until_resumed() -> None:
    graph, seen1, seen2 = with_sinks(two_chains(source_of(list(range(N))), source_of(list(range(N)))))
    plumber = Plumber(graph, queue_size=BOUND)
    plumber.pause("a2")
    running = started(plumber.run)
    await until(
        lambda: len(seen1) == N and plumber.stats()["a2"].queue_depth == BOUND and waiting_putters(plumber, "a2")
    )
    stats = plumber.stats()
    assert (seen2, stats["a2"].items_in, stats["s2"].items_out) == ([], 0, BOUND)
    plumber.resume("a2")
    result = await running
    assert seen1 == seen2 == [2 * i for i in range(N)]
    assert result.state == "completed"


async def test_a_paused_source_puts_nothing_and_the_run_pause_is_a_separate_hold() -> None:
    graph, seen1, seen2 = with_sinks(two_chains(source_of(list(range(N))), source_of(list(range(N)))))
    plumber = Plumber(graph, queue_size=BOUND)
    plumber.pause("s2")
    running = started(plumber.run)
    await until(lambda: len(seen1) == N)
    assert (plumber.stats()["s2"].items_out, plumber.stats()["s2"].paused) == (0, True)
    plumber.pause()
    plumber.resume("s2")  # the run's pause still holds it
    await anyio.lowlevel.checkpoint()
    assert (plumber.stats()["s2"].items_out, plumber.stats()["s2"].paused) == (0, False)
    plumber.pause("s2")
    plumber.resume()  # and now its own
    await anyio.lowlevel.checkpoint()
    assert plumber.stats()["s2"].items_out == 0
    plumber.resume("s2")
    result = await running
    assert seen2 == [2 * i for i in range(N)]
    assert result["s2"].items_out == N


async def test_stop_while_a_node_is_paused_resumes_it_so_the_run_drains() -> None:
    graph, _, seen2 = with_sinks(two_chains(source_of(list(range(N))), source_of(list(range(N)))))
    plumber = Plumber(graph, queue_size=BOUND)
    plumber.pause("a2")
    running = started(plumber.run)
    await until(lambda: waiting_putters(plumber, "a2") == 1)
    await plumber.stop()
    result = await running
    assert result.state == "stopped"
    assert plumber.paused_nodes == ()
    # what s2 put reached k2: nothing was held back
    assert seen2 == [2 * i for i in range(result["s2"].items_out)]


async def test_stopping_a_source_ends_its_stream_and_the_run_completes() -> None:
    async def endless(processor: Processor, output_q: Any) -> None:
        i = 0
        while True:
            await output_q.put(i)
            i += 1

    graph, seen1, seen2 = with_sinks(two_chains(endless, source_of(list(range(N)))))
    plumber = Plumber(graph, queue_size=BOUND)
    stopped: list[str | None] = []
    plumber.signals.connect("source_stopped", lambda signal: stopped.append(signal.node))
    running = started(plumber.run)
    await until(lambda: len(seen1) >= 10)
    plumber.stop_source("s1")
    plumber.stop_source("s1")  # a second stop does nothing
    result = await running
    assert result.state == "completed"
    put = result["s1"].items_out
    assert put >= 10
    assert seen1 == [2 * i for i in range(put)]  # everything it put reached its sink, and nothing more
    assert seen2 == [2 * i for i in range(N)]
    assert stopped == ["s1"]


async def test_control_of_unknown_nodes_and_of_nodes_that_cannot_stop_is_refused_with_one_line() -> None:
    graph, _, _ = with_sinks(two_chains(source_of([1]), source_of([1])))
    plumber = Plumber(graph)
    with pytest.raises(LookupError) as unknown:
        plumber.pause("nope")
    assert str(unknown.value) == "unknown node 'nope' (nodes: s1, a1, k1, s2, a2, k2)"
    with pytest.raises(LookupError):
        plumber.resume("nope")
    with pytest.raises(ValueError, match="is not a source") as not_source:
        plumber.stop_source("a1")
    assert str(not_source.value) == (
        "node 'a1' is not a source: only a source can be stopped (its stream ends); "
        "hold it with pause('a1'), or stop the whole run with stop()"
    )
    with pytest.raises(PipelineStateError, match="before the run started"):
        plumber.stop_source("s1")
    with pytest.raises(LookupError) as no_events:
        await plumber.send_event("a1", "reload")
    assert str(no_events.value) == (
        "node 'a1' has no event 'reload' (its events: none; declare them in its property 'events')"
    )
    await plumber.run()
    plumber.pause("a1")  # after the end: nothing to hold
    assert plumber.paused_nodes == ()


def events_graph(work: Any, handlers: dict[str, Any], workers: int = 3) -> tuple[dict[str, Any], list[int]]:
    seen, sink = collector()
    graph = {
        "nodes": {
            "s": {"coro": source_of(list(range(200)))},
            "f": {"coro": work, "properties": {"workers": workers, "events": handlers}},
            "k": {"coro": sink},
        },
        "graph": {"s": ["f"], "f": ["k"], "k": None},
    }
    return graph, seen


async def test_events_reach_the_node_in_order_with_their_params_and_never_during_a_call() -> None:
    calls = {"now": 0, "peak": 0}
    handled: list[tuple[str, int, int]] = []

    async def work(processor: Processor, q_elt: tuple[int]) -> int:
        calls["now"] += 1
        calls["peak"] = max(calls["peak"], calls["now"])
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        calls["now"] -= 1
        return q_elt[0]

    async def threshold(processor: Processor, value: int) -> str:
        handled.append(("threshold", value, calls["now"]))
        await anyio.lowlevel.checkpoint()
        handled.append(("threshold", value, calls["now"]))
        return f"threshold {value}"

    async def reload(processor: Processor) -> None:
        handled.append(("reload", -1, calls["now"]))

    graph, seen = events_graph(work, {"threshold": threshold, "reload": reload})
    plumber = Plumber(graph, queue_size=BOUND)
    signals: list[Signal] = []
    plumber.signals.connect("node_event", signals.append)
    running = started(plumber.run)
    await until(lambda: len(seen) >= 20 and calls["now"] > 0)
    answers = await asyncio.gather(
        plumber.send_event("f", "threshold", value=1),
        plumber.send_event("f", "reload"),
        plumber.send_event("f", "threshold", value=2),
    )
    assert answers == ["threshold 1", None, "threshold 2"]
    await running
    assert sorted(seen) == list(range(200))
    assert calls["peak"] > 1  # the workers did overlap their calls: the events had something to wait for
    assert handled == [
        ("threshold", 1, 0),
        ("threshold", 1, 0),
        ("reload", -1, 0),
        ("threshold", 2, 0),
        ("threshold", 2, 0),
    ]
    assert [(s.node, s.name, s.params, s.exception) for s in signals] == [
        ("f", "threshold", {"value": 1}, None),
        ("f", "reload", {}, None),
        ("f", "threshold", {"value": 2}, None),
    ]


async def test_an_event_handler_that_raises_fails_the_sender_not_the_run() -> None:
    async def work(processor: Processor, q_elt: tuple[int]) -> int:
        await anyio.lowlevel.checkpoint()
        return q_elt[0]

    async def broken(processor: Processor, path: str) -> None:
        raise FileNotFoundError(path)

    graph, seen = events_graph(work, {"reload": broken})
    plumber = Plumber(graph, queue_size=BOUND)
    signals: list[Signal] = []
    plumber.signals.connect("node_event", signals.append)
    running = started(plumber.run)
    await until(lambda: len(seen) >= 5)
    with pytest.raises(LookupError) as unknown:
        await plumber.send_event("f", "relaod")
    assert str(unknown.value) == "node 'f' has no event 'relaod' (its events: 'reload')"
    with pytest.raises(FileNotFoundError):
        await plumber.send_event("f", "reload", path="model.bin")
    result = await running
    assert (result.state, sorted(seen)) == ("completed", list(range(200)))
    assert [(s.name, s.params, type(s.exception)) for s in signals] == [
        ("reload", {"path": "model.bin"}, FileNotFoundError)
    ]
    with pytest.raises(PipelineStateError, match="after the run ended"):
        await plumber.send_event("f", "reload", path="x")


def test_events_are_declared_with_handlers_and_checked_when_the_graph_is_built() -> None:
    async def work(processor: Processor, q_elt: tuple[int]) -> int:
        return q_elt[0]

    async def gen(processor: Processor, q_elt: tuple[int]) -> Any:
        yield q_elt[0]

    def build(node: dict[str, Any]) -> Plumber:
        return Plumber({"nodes": {"s": {"coro": source_of([1])}, "f": node}, "graph": {"s": ["f"], "f": None}})

    with pytest.raises(GraphError, match="property 'events' must be a dict of event names to handlers"):
        build({"coro": work, "properties": {"events": ["reload"]}})
    with pytest.raises(GraphError, match="handler of event 'reload'"):
        build({"coro": work, "properties": {"events": {"reload": "not-registered"}}})
    with pytest.raises(GraphError, match="an async generator's call spans its outputs"):
        build({"coro": gen, "properties": {"events": {"reload": work}}})
    with pytest.raises(GraphError, match="events"):
        Plumber({"nodes": {"s": {"coro": source_of([1]), "properties": {"events": {"x": work}}}}, "graph": {"s": None}})


globals().update(
    trio_twins(
        globals(),
        asyncio_only={
            "test_events_reach_the_node_in_order_with_their_params_and_never_during_a_call": "it sends three "
            "events at once with asyncio.gather, whose tasks start in order (trio starts a batch in any order)",
        },
    )
)
