"""Transport: a run whose edges and node tasks come from a transport written here, against the Edge protocol."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import Any

import pytest

from pipelines import Failure, Plumber, Processor
from pipelines.edges import EdgeStatistics
from pipelines.lineage import DROPPED

from .helpers import source_of, yield_now

Envelope = tuple[tuple[Any, ...], Any, int]

COUNTS = ("items_in", "items_out", "completed", "failed", "retried", "skipped", "dropped", "in_flight", "queue_depth")


class ListEdge:
    """A bounded FIFO built on a deque and futures: the Edge protocol, written from its docstrings.

    Every waiter is woken when anything changes and looks again; simple, and no wake-up is ever lost.
    `seen` keeps every envelope that went in.
    """

    def __init__(self, name: str, maxsize: int, producers: int) -> None:
        self.name = name
        self.maxsize = maxsize
        self._open = producers
        self._items: deque[Envelope] = deque()
        self._getters: list[asyncio.Future[None]] = []
        self._putters: list[asyncio.Future[None]] = []
        self.seen: list[Envelope] = []

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    @property
    def closed(self) -> bool:
        return self._open <= 0

    @property
    def idle_consumers(self) -> list[asyncio.Future[None]]:
        return self._getters

    def statistics(self) -> EdgeStatistics:
        return EdgeStatistics(
            depth=len(self._items),
            bound=self.maxsize,
            waiting_getters=len(self._getters),
            waiting_putters=len(self._putters),
            open_producers=max(self._open, 0),
        )

    def close(self) -> None:
        self._open -= 1
        if self._open <= 0:
            self._wake(self._getters)

    def accepts_now(self) -> bool:
        return len(self._items) < self.maxsize and not self._putters

    def put_nowait(self, item: Envelope) -> bool:
        if not self.accepts_now():
            return False
        self._add(item)
        return True

    async def put_many(self, items: list[Envelope]) -> float:
        loop = asyncio.get_running_loop()
        waited = 0.0
        for item in items:
            while len(self._items) >= self.maxsize:
                started = loop.time()
                await self._wait(self._putters)
                waited += loop.time() - started
            self._add(item)
        return waited

    async def get_many(self, share: int = 1) -> list[Envelope]:
        while not self._items:
            if self.closed:
                return []
            await self._wait(self._getters)
        take = -(-len(self._items) // share)
        batch = [self._items.popleft() for _ in range(take)]
        self._wake(self._putters)
        return batch

    def _add(self, item: Envelope) -> None:
        self._items.append(item)
        self.seen.append(item)
        self._wake(self._getters)

    @staticmethod
    async def _wait(waiters: list[asyncio.Future[None]]) -> None:
        fut = asyncio.get_running_loop().create_future()
        waiters.append(fut)
        try:
            await fut
        finally:
            if fut in waiters:
                waiters.remove(fut)

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        waiters.clear()


class ListTransport:
    """Makes every edge a ListEdge and runs every node here, noting what the Plumber asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, tuple[str, ...], int]] = []
        self.edges: dict[str, ListEdge] = {}
        self.started: list[str] = []

    def edge(self, name: str, node: str, producers: tuple[str, ...], maxsize: int) -> ListEdge:
        self.asked.append((name, node, producers, maxsize))
        edge = ListEdge(name, maxsize, len(producers))
        self.edges[name] = edge
        return edge

    def node_task(self, node: Processor) -> Coroutine[Any, Any, None]:
        self.started.append(node.name)
        return node.run()


