"""Edges: the bounded input of a node, as a protocol, and `MemoryEdge`, the in-memory one.

An edge is the input of one node. Every node that feeds it is one of its producers; when the last
producer closes its side, end-of-stream reaches the consumers once the buffer is empty. The
`Edge` protocol below is everything the core asks of an edge; a transport (pipelines.transport)
makes them, in memory by default, over Redis Streams in pipelines.distributed.

Items move in batches: a consumer takes every item waiting (up to a limit) in one call, and a
producer hands over a list in one call. Nothing ever waits to fill a batch, so an idle pipeline
moves a single item as fast as a queue would, and a busy one pays one handoff for many items.
The bound is strict: the buffer never holds more than `maxsize` items.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Any, Protocol

from . import runtime
from .lineage import Keyed
from .types import Envelope

__all__ = ["Edge", "EdgeStatistics", "MemoryEdge"]


@dataclass(frozen=True, slots=True)
class EdgeStatistics:
    """A snapshot of an edge: items buffered, its bound, and who is waiting on either side."""

    depth: int
    bound: int
    waiting_getters: int
    waiting_putters: int
    open_producers: int
    dropped: int = 0
    """Items the edge dropped to make room for newer ones (a lossy edge, pipelines.lossy); else 0."""


class Edge(Protocol):
    """What the core asks of a node's input. Producers call `put_many` / `put_nowait` and, once
    each, `close`; the node's workers call `get_many` until it returns an empty list."""

    name: str
    maxsize: int

    def qsize(self) -> int:
        """Items buffered (here, for an edge that lives elsewhere)."""

    def empty(self) -> bool: ...

    def full(self) -> bool: ...

    @property
    def closed(self) -> bool:
        """True once end-of-stream was reached on the producers' side."""

    @property
    def idle_consumers(self) -> Sized:
        """Truthy while a consumer waits for items: a producer then hands over what it has ready."""

    def statistics(self) -> EdgeStatistics: ...

    # Optional: ``on_backlog(callback)``: call `callback()` when items are added while no consumer
    # waits for them, once until a consumer next takes (None: stop). A node's elastic pool
    # (pipelines.pool) grows on it at once; over an edge without it, the pool grows from the items
    # of the batches its workers took.

    def close(self) -> None:
        """One producer is done."""

    def accepts_now(self) -> bool:
        """Whether put_nowait() would take an item now."""

    def put_nowait(self, item: Envelope) -> bool:
        """Add one envelope if there is room now; return whether it was added."""

    async def put_many(self, items: list[Envelope]) -> float:
        """Add every envelope in order, waiting for room; return the seconds spent waiting."""

    async def get_many(self, share: int = 1) -> list[Envelope]:
        """Take the envelopes waiting (a `share`-th of them); an empty list at end-of-stream."""


