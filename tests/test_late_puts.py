"""Nothing put after the end is lost: a source's late puts are refused, a pending one is delivered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipelines import PipelineStateError, Plumber, Processor


async def test_a_source_that_returns_at_once_has_its_background_puts_refused() -> None:
    seen: list[int] = []
    feeders: list[asyncio.Task[None]] = []

    async def numbers(processor: Processor, output_q: Any) -> None:
        async def feed() -> None:
            for i in range(3):
                await output_q.put(i)

        feeders.append(asyncio.create_task(feed()))  # and return without awaiting it

    async def show(processor: Processor, q_elt: tuple[int]) -> None:
        seen.append(q_elt[0])

    graph = {
        "nodes": {"numbers": {"coro": numbers}, "show": {"coro": show}},
        "graph": {"numbers": ["show"], "show": None},
    }
    result = await Plumber(graph).run()
    with pytest.raises(PipelineStateError, match="source 'numbers' has ended"):
        await feeders[0]
    assert result.state == "completed"
    assert (result["numbers"].items_out, result["show"].items_in, seen) == (0, 0, [])


async def test_put_nowait_after_the_source_ended_raises_instead_of_queue_full() -> None:
    ports: list[Any] = []

    async def numbers(processor: Processor, output_q: Any) -> None:
        ports.append(output_q)

    async def show(processor: Processor, q_elt: tuple[int]) -> None:
        pass

    graph = {
        "nodes": {"numbers": {"coro": numbers}, "show": {"coro": show}},
        "graph": {"numbers": ["show"], "show": None},
    }
    plumber = Plumber(graph)
    await plumber.run()
    assert ports[0].ended
    with pytest.raises(PipelineStateError, match="source 'numbers' has ended"):
        ports[0].put_nowait(1)


async def test_a_put_waiting_for_room_when_the_source_returns_is_delivered_and_later_ones_refused() -> None:
    seen: list[int] = []
    gate = asyncio.Event()
    entered = asyncio.Event()
    feeders: list[asyncio.Task[None]] = []

    async def numbers(processor: Processor, output_q: Any) -> None:
        await output_q.put(0)  # the sink holds it until the gate opens
        await output_q.put(1)  # then the sink's input (bound 1) is full

        async def feed() -> None:
            entered.set()
            await output_q.put(2)  # waits for room: still pending when the source returns
            await output_q.put(3)  # after the end: refused

        feeders.append(asyncio.create_task(feed()))
        await entered.wait()
        assert output_q.pending == 1
        gate.set()

    async def show(processor: Processor, q_elt: tuple[int]) -> None:
        seen.append(q_elt[0])
        await gate.wait()

    graph = {
        "nodes": {"numbers": {"coro": numbers}, "show": {"coro": show, "properties": {"queue_size": 1}}},
        "graph": {"numbers": ["show"], "show": None},
    }
    result = await Plumber(graph).run()
    with pytest.raises(PipelineStateError, match="source 'numbers' has ended"):
        await feeders[0]
    assert result.state == "completed"
    assert (seen, result["numbers"].items_out, result["show"].completed) == ([0, 1, 2], 3, 3)
