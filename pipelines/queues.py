"""The queues a user can reach on a node, with asyncio.Queue's calls and meaning.

- `NodeInput` is `processor.input_queue` of a node with inputs: an item put into it is an item of
  the run that this node processes, with a lineage key of its own, ``('<node>:input', n)``; `get`
  takes the next item waiting there before the node does, and that item is counted as dropped at
  the node (it left the run). Once the node's inputs have ended, `put` and `put_nowait` raise
  PipelineStateError: the node would never see the item.
- `ResultQueue` is `processor.output_queue` of a sink: the values the sink returns (None
  excluded), for whoever reads them with `await get()`. It keeps the last `maxsize` values: a sink
  nobody reads is never blocked, and the oldest value is discarded (counted in `discarded`).

Both raise asyncio.QueueFull and asyncio.QueueEmpty where asyncio.Queue raises them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import runtime
from .errors import PipelineError, PipelineStateError
from .lineage import DROPPED

if TYPE_CHECKING:
    from .driver import Processor
    from .edges import Edge, MemoryEdge

__all__ = ["NodeInput", "QueueEmpty", "QueueFull", "ResultFeed", "ResultQueue"]

QueueEmpty = runtime.QueueEmpty
QueueFull = runtime.QueueFull


class NodeInput:
    """The input queue of a node: `put` feeds the node, `get` takes from it before the node does.

    `maxsize`, `qsize()`, `empty()` and `full()` describe the node's input edge. A put waits while
    the edge is full (backpressure, as for any producer); `put_nowait` raises asyncio.QueueFull
    then. A join's input pairs items by lineage, which an item from outside has none of: put and
    get raise PipelineError on a join, and on a node whose items reach a join of independent
    sources (`refusal`).
    """

    __slots__ = ("_edge", "_name", "_node", "_refusal", "_seq")

    def __init__(self, node: Processor, edge: Edge, refusal: str | None) -> None:
        self._node = node
        self._edge = edge
        self._name = node.name
        self._refusal = refusal
        self._seq = 0

    def __repr__(self) -> str:
        return f"<NodeInput of {self._name!r} {self.qsize()}/{self.maxsize}>"

    @property
    def maxsize(self) -> int:
        return self._edge.maxsize

    def qsize(self) -> int:
        return self._edge.qsize()

    def empty(self) -> bool:
        return self._edge.empty()

    def full(self) -> bool:
        return self._edge.full()

    @property
    def edge(self) -> Edge:
        """The node's input edge behind this queue."""
        return self._edge

    def _check(self, what: str) -> None:
        if self._refusal is not None:
            raise PipelineError(f"node {self._name!r}: {what} on its input_queue is not possible: {self._refusal}")

    def _envelope(self, item: Any) -> Any:
        self._check("put")
        if self._edge.closed:
            raise PipelineStateError(
                f"node {self._name!r}: its inputs have ended, so an item put into its input_queue now "
                "would never be processed"
            )
        if self._node.keyless:
            return item
        key = (f"{self._name}:input", self._seq)
        self._seq += 1
        return (key, item, -1)

    async def put(self, item: Any) -> None:
        """Put `item` into the node's input, waiting while it is full; the node processes it."""
        envelope = self._envelope(item)
        if not self._edge.put_nowait(envelope):
            await self._edge.put_many([envelope])

    def put_nowait(self, item: Any) -> None:
        """Put `item` into the node's input now, or raise asyncio.QueueFull."""
        if not self._edge.accepts_now():
            self._check("put")
            raise runtime.QueueFull
        self._edge.put_nowait(self._envelope(item))

    async def get(self) -> Any:
        """Take the next item waiting in the node's input, waiting while there is none.

        Raises PipelineStateError at end-of-stream (the original's queue would wait for ever).
        """
        edge = self._memory_edge()
        envelope = await edge.take(DROPPED)
        if envelope is None:
            raise PipelineStateError(f"node {self._name!r}: its inputs have ended and nothing is left to get")
        return self._taken(envelope)

    def get_nowait(self) -> Any:
        """Take the next item waiting in the node's input now, or raise asyncio.QueueEmpty."""
        envelope = self._memory_edge().take_nowait(DROPPED)
        if envelope is None:
            raise runtime.QueueEmpty
        return self._taken(envelope)

    def _memory_edge(self) -> MemoryEdge:
        self._check("get")
        if self._node.spec.forward_drops:
            raise PipelineError(
                f"node {self._name!r}: get on its input_queue is not possible: its items reach a join "
                "downstream, which would wait for the item taken"
            )
        edge = self._edge
        if not hasattr(edge, "take_nowait"):
            raise PipelineError(f"node {self._name!r}: get from an input edge of type {type(edge).__name__}")
        return edge  # type: ignore[return-value]

    def _taken(self, envelope: Any) -> Any:
        key, value, _ = envelope
        self._node.took_out(key)
        return value


class ResultQueue(runtime.Queue[Any]):
    """A sink's return values, for whoever reads them; the last `maxsize` are kept.

    An asyncio.Queue: `get`, `get_nowait`, `put`, `put_nowait`, `qsize`, `empty`, `full` and
    `maxsize` keep their meaning for the reader and for anyone else who puts into it. The sink
    itself never waits: when the queue is full, its oldest value is discarded to make room, and
    `discarded` counts them.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.discarded = 0
        """Values the sink returned that were discarded, oldest first, because nobody read them."""

    async def get(self) -> Any:
        """Take the oldest value, waiting for one (asyncio only: under trio, use `get_nowait`)."""
        if self.empty():
            runtime.require_asyncio(
                "waiting on a sink's output_queue (an asyncio.Queue)",
                "take what it holds with get_nowait(), or build the Plumber with collect_outputs=True",
            )
        return await super().get()

    async def put(self, item: Any) -> None:
        """Add `item`, waiting for room (asyncio only: under trio, use `put_nowait`)."""
        if self.full():
            runtime.require_asyncio("waiting on a sink's output_queue (an asyncio.Queue)", "use put_nowait()")
        await super().put(item)

    def offer(self, value: Any) -> None:
        """Add a value the sink returned, discarding the oldest when full."""
        if self.full():
            self.get_nowait()
            self.discarded += 1
        self.put_nowait(value)


class ResultFeed(list[Any]):
    """A sink's `collected` list that also feeds its `ResultQueue` (keeping the values when asked)."""

    def __init__(self, queue: ResultQueue, keep: list[Any] | None) -> None:
        super().__init__(keep or ())
        self.queue = queue
        self.keep = keep is not None

    def append(self, value: Any) -> None:
        if self.keep:
            super().append(value)
        self.queue.offer(value)
