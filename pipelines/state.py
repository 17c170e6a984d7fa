"""Node state: what a sink folds its items into, declared so that a journal can keep it across a crash.

A sink declares its state with the property ``state``: a callable taking no argument that gives
the initial state (``dict``, ``lambda: {"count": 0}``, a class). The node's function, its setup
and its teardown then receive that one object as the keyword argument ``state``, and the node
folds each item into it::

    @node(state=dict)
    async def count(word, state):
        state[word] = state.get(word, 0) + 1

    async def write_counts(processor, state):  # the teardown: the state holds every item
        ...

A state is one of:

- a ``dict`` or a ``list`` of JSON data (text keys; lists, not tuples): snapshotted as JSON text,
  and restored in place;
- any other object with ``dump()``, returning JSON data, and ``load(data)``, which restores that
  data into the object in place (a Counter keyed by tuples, a set: convert them there).

Without a journal the state lives in memory for the run. With one, the journal snapshots it
together with the items folded into it, in one transaction (pipelines.journal), and a resumed
run starts from the last snapshot, so that every item is folded exactly once across crashes.

Why these rules. Only a sink has state: the journal records per item only which items each sink
finished, so only there can "folded into the snapshot" and "finished" be made the same fact (the
output of a stateful node in the middle of a graph would have to be made durable too). A stateful
node runs one worker: a snapshot must fall between two of the node's batches, never while
another worker is part-way through one. The state is restored in place, so that the one object
the node's function, setup and teardown were given stays the one they hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["NodeState", "state_problem"]

STATE_FORMAT = 1
"""The format of a snapshot: JSON text of the state's data (or of what its dump() returns)."""

JSON_DATA = "JSON data (dicts with text keys, lists, text, numbers, true, false, null)"


def state_problem(value: object) -> str | None:
    """Why `value` cannot be a node's state, or None when it can."""
    if isinstance(value, (dict, list)):
        return None
    if callable(getattr(value, "dump", None)) and callable(getattr(value, "load", None)):
        return None
    return (
        f"gave {_kind(value)}, expected a dict or a list (folded into in place), "
        "or an object with dump() and load(data)"
    )


class NodeState:
    """The state of one node for one run: the object its function folds items into, and its snapshots.

    Made when the graph is parsed (a Plumber parses its own graph), so the one object exists from
    the start and is what the node's function, setup and teardown receive.
    """

    __slots__ = ("factory", "node", "value")

    def __init__(self, node: str, factory: Callable[[], Any]) -> None:
        self.node = node
        self.factory = factory
        self.value: Any = factory()
        """The state itself: what the node folds its items into."""

    def dump(self) -> str:
        """The state as JSON text; TypeError naming the node when it is not JSON data, or would not come back equal."""
        data = self.value.dump() if not isinstance(self.value, (dict, list)) else self.value
        try:
            text = json.dumps(data, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"node {self.node!r}: its state cannot be snapshotted: {exc}; expected {JSON_DATA}"
            ) from None
        if json.loads(text) != data:
            # json.dumps turns int keys into text and tuples into lists without a word: what a
            # resumed run would load back would not be what was folded.
            raise TypeError(
                f"node {self.node!r}: its state cannot be snapshotted: it would not load back equal "
                f"(keys that are not text, tuples or other non-JSON containers); expected {JSON_DATA}"
            )
        return text

    def load(self, data: Any) -> None:
        """Restore `data` (what dump() wrote, parsed) into the state, in place."""
        value = self.value
        if isinstance(value, dict):
            if not isinstance(data, dict):
                raise TypeError(f"a snapshot of a dict state must be an object, got {_kind(data)}")
            value.clear()
            value.update(data)
        elif isinstance(value, list):
            if not isinstance(data, list):
                raise TypeError(f"a snapshot of a list state must be an array, got {_kind(data)}")
            value[:] = data
        else:
            value.load(data)


def _kind(value: object) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
