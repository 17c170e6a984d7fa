"""Processor: one node of the graph.

A `Processor` owns its node's input edges, its outputs (pipelines.outputs: its successors' edges
and how a batch is handed on), its ledger of counters and outcomes (pipelines.ledger), and one
task, `run()` (pipelines.lifecycle): the node's setup, then its workers (pipelines.pool,
pipelines.worker), then end-of-stream to its successors, then its teardown. An `InputProcessor`
(pipelines.sources) is a node without inputs, whose function is called once.

How an item is handled, in order: retries (`retry`), each attempt bounded by `timeout`; then, if it
still failed, `on_error`: 'fail' stops the run and re-raises, 'skip' counts and logs it, a node
name routes a `Failure` to that error node. A returned value goes to every successor (or, for a
node that routes, to those it chooses: pipelines.routing); None emits nothing; an async generator
emits each value it yields.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Protocol, cast

from . import runtime
from .calls import invoker
from .edges import MemoryEdge
from .errors import PipelineError, PipelineStateError
from .events import NodeEvents
from .hooks import NodeHooks
from .ledger import Ledger, as_failure
from .lifecycle import drive
from .lineage import Joiner
from .outputs import Outputs
from .pool import Pool, Watch
from .queues import NodeInput, ResultFeed, ResultQueue
from .routing import Router
from .signals import Signals
from .standalone import HandBuilt, prepare
from .stats import NodeStats
from .types import Envelope, Key
from .valve import Valve

if TYPE_CHECKING:
    from .edges import Edge
    from .fusion import Chain
    from .graph import NodeSpec
    from .sources import SourceOutput
    from .standalone import HandRun
    from .worker import Take

__all__ = ["NodeOutput", "Processor", "RunControl"]


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


class Processor(HandBuilt):
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
        self._joiner: Joiner | None = None
        self.executor: Executor | None = None
        """The node's thread or process pool while it runs (property 'executor'); else None."""
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
        self.handoff = Outputs(self.ledger, self.router, is_generator=node.is_generator)
        """How a batch of the node's outputs is handed on: `emit`, and the ways a worker picks from
        when it starts (pipelines.outputs)."""
        self.collected: list[Any] | None = None
        """A sink's return values (None excluded), kept when the Plumber collects outputs."""
        self.keyless = self.followed = False
        """The items reach the node without their keys; if `followed`, but those hooks follow (`go_keyless`)."""
        self.invoke: Callable[[Any], Any] = invoker(self, lambda: self.executor)
        """The node's function bound to its args (and style, and pool): ``invoke(arg)``."""
        self.valve = Valve(control.valve if self.kind == "source" else None)
        """Closed while the node itself is paused (`Plumber.pause(node)`): it takes no more items; a
        source's also closes while the whole run is paused (pipelines.valve)."""
        self.events: NodeEvents | None = None
        """The custom events the node answers (property 'events', pipelines.events); None: none."""
        self.chain: Chain | None = None
        """The nodes fused after this one, which it calls on each of its outputs (`fuse`); None: none."""
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
        return (list(self._inputs), list(self.handoff.edges))

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
        return tuple(self.handoff.edges)

    @property
    def error_output(self) -> Edge | None:
        """The input edge of the node's error node, if it routes failures to one."""
        return self.handoff.error_edge

    @property
    def emit(self) -> Callable[[list[Envelope], list[Any]], Awaitable[None]]:
        """``await emit(out, errors)``: `out` to every successor, `errors` to the error node."""
        return self.handoff.emit

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
        control, pool = self._control, self._pool
        elapsed = 0.0
        if control.started_at is not None:
            elapsed = (control.ended_at or time.monotonic()) - control.started_at
        if pool is None:
            return self.ledger.snapshot(self._inputs, elapsed, self.valve.shut)
        return self.ledger.snapshot(self._inputs, elapsed, self.valve.shut, pool.unstarted, pool.live, pool.peak)

    # -- wiring and hooks (by the Plumber) ----------------------------------------------------

    def wire(self, inputs: list[Edge], outputs: list[Edge], error_edge: Edge | None, ports: dict[int, int]) -> None:
        """Connect the node: its input edges, its successors' input edges, its error node's edge.

        `ports` maps each producer's node index to its input's position, for a join.
        """
        self._inputs = inputs
        self.handoff.wire(outputs, error_edge)
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

    def go_keyless(self, *, followed: bool = False) -> None:
        """Take and hand on the items without their keys (by the Plumber, before the run starts,
        when nothing in the run needs them: pipelines.lineage.needs_keys), each envelope the value
        itself; if `followed`, but for the items the run's hooks follow (pipelines.keyless)."""
        self.keyless, self.followed = True, followed
        for edge in self._inputs:
            if isinstance(edge, MemoryEdge):  # what a keyless run has: its `input_queue.get()` reads values
                edge.bare = True

    def fuse(self, chain: Chain) -> None:
        """Lead a fused segment (by the Plumber: pipelines.fusion); pausing a node of it holds this one."""
        self.chain = chain
        for valve in chain.valves:
            self.valve.follow(valve)

    def holds(self, key: Key, producer: int) -> bool:
        """For a join: whether an item with `key` from node `producer` already waits in its group.

        A transport that may deliver an item twice (Redis, after a worker died) drops the second.
        """
        return self._joiner is not None and self._joiner.holds(key, producer)

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

    def run(self) -> Coroutine[Any, Any, None]:
        """The node's task: setup, the work, end-of-stream downstream, teardown (run by a transport;
        pipelines.lifecycle)."""
        return drive(self)

    @property
    def joiner(self) -> Joiner | None:
        """A join's groups of items waiting for their other members (pipelines.lineage); else None."""
        return self._joiner

    def work(self) -> Awaitable[None]:
        """The node's work, between its setup and its teardown: its pool's run (a source: its
        production, pipelines.sources)."""
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
