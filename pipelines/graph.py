"""Reading the graph dict: every check happens here, before anything runs.

`parse_graph()` turns ``{'nodes': {...}, 'graph': {...}}`` into a `GraphSpec`: one `NodeSpec` per
node with its resolved coroutine, its properties, its inputs in the order the original library
used (the position of each input in ``'graph'``), and how a multi-input node pairs its inputs.
Any problem raises `GraphError` naming the node and what was expected. Key order never matters.

Lineage. Every item carries a key: ``(source, position)`` for an item a source put, extended with
the index of each output for items an async generator node yields. A node with several inputs and
``aggregate_inputs`` true (a *join*) combines the items whose keys match:

* ``lineage`` mode: every input derives from the same source through the same expanding nodes,
  so the items of one source item meet (a diamond);
* ``zip`` mode: each input derives from a different single source; the n-th item of each source
  meet, whatever the order they arrive in.

Other shapes cannot be paired by lineage (an input that merges items of several sources, or two
copies of the same items) and are rejected with the reason.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import networkx as nx

from .errors import GraphError
from .nodes import node_defaults
from .properties import DEFAULT_MAX_WORKERS, SOURCE_ONLY_REJECTS, NodeProperties, parse_properties
from .state import NodeState, state_problem
from .types import JoinMode, Style

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "MAX_NESTING",
    "CallKind",
    "GraphSpec",
    "NodeSpec",
    "call_kind",
    "nesting_problem",
    "parse_graph",
]

DEFAULT_QUEUE_SIZE = 100
CallKind = Literal["async", "awaitable", "async generator", "opaque", "plain"]
"""What calling a node's function gives, as far as it is known when the graph is built (`call_kind`)."""
NODE_KEYS = ("coro", "args", "properties")
# How deep containers may nest in a node's entry (and in a graph file, and parentheses in a flow).
# Printing a value in a message, hashing it for the journal and most parsers recurse once per
# level, so past Python's recursion limit they fail with RecursionError instead of saying what is
# wrong; a graph needs nowhere near this many levels.
MAX_NESTING = 100
TOO_DEEP = f"nested more than {MAX_NESTING} levels deep (dicts, lists, tuples and sets inside one another)"
_CONTAINERS = (dict, list, tuple, set, frozenset)


@dataclass(frozen=True, slots=True)
class Shape:
    """Where the keys of a node's items come from: a set of (source, expanding nodes) pairs."""

    origins: frozenset[tuple[str, tuple[str, ...]]]
    # The node that merged two copies of the same items, after which keys are no longer unique.
    ambiguous_at: str | None = None
    # The error node these items went through: only the failed items come that way, with no
    # tombstone for the others, so a join could not know which groups will never complete.
    sparse_at: str | None = None


