"""The pipelines side of every case: node coroutines and the graphs built from them.

Each graph ends in a sink that adds what it receives into a `Total`, whose value the run checks,
so that every contender does the same work and proves it did it right.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import pairwise
from typing import Any

from pipelines import Plumber, Processor, node

__all__ = [
    "LATENCY",
    "Total",
    "add_one",
    "chain",
    "diamond",
    "double",
    "fan_out",
    "pipeline",
    "processor_chain",
    "run_total",
    "sleepy",
    "slow_chain",
    "slow_stateful_chain",
    "stateful_chain",
]

LATENCY = 0.01  # seconds each item waits in the I/O-bound case


class Total:
    """Where a sink accumulates; `value` is compared with the expected sum after the run."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


# -- item style (@node) ----------------------------------------------------------------------


@node
async def numbers(count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i


@node
async def add_one(x: int) -> int:
    return x + 1


@node
async def double(x: int) -> int:
    return 2 * x


@node
async def sleepy(x: int) -> int:
    await asyncio.sleep(LATENCY)
    return x


@node
async def into_total(x: int, total: Total) -> None:
    total.value += x


@node
async def slow_into_total(x: int, total: Total) -> None:
    await asyncio.sleep(0)  # gives the loop away on every item: the producers get ahead
    total.value += x


@node
async def pairs_into_total(pair: tuple[int, int], total: Total) -> None:
    left, right = pair
    total.value += 2 * (left - 1) == right  # counts the pairs whose members came from one item


# -- the original style: f(processor, q_elt) -------------------------------------------------


async def count_up(processor: Processor, output_q: Any, count: int) -> None:
    for i in range(count):
        await output_q.put(i)


async def add_one_q(processor: Processor, q_elt: tuple[int]) -> int:
    return q_elt[0] + 1


async def into_total_q(processor: Processor, q_elt: tuple[int], total: Total) -> None:
    total.value += q_elt[0]


# -- graphs ----------------------------------------------------------------------------------


def _line(source: dict[str, Any], stages: list[dict[str, Any]], sink: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = ["source", *(f"stage{i}" for i in range(len(stages))), "sink"]
    specs = [source, *stages, sink]
    return {
        "nodes": dict(zip(names, specs, strict=True)),
        "graph": {name: [after] for name, after in pairwise(names)} | {"sink": None},
    }


def chain(
    n: int, stages: int, total: Total, *, stage: Any = add_one, properties: dict[str, Any] | None = None
) -> dict[str, Any]:
    """source -> `stages` nodes running `stage` -> a sink into `total` (item style)."""
    spec: dict[str, Any] = {"coro": stage}
    if properties:
        spec["properties"] = properties
    return _line(
        {"coro": numbers, "args": {"count": n}},
        [dict(spec) for _ in range(stages)],
        {"coro": into_total, "args": {"total": total}},
    )


def new_sum() -> dict[str, int]:
    return {"sum": 0}


@node
async def into_state(x: int, state: dict[str, int], total: Total) -> None:
    state["sum"] += x


async def state_into_total(processor: Processor, state: dict[str, int]) -> None:
    processor.spec.args["total"].value = state["sum"]


def stateful_chain(n: int, stages: int, total: Total) -> dict[str, Any]:
    """As `chain`, with a sink that folds into its declared state (pipelines.state); its teardown
    hands the sum to `total`."""
    graph = chain(n, stages, total)
    graph["nodes"]["sink"] = {
        "coro": into_state,
        "args": {"total": total},
        "properties": {"state": new_sum, "teardown": state_into_total},
    }
    return graph


@node
async def slow_into_state(x: int, state: dict[str, int], total: Total) -> None:
    await asyncio.sleep(0)  # as slow_into_total
    state["sum"] += x


def slow_stateful_chain(n: int, stages: int, total: Total) -> dict[str, Any]:
    """As `stateful_chain`, with a sink that yields to the loop on every item."""
    graph = stateful_chain(n, stages, total)
    graph["nodes"]["sink"]["coro"] = slow_into_state
    return graph


def slow_chain(n: int, stages: int, total: Total) -> dict[str, Any]:
    """As `chain`, with a sink that yields to the loop on every item."""
    graph = chain(n, stages, total)
    graph["nodes"]["sink"] = {"coro": slow_into_total, "args": {"total": total}}
    return graph


def processor_chain(n: int, stages: int, total: Total) -> dict[str, Any]:
    """`chain` written as for the original library: f(processor, q_elt), items as 1-tuples."""
    return _line(
        {"coro": count_up, "args": {"count": n}},
        [{"coro": add_one_q} for _ in range(stages)],
        {"coro": into_total_q, "args": {"total": total}},
    )


def fan_out(n: int, branches: int, depth: int, total: Total) -> dict[str, Any]:
    """source -> `branches` chains of `depth` add_one nodes -> one sink merging them all."""
    nodes: dict[str, Any] = {"source": {"coro": numbers, "args": {"count": n}}}
    graph: dict[str, Any] = {"source": []}
    for b in range(branches):
        names = [f"b{b}s{d}" for d in range(depth)]
        graph["source"].append(names[0])
        for name, after in zip(names, [*names[1:], "sink"], strict=True):
            nodes[name] = {"coro": add_one}
            graph[name] = [after]
    nodes["sink"] = {"coro": into_total, "args": {"total": total}, "properties": {"aggregate_inputs": False}}
    graph["sink"] = None
    return {"nodes": nodes, "graph": graph}


def diamond(n: int, total: Total) -> dict[str, Any]:
    """source -> (x + 1, 2x) -> a join pairing them by lineage, counting the right pairs."""
    return {
        "nodes": {
            "source": {"coro": numbers, "args": {"count": n}},
            "plus": {"coro": add_one},
            "twice": {"coro": double},
            "join": {"coro": pairs_into_total, "args": {"total": total}},
        },
        "graph": {"source": ["plus", "twice"], "plus": ["join"], "twice": ["join"], "join": None},
    }


async def run_total(plumber: Plumber, total: Total) -> int:
    """Run `plumber` to its end; the sum its sink accumulated."""
    await plumber.run()
    return total.value


def pipeline(build: Callable[[Total], dict[str, Any]], **options: Any) -> Callable[[], Awaitable[int]]:
    """A `make` for harness.timed: each call builds a fresh graph and Plumber (with `options`, such as
    ``fuse=True``), and returns the run."""

    def make() -> Awaitable[int]:
        total = Total()
        return run_total(Plumber(build(total), **options), total)

    return make
