"""Ledger: each way an item ends at a node is counted once, the counts add up, and skips and routes are logged."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from pipelines import Failure, NodeStats, Plumber, Processor

from .backends import started as in_background
from .backends import trio_twins
from .helpers import collector, source_of, until, yield_now

COUNTED = ("items_in", "completed", "dropped", "skipped", "failed", "in_flight", "items_out")


def counted(stats: NodeStats) -> tuple[int, ...]:
    """The counts of a node, after checking the identity of pipelines.stats with nothing left in flight."""
    assert stats.items_in == stats.completed + stats.dropped + stats.skipped + stats.failed + stats.in_flight
    return tuple(getattr(stats, name) for name in COUNTED)


class Outcomes:
    """A hook counting the outcomes `settled` reports, per node."""

    def __init__(self) -> None:
        self.seen: dict[str, Counter[str]] = {}

    def node_hooks(self, node: Processor) -> Any:
        seen = self.seen.setdefault(node.name, Counter())

        class Settled:
            def settled(self, key: Any, outcome: str, value: Any, copies: int) -> None:
                seen[outcome] += 1

        return Settled()


def failing(name: str, when: Any) -> Any:
    async def fn(processor: Processor, q_elt: tuple[int]) -> int:
        if when(q_elt[0]):
            raise ValueError(f"{name} {q_elt[0]}")
        return q_elt[0]

    return fn


async def test_drops_skips_routes_and_passing_tombstones_are_each_counted_where_they_happen(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def m(processor: Processor, q_elt: tuple[int]) -> int | None:
        return None if q_elt[0] % 5 == 0 else q_elt[0]

    async def p(processor: Processor, q_elt: tuple[int]) -> int:
        return q_elt[0]

    async def j(processor: Processor, q_elt: tuple[int, int]) -> int:
        return q_elt[0]

    failures: list[Failure] = []

    async def errors(processor: Processor, q_elt: tuple[Failure]) -> None:
        failures.append(q_elt[0])

    seen, sink = collector()
    graph = {
        "nodes": {
            "src": {"coro": source_of(list(range(30)))},
            "m": {"coro": m},
            "s": {"coro": failing("skip", lambda x: x % 7 == 3), "properties": {"on_error": "skip"}},
            "r": {"coro": failing("route", lambda x: x % 4 == 1), "properties": {"on_error": "errors"}},
            "p": {"coro": p, "properties": {"workers": 2}},
            "b": {"coro": p},
            "j": {"coro": j},
            "out": {"coro": sink},
            "errors": {"coro": errors},
        },
        "graph": {
            "src": ["m", "b"],
            "m": ["s"],
            "s": ["r"],
            "r": ["p"],
            "p": ["j"],
            "b": ["j"],
            "j": ["out"],
            "out": None,
            "errors": None,
        },
    }
    outcomes = Outcomes()
    with caplog.at_level(logging.WARNING, logger="pipelines"):
        result = await Plumber(graph, hooks=[outcomes]).run()

    dropped = [0, 5, 10, 15, 20, 25]
    skipped = [3, 17, 24]  # 10 was dropped before
    routed = [1, 9, 13, 21, 29]  # 5, 17 and 25 ended before
    passing = sorted(set(range(30)) - set(dropped) - set(skipped) - set(routed))
    assert sorted(seen) == [(x,) for x in passing]
    assert sorted(f.item for f in failures) == [(x,) for x in routed]
    #                         items_in, completed, dropped, skipped, failed, in_flight, items_out
    assert counted(result["m"]) == (30, 24, 6, 0, 0, 0, 24)
    assert counted(result["s"]) == (24, 21, 0, 3, 0, 0, 21)  # the 6 tombstones of m are no items of s
    assert counted(result["r"]) == (21, 16, 0, 0, 5, 0, 16)  # nor the 6 + 3 of m and s, of r
    assert counted(result["p"]) == (16, 16, 0, 0, 0, 0, 16)  # nor the 6 + 3 + 5 of m, s and r, of p
    assert counted(result["b"]) == (30, 30, 0, 0, 0, 0, 30)
    assert counted(result["j"]) == (30, 16, 14, 0, 0, 0, 16)  # a discarded group is an item of the join
    assert counted(result["out"]) == (16, 16, 0, 0, 0, 0, 0)
    assert counted(result["errors"]) == (5, 5, 0, 0, 0, 0, 0)
    # the tombstones did pass: j discarded their groups as they came, none was left incomplete at the end
    assert outcomes.seen["s"] == {"passed": 6, "skipped": 3}
    assert outcomes.seen["r"] == {"passed": 9, "routed": 5}
    assert outcomes.seen["p"] == {"passed": 14}
    assert outcomes.seen["j"] == {"dropped": 14}
    assert [r.name for r in caplog.records] == ["pipelines.ledger"] * 3  # the skips; no incomplete join groups


@pytest.mark.parametrize(("workers", "started"), [(None, [0, 1, 2]), (1, [0])])
async def test_in_flight_counts_the_items_being_worked_on(workers: int | None, started: list[int]) -> None:
    release = anyio.Event()
    entered: list[int] = []

    async def source(processor: Processor, output_q: Any) -> None:
        for i in range(3):
            await output_q.put(i)

    async def sink(processor: Processor, q_elt: tuple[int]) -> None:
        entered.append(q_elt[0])
        await release.wait()

    properties = {"workers": workers} if workers else {}
    plumber = Plumber(
        {
            "nodes": {"src": {"coro": source}, "out": {"coro": sink, "properties": properties}},
            "graph": {"src": ["out"], "out": None},
        }
    )
    running = in_background(plumber.run)
    await until(lambda: entered == started)
    await yield_now(20)
    assert entered == started
    # by default the pool grows to a worker for each of the three, all in flight; one worker is in
    # its first item, and the two it took but has not started are queued, not in flight
    stats = plumber.stats()["out"]
    assert counted(stats) == (len(started), 0, 0, 0, 0, len(started), 0)
    assert (stats.queue_depth, stats.workers) == (3 - len(started), len(started))
    release.set()
    result = await running
    assert counted(result["out"]) == (3, 3, 0, 0, 0, 0, 0)


async def test_a_join_counts_the_groups_it_discards_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    seen, sink = collector()
    graph = {
        "nodes": {
            "nums": {"coro": source_of([1, 2, 3])},
            "chars": {"coro": source_of(["a", "b", "c", "d", "e"])},
            "zip": {"coro": sink},
        },
        "graph": {"nums": ["zip"], "chars": ["zip"], "zip": None},
    }
    with caplog.at_level(logging.WARNING, logger="pipelines"):
        result = await Plumber(graph).run()
    assert seen == [(1, "a"), (2, "b"), (3, "c")]
    assert counted(result["zip"]) == (5, 3, 2, 0, 0, 0, 0)
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("pipelines.lifecycle", "WARNING", "node 'zip': 2 join groups never completed and were discarded")
    ]


async def test_a_skip_and_a_route_are_logged_with_the_item_and_the_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen, sink = collector()
    failures: list[Failure] = []

    async def errors(processor: Processor, q_elt: tuple[Failure]) -> None:
        failures.append(q_elt[0])

    graph = {
        "nodes": {
            "src": {"coro": source_of([0, 1, 2, 3, "x" * 300])},
            "s": {"coro": failing("skip", lambda x: x in (3, "x" * 300)), "properties": {"on_error": "skip"}},
            "r": {"coro": failing("route", lambda x: x == 1), "properties": {"on_error": "errors"}},
            "out": {"coro": sink},
            "errors": {"coro": errors},
        },
        "graph": {"src": ["s"], "s": ["r"], "r": ["out"], "out": None, "errors": None},
    }
    with caplog.at_level(logging.INFO, logger="pipelines.ledger"):
        result = await Plumber(graph).run()
    assert seen == [(0,), (2,)]
    long_item = repr(("x" * 300,))[:197] + "..."
    assert sorted((r.name, r.levelname, r.getMessage()) for r in caplog.records if r.name == "pipelines.ledger") == [
        ("pipelines.ledger", "INFO", "node 'r': item (1,) failed (ValueError('route 1')); routed to 'errors'"),
        ("pipelines.ledger", "WARNING", f"node 's': skipped item {long_item} after ValueError('skip {'x' * 300}')"),
        ("pipelines.ledger", "WARNING", "node 's': skipped item (3,) after ValueError('skip 3')"),
    ]
    assert len(long_item) == 200
    assert [(f.node, f.item) for f in failures] == [("r", (1,))]
    assert counted(result["s"]) == (5, 3, 0, 2, 0, 0, 3)
    assert counted(result["r"]) == (3, 2, 0, 0, 1, 0, 2)


globals().update(trio_twins(globals()))