@dataclass(slots=True)
class NodeSpec:
    """One node, checked: what to call, how, and how it is wired."""

    name: str
    index: int
    coro: Callable[..., Any]
    args: dict[str, Any]
    properties: NodeProperties
    queue_size: int
    is_generator: bool
    call_kind: CallKind = "async"
    """What calling `coro` gives, as far as it is known when the graph is built (see `call_kind`)."""
    inputs: tuple[str, ...] = ()
    successors: tuple[str, ...] = ()
    error_sources: tuple[str, ...] = ()
    join_mode: JoinMode | None = None
    key_length: int = 2
    forward_drops: bool = False
    drop_targets: tuple[str, ...] = ()
    """The successors that must hear of an item this node drops: a join waits for it there, or further on."""
    setup: Callable[..., Any] | None = None
    teardown: Callable[..., Any] | None = None
    state: NodeState | None = None
    """A sink's declared state (pipelines.state), passed to its function, setup and teardown as `state`."""
    route: Callable[[Any], Any] | None = None
    """The routing function (property 'route'), resolved."""
    events: dict[str, Callable[..., Any]] = field(default_factory=dict)
    """The node's event handlers (property 'events'), resolved: ``await handler(processor, **params)``."""
    routes: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Outcome descriptors 2..9 and the successors reached only through each (property 'routes')."""

    @property
    def routes_outputs(self) -> bool:
        """Whether the node chooses successors for its outputs (pipelines.routing)."""
        return self.route is not None or bool(self.routes)

    @property
    def is_source(self) -> bool:
        return not self.inputs and not self.error_sources

    @property
    def is_sink(self) -> bool:
        return not self.successors

    @property
    def style(self) -> Style:
        return self.properties.style

    @property
    def bare(self) -> bool:
        """Whether the node's function takes each input as it is: an 'item' style node, or a join
        (its groups are tuples already); else as the one-item tuple ``q_elt`` of the original style."""
        return self.properties.style == "item" or self.join_mode is not None


@dataclass(slots=True)
class GraphSpec:
    """The checked graph: nodes in the order of ``input_d['nodes']`` and the networkx graph."""

    nodes: dict[str, NodeSpec]
    digraph: nx.DiGraph[str] = field(repr=False)


def parse_graph(
    input_d: object,
    coro_map: Callable[[Any], Any],
    *,
    queue_size: int = DEFAULT_QUEUE_SIZE,
) -> GraphSpec:
    """Check `input_d` and resolve every node's coroutine through `coro_map`."""
    nodes_d, graph_d = _checked_top_level(input_d, coro_map, queue_size)
    known = ", ".join(sorted(nodes_d))
    successors = {name: _successors(name, graph_d[name], nodes_d, known) for name in nodes_d}
    position = {name: i for i, name in enumerate(graph_d)}

    specs: dict[str, NodeSpec] = {}
    for index, (name, node_d) in enumerate(nodes_d.items()):
        specs[name] = _node_spec(name, index, node_d, coro_map, queue_size)
        specs[name].successors = successors[name]
        _check_routes(specs[name])

    digraph: nx.DiGraph[str] = nx.DiGraph()
    digraph.add_nodes_from(nodes_d)
    for name, succ in successors.items():
        digraph.add_edges_from(((name, s) for s in succ), kind="data")

    for name, spec in specs.items():
        preds = sorted(digraph.predecessors(name), key=position.__getitem__)
        spec.inputs = tuple(preds)
    _wire_error_routes(specs, digraph)
    _check_cycles(digraph)
    for spec in specs.values():
        if spec.state is not None and spec.successors:
            raise GraphError(
                f"node {spec.name!r}: only a sink (a node without successors) can have state, "
                f"and it sends to {', '.join(spec.successors)}"
            )

    if not any(spec.is_source for spec in specs.values()):
        raise GraphError("graph has no source: every node has an input")
    for spec in specs.values():
        _check_call(spec)
    _assign_join_modes(specs, digraph)
    return GraphSpec(nodes=specs, digraph=digraph)


def _checked_top_level(
    input_d: object, coro_map: object, queue_size: object
) -> tuple[Mapping[Any, Any], Mapping[Any, Any]]:
    """The graph's 'nodes' and 'graph' dicts, once the shape of the whole is checked: its two keys,
    the names of its nodes (in both dicts, non-empty strings), the queue size and the coro_map."""
    if not isinstance(input_d, Mapping):
        raise GraphError(f"graph must be a dict with keys 'nodes' and 'graph', got {type(input_d).__name__}")
    for key in ("nodes", "graph"):
        if key not in input_d:
            raise GraphError(f"graph is missing its {key!r} dict")
        if not isinstance(input_d[key], Mapping):
            raise GraphError(f"graph {key!r} must be a dict, got {type(input_d[key]).__name__}")
    unknown_keys = sorted(set(input_d) - {"nodes", "graph"}, key=str)
    if unknown_keys:
        raise GraphError(f"graph has unknown key {unknown_keys[0]!r} (expected 'nodes' and 'graph')")
    if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
        raise GraphError(f"queue_size must be an int >= 1 (every edge is bounded), got {queue_size!r}")
    if not callable(coro_map):
        raise GraphError(f"coro_map must be callable (for example lambda x: x), got {coro_map!r}")
    nodes_d: Mapping[Any, Any] = input_d["nodes"]
    graph_d: Mapping[Any, Any] = input_d["graph"]
    if not nodes_d:
        raise GraphError("graph has no nodes")
    for name in [*nodes_d, *graph_d]:
        if not isinstance(name, str) or not name:
            raise GraphError(f"node names must be non-empty strings, got {_quoted(name)}")
    for name in nodes_d:
        if name not in graph_d:
            raise GraphError(f"node {name!r} is in 'nodes' but not in 'graph' (give it successors or None)")
    for name in graph_d:
        if name not in nodes_d:
            raise GraphError(f"node {name!r} is in 'graph' but not in 'nodes'")
    return nodes_d, graph_d