def join_and_route_graph() -> dict[str, Any]:
    """nums -> sq (fails 4, routed to 'errors'), neg -> d (lineage join); letters, d -> z (zip join) -> out."""

    async def sq(processor: Processor, q_elt: tuple[int]) -> int:
        await asyncio.sleep(0)
        if q_elt[0] == 4:
            raise ValueError("four")
        return q_elt[0] * q_elt[0]

    async def neg(processor: Processor, q_elt: tuple[int]) -> int:
        return -q_elt[0]

    async def d(processor: Processor, q_elt: tuple[int, int]) -> tuple[int, int]:
        return q_elt

    async def z(processor: Processor, q_elt: tuple[str, tuple[int, int]]) -> Any:
        return q_elt

    async def out(processor: Processor, q_elt: tuple[Any]) -> Any:
        return q_elt[0]

    async def errors(processor: Processor, q_elt: tuple[Failure]) -> Any:
        return (q_elt[0].node, q_elt[0].item, repr(q_elt[0].exception))

    return {
        "nodes": {
            "nums": {"coro": source_of(list(range(10)))},
            "letters": {"coro": source_of(list("abcdefghij"))},
            "sq": {"coro": sq, "properties": {"on_error": "errors", "workers": 2}},
            "neg": {"coro": neg},
            "d": {"coro": d, "properties": {"queue_size": 2}},
            "z": {"coro": z},
            "out": {"coro": out},
            "errors": {"coro": errors},
        },
        "graph": {
            "nums": ["sq", "neg"],
            "letters": ["z"],
            "sq": ["d"],
            "neg": ["d"],
            "d": ["z"],
            "z": ["out"],
            "out": None,
            "errors": None,
        },
    }


def counts(plumber_stats: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(getattr(s, field) for field in COUNTS) for name, s in plumber_stats.items()}


def items(edge: ListEdge) -> list[tuple[Any, Any]]:
    return sorted(((k, v) for k, v, _ in edge.seen if v is not DROPPED), key=repr)


def tombstones(edge: ListEdge) -> list[Any]:
    return sorted(k for k, v, _ in edge.seen if v is DROPPED)


async def test_a_graph_runs_the_same_on_a_transport_of_its_own() -> None:
    transport = ListTransport()
    plumber = Plumber(join_and_route_graph(), queue_size=3, collect_outputs=True, transport=transport)
    result = await plumber.run()
    reference = await Plumber(join_and_route_graph(), queue_size=3, collect_outputs=True).run()

    letters = "abcdefghij"
    expected_out = [(letters[x], (x * x, -x)) for x in range(10) if x != 4]
    assert sorted(result.outputs["out"]) == sorted(reference.outputs["out"]) == expected_out
    assert result.outputs["errors"] == reference.outputs["errors"] == [("sq", (4,), "ValueError('four')")]
    assert counts(result.stats) == counts(reference.stats)
    assert (result["z"].items_in, result["z"].completed, result["z"].dropped) == (10, 9, 1)
    assert (result["d"].items_in, result["d"].completed, result["d"].dropped) == (10, 9, 1)

    # every edge the Plumber needed, asked of the transport: a node's shared input is named after the node,
    # a zip join has one input per producer
    assert transport.asked == [
        ("sq", "sq", ("nums",), 3),
        ("neg", "neg", ("nums",), 3),
        ("d", "d", ("sq", "neg"), 2),
        ("z<-letters", "z", ("letters",), 3),
        ("z<-d", "z", ("d",), 3),
        ("out", "out", ("z",), 3),
        ("errors", "errors", ("sq",), 3),
    ]
    assert transport.started == ["nums", "letters", "sq", "neg", "d", "z", "out", "errors"]
    used = {
        id(edge): edge.name
        for p in plumber.nodes
        for edge in (*p.inputs, *p.outputs, *([p.error_output] if p.error_output is not None else []))
    }
    assert sorted(used.values()) == sorted(transport.edges)
    assert all(id(transport.edges[name]) in used for name in transport.edges)
    assert [e.name for e in plumber.processor("z").inputs] == ["z<-letters", "z<-d"]
    assert plumber.processor("sq").error_output is transport.edges["errors"]

    # every item went through the transport's edges
    edges = transport.edges
    nums = [(("nums", x), x) for x in range(10)]
    assert items(edges["sq"]) == items(edges["neg"]) == nums
    assert items(edges["d"]) == sorted(
        [(("nums", x), x * x) for x in range(10) if x != 4] + [(("nums", x), -x) for x in range(10)], key=repr
    )
    assert tombstones(edges["d"]) == [("nums", 4)]  # the item sq routed away
    assert items(edges["z<-letters"]) == [(("letters", x), letters[x]) for x in range(10)]
    assert items(edges["z<-d"]) == [(("nums", x), (x * x, -x)) for x in range(10) if x != 4]
    assert tombstones(edges["z<-d"]) == [("nums", 4)]  # the group d discarded
    assert sorted(v for _, v in items(edges["out"])) == expected_out
    assert [(v.node, v.item) for _, v in items(edges["errors"])] == [("sq", (4,))]
    assert all(edge.closed and edge.empty() for edge in edges.values())


