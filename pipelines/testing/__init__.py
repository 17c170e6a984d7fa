"""Helpers to test pipelines and the coroutines they run, with pytest-asyncio or on their own.

- `run_graph(graph, coro_map, inputs={"source": [...]})` runs a graph to its end on given items
  and returns what each sink returned (`run["sink"]`) with the stats;
- `run_node(coro, items, **args)` runs one coroutine as a node and returns its outputs and failures;
- `assert_counts(result, node, items_in=..., failed=...)` checks a node's stats;
- `VirtualTimeLoop`, `virtual_time()` and the `virtual_clock` fixture put the event loop on
  virtual time, so timeouts, backoff and slow sinks cost no real time;
- the pytest plugin (registered as `pipelines`) adds the fixtures `make_plumber` and `virtual_clock`.
"""

from .assertions import assert_counts
from .plugin import leftover_tasks
from .runners import GraphRun, NodeRun, run_graph, run_node
from .virtual_time import VirtualClock, VirtualTimeLoop, virtual_time

__all__ = [
    "GraphRun",
    "NodeRun",
    "VirtualClock",
    "VirtualTimeLoop",
    "assert_counts",
    "leftover_tasks",
    "run_graph",
    "run_node",
    "virtual_time",
]
