"""The vocabulary of the core: one type per concept, so code, docs and errors use one name each.

- an **item** travels as an **envelope** ``(key, value, producer)``: its lineage **key**, the value,
  and the index of the node that emitted it (which input of a join it arrived on);
- an **edge** is the bounded input of a node (pipelines.edges), made by a **transport**
  (pipelines.transport); a source puts into its **output** (pipelines.sources);
- an item's path at a node ends with an **outcome** (pipelines.ledger, pipelines.hooks);
- a run has a **state**; stopping a run drains it, cancelling ends it now.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

__all__ = [
    "ENDED_STATES",
    "LIVE_STATES",
    "Envelope",
    "JoinMode",
    "Key",
    "Marker",
    "OnError",
    "Outcome",
    "RunState",
    "Style",
]

Key: TypeAlias = tuple[Any, ...]
"""An item's lineage: ``(source, position, *output indices)``."""

Envelope: TypeAlias = tuple[Key, Any, int]
"""``(key, value, producer)``: an item on its way, with the index of the node that emitted it."""

RunState = Literal["built", "running", "stopping", "completed", "stopped", "failed", "cancelled"]
"""Where a run is: built, then running (stopping after stop()), then one of the four ends."""

LIVE_STATES: tuple[RunState, ...] = ("running", "stopping")
ENDED_STATES: tuple[RunState, ...] = ("completed", "stopped", "failed", "cancelled")

OnError: TypeAlias = str
"""What a node does with an item that failed after its retries: 'fail', 'skip', or the name of its error node."""

Style = Literal["processor", "item"]
"""How a node's function is called: ``f(processor, q_elt)`` (the original's) or ``f(item)``."""

JoinMode = Literal["lineage", "zip"]
"""How a join pairs its inputs: by the whole key (a diamond), or by position (independent sources)."""

Outcome = Literal["dropped", "skipped", "routed", "failed", "passed", "expanded"]
"""How an item's path ended at a node, as hooks hear it through ``settled`` (see pipelines.hooks)."""


class Marker:
    """A named sentinel: a value that stands for something no user value can be (a tombstone...)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name
