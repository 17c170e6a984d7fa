"""Concurrency per node: items overlap as in the original library, bounded, work-conserving, in order of start.

A node's pool (pipelines.pool) grows while its items wait and every worker is suspended in an
await, up to `max_workers` (by default the node's input bound); `workers=N` fixes the count.
Everything here runs on virtual time, so the durations are exact: asyncio's own loop (pipelines.testing)
and, for each test's trio twin, trio's MockClock.
"""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest
import sniffio

from pipelines import Plumber, Processor, node
from pipelines.edges import MemoryEdge
from pipelines.testing import VirtualClock
from pipelines.transport import MemoryTransport

from .backends import trio_twins
from .helpers import chain, source_of, yield_now

on_asyncios_own_loop = pytest.mark.asyncio(loop_factories=["asyncio"])  # virtual time needs it, not uvloop


@on_asyncios_own_loop
async def test_the_original_libraries_own_graph_overlaps_its_slow_calls(virtual_clock: VirtualClock) -> None:
    """The shape of the original's tests/test_plumber.py: 20 strings, the reverse node's k-th call sleeps k s."""
    calls = itertools.count()
    running = 0
    started_at: list[float] = []

    async def strings(processor: Processor, output_q: Any, num: int) -> None:
        for i in range(num):
            await output_q.put(f"s{i:02}")
            await anyio.sleep(i % 4)  # the source itself takes its time between items

    async def reverse(processor: Processor, q_elt: tuple[str]) -> str:
        nonlocal running
        running += 1
        started_at.append(virtual_clock.elapsed)
        await anyio.sleep(next(calls))  # stands for I/O that takes longer each time
        running -= 1
        return q_elt[0][::-1]

    async def upper(processor: Processor, q_elt: tuple[str]) -> str:
        return q_elt[0].upper()

    async def lower(processor: Processor, q_elt: tuple[str, str]) -> str:
        return q_elt[0].lower()

    out: list[Any] = []

    async def sink(processor: Processor, q_elt: tuple[str]) -> None:
        out.append(q_elt[0])

    graph = {
        "nodes": {
            "inp": {"coro": strings, "args": {"num": 20}},
            "n1": {"coro": reverse},
            "n2": {"coro": upper},
            "n3": {"coro": lower},
            "n4": {"coro": sink, "properties": {"aggregate_inputs": False}},
        },
        "graph": {"inp": ["n1"], "n1": ["n2", "n3"], "n2": ["n3", "n4"], "n3": ["n4"], "n4": None},
    }
    result = await Plumber(graph).run()
    # item k is put at the sum of (i % 4) for i < k and takes k s: the last, put at 27 s, ends at 46 s
    # (the original took 46.4 s with a task per item; one call after the other would take 190 s)
    assert virtual_clock.elapsed == 46.0
    assert started_at == [float(sum(i % 4 for i in range(k))) for k in range(20)]  # each starts when put
    # the most calls that can overlap with these times (computed from the put times and the sleeps)
    spans = [(float(sum(i % 4 for i in range(k))), float(sum(i % 4 for i in range(k)) + k)) for k in range(20)]
    most = max(sum(1 for start, end in spans if start <= t < end) for t, _ in spans)
    assert result["n1"].peak_workers == most == 8
    assert sorted(out) == sorted([f"S{i:02}"[::-1].upper() for i in range(20)] + [f"s{i:02}"[::-1] for i in range(20)])


@on_asyncios_own_loop
async def test_an_item_never_waits_behind_a_slow_one_while_a_worker_is_idle(virtual_clock: VirtualClock) -> None:
    """workers=4, 40 items at once, item 0 takes 1 s and the others 10 ms each."""
    started: dict[int, float] = {}

    async def work(processor: Processor, q_elt: tuple[int]) -> int:
        started[q_elt[0]] = virtual_clock.elapsed
        await anyio.sleep(1.0 if q_elt[0] == 0 else 0.01)
        return q_elt[0]

    seen: list[Any] = []

    async def sink(processor: Processor, q_elt: tuple[int]) -> None:
        seen.append((q_elt[0], virtual_clock.elapsed))

    graph = chain(
        "src",
        "w",
        "out",
        coros={"src": source_of(list(range(40))), "w": work, "out": sink},
        props={"w": {"workers": 4}},
    )
    result = await Plumber(graph).run()
    # the three free workers take the 39 short items in input order, 13 rounds of 10 ms, while item 0 runs
    assert [started[i] for i in (0, 1, 2, 3)] == [0.0, 0.0, 0.0, 0.0]
    assert [started[i] for i in (4, 5, 6)] == [0.01, 0.01, 0.01]
    assert max(started.values()) == pytest.approx(0.12)
    assert sorted(started) == list(range(40))
    assert virtual_clock.elapsed == 1.0
    # and each output went on when it was ready, not when its neighbours were (items 1 to 3 end
    # together; trio wakes tasks of one instant in any order, asyncio in the order they slept)
    assert sorted(seen[:3]) == [(1, 0.01), (2, 0.01), (3, 0.01)]
    assert seen[-1] == (0, 1.0)
    assert (result["w"].peak_workers, result["w"].completed) == (4, 40)