def _successors(name: str, value: object, nodes_d: Mapping[Any, Any], known: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)  # ('out') is a string in Python: accept it as the one successor it names
    if not isinstance(value, (list, tuple)):
        raise GraphError(f"node {name!r}: successors must be a list of node names or None, got {type(value).__name__}")
    for succ in value:
        if not isinstance(succ, str) or succ not in nodes_d:
            raise GraphError(f"node {name!r}: unknown successor {_quoted(succ)} (known nodes: {known})")
        if succ == name:
            raise GraphError(f"node {name!r}: cycle: {name} -> {name}")
    return tuple(dict.fromkeys(value))


def _node_spec(name: str, index: int, node_d: object, coro_map: Callable[[Any], Any], queue_size: int) -> NodeSpec:
    if not isinstance(node_d, Mapping):
        raise GraphError(f"node {name!r}: must be a dict with 'coro', got {type(node_d).__name__}")
    # Before any message quotes a value of the entry: printing it must not recurse too deep.
    if nesting_problem(dict(node_d)) == "too deep":
        raise GraphError(f"node {name!r}: {TOO_DEEP}")
    for key in node_d:
        if key not in NODE_KEYS:
            raise GraphError(f"node {name!r}: unknown key {key!r} (expected {', '.join(NODE_KEYS)})")
    if node_d.get("coro") is None:
        raise GraphError(f"node {name!r}: missing 'coro'")
    coro = _resolve(name, "coro", node_d["coro"], coro_map, always_map=True)
    args = node_d.get("args")
    if args is None:
        args = {}
    if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
        raise GraphError(f"node {name!r}: 'args' must be a dict of keyword arguments, got {args!r}")
    raw_props = node_d.get("properties")
    if raw_props is not None and not isinstance(raw_props, Mapping):
        raise GraphError(f"node {name!r}: 'properties' must be a dict, got {type(raw_props).__name__}")
    args, raw_props = _processor_args(name, args, raw_props)
    kind = call_kind(coro)
    props = _check_executor(
        name, coro, kind, parse_properties(name, {**node_defaults(coro), **(raw_props or {})}), args
    )
    spec = NodeSpec(
        name=name,
        index=index,
        coro=coro,
        args=args,
        properties=props,
        queue_size=props.queue_size or queue_size,
        is_generator=kind == "async generator",
        call_kind=kind,
    )
    if props.state is not None:
        spec.state = _node_state(name, props, args, coro_map)
        spec.properties = replace(props, workers=1, max_workers=1 if props.executor is not None else props.max_workers)
    _resolve_callables(spec, coro_map)
    spec.routes = dict(props.routes)
    return spec


def _resolve_callables(spec: NodeSpec, coro_map: Callable[[Any], Any]) -> None:
    """Resolve and check the functions a node's properties name: its setup and teardown, the
    handlers of its events, its route function."""
    name, props = spec.name, spec.properties
    for hook in ("setup", "teardown"):
        value = getattr(props, hook)
        if value is not None:
            fn = _resolve(name, hook, value, coro_map, always_map=False)
            if inspect.isasyncgenfunction(fn):
                raise GraphError(f"node {name!r}: {hook} must be an async function, got async generator {fn!r}")
            if spec.state is not None:
                _takes_state(name, hook, fn)
                fn = functools.partial(fn, state=spec.state.value)
            _bind(name, hook, fn, (object(),), {})
            setattr(spec, hook, fn)
    for event, value in props.events:
        if spec.is_generator:
            raise GraphError(
                f"node {name!r}: property 'events' needs a node whose calls end between items; an async "
                "generator's call spans its outputs (return the output, or send the events to another node)"
            )
        fn = _resolve(name, f"handler of event {event!r}", value, coro_map, always_map=False)
        if inspect.isasyncgenfunction(fn):
            raise GraphError(f"node {name!r}: handler of event {event!r} must be an async function, got {fn!r}")
        spec.events[event] = fn
    if props.route is not None:
        spec.route = _routing_function(name, props.route, coro_map)


