"""Running a graph, or one node, on given items and collecting what comes out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import PipelineError
from ..failure import Failure
from ..nodes import node
from ..plumber import Plumber
from ..stats import NodeStats

__all__ = ["GraphRun", "NodeRun", "run_graph", "run_node"]


@dataclass(frozen=True)
class GraphRun(Mapping[str, list[Any]]):
    """The outcome of run_graph(): `run["sink"]` is the list of what that sink returned, in order.

    A sink's None returns are not outputs, as everywhere in pipelines. `stats` maps every node
    to its final NodeStats; `state` is 'completed' (or 'stopped').
    """

    outputs: dict[str, list[Any]]
    stats: dict[str, NodeStats]
    state: str
    elapsed: float

    def __getitem__(self, sink: str) -> list[Any]:
        try:
            return self.outputs[sink]
        except KeyError:
            raise KeyError(f"{sink!r} is not a sink of this graph (sinks: {', '.join(self.outputs)})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)


@dataclass(frozen=True)
class NodeRun:
    """The outcome of run_node(): the node's outputs in order, its failures, and its stats."""

    outputs: list[Any]
    failures: list[Failure] = field(default_factory=list)
    stats: NodeStats | None = None


def _feeder(items: list[Any]) -> Callable[[], Any]:
    @node
    async def feed() -> Any:
        for item in items:
            yield item

    return feed


async def run_graph(
    graph: Mapping[str, Any],
    coro_map: Callable[[Any], Any] | None = None,
    *,
    inputs: Mapping[str, Iterable[Any]] | None = None,
    env_vars: dict[str, Any] | None = None,
    queue_size: int | None = None,
) -> GraphRun:
    """Run `graph` to its end, feeding `inputs[source]` to the named sources, and collect the sinks.

    Each source named in `inputs` has its coroutine (and args) replaced by one that puts the given
    items in order; other sources run as they are. Returns a GraphRun: ``run["sink"]`` is the list
    of what that sink returned. A failing run raises the original exception, as Plumber.run() does.
    """
    if not isinstance(graph, Mapping) or not isinstance(graph.get("nodes"), Mapping):
        Plumber(graph, coro_map)  # type: ignore[arg-type]  # raises the GraphError that says what is wrong
        raise AssertionError("unreachable")
    nodes = {name: dict(node_d) if isinstance(node_d, Mapping) else node_d for name, node_d in graph["nodes"].items()}
    successors = graph.get("graph") or {}
    fed = {s for succ in successors.values() if succ for s in ([succ] if isinstance(succ, str) else succ)}
    feeders: dict[int, Callable[..., Any]] = {}
    for name, items in (inputs or {}).items():
        if name not in nodes:
            raise PipelineError(f"inputs name {name!r}, which is not a node of the graph")
        if name in fed:
            raise PipelineError(f"inputs name {name!r}, which is not a source: other nodes feed it")
        feeder = _feeder(list(items))
        feeders[id(feeder)] = feeder
        properties = nodes[name].get("properties") or {}
        kept = {"queue_size": properties["queue_size"]} if "queue_size" in properties else {}
        nodes[name] = {"coro": feeder, "properties": kept}
    mapper = coro_map or (lambda value: value)

    def resolve(value: Any) -> Any:
        return value if feeders.get(id(value)) is value else mapper(value)

    extra = {} if queue_size is None else {"queue_size": queue_size}
    plumber = Plumber({**graph, "nodes": nodes}, resolve, env_vars, collect_outputs=True, **extra)
    result = await plumber.run()
    return GraphRun(outputs=result.outputs, stats=result.stats, state=result.state, elapsed=result.elapsed)


async def run_node(
    coro: Callable[..., Any],
    items: Iterable[Any],
    *,
    properties: Mapping[str, Any] | None = None,
    **args: Any,
) -> NodeRun:
    """Run one node's coroutine on `items` and return its outputs and failures.

    `coro` is called as the node would be: ``coro(processor, (item,), **args)`` in the original
    style, ``coro(item, **args)`` when marked with @node (or ``properties={'style': 'item'}``).
    Items that still fail after the node's retries are returned as `Failure` records instead of
    failing the run, unless ``properties={'on_error': 'fail'}`` says otherwise.
    """
    name = getattr(coro, "__name__", "node")
    if name.startswith("__"):
        name = "node"
    props = {"on_error": "__failures__", **(properties or {})}

    @node
    async def keep(value: Any) -> Any:
        return value

    nodes: dict[str, Any] = {
        "__items__": {"coro": _feeder(list(items))},
        name: {"coro": coro, "args": args, "properties": props},
        "__outputs__": {"coro": keep},
    }
    successors: dict[str, Any] = {"__items__": [name], name: ["__outputs__"], "__outputs__": None}
    if props["on_error"] == "__failures__":
        nodes["__failures__"] = {"coro": keep}
        successors["__failures__"] = None
    result = await Plumber({"nodes": nodes, "graph": successors}, collect_outputs=True).run()
    return NodeRun(
        outputs=result.outputs["__outputs__"],
        failures=result.outputs.get("__failures__", []),
        stats=result.stats[name],
    )
