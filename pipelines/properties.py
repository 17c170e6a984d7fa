"""Node properties: the `'properties'` dict of a node, checked and turned into typed values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import GraphError
from .policies import RetryPolicy, is_finite_number
from .types import OnError, Style

__all__ = [
    "INPUT_POLICIES",
    "RECOVERY_CHOICES",
    "RECOVERY_OUTCOMES",
    "PROPERTY_NAMES",
    "SOURCE_ONLY_REJECTS",
    "NodeProperties",
    "parse_properties",
    "parse_routes",
]

PROPERTY_NAMES = (
    "aggregate_inputs",
    "events",
    "executor",
    "input",
    "max_workers",
    "on_error",
    "ordered",
    "queue_size",
    "recovery",
    "retry",
    "route",
    "routes",
    "setup",
    "state",
    "style",
    "teardown",
    "timeout",
    "workers",
)
# Properties about handling input items, which a source (a node without inputs) does not have.
SOURCE_ONLY_REJECTS = (
    "events",
    "executor",
    "input",
    "max_workers",
    "on_error",
    "ordered",
    "recovery",
    "retry",
    "route",
    "routes",
    "state",
    "timeout",
    "workers",
)
EXECUTORS = ("thread", "process")
DEFAULT_MAX_WORKERS = 4
STYLES = ("processor", "item")
INPUT_POLICIES = ("block", "drop_oldest", "latest")
"""What a node's full input does with one more item: make its producer wait (the default), or drop
the oldest item waiting (a ring of `queue_size` items), or keep only the newest (a ring of one)."""
RECOVERY_OUTCOMES = ("failed", "skipped", "routed")
"""The outcomes of an item at a node that a journal's resume may redo (property 'recovery'): it
failed (and failed the run, or a hook answered for it), it was skipped, it was routed to the error node."""
RECOVERY_CHOICES = ("rerun", "keep")


@dataclass(frozen=True, slots=True)
class NodeProperties:
    """The properties of one node, after checking. `given` names those the user set."""

    aggregate_inputs: bool = True
    queue_size: int | None = None
    workers: int | None = None
    """A fixed number of workers; None: an elastic pool of 1 to `max_workers` (pipelines.pool)."""
    ordered: bool = False
    timeout: float | None = None
    retry: RetryPolicy | None = None
    on_error: OnError = "fail"
    setup: Any = None
    teardown: Any = None
    events: tuple[tuple[str, Any], ...] = ()
    """The node's event handlers, by event name, as given (resolved in pipelines.graph)."""
    state: Any = None
    """A sink's state: a callable giving its initial value (pipelines.state)."""
    style: Style = "processor"
    executor: str | None = None
    max_workers: int | None = None
    """The most workers at once: the executor's pool size (4 by default), or the elastic pool's cap
    (by default the node's input bound)."""
    input: str = "block"
    """The input policy, one of INPUT_POLICIES: 'block', or a lossy edge (pipelines.lossy)."""
    route: Any = None
    """A function choosing where each output goes (pipelines.routing), or its name for coro_map."""
    routes: tuple[tuple[int, tuple[str, ...]], ...] = ()
    """Outcome descriptors 2..9 and the successors each reaches, in descriptor order (pipelines.routing)."""
    recovery: tuple[tuple[str, str], ...] = ()
    """What a resumed journaled run does with the items that ended here with one of
    RECOVERY_OUTCOMES in the earlier run: (outcome, 'rerun' or 'keep') for those the user chose;
    the others follow the run (pipelines.journal.recovery)."""
    given: frozenset[str] = frozenset()


def _whole(value: Any) -> bool:
    return _is_int(value) and value >= 1


_CHECKS: dict[str, tuple[Callable[[Any], bool], str, bool]] = {
    # property: (whether a value is valid, what is expected, whether null means "not given")
    "aggregate_inputs": (lambda value: isinstance(value, bool), "true or false", False),
    "ordered": (lambda value: isinstance(value, bool), "true or false", False),
    "workers": (_whole, "an int >= 1", False),
    "executor": (EXECUTORS.__contains__, "'thread' (blocking I/O) or 'process' (CPU-heavy work)", True),
    "max_workers": (_whole, "an int >= 1", False),
    "queue_size": (_whole, "an int >= 1 (every edge is bounded)", False),
    # NaN would time every attempt out at once, and infinity is what null says.
    "timeout": (lambda value: is_finite_number(value) and value > 0, "a finite number of seconds > 0, or null", True),
    "on_error": (
        lambda value: isinstance(value, str) and bool(value),
        "'fail', 'skip' or the name of an error node",
        False,
    ),
    "style": (STYLES.__contains__, "'processor' (f(processor, q_elt)) or 'item' (f(item))", False),
    "input": (
        INPUT_POLICIES.__contains__,
        "'block' (producers wait while it is full), 'drop_oldest' (the oldest item waiting makes room) or "
        "'latest' (only the newest item waits)",
        False,
    ),
    "events": (
        lambda value: isinstance(value, Mapping) and all(isinstance(k, str) and k for k in value),
        "a dict of event names to handlers (async functions, or names coro_map resolves)",
        True,
    ),
}


