"""Statistics of a run: per node counts, and the result a finished run returns.

The counts of a node keep one identity at every moment::

    items_in == completed + dropped + skipped + failed + in_flight

`items_in` counts the items a node took from its input (for a join, the groups it resolved),
`completed` those its coroutine handled, `dropped` those that produced nothing (a coroutine that
returned None on a node with successors, or a join group an input had dropped), `skipped` and
`failed` those that raised after their retries (`on_error` 'skip'; or 'fail', or routed to an
error node, or claimed by a hook as the item's own failure, as an Inbox does). A source takes no
input: its items_in is 0 and items_out counts what it put.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .types import RunState

__all__ = ["NodeStats", "RunResult"]


LATENCY_BOUNDS = (1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0)
"""The upper bounds, in seconds, of the buckets of NodeStats.latency_counts (the last bucket has none)."""


@dataclass(frozen=True, slots=True)
class NodeStats:
    """A snapshot of one node's counters.

    (Ledger.snapshot passes the fields in this order, by position.)
    """

    name: str
    items_in: int
    items_out: int
    completed: int
    failed: int
    retried: int
    skipped: int
    dropped: int
    in_flight: int
    queue_depth: int
    """Items waiting for the node: what its input edges hold, and the `taken` items."""
    queue_bound: int
    """The sum of the bounds of its input edges (0 for a source)."""
    blocked_seconds: float
    rate: float
    """Items per second since the run started: items_in, or items_out for a source."""
    latency: float
    """Mean seconds a worker spent on each item it finished (0 for a source)."""
    workers: int = 0
    """Workers running now (0 for a source, and once the node has ended)."""
    peak_workers: int = 0
    """The most workers that ran at once."""
    taken: int = 0
    """Of `queue_depth`, the items workers have taken from the input edges and not started yet: the
    edges themselves hold ``queue_depth - taken``, which stays within `queue_bound`."""
    dropped_at_input: int = 0
    """Items the node's lossy input (property 'input': 'drop_oldest' or 'latest') dropped to make room
    for newer ones, before the node took them: not counted in `items_in` (pipelines.lossy)."""
    paused: bool = False
    """The node itself is paused (`Plumber.pause(node)`): it takes no items, or a source puts none."""

    latency_counts: tuple[int, ...] = ()
    """Items finished, by time per item: the i-th counts those that took at most LATENCY_BOUNDS[i]
    seconds, the last those above every bound. A worker times a batch, so an item's time is its
    batch's mean time per item."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a finished run returns: how it ended, how long it took, and each node's final stats."""

    state: RunState
    """'completed' when every source ran to its end, 'stopped' when Plumber.stop() ended them."""
    elapsed: float
    stats: dict[str, NodeStats]
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    """With Plumber(collect_outputs=True): what each sink returned, in order."""

    def __getitem__(self, node: str) -> NodeStats:
        return self.stats[node]