class SizedEdge(ListEdge):
    """A ListEdge that also tells its length, as a queue-like class may: an empty one is falsy."""

    def __len__(self) -> int:
        return self.qsize()


class SizedTransport(ListTransport):
    def edge(self, name: str, node: str, producers: tuple[str, ...], maxsize: int) -> ListEdge:
        self.asked.append((name, node, producers, maxsize))
        edge = self.edges[name] = SizedEdge(name, maxsize, len(producers))
        return edge


async def test_an_edge_that_defines_len_is_wired_like_any_other() -> None:
    transport = SizedTransport()
    plumber = Plumber(join_and_route_graph(), queue_size=3, collect_outputs=True, transport=transport)
    result = await plumber.run()
    assert sorted(result.outputs["out"]) == [("abcdefghij"[x], (x * x, -x)) for x in range(10) if x != 4]
    assert [e.name for e in plumber.processor("d").outputs] == ["z<-d"]
    assert [e.name for e in plumber.processor("letters").outputs] == ["z<-letters"]


class FarTransport(ListTransport):
    """Runs node `far` elsewhere: its task reads the node's input as a remote worker would, then waits
    for `release` (the remote node ending) and returns."""

    def __init__(self, far: str, fail: BaseException | None = None) -> None:
        super().__init__()
        self.far = far
        self.fail = fail
        self.drained = asyncio.Event()
        self.release = asyncio.Event()
        self.remote_seen: list[Any] = []

    def node_task(self, node: Processor) -> Coroutine[Any, Any, None]:
        if node.name != self.far:
            return super().node_task(node)
        self.started.append(f"{node.name} elsewhere")
        return self.elsewhere(node)

    async def elsewhere(self, node: Processor) -> None:
        edge = self.edges[node.name]
        while batch := await edge.get_many():
            self.remote_seen.extend(value for _, value, _ in batch)
        self.drained.set()
        await self.release.wait()
        if self.fail is not None:
            raise self.fail


def far_graph(called: list[int]) -> dict[str, Any]:
    async def double(processor: Processor, q_elt: tuple[int]) -> int:
        return 2 * q_elt[0]

    async def far(processor: Processor, q_elt: tuple[int]) -> None:
        called.append(q_elt[0])

    return {
        "nodes": {"src": {"coro": source_of([1, 2, 3])}, "double": {"coro": double}, "far": {"coro": far}},
        "graph": {"src": ["double"], "double": ["far"], "far": None},
    }


async def test_the_run_ends_when_a_node_running_elsewhere_ends(make_plumber: Any) -> None:
    called: list[int] = []
    transport = FarTransport("far")
    plumber = make_plumber(far_graph(called), transport=transport)
    running = asyncio.ensure_future(plumber.run())
    await transport.drained.wait()
    await yield_now(50)
    # every node here has ended; the run waits for the one elsewhere
    assert not running.done()
    assert plumber.state == "running"
    assert transport.remote_seen == [2, 4, 6]
    transport.release.set()
    result = await running
    assert result.state == "completed"
    assert transport.started == ["src", "double", "far elsewhere"]
    assert called == []  # the function of 'far' never ran here
    assert (result["double"].items_out, result["far"].items_in) == (3, 0)


async def test_a_node_running_elsewhere_that_fails_fails_the_run() -> None:
    called: list[int] = []
    lost = ConnectionError("worker lost")
    transport = FarTransport("far", fail=lost)
    transport.release.set()
    plumber = Plumber(far_graph(called), transport=transport)
    with pytest.raises(ConnectionError, match=r"^worker lost") as info:
        await plumber.run()
    assert info.value is lost
    assert info.value.__notes__ == ["pipelines: task 'pipelines:far' ended with this exception"]
    assert plumber.state == "failed"
    assert transport.remote_seen == [2, 4, 6]
