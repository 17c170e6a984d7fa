"""A Processor built by hand, as in the original library, over the user's own asyncio queues.

``Processor(name=..., coro=..., input_srcs=[q1, q2], output_dests=[q3], env_vars=None,
queue_size=0, **args)`` starts at once on the running loop, as the original did: one task per
input source reads it into the node's bounded input, the node runs as in a Plumber (its worker
pool, its counters), and one task puts every value the coroutine returns into every output
destination. With several input sources, one item from each is aggregated into the `q_elt`
tuple, in the order of `input_srcs`: the n-th items of each source meet. An `InputProcessor`
built so calls its coroutine once with `(processor, output_q, **args)`.

Unlike the original, it ends, and its end can be awaited: `close()` says no more input will come
(what the sources hold already is still read, the rest is processed and delivered), then
`await join()`; or `await aclose()`; or `async with`. A failure of the coroutine is logged, ends
the processor, and is raised by `join()` / `aclose()` (the original only logged it).

The node is checked as any node of a graph (pipelines.graph): `coro` must be async and accept the
original's call; `args` must fit it. `queue_size` 0 (the original's unbounded) gives the default
bound, 100.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Self

from . import runtime
from .edges import MemoryEdge
from .errors import PipelineError, PipelineStateError
from .graph import DEFAULT_QUEUE_SIZE, NodeSpec, parse_graph
from .hooks import NO_HOOKS
from .lineage import DROPPED
from .pool import Watch
from .queues import ResultQueue
from .signals import Signals
from .valve import Valve

if TYPE_CHECKING:
    from types import TracebackType

    from .driver import Processor

__all__ = ["HandBuilt", "HandRun", "prepare"]

logger = logging.getLogger(__name__)

# Parameters of the original Processor that took queues it filled itself; ours are edges.
_REFUSED = ("input_queue", "output_queue")


async def _outside_source(processor: Any, output_q: Any) -> None:
    """Stands for one of the user's input queues in the checked graph."""


async def _outside_sink(processor: Any, q_elt: Any) -> None:
    """Stands for the user's output queues in the checked graph."""


def prepare(
    source: bool, name: object, env_vars: dict[str, Any] | None, original: dict[str, Any]
) -> tuple[NodeSpec, HandRun]:
    """Check the original's keyword form and give the node's spec and the run that will drive it."""
    for key in _REFUSED:
        if key in original:
            raise TypeError(
                f"Processor({key}=...) is not supported: the processor's queues are bounded edges it makes "
                "itself; pass your queues as input_srcs and output_dests"
            )
    coro = original.pop("coro", None)
    input_srcs = list(original.pop("input_srcs", None) or [])
    output_dests = list(original.pop("output_dests", None) or [])
    queue_size = original.pop("queue_size", 0) or DEFAULT_QUEUE_SIZE
    args = original  # what is left goes to every call of the coroutine, as in the original
    node = str(name)
    if source and input_srcs:
        raise TypeError(f"InputProcessor {node!r}: a source has no input_srcs (got {len(input_srcs)})")
    if source and not output_dests:
        raise TypeError(f"InputProcessor {node!r}: give output_dests, the queues its items go to")
    inputs = [] if source else [f"{node}:input{i}" for i in range(max(len(input_srcs), 1))]
    out = f"{node}:output"
    nodes: dict[str, Any] = {name: {"coro": _outside_source} for name in inputs}
    nodes[node] = {"coro": coro, "args": args}
    nodes[out] = {"coro": _outside_sink}
    graph: dict[str, Any] = {name: [node] for name in inputs}
    graph[node] = [out]
    graph[out] = None
    checked = parse_graph({"nodes": nodes, "graph": graph}, lambda value: value, queue_size=queue_size)
    spec = checked.nodes[node]
    indices = [checked.nodes[name].index for name in inputs]
    return spec, HandRun(node, input_srcs, output_dests, indices, spec.queue_size)