@on_asyncios_own_loop
async def test_a_batch_shared_out_one_item_per_worker_counts_each_item_once(virtual_clock: VirtualClock) -> None:
    """workers=3 take one batch of 9 items: each takes over the items the previous one has not started.

    Every worker works on its part of the one batch (nothing is copied); the counts seen while all
    three are suspended say how many items are started and how many only taken. (Which of the
    started ones are counted completed depends on the order a backend wakes the three in: a worker
    may go on to the next item of its part before the others take it, and counts it at the end.)"""
    started: list[int] = []
    seen: dict[float, tuple[int, int, int, int]] = {}

    async def work(processor: Processor, q_elt: tuple[int]) -> int:
        started.append(q_elt[0])
        await anyio.sleep(1.0)
        return q_elt[0]

    async def watch() -> None:
        for at in (0.5, 1.5, 2.5):
            await anyio.sleep(at - virtual_clock.elapsed)
            w = plumber.stats()["w"]
            seen[at] = (w.items_in, w.taken, w.in_flight + w.completed, w.workers)

    out: list[int] = []

    async def sink(processor: Processor, q_elt: tuple[int]) -> None:
        out.append(q_elt[0])

    graph = chain(
        "src", "w", "out", coros={"src": source_of(list(range(9))), "w": work, "out": sink}, props={"w": {"workers": 3}}
    )
    plumber = Plumber(graph)
    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        result = await plumber.run()
    assert started == list(range(9))
    # items_in (started), taken (not started), in flight or completed, workers
    assert seen == {0.5: (3, 6, 3, 3), 1.5: (6, 3, 6, 3), 2.5: (9, 0, 9, 3)}
    assert sorted(out) == list(range(9))
    assert virtual_clock.elapsed == 3.0
    assert (result["w"].items_in, result["w"].completed, result["w"].in_flight, result["w"].taken) == (9, 9, 0, 0)


class CountingEdge(MemoryEdge):
    """A MemoryEdge that keeps the size of every batch put into it."""

    __slots__ = ("puts",)

    def __init__(self, name: str, maxsize: int, producers: int) -> None:
        super().__init__(name, maxsize, producers)
        self.puts: list[int] = []

    async def put_many(self, items: list[Any]) -> float:
        self.puts.append(len(items))
        return await super().put_many(items)


class CountingTransport(MemoryTransport):
    def __init__(self) -> None:
        self.inputs: dict[str, CountingEdge] = {}

    def edge(self, name: str, node: str, producers: tuple[str, ...], maxsize: int) -> CountingEdge:
        edge = self.inputs[node] = CountingEdge(name, maxsize, len(producers))
        return edge


@pytest.mark.parametrize("suspends", [False, True])
async def test_outputs_go_on_as_they_are_ready_only_from_a_node_that_suspends(suspends: bool) -> None:
    """A node that never suspends hands each batch on in one put (its consumer cannot run before it
    ends the batch anyway); one that suspends in its function hands each output on when it is ready."""

    @node
    async def add_one(x: int) -> int:
        if suspends:
            await yield_now(1)
        return x + 1

    seen: list[int] = []

    @node
    async def keep(x: int) -> None:
        seen.append(x)

    graph = {
        "nodes": {"src": {"coro": source_of(list(range(300)))}, "a": {"coro": add_one}, "out": {"coro": keep}},
        "graph": {"src": ["a"], "a": ["out"], "out": None},
    }
    transport = CountingTransport()
    await Plumber(graph, transport=transport).run()
    assert sorted(seen) == list(range(1, 301))
    puts = transport.inputs["out"].puts
    if suspends:
        # one at a time on asyncio; trio, which runs the tasks of a turn in any order, sometimes lets
        # a few outputs meet before the consumer takes them
        if sniffio.current_async_library() == "asyncio":
            assert puts == [1] * 300
        else:
            assert (sum(puts), len(puts) >= 150) == (300, True)
    else:
        # its first batch may hand one output on early, before the pool has seen it never suspends
        assert puts in ([100, 100, 100], [1, 99, 100, 100])


