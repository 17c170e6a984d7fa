"""Processor: one node of the graph, running its coroutine over the items of its input.

A `Processor` owns a fixed set of tasks: one driver, plus `workers` consumers when there are
several. Each consumer takes the items waiting in the node's input channel in one batch, calls the
coroutine once per item (or per joined group), and hands the outputs to every successor's input in
one batch. An `InputProcessor` is a node without inputs: its coroutine is called once and puts items
into `output_q` until it returns.

How an item is handled, in order: retries (`retry`), each attempt bounded by `timeout`; then, if it
still failed, `on_error`: 'fail' stops the run and re-raises, 'skip' counts and logs it, a node
name routes a `Failure` to that error node. A returned value goes to every successor; None emits
nothing; an async generator emits each value it yields.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from .errors import PipelineError
from .executors import close_pool, open_pool
from .failure import Failure
from .lineage import DISCARDED, DROPPED, Joiner
from .ordering import OrderGate
from .policies import RetryPolicy
from .ports import NodeOutput, SourcePort
from .runtime import wait_through_cancel
from .signals import Signals
from .stats import NodeStats

if TYPE_CHECKING:
    from .channels import Channel
    from .graph import NodeSpec
    from .journal.engine import NodeTally
    from .valve import Valve

__all__ = ["InputProcessor", "Processor"]

logger = logging.getLogger(__name__)

SettleListener = Callable[[Any, str, Any], None]

TEARDOWN_TIMEOUT = 30.0
_ITEM_REPR_LIMIT = 200

# The id of the item the current worker task handles; set only in a run with a journal.
current_item: ContextVar[tuple[Any, ...] | None] = ContextVar("pipelines_item_id", default=None)


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
    def fail(self, exc: BaseException) -> None: ...


class Processor:
    """One node of the pipeline: its coroutine, its input channel, its outputs and its counters.

    Built by the Plumber, never by the user. `env_vars` is the dict given to the Plumber, shared
    by every node. `str()` gives ``<Processor:{uuid};{name}>`` as in the original library.
    """

    _kind = "node"  # how error messages name it

    def __init__(self, spec: NodeSpec, env_vars: dict[str, Any] | None, control: RunControl) -> None:
        self._spec = spec
        self._name = spec.name
        self._index = spec.index
        self._uuid = str(uuid.uuid4())
        self._coro = spec.coro
        self._control = control
        self.env_vars = env_vars
        props = spec.properties
        self._workers = props.workers
        self._timeout = props.timeout
        self._retry = props.retry
        self._on_error = props.on_error
        self._inputs: list[Channel] = []
        self._outputs: list[Channel] = []
        self._chunk = 1
        self._arrivals: list[int] = []
        self._error_channel: Channel | None = None
        self._joiner: Joiner | None = None
        self._gate = OrderGate() if props.ordered and props.workers > 1 else None
        self._output_port: SourcePort | NodeOutput = NodeOutput(self._name)
        # counters: see pipelines.stats for the identity they keep
        self.items_in = 0
        self.items_out = 0
        self.completed = 0
        self.failed = 0
        self.retried = 0
        self.skipped = 0
        self.dropped = 0
        self.blocked_seconds = 0.0
        self.busy_seconds = 0.0
        # A sink's return values (None excluded), kept when the Plumber collects outputs.
        self.collected: list[Any] | None = None
        self.settled: SettleListener | None = None
        """Called as ``settled(key, outcome, value)`` when an item's path ends at this node:
        'result' (a sink's return value, or each value a generator sink yields), 'dropped' (None
        returned, or its join group discarded), 'skipped' or 'failed' (routed to the error node;
        value is the exception). Set it before
        the run starts; it is how pipelines.web answers a request with its item's result."""
        self._pool: Executor | None = None
        self._invoke: Callable[[Any], Any] = self._make_invoke()
        self._tally: NodeTally | None = None  # the journal's hooks (pipelines.journal), when there is one

    # -- the original API ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def uuid(self) -> str:
        return self._uuid

    @property
    def input_queue(self) -> Channel | None:
        """The node's input channel (the first, for a join of independent sources); None for a source."""
        return self._inputs[0] if self._inputs else None

    @property
    def output_queue(self) -> SourcePort | NodeOutput:
        """For a source, the queue its coroutine puts items into (the `output_q` it receives)."""
        return self._output_port

    @property
    def processor_coro(self) -> Callable[..., Any]:
        return self._coro

    @property
    def liason_queues(self) -> tuple[list[Channel], list[Channel]]:
        """(input channels, output channels), as in the original library."""
        return (list(self._inputs), list(self._outputs))

    @property
    def item_id(self) -> tuple[Any, ...] | None:
        """In a sink of a run with a journal, the id of the item the calling worker handles (else None).

        ``(source, position, *output indices)``: stable from one run to the next when the sources
        are deterministic, so a sink can use it to make its own writes idempotent.
        """
        return current_item.get()

    def __repr__(self) -> str:
        return f"<Processor:{self._uuid}, coro:{getattr(self._coro, '__qualname__', self._coro)}>"

    def __str__(self) -> str:
        return f"<Processor:{self._uuid};{self._name}>"

    # -- statistics ---------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self.items_in - self.completed - self.dropped - self.skipped - self.failed

    def stats(self) -> NodeStats:
        """A snapshot of this node's counters."""
        control = self._control
        elapsed = 0.0
        if control.started_at is not None:
            elapsed = (control.ended_at or time.monotonic()) - control.started_at
        inputs = self._inputs
        processed = self.items_in if inputs else self.items_out
        handled = self.items_in - self.in_flight
        return NodeStats(
            name=self._name,
            items_in=self.items_in,
            items_out=self.items_out,
            completed=self.completed,
            failed=self.failed,
            retried=self.retried,
            skipped=self.skipped,
            dropped=self.dropped,
            in_flight=self.in_flight,
            queue_depth=sum(channel.qsize() for channel in inputs),
            queue_bound=sum(channel.maxsize for channel in inputs),
            blocked_seconds=self.blocked_seconds,
            rate=processed / elapsed if elapsed > 0 else 0.0,
            latency=self.busy_seconds / handled if handled > 0 else 0.0,
        )

    # -- wiring (by the Plumber) -------------------------------------------------------------

    def _wire(
        self,
        inputs: list[Channel],
        outputs: list[Channel],
        error_channel: Channel | None,
        ports: dict[int, int],
    ) -> None:
        """Connect the node: its input channel (one per input for a zip join), its successors' inputs."""
        self._inputs = inputs
        self._outputs = outputs
        self._error_channel = error_channel
        # A generator node hands its outputs on in chunks no larger than the smallest successor queue.
        self._chunk = min((channel.maxsize for channel in outputs), default=1)
        self._arrivals = [0] * len(inputs)
        spec = self._spec
        if spec.is_source:
            self._output_port = SourcePort(self, outputs, self._control.valve)
        if spec.join_mode is not None:
            self._joiner = Joiner(ports, zip_mode=spec.join_mode == "zip", key_length=spec.key_length)

    def _attach_journal(self, tally: NodeTally) -> None:
        """Hook the node into the run's journal (by pipelines.journal, after wiring)."""
        self._tally = tally
        if self._spec.is_source:
            self._output_port = tally.source_port(self, self._outputs, self._control.valve)

    def _make_invoke(self) -> Callable[[Any], Any]:
        spec = self._spec
        if spec.properties.executor is not None:
            fn, args = self._coro, spec.args

            def in_pool(item: Any) -> asyncio.Future[Any]:
                assert self._pool is not None
                call = functools.partial(fn, item, **args) if args else functools.partial(fn, item)
                return asyncio.get_running_loop().run_in_executor(self._pool, call)

            return in_pool
        if spec.style == "item":
            return functools.partial(self._coro, **spec.args) if spec.args else self._coro
        return functools.partial(self._coro, self, **spec.args)

    # -- running ------------------------------------------------------------------------------

    async def _run(self) -> None:
        """The node's driver task: setup, the work, end-of-stream downstream, teardown."""
        spec = self._spec
        set_up = False
        finished = False
        signals = self._control.signals
        signals.emit("node_started", node=self._name)
        try:
            if spec.setup is not None:
                try:
                    await spec.setup(self)
                except Exception as exc:
                    exc.add_note(f"pipelines: setup of node {self._name!r} failed")
                    self._control.fail(exc)
                    return
            set_up = True
            self._pool = open_pool(spec.name, spec.properties)
            await self._body()
            finished = True
        finally:
            for channel in self._outputs:
                channel.close()
            if self._error_channel is not None:
                self._error_channel.close()
            if self._pool is not None:
                # Work still in the pool belongs to a run that is ending: do not wait for it.
                close_pool(self._pool, finished=finished)
                self._pool = None
            if set_up and spec.teardown is not None:
                await self._teardown()
            signals.emit("node_ended", node=self._name)

    async def _teardown(self) -> None:
        """Run teardown to its end even when this task is being cancelled, within a time bound."""
        await wait_through_cancel(asyncio.get_running_loop().create_task(self._teardown_bounded()))

    async def _teardown_bounded(self) -> None:
        teardown = self._spec.teardown
        assert teardown is not None
        try:
            async with asyncio.timeout(TEARDOWN_TIMEOUT):
                await teardown(self)
        except Exception as exc:
            exc.add_note(f"pipelines: teardown of node {self._name!r} failed")
            logger.error("teardown of node %r failed: %r", self._name, exc)
            self._control.fail(exc)

    async def _body(self) -> None:
        spec = self._spec
        simple = (
            len(self._inputs) == 1
            and self._joiner is None
            and self._gate is None
            and self._retry is None
            and self._timeout is None
            and not spec.is_generator
            and self.settled is None
            # with a journal, the lean loop only for a node handing each item to one successor
            and (self._tally is None or len(self._outputs) == 1)
        )
        work = self._work_simple if simple else self._work
        if self._workers == 1:
            await work()
        else:
            async with asyncio.TaskGroup() as group:
                for _ in range(self._workers):
                    group.create_task(work())
        joiner = self._joiner
        if joiner is not None and joiner.pending:
            keys = joiner.drain()
            self.items_in += len(keys)
            self.dropped += len(keys)
            logger.warning("node %r: %d join groups never completed and were discarded", self._name, len(keys))
            if self._tally is not None:
                for key in keys:
                    self._tally.discard(key, len(self._outputs) if self._spec.forward_drops else 0)
            if self._spec.forward_drops:
                await self._emit([(key, DROPPED, self._index) for key in keys], [])

    async def _take(self, share: int) -> list[Any]:
        """The next batch of envelopes from this node's input; empty at end-of-stream."""
        inputs = self._inputs
        if len(inputs) == 1:
            return await inputs[0].get_many(share)
        # A join of independent sources reads the input that is behind, so that a fast source
        # is held back by its bounded queue instead of filling the join's pending groups.
        arrivals = self._arrivals
        while True:
            live = [i for i, channel in enumerate(inputs) if not (channel.closed and channel.empty())]
            if not live:
                return []
            # Once an input has ended, the others can only be drained.
            i = live[0] if len(live) < len(inputs) else min(live, key=arrivals.__getitem__)
            batch = await inputs[i].get_many(share)
            if batch:
                arrivals[i] += len(batch)
                return batch

    async def _work_simple(self) -> None:
        """The worker loop of the common node: one input, no join, order, retry, timeout or generator.

        The same as `_work` with less to decide per item; its counters are settled per batch.
        """
        get_many = self._inputs[0].get_many
        share = self._workers
        invoke = self._invoke
        index = self._index
        item_style = self._spec.style == "item"
        forward_drops = self._spec.forward_drops
        is_sink = not self._outputs
        collected = self.collected
        idle = self._outputs[0].idle_consumers if self._outputs else None
        task = asyncio.current_task()
        assert task is not None
        clock = asyncio.get_running_loop().time
        out: list[Any] = []
        errors: list[Any] = []
        append = out.append
        tally = self._tally  # with a journal: only an item that goes nowhere changes its count
        while True:
            batch = await get_many(share)
            if not batch:
                return
            started = clock()
            self.items_in += len(batch)
            many = len(batch) > 1
            passed = dropped = settled = emitted = 0
            for key, value, _ in batch:
                if value is DROPPED:
                    passed += 1
                    if forward_drops:
                        append((key, DROPPED, index))
                    elif tally is not None:
                        tally.settle(key, 0)
                    continue
                arg = value if item_style else (value,)
                try:
                    result = await invoke(arg)
                except BaseException as exc:
                    settled += 1
                    if not self._item_failed(key, arg, exc, task, out, errors):
                        return
                    continue
                if is_sink:
                    if collected is not None and result is not None:
                        collected.append(result)
                    continue
                if result is None:
                    dropped += 1
                    if forward_drops:
                        append((key, DROPPED, index))
                    elif tally is not None:
                        tally.settle(key, 0)
                    continue
                append((key, result, index))
                emitted += 1
                if idle and many:
                    # The consumer downstream is idle: give it what is ready now.
                    await self._emit(out, errors)
            self.items_in -= passed
            self.completed += len(batch) - passed - dropped - settled
            self.dropped += dropped
            self.items_out += emitted
            self.busy_seconds += clock() - started
            if out or errors:
                await self._emit(out, errors)

    def _as_failure(self, exc: BaseException, task: asyncio.Task[Any]) -> BaseException:
        """The exception an item failed with; re-raise a cancellation that is the run's own."""
        if isinstance(exc, Exception):
            return exc
        if isinstance(exc, asyncio.CancelledError):
            if task.cancelling():
                raise exc
            # The coroutine raised CancelledError of its own (say, awaiting a future someone
            # cancelled): that is a failure of the item, not a cancellation of the run.
            failure = PipelineError(
                f"{self._kind} {self._name!r}: the coroutine raised CancelledError though the run was not cancelled"
            )
        else:
            # SystemExit, KeyboardInterrupt or another BaseException from the node's own code: it
            # must not tear through the event loop; it fails the item like any error.
            failure = PipelineError(f"{self._kind} {self._name!r}: the coroutine raised {type(exc).__name__}({exc})")
        failure.__cause__ = exc
        return failure

    async def _work(self) -> None:
        """One consumer: take a batch, handle each item, emit the outputs."""
        take = self._take
        share = self._workers
        gate = self._gate
        joiner = self._joiner
        index = self._index
        outputs = self._outputs
        first_output = outputs[0] if outputs else None
        idle = first_output.idle_consumers if first_output is not None else None
        forward_drops = self._spec.forward_drops
        item_style = self._spec.style == "item"
        is_generator = self._spec.is_generator
        settled = self.settled
        task = asyncio.current_task()
        assert task is not None
        clock = asyncio.get_running_loop().time
        # Reused for every batch: a channel copies what it is given.
        out: list[Any] = []
        errors: list[Any] = []
        # With a journal: each envelope is settled as it is handed on (see pipelines.journal.engine),
        # and a sink's finished items are recorded, and committed, before it takes more.
        tally = self._tally
        fan = len(outputs)
        tombstones = fan if forward_drops else 0
        finished: list[Any] = []
        passed_over = tally.passed_over if tally is not None else None
        call = self._call if self._retry is not None or self._timeout is not None else self._invoke
        while True:
            batch = await take(share)
            if not batch:
                return
            ticket = gate.ticket() if gate is not None else 0
            started = clock()
            if joiner is None:
                self.items_in += len(batch)
            for key, value, producer in batch:
                if value is DROPPED and joiner is None:
                    # A tombstone passes through on its way to a join; it is not an item here.
                    self.items_in -= 1
                    if forward_drops:
                        out.append((key, DROPPED, index))
                    if tally is not None and tombstones != 1:
                        tally.settle(key, tombstones)
                    continue
                if joiner is not None:
                    group = joiner.offer(key, value, producer)
                    if group is None:
                        if tally is not None:
                            tally.hold(key)
                        continue
                    self.items_in += 1
                    key, value = group
                    if tally is not None:
                        tally.release(key)
                    if value is DISCARDED:
                        self.dropped += 1
                        if settled is not None:
                            settled(key, "dropped", None)
                        if forward_drops:
                            out.append((key, DROPPED, index))
                        if tally is not None:
                            tally.settle(key, tombstones)
                        continue
                    arg = value
                elif item_style:
                    arg = value
                else:
                    arg = (value,)
                if tally is not None and first_output is None:
                    if passed_over and key in passed_over:
                        self.items_in -= 1  # a sink's item finished before a crash: not an item of this run
                        tally.settle(key, 0)
                        continue
                    current_item.set(key)
                try:
                    if is_generator:
                        result = await self._expand(key, arg, out, errors, ticket) or None
                    else:
                        result = await call(arg)
                except BaseException as exc:
                    if not self._item_failed(key, arg, exc, task, out, errors):
                        return
                    continue
                if first_output is None:
                    self.completed += 1  # a sink: whatever it returns, the item is done
                    # (a generator sink's values were collected as it yielded them)
                    if not is_generator:
                        if self.collected is not None and result is not None:
                            self.collected.append(result)
                        if settled is not None:
                            settled(key, "result", result)
                    if tally is not None:
                        finished.append(key)
                elif result is None:
                    self.dropped += 1
                    if settled is not None:
                        settled(key, "dropped", None)
                    if forward_drops:
                        out.append((key, DROPPED, index))
                    if tally is not None:
                        tally.settle(key, tombstones)
                else:
                    self.completed += 1
                    if not is_generator:
                        out.append((key, result, index))
                        self.items_out += 1
                    if tally is not None and (is_generator or fan != 1):
                        tally.settle(key, 0 if is_generator else fan)  # a generator's outputs were counted as sent
                    if gate is None and idle and len(batch) > 1:
                        # The consumer downstream is idle: give it what is ready now.
                        await self._emit(out, errors)
            self.busy_seconds += clock() - started
            if gate is not None:
                await gate.wait_turn(ticket)
                await self._emit(out, errors)
                gate.done(ticket)
            elif out or errors:
                await self._emit(out, errors)
            if finished:
                assert tally is not None
                committed = tally.finish(finished)
                finished.clear()
                await committed  # before this worker takes more: what a crash can redo stays one batch

    async def _call(self, arg: Any) -> Any:
        """Call the coroutine with retries, each attempt bounded by the timeout."""
        policy = self._retry
        attempt = 1
        while True:
            try:
                if self._timeout is None:
                    return await self._invoke(arg)
                async with asyncio.timeout(self._timeout):
                    return await self._invoke(arg)
            except Exception as exc:
                await self._before_retry(policy, attempt, exc, arg)
                attempt += 1

    async def _before_retry(self, policy: RetryPolicy | None, attempt: int, exc: Exception, arg: Any) -> None:
        """Re-raise `exc` if the item is out of attempts; otherwise count the retry and back off."""
        if policy is None or attempt >= policy.max_attempts or not isinstance(exc, policy.retry_on):
            raise exc
        self.retried += 1
        self._control.signals.emit("item_retried", node=self._name, item=arg, exception=exc, attempt=attempt)
        delay = policy.delay(attempt)
        logger.info("node %r: attempt %d failed (%r); retrying in %.3fs", self._name, attempt, exc, delay)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _expand(self, key: Any, arg: Any, out: list[Any], errors: list[Any], ticket: int) -> int:
        """Run an async generator node on one item; return how many outputs it yielded.

        Outputs are handed on in chunks while the generator runs, so a generator yielding many
        items is held back by the bounded queues like any producer. `timeout` bounds the wait for
        each output. A retry starts the generator again and skips the outputs an earlier attempt
        already sent, so the generator must yield the same sequence each time.
        """
        policy = self._retry
        timeout = self._timeout
        gate = self._gate
        index = self._index
        emits = bool(self._outputs)
        attempt = 1
        sent = 0
        while True:
            produced = 0
            try:
                async with contextlib.aclosing(self._invoke(arg)) as agen:
                    while True:
                        try:
                            if timeout is None:
                                value = await anext(agen)
                            else:
                                async with asyncio.timeout(timeout):
                                    value = await anext(agen)
                        except StopAsyncIteration:
                            return sent
                        produced += 1
                        if produced <= sent:
                            continue  # an earlier attempt sent this one
                        sent += 1
                        if not emits:
                            if self.collected is not None:
                                self.collected.append(value)
                            if self.settled is not None:
                                self.settled(key, "result", value)
                        else:
                            if self._tally is not None:
                                self._tally.sent(key, len(self._outputs))
                            out.append(((*key, sent - 1), value, index))
                            self.items_out += 1
                            if len(out) >= self._chunk:
                                if gate is not None:
                                    await gate.wait_turn(ticket)
                                await self._emit(out, errors)
            except Exception as exc:
                await self._before_retry(policy, attempt, exc, arg)
                attempt += 1

    def _item_failed(
        self, key: Any, arg: Any, exc: BaseException, task: asyncio.Task[Any], out: list[Any], errors: list[Any]
    ) -> bool:
        """An item raised `exc`: apply on_error, and send a tombstone if a join waits downstream.

        Returns False when the run must stop. Re-raises a cancellation that is the run's own.
        """
        if not self._handle_failure(key, arg, self._as_failure(exc, task), errors):
            return False
        forward = self._spec.forward_drops
        if forward:
            out.append((key, DROPPED, self._index))
        if self._tally is not None:
            self._tally.settle(key, (len(self._outputs) if forward else 0) + (self._error_channel is not None))
        return True

    def _handle_failure(self, key: Any, arg: Any, exc: BaseException, errors: list[Any]) -> bool:
        """Apply on_error to an item that failed; return False when the run must stop."""
        self._control.signals.emit("item_failed", node=self._name, item=arg, exception=exc)
        shown = _short_repr(arg)
        on_error = self._on_error
        if on_error == "fail":
            self.failed += 1
            exc.add_note(f"pipelines: node {self._name!r} failed on item {shown}")
            self._control.fail(exc)
            return False
        if on_error == "skip":
            self.skipped += 1
            if self.settled is not None:
                self.settled(key, "skipped", exc)
            logger.warning("node %r: skipped item %s after %r", self._name, shown, exc)
            return True
        self.failed += 1
        if self.settled is not None:
            self.settled(key, "failed", exc)
        logger.info("node %r: item %s failed (%r); routed to %r", self._name, shown, exc, on_error)
        errors.append((key, Failure(self._name, arg, exc), self._index))
        return True

    async def _emit(self, out: list[Any], errors: list[Any]) -> None:
        """Hand `out` to every successor and `errors` to the error node, then empty both lists."""
        if out:
            for channel in self._outputs:
                waited = await channel.put_many(out)
                if waited:
                    self.blocked_seconds += waited
            out.clear()
        if errors:
            assert self._error_channel is not None
            waited = await self._error_channel.put_many(errors)
            if waited:
                self.blocked_seconds += waited
            errors.clear()


