"""Pause and resume: the valve holds the sources; what is in the graph drains; nothing is lost."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from pipelines import PipelineStateError, Plumber, Processor, node

from .backends import started, trio_twins
from .helpers import add_one, chain, source_of, until, yield_now


@node
async def add_one_item(x: int) -> int:
    return x + 1


def endless_chain(seen: list[int], sink_gate: anyio.Event | None = None) -> Plumber:
    async def endless(processor: Processor, output_q: Any) -> None:
        i = 0
        while True:
            await output_q.put(i)
            i += 1

    async def sink(processor: Processor, q_elt: tuple[int]) -> None:
        if sink_gate is not None:
            await sink_gate.wait()
        seen.append(q_elt[0])
        await anyio.lowlevel.checkpoint()

    return Plumber(chain("inp", "a", "out", coros={"inp": endless, "a": add_one, "out": sink}), queue_size=10)


def drained(plumber: Plumber) -> bool:
    return all(s.in_flight == 0 and s.queue_depth == 0 for s in plumber.stats().values())


async def held_then_resumed(plumber: Plumber, running: Any, seen: list[int], put: int) -> int:
    """With the run paused and drained: the source put nothing more than `put` items and all reached
    the sink; resumed, items flow again; stopped, every item put reached it. Returns how many."""
    await yield_now(500)
    assert plumber.stats()["inp"].items_out == put
    assert seen == [i + 1 for i in range(put)]
    plumber.resume()
    assert not plumber.paused
    await until(lambda: len(seen) >= put + 100)
    await plumber.stop()
    result = await running
    assert result.state == "stopped"
    total: int = result["inp"].items_out
    assert seen == [i + 1 for i in range(total)]
    return total


async def test_pause_holds_the_sources_and_resume_loses_nothing() -> None:
    seen: list[int] = []
    plumber = endless_chain(seen)
    events: list[str] = []
    for event in ("paused", "resumed"):
        plumber.signals.connect(event, lambda signal: events.append(signal.event))
    running = started(plumber.run)
    await until(lambda: len(seen) >= 100)
    plumber.pause()
    assert plumber.paused
    await until(lambda: drained(plumber))
    await held_then_resumed(plumber, running, seen, plumber.stats()["inp"].items_out)
    assert events == ["paused", "resumed"]


class _Keys:
    """A hook hearing each result at the sink: installing it makes the run keep its keys."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, int]] = []

    def node_hooks(self, node: Processor) -> object | None:
        return self if node.name == "out" else None

    def result(self, key: Any, value: Any) -> None:
        self.heard.append(key)


@pytest.mark.parametrize("fan", [1, 2], ids=["one-successor", "two-successors"])
@pytest.mark.parametrize("keyed", [False, True], ids=["keyless", "keyed"])
async def test_pause_holds_a_yielding_source_and_resume_loses_nothing(keyed: bool, fan: int) -> None:
    """A source that yields its items and never awaits: its own loop (SourceOutput.pump) sees the
    pause at its next item, and an item that finds no room keeps its position while it waits.
    With two successors, each item reaches both, and a stop splits none between them."""
    seen: list[int] = []
    seen_too: list[int] = []

    @node
    async def endless() -> Any:
        for i in itertools.count():
            yield i

    @node
    async def into(x: int) -> None:
        seen.append(x)

    @node
    async def into_too(x: int) -> None:
        seen_too.append(x)

    keys = _Keys()
    graph = chain("inp", "a", "out", coros={"inp": endless, "a": add_one_item, "out": into})
    if fan == 2:  # inp also feeds b -> out_too
        graph["nodes"].update({"b": {"coro": add_one_item}, "out_too": {"coro": into_too}})
        graph["graph"].update({"inp": ["a", "b"], "b": ["out_too"], "out_too": None})
    plumber = Plumber(graph, queue_size=10, hooks=[keys] if keyed else [])
    running = started(plumber.run)
    await until(lambda: len(seen) >= 100)
    assert plumber.processor("inp").keyless is not keyed
    plumber.pause()
    # not one item more from here on, but the one whose put already waited for room
    put = plumber.stats()["inp"].items_out + plumber.processor("inp").output_queue.pending
    await until(lambda: drained(plumber))
    total = await held_then_resumed(plumber, running, seen, put)
    # each item's key is its position at the source, whether its put found room or waited
    assert keys.heard == ([("inp", i) for i in range(total)] if keyed else [])
    assert seen_too == (seen if fan == 2 else [])


