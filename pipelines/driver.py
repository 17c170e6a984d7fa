"""Processor: one node of the graph, and the task that drives it.

A `Processor` owns its node's input edges, its successors' edges, its ledger of counters and
outcomes (pipelines.ledger) and a fixed set of tasks: one driver, running the node's setup, then
its workers (pipelines.worker), then end-of-stream to its successors, then its teardown. An
`InputProcessor` (pipelines.sources) is a node without inputs, whose function is called once.

How an item is handled, in order: retries (`retry`), each attempt bounded by `timeout`; then, if it
still failed, `on_error`: 'fail' stops the run and re-raises, 'skip' counts and logs it, a node
name routes a `Failure` to that error node. A returned value goes to every successor (or, for a
node that routes, to those it chooses: pipelines.routing); None emits nothing; an async generator
emits each value it yields.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Protocol, cast

from . import runtime
from .calls import invoker
from .edges import MemoryEdge
from .errors import PipelineError, PipelineStateError
from .events import NodeEvents
from .executors import close_pool, open_pool
from .hooks import NodeHooks, unfiltered
from .ledger import Ledger, as_failure
from .lineage import DROPPED, Joiner
from .pool import Pool, Watch
from .queues import NodeInput, ResultFeed, ResultQueue
from .routing import Router
from .signals import Signals
from .stats import NodeStats
from .types import Envelope, Key
from .valve import Valve

if TYPE_CHECKING:
    from types import TracebackType

    from .edges import Edge
    from .graph import NodeSpec
    from .sources import SourceOutput
    from .standalone import HandRun
    from .worker import Take

__all__ = ["NodeOutput", "Processor", "RunControl"]

logger = logging.getLogger(__name__)

TEARDOWN_TIMEOUT = 30.0


class RunControl(Protocol):
    """What a processor needs from the plumber running it."""

    @property
    def started_at(self) -> float | None: ...
    @property
    def ended_at(self) -> float | None: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def signals(self) -> Signals: ...
    @property
    def valve(self) -> Valve: ...
    @property
    def watch(self) -> Watch: ...
    def fail(self, exc: BaseException) -> None: ...


class Processor:
    """One node of the pipeline: its coroutine, its input edges, its outputs and its counters.

    Built by the Plumber as ``Processor(spec, env_vars, plumber)``; `env_vars` is the dict given
    to the Plumber, shared by every node. `str()` gives ``<Processor:{uuid};{name}>`` as in the
    original library.

    Built by hand, in the original's keyword form, ``Processor(name=..., coro=..., input_srcs=[...],
    output_dests=[...], env_vars=None, queue_size=0, **args)`` runs at once on the running loop over
    your asyncio queues (pipelines.standalone); end it with `close()` and `await join()`, or
    `await aclose()`, or ``async with``.
    """

    kind = "node"
    """How messages name it: 'node', or 'source'."""

    def __init__(
        self,
        spec: NodeSpec | object = None,
        env_vars: dict[str, Any] | None = None,
        control: RunControl | None = None,
        **original: Any,
    ) -> None:
        hand: HandRun | None = None
        if control is None:  # built by hand, in the original's keyword form: `spec` is its name
            from .standalone import prepare  # only code built by hand needs it

            spec, hand = prepare(self.kind == "source", original.pop("name", spec), env_vars, original)
            control = hand
        elif original:
            raise TypeError(f"Processor() got unexpected keyword arguments {sorted(original)}")
        self._hand = hand
        node = self._spec = cast("NodeSpec", spec)
        self._uuid = str(uuid.uuid4())
        self._control = control
        self.env_vars = env_vars
        self._inputs: list[Edge] = []
        self._outputs: list[Edge] = []
        self._memory_outputs: list[MemoryEdge] = []
        """The output edges when every one is a plain MemoryEdge (else empty): see `emit_now`."""
        self._error_edge: Edge | None = None
        self._joiner: Joiner | None = None
        self._executor: Executor | None = None
        self._pool: Pool | None = None
        self._output_queue: NodeOutput | ResultQueue = NodeOutput(node.name)
        self._input_view: NodeInput | None = None
        self._input_refusal: str | None = None
        self._results: ResultQueue | None = None
        self.ledger = Ledger(
            node.name,
            node.index,
            self.kind,
            node.properties.on_error,
            node.forward_drops,
            control.signals,
            control.fail,
        )
        """The node's counters and the outcomes of its items (pipelines.ledger)."""
        self.router: Router | None = Router(node) if node.routes_outputs else None
        """Where the node's outputs go, for a node that routes them (pipelines.routing); else None."""
        self.collected: list[Any] | None = None
        """A sink's return values (None excluded), kept when the Plumber collects outputs."""
        self.keyless = False
        """The items reach the node without their keys (`go_keyless`)."""
        self.invoke: Callable[[Any], Any] = invoker(self, lambda: self._executor)
        """The node's function bound to its args (and style, and pool): ``invoke(arg)``."""
        self.valve = Valve(control.valve if self.kind == "source" else None)
        """Closed while the node itself is paused (`Plumber.pause(node)`): it takes no more items; a
        source's also closes while the whole run is paused (pipelines.valve)."""
        self.events: NodeEvents | None = None
        """The custom events the node answers (property 'events', pipelines.events); None: none."""
        if node.events:
            self.events = NodeEvents(self, node.events)
            self.invoke = self.events.guard(self.invoke)
        if hand is not None and type(self).__init__ is Processor.__init__:
            self._start_by_hand(hand)

    def _start_by_hand(self, hand: HandRun) -> None:
        if hand.results is not None:
            self._output_queue = hand.results  # no output_dests: the values wait for a reader
        hand.start(self)

    # -- the original API ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def uuid(self) -> str:
        return self._uuid

    @property
    def input_queue(self) -> NodeInput | None:
        """The node's input, as a queue (pipelines.queues.NodeInput); None for a source.

        An item put into it is processed by this node, with the lineage key ``('<node>:input', n)``.
        """
        if self._input_view is None and self._inputs:
            self._input_view = NodeInput(self, self._inputs[0], self._input_refusal)
        return self._input_view

    @property
    def output_queue(self) -> SourceOutput | NodeOutput | ResultQueue:
        """For a source, the queue its coroutine puts items into (the `output_q` it receives).

        For a sink, a `ResultQueue` of the values it returns (None excluded): the sink keeps them
        from the first time this is read, which must be before the sink starts (before the run,
        or right after create_pipeline(), before awaiting); it keeps the last `maxsize` and never
        waits for a reader. For any other node, its outputs go to its successors: reading from
        or putting into its output_queue raises PipelineError.
        """
        spec = self._spec
        if not spec.is_sink or spec.is_source or self._hand is not None:
            return self._output_queue
        if self._results is None:
            if self._pool is not None:
                raise PipelineStateError(
                    f"sink {self.name!r}: read output_queue before the sink starts (before the run, or "
                    "right after create_pipeline() before awaiting); the values it returned so far are gone"
                )
            self._results = ResultQueue(spec.queue_size)
            self.collected = ResultFeed(self._results, self.collected)
        return self._results

    @property
    def processor_coro(self) -> Callable[..., Any]:
        return self._spec.coro

    @property
    def liason_queues(self) -> tuple[list[Any], list[Any]]:
        """(input edges, output edges), as in the original library; built by hand, (input_srcs, output_dests)."""
        if self._hand is not None:
            return (list(self._hand.input_srcs), list(self._hand.output_dests))
        return (list(self._inputs), list(self._outputs))

    # -- a processor built by hand ------------------------------------------------------------

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

    async def __aenter__(self) -> Processor:
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

    def stop_producing(self) -> None:
        """Stop the node's own production: a source's coroutine (see InputProcessor.stop); others have none."""
        return

    @property
    def item_id(self) -> Key | None:
        """In a sink of a run with a journal, the id of the item the calling worker handles (else None).

        ``(source, position, *output indices)``: stable from one run to the next when the sources
        are deterministic, so a sink can use it to make its own writes idempotent. (Known to a sink
        whose finished items a hook records, as the journal does.)
        """
        pool = self._pool
        if pool is None or self.ledger.hooks.finished is None:
            return None
        task = runtime.task_or_none()
        return None if task is None else pool.key_in_hand(task)

    def __repr__(self) -> str:
        coro = self._spec.coro
        return f"<Processor:{self._uuid}, coro:{getattr(coro, '__qualname__', coro)}>"

    def __str__(self) -> str:
        return f"<Processor:{self._uuid};{self.name}>"

    # -- what hooks and transports may read ---------------------------------------------------

    @property
    def spec(self) -> NodeSpec:
        """The checked node: its function, properties, inputs and successors, how it joins."""
        return self._spec

    @property
    def inputs(self) -> tuple[Edge, ...]:
        """The node's input edges: one, or one per input for a zip join; none for a source."""
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Edge, ...]:
        """The input edges of the node's successors, in the order of its successors."""
        return tuple(self._outputs)

    @property
    def error_output(self) -> Edge | None:
        """The input edge of the node's error node, if it routes failures to one."""
        return self._error_edge

    @property
    def signals(self) -> Signals:
        return self._control.signals

    def fail_run(self, exc: BaseException) -> None:
        """Fail the whole run with `exc` (a transport's or a hook's error that no item owns)."""
        self._control.fail(exc)

    # -- statistics ---------------------------------------------------------------------------

    @property
    def items_in(self) -> int:
        """Items taken from the input and started (groups, for a join)."""
        return self.ledger.items_in - self._unstarted()

    @property
    def items_out(self) -> int:
        """Outputs handed on (items put, for a source)."""
        return self.ledger.items_out

    @property
    def completed(self) -> int:
        """Items the node's function handled."""
        return self.ledger.completed

    @property
    def failed(self) -> int:
        """Items that failed and failed the run, or were routed to the error node."""
        return self.ledger.failed

    @property
    def retried(self) -> int:
        """Attempts that failed and were tried again."""
        return self.ledger.retried

    @property
    def skipped(self) -> int:
        """Items that failed and were skipped."""
        return self.ledger.skipped

    @property
    def dropped(self) -> int:
        """Items that produced nothing."""
        return self.ledger.dropped

    @property
    def blocked_seconds(self) -> float:
        """Seconds spent waiting on full outputs (backpressure)."""
        return self.ledger.blocked_seconds

    @property
    def in_flight(self) -> int:
        """Items started and not yet handled."""
        return self.ledger.in_flight - self._unstarted()

    def _unstarted(self) -> int:
        return self._pool.unstarted if self._pool is not None else 0

    def stats(self) -> NodeStats:
        """A snapshot of this node's counters."""
        control = self._control
        ledger = self.ledger
        pool = self._pool
        elapsed = 0.0
        if control.started_at is not None:
            elapsed = (control.ended_at or time.monotonic()) - control.started_at
        inputs = self._inputs
        # Items a worker took and has not started are queued, not in flight.
        unstarted = pool.unstarted if pool is not None else 0
        items_in = ledger.items_in - unstarted
        processed = items_in if inputs else ledger.items_out
        in_flight = ledger.in_flight - unstarted
        handled = items_in - in_flight
        if len(inputs) == 1:  # the common case, without a generator per figure
            edge = inputs[0]
            depth, bound, lost = edge.qsize(), edge.maxsize, edge.statistics().dropped
        else:
            depth = sum(edge.qsize() for edge in inputs)
            bound = sum(edge.maxsize for edge in inputs)
            lost = sum(edge.statistics().dropped for edge in inputs)
        return NodeStats(
            self.name,
            items_in,
            ledger.items_out,
            ledger.completed,
            ledger.failed,
            ledger.retried,
            ledger.skipped,
            ledger.dropped,
            in_flight,
            depth + unstarted,
            bound,
            ledger.blocked_seconds,
            processed / elapsed if elapsed > 0 else 0.0,
            ledger.busy_seconds / handled if handled > 0 else 0.0,
            pool.live if pool is not None else 0,
            pool.peak if pool is not None else 0,
            unstarted,
            lost,
            self.valve.shut,
            tuple(ledger.latency_counts),
        )

    # -- wiring and hooks (by the Plumber) ----------------------------------------------------

    def wire(self, inputs: list[Edge], outputs: list[Edge], error_edge: Edge | None, ports: dict[int, int]) -> None:
        """Connect the node: its input edges, its successors' input edges, its error node's edge.

        `ports` maps each producer's node index to its input's position, for a join.
        """
        self._inputs = inputs
        self._outputs = outputs
        self._error_edge = error_edge
        # Edges whose put_many is MemoryEdge's own (not a lossy edge, nor one that counts its puts).
        plain = all(isinstance(edge, MemoryEdge) and type(edge).put_many is MemoryEdge.put_many for edge in outputs)
        self._memory_outputs = cast("list[MemoryEdge]", outputs) if plain else []
        self.ledger.wire(len(outputs), error_edge is not None)
        spec = self._spec
        if spec.join_mode is not None:
            self._joiner = Joiner(ports, zip_mode=spec.join_mode == "zip", key_length=spec.key_length)

    def refuse_input(self, reason: str) -> None:
        """Make `input_queue` refuse items from outside the run, for `reason` (by the Plumber)."""
        self._input_refusal = reason

    def took_out(self, key: Key) -> None:
        """An item was taken out of the node's input by `input_queue.get()`: it left the run here."""
        self.ledger.items_in += 1
        self.ledger.drop(key, [])

    def install(self, hooks: NodeHooks) -> None:
        """Install the node methods of the run's hooks (before the run starts)."""
        self.ledger.install(hooks)

    def go_keyless(self) -> None:
        """Take and hand on the items without their keys (by the Plumber, before the run starts,
        when nothing in the run needs them: pipelines.lineage.needs_keys). Each envelope is then
        the value itself."""
        self.keyless = True
        for edge in self._inputs:
            if isinstance(edge, MemoryEdge):  # what a keyless run has: its `input_queue.get()` reads values
                edge.bare = True

    def holds(self, key: Key, producer: int) -> bool:
        """For a join: whether an item with `key` from node `producer` already waits in its group.

        A transport that may deliver an item twice (Redis, after a worker died) drops the second.
        """
        return self._joiner is not None and self._joiner.holds(key, producer)

    # -- handing outputs on -------------------------------------------------------------------

    @property
    def emits_in_memory(self) -> bool:
        """Whether `emit_now` can hand outputs on: the node has outputs, all plain MemoryEdges."""
        return bool(self._memory_outputs)

    def emit_now(self, out: list[Envelope]) -> bool:
        """Hand `out` to every successor at once, without waiting, when each has room for all of it
        now (as `emit` does then, without a coroutine), and empty it; False when one has not:
        nothing was handed on, and the caller awaits `emit`. Only where `emits_in_memory`."""
        edges = self._memory_outputs
        if len(edges) == 1:
            if not edges[0].put_many_nowait(out):
                return False
        else:
            count = len(out)
            if not all(edge.room_for(count) for edge in edges):
                return False
            for edge in edges:
                edge.put_many_nowait(out)
        out.clear()
        return True

    async def emit(self, out: list[Envelope], errors: list[Any]) -> None:
        """Hand `out` to every successor and `errors` to the error node, then empty both lists."""
        ledger = self.ledger
        if out:
            for edge in self._outputs:
                waited = await edge.put_many(out)
                if waited:
                    ledger.blocked_seconds += waited
            out.clear()
        if errors:
            assert self._error_edge is not None
            waited = await self._error_edge.put_many(errors)
            if waited:
                ledger.blocked_seconds += waited
            errors.clear()

    async def emit_reporting(self, out: list[Envelope], errors: list[Any]) -> None:
        """`emit`, telling the `sent` hooks of each output first (a node that returns its outputs)."""
        sent = self.ledger.hooks.sent
        assert sent is not None
        fan = len(self._outputs)
        told, positions = unfiltered(sent)
        if positions is None:
            for key, value, _ in out:
                if value is not DROPPED:
                    told(key, value, fan)
        elif positions:  # a hook that hears only some items: the test without a call for the others
            for key, value, _ in out:
                if value is not DROPPED and key[1] in positions:
                    told(key, value, fan)
        await self.emit(out, errors)

    async def emit_routed(self, out: list[Envelope], errors: list[Any]) -> None:
        """`emit` for a node that routes: each output to the successors its plan names, a tombstone to
        the others a join waits behind; tells the `sent` hooks, unless the node is an async generator
        (it tells them of each output as it yields it)."""
        router = self.router
        assert router is not None
        if out:
            ledger = self.ledger
            edges = self._outputs
            lanes: list[list[Envelope]] = [[] for _ in edges]
            router.split(out, lanes, None if self._spec.is_generator else ledger.hooks.sent)
            out.clear()
            for edge, lane in zip(edges, lanes, strict=True):
                if lane:
                    waited = await edge.put_many(lane)
                    if waited:
                        ledger.blocked_seconds += waited
        if errors:
            await self.emit([], errors)

    async def fail_item(self, key: Key, item: Any, exc: Exception, *, handed_on: bool = False) -> bool:
        """Fail an item of this node for a reason outside its function, under the node's on_error.

        For a transport: an output that cannot travel (`handed_on`: the item was counted as
        completed and handed on, and the transport sends its tombstones itself), or an item
        delivered too often to be handed to the node again (it is counted as taken here).
        Returns False when the node's on_error is 'fail': the run is failing.
        """
        ledger = self.ledger
        if handed_on:
            ledger.completed -= 1
            ledger.items_out -= 1
        else:
            ledger.items_in += 1
        out: list[Envelope] = []
        errors: list[Any] = []
        if not ledger.fail(key, item, exc, runtime.current_task(), out, errors):
            return False
        await self.emit([] if handed_on else out, errors)
        return True

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        """The node's task: setup, the work, end-of-stream downstream, teardown (run by a transport)."""
        spec = self._spec
        set_up = False
        finished = False
        signals = self._control.signals
        signals.emit("node_started", node=self.name)
        try:
            if spec.setup is not None:
                try:
                    await spec.setup(self)
                except BaseException as exc:
                    # SystemExit or KeyboardInterrupt from setup fails the run like any error (as from
                    # the node's function); only the run's own cancellation goes on up
                    failure = self.as_failure(exc, runtime.current_task())
                    failure.add_note(f"pipelines: setup of node {self.name!r} failed")
                    self._control.fail(failure)
                    return
            set_up = True
            if self.events is not None:
                self.events.start()
            self._executor = open_pool(spec.name, spec.properties)
            await self._body()
            joiner = self._joiner
            if joiner is not None and (joiner.pending or joiner.abandoned):
                await self._discard_incomplete(joiner)
            finished = True
        finally:
            if self.events is not None:
                self.events.end()
            for edge in self._outputs:
                edge.close()
            if self._error_edge is not None:
                self._error_edge.close()
            if self._executor is not None:
                # Work still in the executor belongs to a run that is ending: do not wait for it.
                close_pool(self._executor, finished=finished)
                self._executor = None
            if set_up and spec.teardown is not None:
                await self._teardown()
            signals.emit("node_ended", node=self.name)

    async def _teardown(self) -> None:
        """Run teardown to its end even when this task is being cancelled, within a time bound."""
        await runtime.wait_through_cancel(runtime.spawn(self._teardown_bounded()))

    async def _teardown_bounded(self) -> None:
        teardown = self._spec.teardown
        assert teardown is not None
        try:
            async with runtime.timeout(TEARDOWN_TIMEOUT):
                await teardown(self)
        except BaseException as exc:
            failure = self.as_failure(exc, runtime.current_task())  # as for setup
            failure.add_note(f"pipelines: teardown of node {self.name!r} failed")
            logger.error("teardown of node %r failed: %r", self.name, failure)
            self._control.fail(failure)

    def _body(self) -> Awaitable[None]:
        """The node's work: its pool's run (awaited by `run`, which adds no frame of its own here)."""
        pool = self._pool = Pool(self, self._joiner, self._control.watch)
        pool.read = self._held(pool.read)
        return pool.run()

    def _held(self, read: Take) -> Take:
        """`read` (the node's input, a batch at a time), waiting first while the node is paused.

        Open, it adds no frame: the read's own coroutine is returned. A worker already waiting on
        an empty input when the node is paused takes the batch that comes, and holds at its next read.
        """
        valve = self.valve

        async def when_open(share: int) -> list[Envelope]:
            await valve.wait_open()
            return await read(share)

        def take(share: int) -> Awaitable[list[Envelope]]:
            return when_open(share) if valve.closed else read(share)

        return take

    async def _discard_incomplete(self, joiner: Joiner) -> None:
        """At end-of-stream, the join groups that can never complete are discarded and counted."""
        keys = joiner.drain()
        logger.warning(
            "node %r: %d join groups never completed and were discarded", self.name, len(keys) + joiner.abandoned
        )
        ledger = self.ledger
        released = ledger.hooks.released
        out: list[Envelope] = []
        for key in keys:
            ledger.items_in += 1
            if released is not None:
                released(key)
            ledger.drop(key, out)
        if out:
            await self.emit(out, [])

    def as_failure(self, exc: BaseException, task: runtime.Task[Any]) -> BaseException:
        """The exception an item failed with here; re-raises a cancellation that is the run's own."""
        return as_failure(exc, task, f"{self.kind} {self.name!r}")


class NodeOutput:
    """The `output_queue` of a node that is not a source: outputs are return values, not puts."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def _refuse(self, *_: Any) -> None:
        raise PipelineError(
            f"node {self._name!r}: only a source puts into its output queue; return the output, "
            "or yield several from an async generator"
        )

    def _refuse_get(self) -> None:
        raise PipelineError(
            f"node {self._name!r}: its outputs go to its successors; read a sink's output_queue, "
            "or take from a successor's input_queue"
        )

    put = put_nowait = _refuse
    get = get_nowait = _refuse_get
