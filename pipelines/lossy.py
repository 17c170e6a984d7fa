"""Lossy edges: the input of a node whose producers must never wait (a camera, a sensor, a live feed).

A node chooses its input policy with the property ``'input'``:

- ``'block'`` (the default): a bounded `MemoryEdge`; a producer waits while it is full.
- ``'drop_oldest'``: a ring of ``queue_size`` items; one more item pushes the oldest one out.
- ``'latest'``: a ring of one; the node always takes the newest item there is.

A `LossyEdge` never makes a producer wait, and never holds more than its size. Every item it
pushes out is *dropped at the node's input*: counted on the edge (``statistics().dropped``, and
``NodeStats.dropped_at_input``) and settled for lineage the way a node's own drop is, so that joins,
an Inbox and the journal stay exact:

- the consumer node's hooks hear ``settled(key, 'dropped', None, copies)`` at the moment the item
  is pushed out (on the producer's task);
- where a join lies downstream (or the node is one), the item leaves a tombstone in its place
  (``copies`` is then 1): a small envelope the node takes before its next item and passes on,
  which discards the item's group at the join. Nothing else is kept of a dropped item.

A worker takes one item at a time from a lossy edge (with the tombstones waiting before it), so
that what it takes next is as fresh as the ring allows. Tombstones from upstream never take a
place in the ring and are never dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .edges import Edge, EdgeStatistics, MemoryEdge
from .lineage import DROPPED
from .types import Envelope, Key

if TYPE_CHECKING:
    from .driver import Processor

__all__ = ["LOSSY_POLICIES", "DroppingEdge", "LossyEdge", "settle_drops"]

LOSSY_POLICIES = ("drop_oldest", "latest")


class DroppingEdge(Edge, Protocol):
    """What the Plumber asks of a lossy edge beyond the Edge protocol."""

    dropped: int

    def on_drop(self, callback: Callable[[Key], object] | None, *, tombstones: bool) -> None: ...


def settle_drops(node: Processor, edges: tuple[DroppingEdge, ...]) -> None:
    """Make `node`'s lossy input `edges` settle each item they drop with the node's hooks (run start).

    A tombstone takes the item's place where a join lies downstream, or the node is one, so the
    hooks hear ``settled(key, 'dropped', None, 1)``; else ``(key, 'dropped', None, 0)``.
    """
    spec = node.spec
    tombstones = spec.forward_drops or spec.join_mode is not None
    settled = node.ledger.hooks.settled
    callback: Callable[[Key], object] | None = None
    if settled is not None:
        copies = 1 if tombstones else 0
        told = settled

        def callback(key: Key) -> None:
            told(key, "dropped", None, copies)

    for edge in edges:
        edge.on_drop(callback, tombstones=tombstones)


class LossyEdge(MemoryEdge):
    """A ring of at most `maxsize` items: `put_many` and `put_nowait` always take the item at once,
    pushing the oldest items out when it is full; `get_many` takes the tombstones waiting and the
    oldest item. Closing, end-of-stream and cancellation behave as on a `MemoryEdge`.
    """

    __slots__ = ("_lost", "_on_drop", "_tombstones", "dropped", "policy")

    def __init__(self, name: str, maxsize: int, producers: int = 1, policy: str = "drop_oldest") -> None:
        if policy not in LOSSY_POLICIES:
            raise ValueError(f"edge {name!r}: policy must be one of {', '.join(LOSSY_POLICIES)}, got {policy!r}")
        if policy == "latest" and maxsize != 1:
            raise ValueError(f"edge {name!r}: policy 'latest' keeps one item, got maxsize {maxsize!r}")
        super().__init__(name, maxsize, producers)
        self.policy = policy
        self.dropped = 0
        """Items pushed out of the ring by newer ones."""
        self._lost: list[Envelope] = []
        self._on_drop: Callable[[Key], object] | None = None
        self._tombstones = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<LossyEdge {self.name!r} {self.policy} {len(self._items)}/{self.maxsize} {state}>"

    def on_drop(self, callback: Callable[[Key], object] | None, *, tombstones: bool) -> None:
        """Call `callback(key)` for each item pushed out (None: call nothing); with `tombstones`, leave
        a tombstone in its place for the consumer to pass on (a join lies downstream)."""
        self._on_drop = callback
        self._tombstones = tombstones

    # -- inspection -------------------------------------------------------------------------

    def empty(self) -> bool:
        """No item and no tombstone waits."""
        return not self._items and not self._lost

    def statistics(self) -> EdgeStatistics:
        return EdgeStatistics(
            depth=len(self._items),
            bound=self.maxsize,
            waiting_getters=len(self._getters),
            waiting_putters=0,
            open_producers=max(self._open_producers, 0),
            dropped=self.dropped,
        )

    # -- producer side: never waits ---------------------------------------------------------

    def accepts_now(self) -> bool:
        """Always True: a lossy edge makes room by dropping its oldest item."""
        return True

    def put_nowait(self, item: Envelope) -> bool:
        self._add([item])
        return True

    async def put_many(self, items: list[Envelope]) -> float:
        """Add every envelope at once, dropping the oldest items beyond the bound; never waits (0.0)."""
        if self._open_producers <= 0:
            raise RuntimeError(f"edge {self.name!r}: put after every producer closed")
        self._add(items)
        return 0.0

    def _add(self, items: list[Envelope]) -> None:
        buffer = self._items
        added = 0
        for envelope in items:
            if envelope[1] is DROPPED:
                self._lost.append(envelope)  # a tombstone is owed to a join downstream: never dropped
            else:
                buffer.append(envelope)
            added += 1
        excess = len(buffer) - self.maxsize
        if excess > 0:
            pushed_out = buffer[:excess]
            del buffer[:excess]
            self._drop(pushed_out)
        if self._getters:
            self._hand_over(added)
        elif not self._told:
            self._tell()

    def _drop(self, envelopes: list[Envelope]) -> None:
        self.dropped += len(envelopes)
        on_drop = self._on_drop
        lost = self._lost if self._tombstones else None
        for key, _, producer in envelopes:
            if on_drop is not None:
                on_drop(key)  # before its tombstone is there to be taken
            if lost is not None:
                lost.append((key, DROPPED, producer))

    # -- consumer side ----------------------------------------------------------------------

    async def get_many(self, share: int = 1) -> list[Any]:
        """The tombstones waiting and the oldest item, waiting while there is neither and the edge is
        open; an empty list at end-of-stream."""
        while not self._items and not self._lost:
            if self._open_producers <= 0:
                return []
            await self._wait_as_consumer()
        self._told = self._backlog is None
        taken = self._lost
        if taken:
            self._lost = []
        else:
            taken = []
        buffer = self._items
        if buffer:
            taken.append(buffer.pop(0))
            if buffer and self._getters:
                self._wake(self._getters, 1)  # more items for another idle worker of the node
        return taken