def _node_state(name: str, props: NodeProperties, args: Mapping[str, Any], coro_map: Callable[[Any], Any]) -> NodeState:
    """The node's state, made and checked: the node can hold it and a journal can snapshot it."""
    value = props.state
    if callable(value):
        factory = value
    else:
        try:
            factory = coro_map(value)
        except Exception as exc:
            raise GraphError(f"node {name!r}: coro_map could not resolve state {value!r}: {exc!r}") from None
        if not callable(factory):
            raise GraphError(
                f"node {name!r}: property 'state' must be a function giving the initial state (a class, dict, "
                f"a lambda), got {value!r}"
            )
    if "state" in args:
        raise GraphError(f"node {name!r}: 'args' entry 'state' would hide the node's state; rename the argument")
    if props.executor == "process":
        raise GraphError(
            f"node {name!r}: a node with state cannot run in a process pool (the state lives in this process); "
            "use 'executor': 'thread'"
        )
    workers = props.workers if "workers" in props.given else None
    if workers is None and props.executor is not None and "max_workers" in props.given:
        workers = props.max_workers  # a node in a pool runs a worker per thread
    if workers is not None and workers > 1:
        raise GraphError(
            f"node {name!r}: a node with state runs one worker (its snapshots fall between two of its batches), "
            f"got workers={workers}"
        )
    try:
        state = NodeState(name, factory)
    except Exception as exc:
        raise GraphError(
            f"node {name!r}: state {_quoted(value)} raised {exc!r} when called for the initial state"
        ) from None
    problem = state_problem(state.value)
    if problem is not None:
        raise GraphError(f"node {name!r}: state {_quoted(value)} {problem}")
    try:
        state.dump()
    except Exception as exc:
        raise GraphError(str(exc)) from None
    return state