class InputProcessor(Processor):
    """A node without inputs: its coroutine is called once and puts items into `output_q`.

    ``async def f(processor, output_q, **args)`` in the original style; in 'item' style, an async
    generator ``async def f(**args)`` whose yielded values are the items. `Plumber.stop()` cancels
    the coroutine where it is (usually waiting in `put`) and lets the rest of the graph drain.
    """

    _kind = "source"

    def __init__(self, spec: NodeSpec, env_vars: dict[str, Any] | None, control: RunControl) -> None:
        super().__init__(spec, env_vars, control)
        self._stopping = False
        self._producing: asyncio.Task[Any] | None = None

    def _request_stop(self) -> None:
        """Stop producing: cancel the coroutine if it runs, or keep it from starting."""
        self._stopping = True
        if self._producing is not None:
            self._producing.cancel()

    async def _body(self) -> None:
        if self._stopping:
            return
        self._producing = asyncio.current_task()
        port = self._output_port
        assert isinstance(port, SourcePort)
        try:
            # an 'item' style source takes only its args; the original style gets (processor, output_q)
            produced = self._coro(**self._spec.args) if self._spec.style == "item" else self._invoke(port)
            if inspect.isasyncgen(produced):
                async with contextlib.aclosing(produced) as agen:
                    async for item in agen:
                        await port.put(item)
            else:
                await produced
        except BaseException as exc:
            task = self._producing
            assert task is not None
            self._producing = None
            if isinstance(exc, asyncio.CancelledError) and self._stopping and not self._control.cancelled:
                task.uncancel()  # the stop we asked for: end normally, so the rest drains
                return
            failure = self._as_failure(exc, task)  # re-raises a cancellation that is the run's own
            failure.add_note(f"pipelines: source {self._name!r} failed after putting {self.items_out} items")
            self._control.fail(failure)
        else:
            self._producing = None


def _short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) > _ITEM_REPR_LIMIT:
        text = text[: _ITEM_REPR_LIMIT - 3] + "..."
    return text