def parse_properties(node: str, raw: object) -> NodeProperties:
    """Check a node's properties; raise GraphError naming the node, the property and the value."""
    if raw is None:
        return NodeProperties()
    if not isinstance(raw, Mapping):
        raise GraphError(f"node {node!r}: 'properties' must be a dict, got {_kind(raw)}")
    for key in raw:
        if key not in PROPERTY_NAMES:
            raise GraphError(f"node {node!r}: unknown property {key!r} (known properties: {', '.join(PROPERTY_NAMES)})")
    values: dict[str, Any] = {}
    for key, value in raw.items():  # most nodes give none or a few
        check = _CHECKS.get(key)
        if check is not None and not (check[2] and value is None):
            if not check[0](value):
                raise GraphError(f"node {node!r}: property {key!r} must be {check[1]}, got {value!r}")
            values[key] = value
    if "timeout" in values:
        values["timeout"] = float(values["timeout"])
    if "events" in values:
        values["events"] = tuple(values["events"].items())
    if values.get("input") == "latest":
        if raw.get("queue_size", 1) != 1:
            raise GraphError(
                f"node {node!r}: property 'input' 'latest' keeps one item, so 'queue_size' must be 1 or "
                f"left out, got {raw['queue_size']!r} (for a ring of several items use 'drop_oldest')"
            )
        values["queue_size"] = 1
    if raw.get("retry") is not None:
        try:
            values["retry"] = RetryPolicy.from_value(raw["retry"])
        except ValueError as exc:
            raise GraphError(f"node {node!r}: property 'retry': {exc}") from None
    for key in ("setup", "teardown", "state", "route"):
        if raw.get(key) is not None:
            values[key] = raw[key]
    if raw.get("routes") is not None:
        values["routes"] = parse_routes(node, raw["routes"])
    if raw.get("recovery") is not None:
        values["recovery"] = parse_recovery(node, raw["recovery"])
    return NodeProperties(**values, given=frozenset(raw))


def parse_routes(node: str, raw: object) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """Check a ``routes`` property: descriptors 2..9 (ints, or their digits as strings, as JSON
    writes keys), each naming a successor or a list of them, no successor under two descriptors."""
    where = f"node {node!r}: property 'routes'"
    if not isinstance(raw, Mapping):
        raise GraphError(f"{where} must be a dict of descriptors 2..9 to successor names, got {_kind(raw)}")
    routes: dict[int, tuple[str, ...]] = {}
    seen: dict[str, int] = {}
    for key, value in raw.items():
        descriptor = _descriptor(key)
        if descriptor in (0, 1):
            what = (
                "on_error names the error node" if descriptor == 0 else "its successors are those no descriptor names"
            )
            raise GraphError(
                f"{where}: descriptor {key!r} is not a route ({descriptor} is the default outcome: {what})"
            )
        if descriptor is None:
            raise GraphError(f"{where}: descriptor {key!r} must be an int from 2 to 9")
        if descriptor in routes:
            raise GraphError(f"{where}: descriptor {descriptor} is given twice")
        names = (value,) if isinstance(value, str) else value
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n for n in names):
            raise GraphError(
                f"{where}: descriptor {descriptor} must name a successor or a non-empty list of them, got {value!r}"
            )
        for name in names:
            if name in seen:
                raise GraphError(f"{where}: successor {name!r} is under descriptors {seen[name]} and {descriptor}")
            seen[name] = descriptor
        routes[descriptor] = tuple(names)
    return tuple(sorted(routes.items()))


def parse_recovery(node: str, raw: object) -> tuple[tuple[str, str], ...]:
    """Check a ``recovery`` property: 'rerun' or 'keep' for every outcome, or a dict giving it per outcome."""
    where = f"node {node!r}: property 'recovery'"
    if isinstance(raw, str):
        if raw not in RECOVERY_CHOICES:
            raise GraphError(f"{where} must be 'rerun', 'keep' or a dict of them per outcome, got {raw!r}")
        return tuple((outcome, raw) for outcome in RECOVERY_OUTCOMES)
    if not isinstance(raw, Mapping):
        raise GraphError(
            f"{where} must be 'rerun', 'keep' or a dict of them per outcome ({', '.join(RECOVERY_OUTCOMES)}), "
            f"got {_kind(raw)}"
        )
    for outcome, choice in raw.items():
        if outcome not in RECOVERY_OUTCOMES:
            raise GraphError(f"{where}: unknown outcome {outcome!r} (known outcomes: {', '.join(RECOVERY_OUTCOMES)})")
        if choice not in RECOVERY_CHOICES:
            raise GraphError(f"{where}: outcome {outcome!r} must be 'rerun' or 'keep', got {choice!r}")
    return tuple((outcome, raw[outcome]) for outcome in RECOVERY_OUTCOMES if outcome in raw)


def _descriptor(key: object) -> int | None:
    if isinstance(key, str) and len(key) == 1 and key.isdigit():
        return int(key)
    if _is_int(key) and 0 <= key <= 9:  # type: ignore[operator]
        return key  # type: ignore[return-value]
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: object) -> str:
    return type(value).__name__