def _routing_function(name: str, value: Any, coro_map: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The 'route' property resolved (through coro_map unless it is callable): a plain function of one value."""
    fn = value
    if not callable(value):
        try:
            fn = coro_map(value)
        except Exception as exc:
            raise GraphError(f"node {name!r}: coro_map could not resolve route {value!r}: {exc!r}") from None
    if not callable(fn) or inspect.isclass(fn):
        raise GraphError(f"node {name!r}: route {value!r} resolved to {fn!r}, which is not a function")
    if call_kind(fn) in ("async", "async generator"):
        raise GraphError(
            f"node {name!r}: route {getattr(fn, '__name__', fn)!r} is async; a routing function is a plain "
            "function of the output that returns where it goes (a successor name, a descriptor, a list of them, "
            "or None)"
        )
    _bind(name, "route", fn, (object(),), {})
    routing: Callable[[Any], Any] = fn
    return routing


def _check_routes(spec: NodeSpec) -> None:
    """Routes name successors of the node; a sink has nowhere to route to."""
    if not spec.routes_outputs:
        return
    if not spec.successors:
        given = "routes" if spec.routes else "route"
        raise GraphError(f"node {spec.name!r}: property {given!r}: a node without successors has nowhere to route to")
    for descriptor, names in spec.routes.items():
        for target in names:
            if target not in spec.successors:
                raise GraphError(
                    f"node {spec.name!r}: routes {descriptor} names {target!r}, which is not a successor "
                    f"(successors: {', '.join(spec.successors)})"
                )


def nesting_problem(value: object, limit: int = MAX_NESTING) -> Literal["too deep", "contains itself"] | None:
    """Whether dicts, lists, tuples and sets nest in `value` more than `limit` levels deep (a container
    is level 1), else whether one contains itself; None when neither.

    The walk is a loop, not a recursion, so any depth is measured; each container is walked once,
    however many times it is shared (YAML aliases can share one list 10 ** 40 times over), and a
    container inside itself counts once.
    """
    if not isinstance(value, _CONTAINERS):
        return None
    heights: dict[int, int] = {}  # levels at and below each container walked to its end
    on_path = {id(value)}
    path: list[tuple[object, Iterator[object]]] = [(value, _children(value))]
    tallest = [0]  # per container on the path: the most levels below it so far
    contains_itself = False
    while path:
        container, children = path[-1]
        for child in children:
            if not isinstance(child, _CONTAINERS):
                continue
            if id(child) in on_path:
                contains_itself = True
                continue
            height = heights.get(id(child))
            if height is None:  # not walked yet: go down into it
                if len(path) >= limit:
                    return "too deep"
                on_path.add(id(child))
                path.append((child, _children(child)))
                tallest.append(0)
                break
            if len(path) + height > limit:
                return "too deep"
            tallest[-1] = max(tallest[-1], height)
        else:  # every child walked: this container is done
            path.pop()
            on_path.discard(id(container))
            heights[id(container)] = height = tallest.pop() + 1
            if tallest:
                tallest[-1] = max(tallest[-1], height)
    return "contains itself" if contains_itself else None


def _children(container: Any) -> Iterator[object]:
    if isinstance(container, dict):
        return itertools.chain.from_iterable(container.items())
    return iter(container)


def _quoted(value: object) -> str:
    """repr(value) for a message, or what it is when it nests too deep to print."""
    if nesting_problem(value) == "too deep":
        return f"a {type(value).__name__} {TOO_DEEP}"
    return repr(value)


def _processor_args(
    name: str, args: Mapping[str, Any], raw_props: Mapping[str, Any] | None
) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
    """Take out of `args` what the original library's Processor took as its own parameter.

    The original Plumber passed a node's ``'args'`` as keyword arguments to ``Processor(...)``, so
    ``'args': {'queue_size': 5}`` bounded that node's queues and never reached the coroutine. It
    keeps that meaning here: it is the node's ``queue_size`` property.
    """
    if "queue_size" not in args:
        return dict(args), raw_props
    value = args["queue_size"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GraphError(
            f"node {name!r}: 'args' entry 'queue_size' is the bound of the node's input queue (as in the original "
            f"library) and must be an int >= 1 (every edge is bounded), got {value!r}"
        )
    if raw_props is not None and "queue_size" in raw_props and raw_props["queue_size"] != value:
        raise GraphError(
            f"node {name!r}: 'queue_size' is given both in 'args' ({value!r}) and in 'properties' "
            f"({raw_props['queue_size']!r}); give it once"
        )
    return {k: v for k, v in args.items() if k != "queue_size"}, {**(raw_props or {}), "queue_size": value}


def call_kind(fn: Callable[..., Any]) -> CallKind:
    """What calling `fn` gives, as far as can be known without calling it.

    ``'async'``: a coroutine, for sure: an ``async def`` function, a bound method or a
    ``functools.partial`` of one, an object whose ``__call__`` is ``async def``;
    ``'async generator'``: an async generator, known the same ways;
    ``'awaitable'``: a plain function (or a partial of one, or an object whose ``__call__`` is
    plain) whose return annotation is an awaitable type, such as ``Awaitable[int]``, ``Coroutine``,
    ``Future`` or ``Task``; ``'opaque'``: a lambda (or a partial of one), which cannot say what it
    returns. What these last two return is checked at each call (`pipelines.calls.invoker`);
    ``'plain'``: any other callable, taken to be a plain blocking function.
    """
    target: Any = fn
    while isinstance(target, functools.partial):
        target = target.func
    if callable(target) and not inspect.isroutine(target) and not inspect.isclass(target):
        target = type(target).__call__  # an object: what its class's __call__ is
    if inspect.isasyncgenfunction(target):
        return "async generator"
    if inspect.iscoroutinefunction(target):
        return "async"
    if _returns_awaitable(target):
        return "awaitable"
    if getattr(target, "__name__", None) == "<lambda>":
        return "opaque"
    return "plain"


_AWAITABLE_NAMES = ("Awaitable", "Coroutine", "Future", "Task")


def _returns_awaitable(fn: Any) -> bool:
    """Whether `fn`'s return annotation names an awaitable type (evaluated, or read from its string)."""
    try:
        annotation = inspect.signature(fn, eval_str=True).return_annotation
    except Exception:  # no signature, or an annotation that cannot be evaluated here
        try:
            annotation = inspect.signature(fn).return_annotation
        except (TypeError, ValueError):
            return False
    if isinstance(annotation, str):  # unevaluated: 'Awaitable[int]', 'asyncio.Future[str]'
        base = annotation.split("[", 1)[0].strip().rsplit(".", 1)[-1]
        return base in _AWAITABLE_NAMES
    origin = getattr(annotation, "__origin__", None) or annotation
    return isinstance(origin, type) and issubclass(origin, collections.abc.Awaitable)


def _check_executor(
    name: str, fn: Callable[..., Any], kind: CallKind, props: NodeProperties, args: Mapping[str, Any]
) -> NodeProperties:
    """A plain function needs an executor, and runs one item per pool worker; an async one needs none.

    A lambda (an opaque callable) is taken as returning an awaitable unless given an executor."""
    is_async = kind in ("async", "awaitable", "async generator") or (kind == "opaque" and props.executor is None)
    if props.executor is None:
        if not is_async:
            hint = ""
            if props.style == "processor" and _takes_one_item(fn, args):
                hint = (
                    f" (it is then called as {getattr(fn, '__name__', 'f')}(item)); or, if it never blocks, make it "
                    "`async def` and put @node above it (from pipelines import node)"
                )
            raise GraphError(
                f"node {name!r}: {fn!r} is a plain (blocking) function; give the node 'executor': 'thread' "
                f"(or 'process' for CPU-heavy work) so that it does not block the event loop{hint}"
            )
        return props
    if is_async:
        raise GraphError(f"node {name!r}: property 'executor' is for plain functions; {fn!r} is async")
    if props.timeout is not None:
        raise GraphError(
            f"node {name!r}: 'timeout' cannot stop a call in a pool, it would only stop waiting for it while "
            "the pool worker stays busy; bound the blocking call itself (most blocking APIs take a timeout)"
        )
    if "style" in props.given and props.style != "item":
        raise GraphError(f"node {name!r}: a function run in an executor is called as f(item, **args) ('item' style)")
    size = props.max_workers or DEFAULT_MAX_WORKERS
    if props.workers is not None and props.workers != size:
        raise GraphError(
            f"node {name!r}: 'workers' ({props.workers}) and 'max_workers' ({size}) differ; "
            "a node with an executor hands one item to each pool worker, so give only 'max_workers'"
        )
    # One consumer per pool worker: never more items in the pool than it has workers.
    return replace(props, style="item", workers=size, max_workers=size)


def _resolve(name: str, what: str, value: Any, coro_map: Callable[[Any], Any], *, always_map: bool) -> Any:
    if always_map or not callable(value):
        try:
            fn = coro_map(value)
        except Exception as exc:
            raise GraphError(f"node {name!r}: coro_map could not resolve {what} {value!r}: {exc!r}") from None
    else:
        fn = value
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return fn
    if what == "coro" and callable(fn) and not inspect.isgeneratorfunction(fn) and not inspect.isclass(fn):
        # Any other callable: one that returns an awaitable, or a plain blocking function, allowed
        # with an executor; call_kind() tells which, and _check_executor() checks it.
        return fn
    raise GraphError(
        f"node {name!r}: {what} {value!r} resolved to {fn!r}, which is not an async function or async "
        "generator function" + (" (or a plain function run in an executor)" if what == "coro" else "")
    )


def _wire_error_routes(specs: dict[str, NodeSpec], digraph: nx.DiGraph[str]) -> None:
    routes: dict[str, list[str]] = {}
    for name, spec in specs.items():
        target = spec.properties.on_error
        if target in ("fail", "skip"):
            continue
        if target not in specs:
            raise GraphError(
                f"node {name!r}: on_error {target!r} is not 'fail', 'skip' or a node "
                f"(known nodes: {', '.join(sorted(specs))})"
            )
        if target == name:
            raise GraphError(f"node {name!r}: on_error cannot route failures to the node itself")
        routes.setdefault(target, []).append(name)
    for target, sources in routes.items():
        spec = specs[target]
        if spec.inputs:
            raise GraphError(
                f"node {target!r} is the error node of {', '.join(map(repr, sources))} and cannot also "
                f"have inputs in 'graph' (fed by {', '.join(map(repr, spec.inputs))})"
            )
        spec.error_sources = tuple(sources)
        digraph.add_edges_from(((s, target) for s in sources), kind="error")


def _check_cycles(digraph: nx.DiGraph[str]) -> None:
    try:
        cycle = nx.find_cycle(digraph)
    except nx.NetworkXNoCycle:
        return
    path = [edge[0] for edge in cycle] + [cycle[0][0]]
    raise GraphError(f"node {path[0]!r}: cycle: {' -> '.join(path)}")


def _check_call(spec: NodeSpec) -> None:
    """Check that the coroutine can be called the way this node will call it."""
    if spec.is_source:
        rejected = [p for p in SOURCE_ONLY_REJECTS if p in spec.properties.given]
        if rejected:
            raise GraphError(
                f"node {spec.name!r}: property {rejected[0]!r} does not apply to a source (a node without inputs)"
            )
        if spec.style == "item":
            if not spec.is_generator:
                raise GraphError(
                    f"node {spec.name!r}: a source in 'item' style must be an async generator "
                    f"that yields its items, got {spec.coro!r}"
                )
            _bind(spec.name, "coro", spec.coro, (), spec.args)
        else:
            if spec.is_generator and _binds(spec.coro, (), spec.args) and not _binds(spec.coro, (1, 2), spec.args):
                raise GraphError(
                    f"node {spec.name!r}: coro {_shown(spec.coro)} is an async generator taking only its args, but "
                    "a source's function is called as f(processor, output_q, **args) (the original signature) "
                    f"unless it is marked with @node: {_node_fix(spec.coro)}"
                )
            _bind(spec.name, "coro", spec.coro, (object(), object()), spec.args)
    else:
        if spec.style != "item" and _takes_one_item(spec.coro, spec.args):
            raise GraphError(
                f"node {spec.name!r}: coro {_shown(spec.coro)} takes one item, but a node's function is called as "
                "f(processor, q_elt, **args) (the original signature, q_elt a tuple) unless it is marked with "
                f"@node: {_node_fix(spec.coro)}"
            )
        positional = (object(),) if spec.style == "item" else (object(), object())
        args = spec.args
        if spec.state is not None:
            _takes_state(spec.name, "coro", spec.coro)
            args = {**args, "state": spec.state.value}
        _bind(spec.name, "coro", spec.coro, positional, args)


def _takes_state(name: str, what: str, fn: Callable[..., Any]) -> None:
    """A node with state passes it to `fn` as the keyword argument 'state': `fn` must take it."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    parameters = signature.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    state = signature.parameters.get("state")
    if state is None or state.kind not in (state.POSITIONAL_OR_KEYWORD, state.KEYWORD_ONLY):
        shown = f"{getattr(fn, '__qualname__', fn)}{signature}"
        raise GraphError(
            f"node {name!r}: a node with state gives it to its {what} as the keyword argument 'state', "
            f"and {shown} has no parameter 'state'"
        )


def _binds(fn: Callable[..., Any], positional: tuple[Any, ...], args: Mapping[str, Any]) -> bool:
    """Whether `fn` accepts these arguments (True when it has no signature to tell)."""
    try:
        inspect.signature(fn).bind(*positional, **args)
    except TypeError:
        return False
    except ValueError:  # no signature
        return True
    return True


def _takes_one_item(fn: Callable[..., Any], args: Mapping[str, Any]) -> bool:
    """Whether `fn` is a function that clearly takes one item and its args: it accepts one positional
    argument, not two. (Other callables are left to the general check, which quotes the signature.)"""
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        return False
    return _binds(fn, (1,), args) and not _binds(fn, (1, 2), args)


def _shown(fn: Callable[..., Any]) -> str:
    try:
        return f"{getattr(fn, '__qualname__', fn)}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return repr(fn)


def _node_fix(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", "f")
    return (
        f"put @node above `async def {name}` (from pipelines import node), or give the node "
        "'properties': {'style': 'item'}"
    )


def _bind(name: str, what: str, fn: Callable[..., Any], positional: tuple[Any, ...], args: Mapping[str, Any]) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins and some callables have no signature to check
    try:
        signature.bind(*positional, **args)
    except TypeError as exc:
        shown = f"{getattr(fn, '__qualname__', fn)}{signature}"
        raise GraphError(f"node {name!r}: {what} cannot be called as {shown} with args {dict(args)!r}: {exc}") from None


def _assign_join_modes(specs: dict[str, NodeSpec], digraph: nx.DiGraph[str]) -> None:
    """Work out each node's key shape in topological order; choose how joins pair; mark tombstones."""
    item_shape: dict[str, Shape] = {}
    out_shape: dict[str, Shape] = {}
    for name in nx.topological_sort(digraph):
        spec = specs[name]
        if spec.is_source:
            shape = Shape(frozenset({(name, ())}))
        else:
            feeds = [(p, out_shape[p]) for p in spec.inputs] + [(p, item_shape[p]) for p in spec.error_sources]
            if spec.properties.aggregate_inputs and len(spec.inputs) >= 2:
                shape = _join_shape(spec, feeds)
            else:
                shape = _merge_shape(name, [s for _, s in feeds])
            if spec.error_sources:
                shape = Shape(shape.origins, shape.ambiguous_at, name)
        item_shape[name] = shape
        if spec.is_generator and not spec.is_source:
            origins = frozenset((src, (*path, name)) for src, path in shape.origins)
            shape = Shape(origins, shape.ambiguous_at, shape.sparse_at)
        out_shape[name] = shape

    # A node sends a tombstone for an item it drops when a join downstream must hear of it.
    for name in reversed(list(nx.topological_sort(digraph))):
        spec = specs[name]
        spec.drop_targets = tuple(
            s for s in spec.successors if specs[s].join_mode is not None or specs[s].forward_drops
        )
        spec.forward_drops = bool(spec.drop_targets)


def _merge_shape(name: str, shapes: list[Shape]) -> Shape:
    origins: frozenset[tuple[str, tuple[str, ...]]] = frozenset()
    ambiguous = next((s.ambiguous_at for s in shapes if s.ambiguous_at), None)
    sparse = next((s.sparse_at for s in shapes if s.sparse_at), None)
    for shape in shapes:
        if origins & shape.origins and ambiguous is None:
            ambiguous = name
        origins |= shape.origins
    return Shape(origins, ambiguous, sparse)


def _join_shape(spec: NodeSpec, feeds: list[tuple[str, Shape]]) -> Shape:
    name = spec.name
    hint = f"set 'aggregate_inputs': false on {name!r} to merge its inputs in arrival order instead"
    for pred, shape in feeds:
        if shape.sparse_at is not None:
            raise GraphError(
                f"node {name!r}: cannot pair its inputs by lineage: input {pred!r} carries only the items that "
                f"failed (through error node {shape.sparse_at!r}), so a group could wait for an item that never "
                f"comes; {hint}"
            )
        if shape.ambiguous_at is not None:
            raise GraphError(
                f"node {name!r}: cannot pair its inputs by lineage: input {pred!r} carries several copies of "
                f"the same items (merged at {shape.ambiguous_at!r}); {hint}"
            )
        if len(shape.origins) != 1:
            sources = sorted(src for src, _ in shape.origins)
            raise GraphError(
                f"node {name!r}: cannot pair its inputs by lineage: input {pred!r} carries items of several "
                f"sources ({', '.join(sources)}); {hint}"
            )
    origins = [next(iter(shape.origins)) for _, shape in feeds]
    if all(o == origins[0] for o in origins):
        spec.join_mode = "lineage"
        spec.key_length = 2 + len(origins[0][1])
        return feeds[0][1]
    sources = [src for src, _ in origins]
    distinct = len(set(sources)) == len(sources)
    if distinct and len({len(path) for _, path in origins}) == 1:
        spec.join_mode = "zip"
        spec.key_length = 1 + len(origins[0][1])
        return feeds[0][1]
    how = "different sources through different numbers of" if distinct else "a source through different"
    detail = ", ".join(
        f"{pred!r} from {src!r}" + (f" through {', '.join(path)}" if path else "")
        for (pred, _), (src, path) in zip(feeds, origins, strict=True)
    )
    raise GraphError(
        f"node {name!r}: cannot pair its inputs by lineage: they derive from {how} expanding "
        f"(async generator) nodes: {detail}; {hint}"
    )