async def test_stop_while_paused_drains_and_ends_stopped() -> None:
    seen: list[int] = []
    gate = anyio.Event()
    plumber = endless_chain(seen, gate)
    running = started(plumber.run)
    await until(lambda: plumber.stats()["inp"].items_out >= 15)
    plumber.pause()
    plumber.pause()  # a second pause does nothing
    gate.set()
    await plumber.stop()
    result = await running
    assert result.state == "stopped"
    # every item put reached the sink (the sink's waiting workers go on in any order once the gate opens)
    assert sorted(seen) == [i + 1 for i in range(result["inp"].items_out)]
    assert plumber.paused  # still paused; resuming an ended run does nothing harmful
    plumber.resume()
    assert not plumber.paused


async def test_put_nowait_while_paused_is_full_and_sends_nothing() -> None:
    outcomes: list[str] = []
    resumed = anyio.Event()

    async def source(processor: Processor, output_q: Any) -> None:
        output_q.put_nowait("before")
        plumber.pause()
        try:
            output_q.put_nowait("held")
        except asyncio.QueueFull:
            outcomes.append("full")
        resumed.set()
        await output_q.put("after")  # waits at the valve until resume()

    seen: list[str] = []

    async def sink(processor: Processor, q_elt: tuple[str]) -> None:
        seen.append(q_elt[0])

    plumber = Plumber(chain("inp", "out", coros={"inp": source, "out": sink}))
    running = started(plumber.run)
    await resumed.wait()
    await yield_now(50)
    assert seen == ["before"]
    plumber.resume()
    result = await running
    assert outcomes == ["full"]
    assert seen == ["before", "after"]
    assert result["inp"].items_out == 2


async def test_pause_before_the_run_is_an_error_and_after_it_does_nothing() -> None:
    plumber = Plumber(chain("inp", "out", coros={"inp": source_of([1]), "out": add_one}))
    with pytest.raises(PipelineStateError, match=r"^pause\(\) before the run started$"):
        plumber.pause()
    await plumber.run()
    plumber.pause()
    assert not plumber.paused


async def test_settled_reports_where_each_item_ends() -> None:
    async def keep_odd(x: int) -> int | None:
        if x == 4:
            raise ValueError("four")
        return x if x % 2 else None

    async def sink(x: int) -> int:
        return x * 10

    graph = {
        "nodes": {
            "inp": {"coro": source_of([1, 2, 3, 4, 5])},
            "odd": {"coro": keep_odd, "properties": {"style": "item", "on_error": "skip"}},
            "out": {"coro": sink, "properties": {"style": "item"}},
        },
        "graph": {"inp": ["odd"], "odd": ["out"], "out": None},
    }
    ended: list[tuple[str, Any, str, Any]] = []

    class Ends:
        def node_hooks(self, node: Processor) -> Any:
            name = node.name

            class PerNode:
                def settled(self, key: Any, outcome: str, value: Any, copies: int) -> None:
                    ended.append((name, key, outcome, value if not isinstance(value, Exception) else repr(value)))

                def result(self, key: Any, value: Any) -> None:
                    ended.append((name, key, "result", value))

            return PerNode()

    plumber = Plumber(graph, hooks=[Ends()])
    await plumber.run()
    assert sorted(ended) == [
        ("odd", ("inp", 1), "dropped", None),
        ("odd", ("inp", 3), "skipped", "ValueError('four')"),
        ("out", ("inp", 0), "result", 10),
        ("out", ("inp", 2), "result", 30),
        ("out", ("inp", 4), "result", 50),
    ]


globals().update(trio_twins(globals()))
