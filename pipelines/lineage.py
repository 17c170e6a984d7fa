"""Lineage: the key every item carries, tombstones for dropped items, and the join that pairs by key.

An item travels as an envelope ``(key, value, producer)``: `key` is its lineage (``(source,
position, *output indices)``), `value` the item itself, and `producer` the index of the node that
emitted it, which tells a join on which of its inputs the item arrived. When a node drops an item
(its coroutine returned None, or the item was skipped or routed away after an error) and a join lies
downstream, the node sends a *tombstone* in its place: an envelope whose value is `DROPPED`. A join
that receives a tombstone for a key discards that group, so later groups never wait for it.

Where nothing needs the keys, items travel without them (`needs_keys`): each envelope is the value
itself, and no key is made or taken apart at any node. Where only hooks that follow a few items
need them (Tracing: `pipelines.hooks`, ``needs_all_keys``), the run is keyless but for those items,
which keep their envelopes as `Keyed` ones (the run's *followed* items).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .types import Key, Marker

if TYPE_CHECKING:
    from .graph import GraphSpec

__all__ = ["DISCARDED", "DROPPED", "NO_KEY", "Joiner", "Keyed", "is_linear", "needs_keys"]

DROPPED: Any = Marker("DROPPED")
"""The value of a tombstone envelope: the item with this key was dropped upstream."""

DISCARDED: Any = Marker("DISCARDED")
"""Returned by Joiner.offer() when a group is complete but one of its inputs dropped the item."""

_MISSING: Any = Marker("MISSING")

NO_KEY: Key = ()
"""The key of an item in a keyless run, where a call needs one (the ledger counting a drop or a failure)."""


class Keyed(tuple):  # type: ignore[type-arg]
    """The envelope ``(key, value, producer)`` of a followed item: it keeps its key in a keyless run.

    In a keyless run whose hooks follow only the items at their positions (pipelines.hooks,
    ``needs_all_keys``), every other item travels as its bare value; these travel as a Keyed, a
    tuple of a type no value of the user's has, so that a node tells them apart with one type test,
    and only in a piece its input edge says holds one (`MemoryEdge.keyed`). Built as
    ``Keyed((key, value, producer))``.
    """

    __slots__ = ()


def needs_keys(graph: GraphSpec) -> str | None:
    """Why the items of `graph` must carry their keys (None: they need not).

    Keys are for a join (it pairs by key, and tombstones name keys), an async generator node (its
    outputs' keys extend its input's), routing and error nodes (their tombstones and failure
    records), a lossy input (it settles what it drops by key), and a node's input shared by
    several producers (its `input_queue.get()` and a source's `output_q.get()` tell the items
    apart by producer). The run's hooks and transport may need them too: the Plumber asks those.
    """
    for name, node in graph.nodes.items():
        if node.is_source:
            continue
        properties = node.properties
        if node.join_mode is not None:
            return f"node {name!r} is a join"
        if node.is_generator:
            return f"node {name!r} is an async generator"
        if node.routes_outputs:
            return f"node {name!r} routes its outputs"
        if properties.on_error not in ("fail", "skip"):
            return f"node {name!r} sends its failures to an error node"
        if properties.input != "block":
            return f"node {name!r} has a lossy input"
        if node.error_sources:
            return f"node {name!r} is an error node"
        if len(node.inputs) != 1:
            return f"node {name!r} has {len(node.inputs)} producers"
    return None


def is_linear(spec: GraphSpec) -> bool:
    """Whether each item a source puts is one envelope all the way: no node hands an output to more
    than one successor, makes several from one (a generator), combines several (a join), routes its
    outputs or sends failures to an error node. Hooks that count an item's envelopes (the journal,
    an inbox) count none then: an item's path is over when its one envelope ends (finished by a
    sink, or dropped, skipped or failed on the way)."""
    return all(
        len(node.successors) <= 1
        and not (node.is_generator and not node.is_source)  # a source's items are each a root of their own
        and node.join_mode is None
        and not node.error_sources
        and not node.routes_outputs
        for node in spec.nodes.values()
    )


class Joiner:
    """Collects one item per input for each key and releases the group when all have arrived.

    `ports` maps a producer's node index to the position of that input. In ``zip`` mode the
    source's name is left out of the key, so that the n-th items of different sources meet.
    A group is released once every input has reported its key, with an item or a tombstone;
    the state kept is therefore bounded by the items in flight between the fork and the join.
    Once an input has ended (`input_ended`), it counts as having reported a tombstone for every
    key it did not give: a group waiting for it is discarded as soon as the other inputs have
    reported, rather than held to the end of the stream.
    """

    __slots__ = ("_ended", "_groups", "_key_length", "_ports", "_width", "_zip", "abandoned")

    def __init__(self, ports: Mapping[int, int], *, zip_mode: bool, key_length: int) -> None:
        self._ports = dict(ports)
        self._width = len(set(ports.values()))
        self._zip = zip_mode
        self._key_length = key_length
        # key -> [value per port..., count of ports reported, key of the first input's item]
        self._groups: dict[Any, list[Any]] = {}
        self._ended: list[int] = []
        self.abandoned = 0
        """Groups discarded because an input had ended without their item."""

    @property
    def pending(self) -> int:
        """Groups waiting for at least one of their inputs."""
        return len(self._groups)

    def offer(self, key: tuple[Any, ...], value: Any, producer: int) -> tuple[Any, Any] | None:
        """Add one arrival; return ``(key, values)`` when its group is complete, else None.

        `values` is the tuple of items in input order, or `DISCARDED` when an input dropped it.
        """
        match_key = key[1:] if self._zip else key
        if len(match_key) != self._key_length:
            # A tombstone for a whole item an expanding node upstream of every input yielded
            # nothing for: no group under it can exist.
            return None
        width = self._width
        group = self._groups.get(match_key)
        if group is None:
            group = [_MISSING] * width + [0, key]
            for ended in self._ended:  # it never gives this key: as if its tombstone had come
                group[ended] = DROPPED
            if self._ended:
                group[width] = len(self._ended)
                self.abandoned += 1
            self._groups[match_key] = group
        port = self._ports[producer]
        if group[port] is not _MISSING:
            raise RuntimeError(f"item with key {key!r} arrived twice on one input of a join")
        group[port] = value
        group[width] += 1
        if port == 0:
            group[width + 1] = key
        if group[width] < width:
            return None
        del self._groups[match_key]
        values = group[:width]
        out_key = group[width + 1]
        for v in values:
            if v is DROPPED:
                return out_key, DISCARDED
        return out_key, tuple(values)

    def holds(self, key: tuple[Any, ...], producer: int) -> bool:
        """Whether an item with `key` from `producer` already waits in its group (a duplicate would not fit)."""
        group = self._groups.get(key[1:] if self._zip else key)
        return group is not None and group[self._ports[producer]] is not _MISSING

    def input_ended(self, port: int) -> list[Any]:
        """The input at `port` has ended (closed, and all it held taken): it gives no more keys, so
        from now on it counts as a tombstone in every group without its item. Returns the keys of
        the groups that this completes (to discard now: each lacks the item of `port`)."""
        self._ended.append(port)
        width = self._width
        complete = []
        for match_key, group in self._groups.items():
            if group[port] is _MISSING:
                group[port] = DROPPED
                group[width] += 1
                self.abandoned += 1
                if group[width] == width:
                    complete.append(match_key)
        return [self._groups.pop(match_key)[width + 1] for match_key in complete]

    def drain(self) -> list[Any]:
        """At end-of-stream, discard the groups that will never complete; return their keys."""
        keys = [group[self._width + 1] for group in self._groups.values()]
        self._groups.clear()
        return keys
