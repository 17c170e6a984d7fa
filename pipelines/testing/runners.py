"""Running a graph, or one node, on given items and collecting what comes out."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import PipelineError
from ..failure import Failure
from ..nodes import node, node_defaults
from ..plumber import Plumber
from ..stats import NodeStats

__all__ = ["GraphRun", "NodeRun", "run_graph", "run_node"]


@dataclass(frozen=True, eq=False)  # compares as the Mapping it is
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
            sinks = ", ".join(self.outputs) or "none"
            raise KeyError(f"{sink!r} is not a sink of this graph (sinks: {sinks})") from None

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


def _feeder(items: Iterable[Any] | AsyncIterable[Any]) -> Callable[[], Any]:
    """An item-style source putting `items` (an iterable, or an async iterable) in order."""
    if isinstance(items, AsyncIterable):
        stream = items

        @node
        async def feed_async() -> Any:
            async for item in stream:
                yield item

        return feed_async
    if not isinstance(items, Iterable) or isinstance(items, (str, bytes)):
        raise TypeError(f"items to feed must be a list or another iterable of items, got {type(items).__name__}")
    listed = list(items)

    @node
    async def feed() -> Any:
        for item in listed:
            yield item

    return feed


async def run_graph(
    graph: Mapping[str, Any],
    coro_map: Callable[[Any], Any] | None = None,
    *,
    inputs: Mapping[str, Iterable[Any] | AsyncIterable[Any]] | None = None,
    env_vars: dict[str, Any] | None = None,
    queue_size: int | None = None,
) -> GraphRun:
    """Run `graph` to its end, feeding `inputs[source]` to the named sources, and collect the sinks.

    Each source named in `inputs` has its coroutine (and args) replaced by one that puts the given
    items (a list, any iterable, or an async iterable) in order; its other properties, such as
    setup and teardown, stay. Other sources run as they are. Returns a GraphRun: ``run["sink"]`` is
    the list of what that sink returned. A failing run raises the original exception, as
    Plumber.run() does.
    """
    if not isinstance(graph, Mapping) or not isinstance(graph.get("nodes"), Mapping):
        Plumber(graph, coro_map)  # type: ignore[arg-type]  # raises the GraphError that says what is wrong
        raise AssertionError("unreachable")
    nodes = {name: dict(node_d) if isinstance(node_d, Mapping) else node_d for name, node_d in graph["nodes"].items()}
    successors = graph.get("graph") or {}
    fed = {s for succ in successors.values() if succ for s in ([succ] if isinstance(succ, str) else succ)}
    for node_d in nodes.values():  # error nodes are fed by their routes
        on_error = ((node_d.get("properties") or {}) if isinstance(node_d, Mapping) else {}).get("on_error")
        if isinstance(on_error, str):
            fed.add(on_error)
    feeders: dict[int, Callable[..., Any]] = {}
    for name, items in (inputs or {}).items():
        if name not in nodes:
            raise PipelineError(f"inputs name {name!r}, which is not a node of the graph")
        if name in fed:
            raise PipelineError(f"inputs name {name!r}, which is not a source: other nodes feed it")
        try:
            feeder = _feeder(items)
        except TypeError as exc:
            raise TypeError(f"inputs[{name!r}]: {exc}") from None
        feeders[id(feeder)] = feeder
        properties = dict(nodes[name].get("properties") or {})
        properties.pop("style", None)
        nodes[name] = {"coro": feeder, "properties": properties}
    mapper = coro_map or (lambda value: value)

    def resolve(value: Any) -> Any:
        return value if feeders.get(id(value)) is value else mapper(value)

    extra: dict[str, Any] = {} if queue_size is None else {"queue_size": queue_size}
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
    failing the run, unless the node says otherwise (``properties={'on_error': 'skip'}``, or
    `on_error` in its @node defaults).
    """
    name = getattr(coro, "__name__", "node")
    if name.startswith("__"):
        name = "node"
    props = dict(properties or {})
    if "on_error" not in props and "on_error" not in node_defaults(coro):
        props["on_error"] = "__failures__"

    @node
    async def keep(value: Any) -> Any:
        return value

    nodes: dict[str, Any] = {
        "__items__": {"coro": _feeder(list(items))},
        name: {"coro": coro, "args": args, "properties": props},
        "__outputs__": {"coro": keep},
    }
    successors: dict[str, Any] = {"__items__": [name], name: ["__outputs__"], "__outputs__": None}
    if props.get("on_error") == "__failures__":
        nodes["__failures__"] = {"coro": keep}
        successors["__failures__"] = None
    result = await Plumber({"nodes": nodes, "graph": successors}, collect_outputs=True).run()
    return NodeRun(
        outputs=result.outputs["__outputs__"],
        failures=result.outputs.get("__failures__", []),
        stats=result.stats[name],
    )
