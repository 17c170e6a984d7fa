"""MemoryEdge: strict bounds, batch handoff, end-of-stream, and waking both sides."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from pipelines.edges import EdgeStatistics, MemoryEdge

from .backends import Background, trio_twins
from .helpers import until


async def test_put_many_within_bound_does_not_wait() -> None:
    edge = MemoryEdge("c", 5)
    assert await edge.put_many([1, 2, 3]) == 0.0
    assert edge.qsize() == 3
    assert await edge.get_many() == [1, 2, 3]


async def test_put_many_beyond_bound_fills_then_waits_for_room() -> None:
    edge = MemoryEdge("c", 3)
    async with anyio.create_task_group() as group:
        putter = Background(group, lambda: edge.put_many([1, 2, 3, 4, 5]))
        await until(lambda: edge.statistics().waiting_putters == 1)
        assert edge.qsize() == 3  # the bound is strict
        assert await edge.get_many() == [1, 2, 3]
        await until(putter.done)
        assert await edge.get_many() == [4, 5]
    assert await putter.result() >= 0.0


async def test_get_many_takes_a_fair_share_for_several_consumers() -> None:
    edge = MemoryEdge("c", 100)
    await edge.put_many(list(range(10)))
    assert await edge.get_many(share=4) == [0, 1, 2]
    assert await edge.get_many(share=4) == [3, 4]
    assert await edge.get_many(share=1) == [5, 6, 7, 8, 9]


async def test_end_of_stream_only_after_every_producer_closed_and_buffer_empty() -> None:
    edge = MemoryEdge("c", 10, producers=2)
    await edge.put_many(["a"])
    edge.close()
    assert not edge.closed
    await edge.put_many(["b"])
    edge.close()
    assert edge.closed
    assert await edge.get_many() == ["a", "b"]
    assert await edge.get_many() == []
    assert await edge.get_many() == []


async def test_close_wakes_every_waiting_consumer() -> None:
    edge = MemoryEdge("c", 10)
    async with anyio.create_task_group() as group:
        getters = [Background(group, edge.get_many) for _ in range(3)]
        await until(lambda: edge.statistics().waiting_getters == 3)
        edge.close()
    assert [await getter.result() for getter in getters] == [[], [], []]


async def test_a_put_wakes_as_many_consumers_as_it_brings_items() -> None:
    edge = MemoryEdge("c", 10)
    async with anyio.create_task_group() as group:
        getters = [Background(group, lambda: edge.get_many(share=3)) for _ in range(3)]
        await until(lambda: edge.statistics().waiting_getters == 3)
        await edge.put_many([1, 2, 3])
    results = [await getter.result() for getter in getters]
    assert sorted(x for r in results for x in r) == [1, 2, 3]
    assert all(len(r) == 1 for r in results)


async def test_cancelled_get_takes_nothing_and_passes_its_wakeup_on() -> None:
    edge = MemoryEdge("c", 10)
    first = asyncio.ensure_future(edge.get_many())
    second = asyncio.ensure_future(edge.get_many())
    await until(lambda: edge.statistics().waiting_getters == 2)
    edge.put_nowait("x")  # wakes `first`
    first.cancel()
    assert await second == ["x"]
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_get_cancelled_once_woken_loses_nothing() -> None:
    """On asyncio the cancelled get hands its wake-up on (test above); on trio, where a wake-up
    already given is not taken back, it returns what woke it. Either way the item is taken once."""
    edge = MemoryEdge("c", 10)
    async with anyio.create_task_group() as group:
        first = Background(group, edge.get_many)
        await until(lambda: edge.statistics().waiting_getters == 1)
        second = Background(group, edge.get_many)
        await until(lambda: edge.statistics().waiting_getters == 2)
        edge.put_nowait("x")  # wakes `first`
        first.scope.cancel()
        await until(lambda: first.done() and edge.statistics().waiting_getters == (0 if second.done() else 1))
        edge.close()
    taken: list[Any] = [] if first.scope.cancelled_caught else await first.result()
    taken += await second.result()
    assert taken == ["x"]


async def test_cancelled_put_adds_only_what_had_room() -> None:
    edge = MemoryEdge("c", 2)
    async with anyio.create_task_group() as group:
        putter = Background(group, lambda: edge.put_many([1, 2, 3, 4]))
        await until(lambda: edge.statistics().waiting_putters == 1)
        putter.scope.cancel()
    assert putter.scope.cancelled_caught
    assert edge.statistics() == EdgeStatistics(depth=2, bound=2, waiting_getters=0, waiting_putters=0, open_producers=1)
    assert await edge.get_many() == [1, 2]


async def test_waiting_producers_are_served_in_order() -> None:
    edge = MemoryEdge("c", 1)
    await edge.put_many(["first"])
    taken = []
    async with anyio.create_task_group() as group:
        group.start_soon(edge.put_many, ["a1", "a2"])
        await until(lambda: edge.statistics().waiting_putters == 1)
        group.start_soon(edge.put_many, ["b1"])
        await until(lambda: edge.statistics().waiting_putters == 2)
        while len(taken) < 4:
            taken += await edge.get_many()
    assert taken == ["first", "a1", "a2", "b1"]


async def test_put_nowait_refuses_when_full() -> None:
    edge = MemoryEdge("c", 1)
    assert edge.put_nowait(1) is True
    assert edge.put_nowait(2) is False
    assert edge.full()
    assert await edge.get_many() == [1]


async def test_put_after_every_producer_closed_is_an_error() -> None:
    edge = MemoryEdge("c", 1)
    edge.close()
    with pytest.raises(RuntimeError, match="edge 'c': put after every producer closed"):
        await edge.put_many([1])


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="edge 'c': maxsize must be >= 1, got 0"):
        MemoryEdge("c", 0)


async def test_accepts_now_says_what_put_nowait_will_do() -> None:
    edge = MemoryEdge("c", 1)
    assert edge.accepts_now() is True
    assert edge.put_nowait(1) is True
    assert edge.accepts_now() is False  # full
    assert edge.put_nowait(2) is False
    async with anyio.create_task_group() as group:
        group.start_soon(edge.put_many, [3])
        await until(lambda: edge.statistics().waiting_putters == 1)
        assert edge.accepts_now() is False  # full, and a producer is queued
        assert await edge.get_many() == [1]
    assert edge.accepts_now() is False  # the queued producer took the room
    assert await edge.get_many() == [3]
    assert edge.accepts_now() is True


async def test_put_many_nowait_adds_all_or_nothing_and_keeps_queued_producers_first() -> None:
    edge = MemoryEdge("c", 3)
    assert (edge.room_for(2), edge.put_many_nowait([1, 2])) == (True, True)
    assert (edge.room_for(2), edge.put_many_nowait([3, 4])) == (False, False)  # one item of room: none added
    assert edge.qsize() == 2
    async with anyio.create_task_group() as group:
        group.start_soon(edge.put_many, [3, 4])  # adds 3, then waits for room for 4
        await until(lambda: edge.statistics().waiting_putters == 1)
        group.start_soon(edge.put_many, [5])
        await until(lambda: edge.statistics().waiting_putters == 2)
        assert await edge.get_many() == [1, 2, 3]  # wakes the first producer; the second stays queued
        # room for three now, but a producer is queued: a put without waiting does not pass it
        assert (edge.room_for(1), edge.put_many_nowait([6])) == (False, False)
        await until(lambda: edge.qsize() == 2)
    assert await edge.get_many() == [4, 5]
    assert edge.put_many_nowait([6]) is True
    assert await edge.get_many() == [6]
    edge.close()
    assert (edge.room_for(1), edge.put_many_nowait([7])) == (False, False)  # every producer closed
    assert await edge.get_many() == []


async def test_put_many_nowait_wakes_a_waiting_consumer() -> None:
    edge = MemoryEdge("c", 2)
    async with anyio.create_task_group() as group:
        getter = Background(group, edge.get_many)
        await until(lambda: edge.statistics().waiting_getters == 1)
        assert edge.put_many_nowait(["a", "b"]) is True
        assert await getter == ["a", "b"]


globals().update(
    trio_twins(
        globals(),
        asyncio_only={
            "test_cancelled_get_takes_nothing_and_passes_its_wakeup_on": "asyncio's cancel after a wake-up "
            "undoes it; trio's does not (test_a_get_cancelled_once_woken_loses_nothing holds on both)",
        },
    )
)
