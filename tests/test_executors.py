"""Plain blocking functions as nodes: run in a thread or process pool, within the bounds."""

from __future__ import annotations

import os
import re
import threading
from typing import Any

import pytest

from pipelines import GraphError, Plumber, Processor
from pipelines.testing import assert_counts, run_graph

from .backends import trio_twins
from .helpers import collector, source_of

_lock = threading.Lock()
_state = {"running": 0, "peak": 0}
_gate = threading.Event()


def blocking_double(x: int) -> int:
    """Blocks until three calls run at once, then lets everything through: proves the concurrency."""
    with _lock:
        _state["running"] += 1
        _state["peak"] = max(_state["peak"], _state["running"])
        if _state["running"] == 3:
            _gate.set()
    try:
        if not _gate.wait(timeout=10):
            raise TimeoutError("three calls never ran at once")
        return 2 * x
    finally:
        with _lock:
            _state["running"] -= 1


def square_with_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def scale(x: int, factor: int) -> int:
    return x * factor


async def test_a_thread_pool_runs_max_workers_items_at_once_and_never_more() -> None:
    _state.update(running=0, peak=0)
    _gate.clear()
    seen, sink = collector()
    graph = {
        "nodes": {
            "inp": {"coro": source_of(list(range(30)))},
            "double": {"coro": blocking_double, "properties": {"executor": "thread", "max_workers": 3}},
            "out": {"coro": sink},
        },
        "graph": {"inp": ["double"], "double": ["out"], "out": None},
    }
    result = await Plumber(graph).run()
    assert sorted(seen) == [(2 * i,) for i in range(30)]
    assert _state["peak"] == 3
    assert_counts(result, "double", items_in=30, completed=30, items_out=30)


async def test_a_process_pool_runs_the_function_in_other_processes() -> None:
    run = await run_graph(
        {
            "nodes": {
                "inp": {"coro": source_of([])},
                "square": {"coro": square_with_pid, "properties": {"executor": "process", "max_workers": 2}},
            },
            "graph": {"inp": ["square"], "square": None},
        },
        inputs={"inp": [1, 2, 3, 4]},
    )
    assert sorted(value for value, _ in run["square"]) == [1, 4, 9, 16]
    assert os.getpid() not in {pid for _, pid in run["square"]}


async def test_args_reach_a_function_in_a_pool() -> None:
    run = await run_graph(
        {
            "nodes": {
                "inp": {"coro": source_of([])},
                "scale": {"coro": scale, "args": {"factor": 3}, "properties": {"executor": "thread"}},
            },
            "graph": {"inp": ["scale"], "scale": None},
        },
        inputs={"inp": [1, 2]},
    )
    assert sorted(run["scale"]) == [3, 6]


async def test_the_bounds_hold_with_an_executor() -> None:
    put = 0
    leads: list[int] = []

    async def source(processor: Processor, output_q: Any) -> None:
        nonlocal put
        for i in range(300):
            await output_q.put(i)
            put += 1

    async def sink(processor: Processor, q_elt: tuple[int]) -> None:
        leads.append(put - q_elt[0])

    graph = {
        "nodes": {
            "inp": {"coro": source},
            "scale": {
                "coro": scale,
                "args": {"factor": 1},
                "properties": {"executor": "thread", "max_workers": 2, "queue_size": 5},
            },
            "out": {"coro": sink, "properties": {"queue_size": 5}},
        },
        "graph": {"inp": ["scale"], "scale": ["out"], "out": None},
    }
    await Plumber(graph).run()
    assert len(leads) == 300
    # the scale queue (5), one item in each of the 2 pool workers' hands, the out queue (5), the sink's batch (5)
    assert max(leads) <= 5 + 2 + 5 + 5


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        (
            {"executor": "fiber"},
            "node 'f': property 'executor' must be 'thread' (blocking I/O) or 'process' (CPU-heavy work), got 'fiber'",
        ),
        (
            {"executor": "thread", "workers": 2, "max_workers": 3},
            "node 'f': 'workers' (2) and 'max_workers' (3) differ; a node with an executor hands one item to each "
            "pool worker, so give only 'max_workers'",
        ),
        (
            {"executor": "thread", "style": "processor"},
            "node 'f': a function run in an executor is called as f(item, **args) ('item' style)",
        ),
    ],
)
def test_bad_executor_properties(properties: dict[str, Any], message: str) -> None:
    graph = {
        "nodes": {"s": {"coro": source_of([])}, "f": {"coro": scale, "args": {"factor": 1}, "properties": properties}},
        "graph": {"s": ["f"], "f": None},
    }
    with pytest.raises(GraphError, match=f"^{re.escape(message)}$"):
        Plumber(graph)


def test_an_executor_on_an_async_function_is_refused() -> None:
    async def f(item: int) -> int:
        return item

    graph = {
        "nodes": {"s": {"coro": source_of([])}, "f": {"coro": f, "properties": {"executor": "thread"}}},
        "graph": {"s": ["f"], "f": None},
    }
    with pytest.raises(GraphError, match=r"^node 'f': property 'executor' is for plain functions; <function .*f"):
        Plumber(graph)
    # without an executor, max_workers is the cap of the node's elastic pool of workers
    graph["nodes"]["f"]["properties"] = {"max_workers": 3, "style": "item"}
    assert Plumber(graph).processor("f").spec.properties.max_workers == 3


def test_a_timeout_on_a_pool_node_is_refused() -> None:
    graph = {
        "nodes": {
            "s": {"coro": source_of([])},
            "f": {"coro": scale, "args": {"factor": 1}, "properties": {"executor": "thread", "timeout": 1.0}},
        },
        "graph": {"s": ["f"], "f": None},
    }
    with pytest.raises(GraphError, match=r"^node 'f': 'timeout' cannot stop a call in a pool"):
        Plumber(graph)


globals().update(trio_twins(globals()))