@on_asyncios_own_loop
async def test_a_node_that_never_suspends_stays_at_one_worker() -> None:
    @node
    async def add_one(x: int) -> int:
        return x + 1

    total = 0

    @node
    async def add_up(x: int) -> None:
        nonlocal total
        total += x

    @node
    async def numbers(n: int) -> Any:
        for i in range(n):
            yield i

    graph = {
        "nodes": {"src": {"coro": numbers, "args": {"n": 10_000}}, "a": {"coro": add_one}, "out": {"coro": add_up}},
        "graph": {"src": ["a"], "a": ["out"], "out": None},
    }
    result = await Plumber(graph).run()
    assert total == sum(range(1, 10_001))
    assert (result["a"].peak_workers, result["out"].peak_workers) == (1, 1)


@on_asyncios_own_loop
async def test_the_pool_grows_to_its_cap_and_shrinks_when_idle(virtual_clock: VirtualClock) -> None:
    burst = anyio.Event()
    workers_seen: list[int] = []

    async def bursts(processor: Processor, output_q: Any) -> None:
        for i in range(30):
            await output_q.put(i)
        await burst.wait()
        for i in range(30, 33):
            await output_q.put(i)

    async def slow(processor: Processor, q_elt: tuple[int]) -> int:
        await anyio.sleep(1.0)
        return q_elt[0]

    seen: list[Any] = []

    async def sink(processor: Processor, q_elt: tuple[int]) -> None:
        seen.append(q_elt[0])
        if len(seen) == 30:
            workers_seen.append(plumber.stats()["s"].workers)
            burst.set()

    graph = chain("src", "s", "out", coros={"src": bursts, "s": slow, "out": sink}, props={"s": {"max_workers": 8}})
    plumber = Plumber(graph)
    result = await plumber.run()
    # 30 items of 1 s on at most 8 workers: 4 rounds; then the pool shrinks, and 3 more take one round
    assert result["s"].peak_workers == 8
    assert virtual_clock.elapsed == 5.0
    assert sorted(seen) == list(range(33))
    assert workers_seen[0] <= 8


@on_asyncios_own_loop
async def test_ordered_outputs_leave_in_input_order_while_the_calls_overlap(virtual_clock: VirtualClock) -> None:
    delays = [0.5, 0.1, 0.4, 0.2, 0.3, 0.05, 0.25, 0.15]

    async def work(processor: Processor, q_elt: tuple[int]) -> int:
        await anyio.sleep(delays[q_elt[0]])
        return q_elt[0]

    seen: list[Any] = []

    async def sink(processor: Processor, q_elt: tuple[int]) -> None:
        seen.append(q_elt[0])

    graph = chain(
        "src",
        "w",
        "out",
        coros={"src": source_of(list(range(8))), "w": work, "out": sink},
        props={"w": {"ordered": True}},
    )
    result = await Plumber(graph).run()
    assert seen == list(range(8))
    assert result["w"].peak_workers == 8
    assert virtual_clock.elapsed == 0.5  # all eight at once: the slowest decides


@on_asyncios_own_loop
@pytest.mark.parametrize("quick", [0, 150, 1_000, 3_333, 6_400])
async def test_a_node_that_starts_to_suspend_late_still_shares_its_piece(
    virtual_clock: VirtualClock, quick: int
) -> None:
    """After many pieces done in one go, a node looks at its workers less often (pipelines.pool): then
    its calls start to wait, with no new item arriving. Its unstarted items are still taken over
    within 10 ms, not left behind the slow call (one after the other, the 10 slow ones take 10 s)."""
    started: dict[int, float] = {}

    async def work(processor: Processor, q_elt: tuple[int]) -> int:
        i = q_elt[0]
        if i >= quick:
            started[i] = virtual_clock.elapsed
            await anyio.sleep(1.0)
        return i

    seen: list[int] = []

    async def sink(processor: Processor, q_elt: tuple[int]) -> None:
        seen.append(q_elt[0])

    graph = chain("src", "w", "out", coros={"src": source_of(list(range(quick + 10))), "w": work, "out": sink})
    result = await Plumber(graph).run()
    assert sorted(seen) == list(range(quick + 10))
    assert sorted(started) == list(range(quick, quick + 10))
    assert set(started.values()) <= {0.0, 0.01}
    assert virtual_clock.elapsed == max(started.values()) + 1.0
    assert result["w"].peak_workers == 10


globals().update(trio_twins(globals()))