class HandBuilt:
    """What a Processor built by hand offers beyond the original's API: a way to end it and to wait
    for it (the original had none). A Processor the Plumber built refuses these: it ends with its run.
    """

    _hand: HandRun | None

    if TYPE_CHECKING:

        @property
        def name(self) -> str: ...

    def close(self) -> None:
        """Built by hand: no more input will come. What the input sources hold now is still read;
        everything is processed and delivered, then the processor ends. For an InputProcessor,
        stop its coroutine where it is. Doing it again does nothing."""
        self._by_hand("close()").close()

    async def join(self) -> None:
        """Built by hand: wait until the processor has ended (after `close()`, or a failure).

        Raises the coroutine's exception if it failed (the original only logged it). Cancelling
        the caller stops the wait only.
        """
        await self._by_hand("join()").join()

    async def aclose(self) -> None:
        """Built by hand: `close()`, then `await join()`."""
        self.close()
        await self.join()

    async def __aenter__(self) -> Self:
        self._by_hand("async with")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close and await the processor; a failure of its coroutine is raised, unless one is already."""
        hand = self._by_hand("async with")
        if exc is not None:
            hand.cancel()  # the block failed: end the processor now; the block's exception is the one to see
            await hand.wait()
            return
        await self.aclose()

    def _by_hand(self, what: str) -> HandRun:
        if self._hand is None:
            raise PipelineStateError(
                f"{what} on node {self.name!r}: a processor the Plumber built ends with the run "
                "(plumber.stop(), plumber.join())"
            )
        return self._hand


class HandRun:
    """The run of one hand-built processor: what a Plumber is to its nodes (a `RunControl`)."""

    def __init__(
        self, name: str, input_srcs: list[Any], output_dests: list[Any], indices: list[int], queue_size: int
    ) -> None:
        self.name = name
        self.input_srcs = input_srcs
        self.output_dests = output_dests
        self.results = ResultQueue(queue_size) if not output_dests else None
        self.signals = Signals()
        self.valve = Valve()
        self.watch = Watch()
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.cancelled = False
        self._indices = indices
        self._queue_size = queue_size
        self._processor: Processor | None = None
        self._readers: list[_Reader] = []
        self._tasks: list[runtime.Task[None]] = []
        self._pending = 0
        self._closing = False
        self._failure: BaseException | None = None
        self._done: runtime.Future[None] | None = None
        self._unfed: MemoryEdge | None = None  # the input of a processor without input sources

    # -- RunControl ---------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """The coroutine failed: log it, end every task of this processor; join() raises it."""
        if self._failure is None:
            self._failure = exc
            notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
            logger.error("processor %r failed: %r%s", self.name, exc, notes)
        self.cancelled = True
        for task in self._tasks:
            task.cancel()

    # -- starting, closing, waiting -----------------------------------------------------------

    def start(self, processor: Processor) -> None:
        """Wire the node to its edges and start its tasks on the running loop."""
        runtime.require_asyncio(
            f"Processor {self.name!r} built by hand (over asyncio queues)",
            "put the node in a graph and run it with Plumber",
        )
        try:
            self._done = runtime.new_future()
        except RuntimeError:
            raise PipelineError(
                f"Processor {self.name!r} built by hand needs a running event loop: build it in a coroutine"
            ) from None
        self._processor = processor
        size = self._queue_size
        source = processor.kind == "source"
        if source:
            inputs: list[MemoryEdge] = []
        elif len(self._indices) > 1:
            inputs = [MemoryEdge(f"{self.name}<-{i}", size) for i in range(len(self._indices))]
            processor.refuse_input("it aggregates one item from each of its input sources")
        else:
            inputs = [MemoryEdge(self.name, size)]
        output = MemoryEdge(f"{self.name}:output", size)
        ports = {index: position for position, index in enumerate(self._indices)}
        processor.wire(list(inputs), [output], None, ports)
        processor.install(NO_HOOKS)
        self.started_at = time.monotonic()
        self._spawn(processor.run(), f"pipelines:{self.name}")
        for i, (queue, edge) in enumerate(zip(self.input_srcs, inputs, strict=False)):
            reader = _Reader(queue, edge, (f"{self.name}:input{i}", self._indices[i]))
            self._readers.append(reader)
            self._spawn(reader.run(self), f"pipelines:{self.name}:input{i}")
        if not self.input_srcs and inputs:
            self._unfed = inputs[0]  # fed only through input_queue: close() ends it
        deliver: Callable[[Any], Awaitable[None]] | None = None
        if self.results is None:
            dests = self.output_dests

            async def to_dests(value: Any) -> None:
                for dest in dests:
                    await dest.put(value)

            deliver = to_dests
        self._spawn(_forward(output, deliver, self.results), f"pipelines:{self.name}:output")

    def _spawn(self, coro: Any, name: str) -> None:
        task = runtime.spawn(coro, name=name)
        self._pending += 1
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: runtime.Task[None]) -> None:
        if task.cancelled():
            if self._failure is None and not self.cancelled:
                self.fail(PipelineError(f"task {task.get_name()!r} was cancelled from outside"))
        elif task.exception() is not None:
            self.fail(task.exception())  # type: ignore[arg-type]
        self._pending -= 1
        if self._pending == 0:
            self.ended_at = time.monotonic()
            assert self._done is not None
            self._done.set_result(None)

    def close(self) -> None:
        """No more input: read what the input sources hold now, then end once it is all processed."""
        if self._closing:
            return
        self._closing = True
        processor = self._processor
        if processor is not None:
            processor.stop_producing()
        for reader in self._readers:
            reader.close()
        if self._unfed is not None:
            self._unfed.close()

    def cancel(self) -> None:
        """End every task now, without a failure (the code around the processor failed)."""
        self.cancelled = True
        for task in self._tasks:
            task.cancel()

    async def wait(self) -> None:
        """Wait until every task has ended, even if the caller is cancelled meanwhile."""
        assert self._done is not None
        await runtime.wait_through_cancel(self._done, on_cancel=self.cancel)

    async def join(self) -> None:
        """Wait until every task of the processor has ended; raise the coroutine's failure."""
        assert self._done is not None
        await runtime.shield(self._done)
        if self._failure is not None:
            raise self._failure

    @property
    def ended(self) -> bool:
        return self._done is not None and self._done.done()