class MemoryEdge:
    """A bounded FIFO of items with end-of-stream, shared by one or more producers.

    `put_many()` blocks while the buffer is full and returns how long it waited (the time the
    producer spent under backpressure). `get_many()` blocks while the buffer is empty and the
    edge is still open; it returns an empty list at end-of-stream. `close()` is called once by
    each producer; the last call wakes every consumer waiting on the edge. Cancelling a
    blocked `put_many()` or `get_many()` is safe: a cancelled get takes nothing, and a cancelled
    put has added only the items it had room for before it blocked.
    """

    __slots__ = (
        "_backlog",
        "_getters",
        "_items",
        "_new_future",
        "_open_producers",
        "_putters",
        "_told",
        "bare",
        "keyed",
        "maxsize",
        "name",
    )

    def __init__(self, name: str, maxsize: int, producers: int = 1) -> None:
        if maxsize < 1:
            raise ValueError(f"edge {name!r}: maxsize must be >= 1, got {maxsize!r}")
        self.name = name
        self.maxsize = maxsize
        self._items: list[Any] = []
        self._getters: deque[runtime.Future[None]] = deque()
        self._putters: deque[runtime.Future[None]] = deque()
        self._open_producers = producers
        self._backlog: Callable[[], object] | None = None
        self._told = True
        """Nothing to tell on_backlog's listener: there is none, or no consumer took since it was told."""
        self._new_future: Callable[[], runtime.Future[None]] | None = None
        """The running loop's future maker, bound at the first wait (an edge may be built before its run)."""
        self.bare = False
        """It carries values without their keys (a keyless run, pipelines.lineage.needs_keys)."""
        self.keyed = 0
        """In a keyless run whose hooks follow some items: how many of those (each a
        pipelines.lineage.Keyed) its producers put that no consumer has met yet. A consumer's piece
        can hold one only while this is not 0, so a piece taken while it is 0 needs no test per item.
        The producers add before they put; a consumer subtracts each one it meets."""

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<MemoryEdge {self.name!r} {len(self._items)}/{self.maxsize} {state}>"

    # -- inspection -------------------------------------------------------------------------

    def qsize(self) -> int:
        """Number of items buffered."""
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    @property
    def closed(self) -> bool:
        """True once every producer has closed its side."""
        return self._open_producers <= 0

    @property
    def idle_consumers(self) -> Sized:
        """The consumers waiting for an item: truthy while one sits idle.

        The same object for the edge's whole life, so a producer may keep it and test it per
        item at the cost of a truth test.
        """
        return self._getters

    def on_backlog(self, callback: Callable[[], object] | None) -> None:
        self._backlog = callback
        self._told = callback is None

    def _hand_over(self, count: int) -> None:
        """Wake consumers for `count` new items: what arrives until they take is theirs, not a backlog."""
        self._told = True
        self._wake(self._getters, count)

    def _tell(self) -> None:
        """Items arrived and no consumer waits: tell the listener, once until a consumer takes."""
        self._told = True
        assert self._backlog is not None
        self._backlog()

    def statistics(self) -> EdgeStatistics:
        return EdgeStatistics(
            depth=len(self._items),
            bound=self.maxsize,
            waiting_getters=len(self._getters),
            waiting_putters=len(self._putters),
            open_producers=max(self._open_producers, 0),
        )

    # -- producer side ----------------------------------------------------------------------

    def close(self) -> None:
        """Close one producer's side. After the last one, consumers see end-of-stream."""
        self._open_producers -= 1
        if self._open_producers <= 0:
            self._wake(self._getters, len(self._getters))

    def accepts_now(self) -> bool:
        """Whether put_nowait() would add an item now: there is room and nobody is queued to put."""
        return len(self._items) < self.maxsize and not self._putters

    def put_nowait(self, item: Any) -> bool:
        """Add one item if accepts_now(); return whether it was added."""
        # accepts_now(), written out: this is the sources' per-item path
        if len(self._items) >= self.maxsize or self._putters:
            return False
        self._items.append(item)
        if self._getters:
            self._hand_over(1)
        elif not self._told:
            self._tell()
        return True

    async def put_many(self, items: list[Any]) -> float:
        """Add all `items` in order, waiting for room as needed; return the seconds spent waiting."""
        if self._open_producers <= 0:
            raise RuntimeError(f"edge {self.name!r}: put after every producer closed")
        if self.put_many_nowait(items):
            return 0.0
        return await self._put_slow(items)

    def room_for(self, count: int) -> bool:
        """Whether `put_many_nowait` would add `count` items now."""
        return not self._putters and len(self._items) + count <= self.maxsize and self._open_producers > 0

    def put_many_nowait(self, items: list[Any]) -> bool:
        """Add all `items` if there is room for them now and no producer is queued to put (what
        `put_many` does when it need not wait); return whether they were added.

        Not part of the Edge protocol: a worker hands its outputs on with it, without a coroutine,
        where its successors' edges are MemoryEdges (pipelines.outputs, `Outputs.put_now`).
        """
        buffer = self._items
        if self._putters or len(buffer) + len(items) > self.maxsize or self._open_producers <= 0:
            return False
        buffer.extend(items)
        if self._getters:
            self._hand_over(len(items))
        elif not self._told:
            self._tell()
        return True

    async def _put_slow(self, items: list[Any]) -> float:
        make = self._new_future
        if make is None:
            make = self._new_future = runtime.future_maker()
        clock = runtime.clock()
        waited = 0.0
        done = 0
        total = len(items)
        first = True
        while True:
            # A new put waits behind producers already queued, so none of them starves.
            if not first or not self._putters:
                room = self.maxsize - len(self._items)
                if room > 0:
                    take = min(room, total - done)
                    self._items.extend(items[done : done + take])
                    done += take
                    if self._getters:
                        self._hand_over(take)
                    elif not self._told:
                        self._tell()
                if done == total:
                    if self._putters and len(self._items) < self.maxsize:
                        self._wake(self._putters, 1)
                    return waited
            fut = make()
            if first:
                self._putters.append(fut)
            else:
                self._putters.appendleft(fut)  # partly served: keep its place at the head
            first = False
            started = clock()
            try:
                await fut
            except BaseException:
                if fut in self._putters:
                    self._putters.remove(fut)
                elif len(self._items) < self.maxsize:
                    # We were woken but will not use the room: hand the wake-up on.
                    self._wake(self._putters, 1)
                raise
            finally:
                waited += clock() - started

    # -- consumer side ----------------------------------------------------------------------

    async def get_many(self, share: int = 1) -> list[Any]:
        """Take the items waiting, waiting while the edge is empty and open.

        With `share` consumers on the edge, one call takes its fair part: a `share`-th of the
        items buffered, rounded up, so that every idle consumer of a node gets work. Returns an
        empty list at end-of-stream: every producer closed and nothing left.
        """
        while not self._items:
            if self._open_producers <= 0:
                return []
            await self._wait_as_consumer()
        buffer = self._items
        self._told = self._backlog is None
        limit = -(-len(buffer) // share)
        if len(buffer) <= limit:
            self._items = []
            taken = buffer
        else:
            taken = buffer[:limit]
            del buffer[:limit]
            if self._getters:
                # Items remain for other idle consumers of this node.
                self._wake(self._getters, 1)
        if self._putters:
            self._wake(self._putters, 1)
        return taken

    # -- taking one item from outside the node (its input_queue's get) -----------------------

    def take_nowait(self, skip: object = None, producer: int | None = None) -> Any | None:
        """Take the first envelope whose value is not `skip` (and, if given, from node `producer`).

        None when there is none. Not part of the Edge protocol: a node's `input_queue.get_nowait()`
        and a source's `output_q.get_nowait()` over a MemoryEdge. A `bare` edge has one producer and
        no tombstone: it gives its first value, in an envelope without a key.
        """
        buffer = self._items
        if self.bare:
            if not buffer:
                return None
            value = buffer.pop(0)
            if self._putters:
                self._wake(self._putters, 1)
            if type(value) is Keyed:  # a followed item (pipelines.lineage.Keyed): its own envelope
                self.keyed -= 1
                return value
            return ((), value, -1 if producer is None else producer)
        for i, item in enumerate(buffer):
            if item[1] is not skip and (producer is None or item[2] == producer):
                del buffer[i]
                if self._putters:
                    self._wake(self._putters, 1)
                return item
        return None

    async def take(self, skip: object = None, producer: int | None = None) -> Any | None:
        """`take_nowait`, waiting while there is nothing to take; None at end-of-stream."""
        while True:
            item = self.take_nowait(skip, producer)
            if item is not None:
                if self._items and self._getters:
                    self._wake(self._getters, 1)  # what is left is the workers'
                return item
            if self._open_producers <= 0:
                return None
            if self._items and self._getters:
                self._wake(self._getters, 1)  # only tombstones: they are the workers'
            await self._wait_as_consumer()

    async def _wait_as_consumer(self) -> None:
        """Wait until a producer adds items or the last one closes. Cancel-safe: a consumer
        cancelled after it was woken hands the wake-up on, so that no item waits unseen."""
        make = self._new_future
        if make is None:
            make = self._new_future = runtime.future_maker()
        fut = make()
        self._getters.append(fut)
        try:
            await fut
        except BaseException:
            if fut in self._getters:
                self._getters.remove(fut)
            elif not self.empty() or self._open_producers <= 0:  # empty(): a subclass may hold more than items
                self._wake(self._getters, 1)
            raise

    @staticmethod
    def _wake(waiters: deque[runtime.Future[None]], count: int) -> None:
        while count > 0 and waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                count -= 1