class _Reader:
    """Reads one of the user's input queues into the node's input edge, giving each item its key."""

    def __init__(self, queue: Any, edge: MemoryEdge, origin: tuple[str, int]) -> None:
        self._queue = queue
        self._edge = edge
        self._name, self._index = origin
        self._waiting = False
        self._closing = False
        self._task: runtime.Task[Any] | None = None

    def close(self) -> None:
        self._closing = True
        if self._waiting and self._task is not None and self._queue.empty():
            self._task.cancel()  # waiting for an item that will not come; nothing is taken

    async def run(self, run: HandRun) -> None:
        self._task = runtime.current_task()
        queue, edge = self._queue, self._edge
        position = 0
        try:
            while not (self._closing and queue.empty()):
                self._waiting = True
                try:
                    item = await queue.get()
                except runtime.CancelledError:
                    if self._closing and not run.cancelled:
                        self._task.uncancel()
                        return
                    raise
                finally:
                    self._waiting = False
                await edge.put_many([((self._name, position), item, self._index)])
                position += 1
        finally:
            edge.close()


async def _forward(output: MemoryEdge, deliver: Callable[[Any], Awaitable[None]] | None, keep: Any) -> None:
    """Put every value the node returns into the user's output queues (or keep them for readers)."""
    while True:
        batch = await output.get_many()
        if not batch:
            return
        for _, value, _ in batch:
            if value is DROPPED:
                continue
            if deliver is None:
                keep.offer(value)
            else:
                await deliver(value)
