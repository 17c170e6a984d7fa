"""Plumber: builds one Processor per node, wires them with bounded edges, and runs them.

Lifecycle::

    Plumber(input_d, coro_map)     checks the graph (GraphError) and builds the processors
    create_pipeline()              starts one task per node on the running loop (original API)
    pause() / resume()             hold the sources at their next put, and let them go on
    pause(node) / resume(node)     hold one node (it takes no more items), and let it go on
    stop_source(node)              one source ends its stream; the rest of the run goes on
    await send_event(node, e, **p) a custom event for one node, handled between its items
    await join()                   waits for the end; returns a RunResult or raises
    await run()                    create_pipeline() if needed, then join()
    await stop()                   sources stop, everything in flight drains, run() returns
    cancel()                       everything ends now; run() raises PipelineCancelled

A run ends when every node has finished: each source returned (or was stopped), end-of-stream
reached every node, and each node's in-flight work is done. An exception in a node whose
on_error is 'fail' (the default) cancels every task and is raised by run() and join() with its
own type and a note naming the node and the item.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import networkx as nx

from . import runtime
from .driver import Processor
from .errors import PipelineCancelled, PipelineError, PipelineStateError
from .fusion import Chain, segments
from .graph import DEFAULT_QUEUE_SIZE, GraphSpec, parse_graph
from .hooks import NO_HOOKS, bind_node_hooks, needs_all_keys, run_methods
from .lineage import needs_keys
from .lossy import DroppingEdge, settle_drops
from .pool import Watch
from .runtime import wait_through_cancel
from .signals import Signals
from .sources import InputProcessor
from .stats import NodeStats, RunResult
from .steering import Steering
from .transport import MemoryTransport, Transport
from .types import LIVE_STATES, RunState
from .valve import Valve
from .wiring import refuse_outside_items, wire

if TYPE_CHECKING:
    from os import PathLike

    from .journal import Journal

__all__ = ["Plumber", "wire"]  # wire: pipelines.wiring, kept importable from here

logger = logging.getLogger(__name__)


def _identity(value: Any) -> Any:
    return value


class Plumber(Steering):
    """Builds and runs the pipeline described by `input_d`.

    `coro_map` is applied to each node's ``'coro'`` value to get its coroutine function (identity
    when omitted). `env_vars` is shared by every processor as ``processor.env_vars``. `queue_size`
    is the bound of every edge whose node does not set ``'properties': {'queue_size': N}``.
    With `collect_outputs`, what each sink's coroutine returns (None excluded, every value an async
    generator sink yields) is kept, in order, in ``RunResult.outputs[sink]``.
    `hooks` hear what happens to items and to the run (pipelines.hooks); `transport` makes the
    edges and runs the nodes (pipelines.transport; in memory by default).
    With `journal` (a path or a `pipelines.journal.Journal`), the run is durable: see
    pipelines.journal; it is installed as a hook. With `fuse`, each linear run of plain nodes is
    handled in one task, without concurrency between them (pipelines.fusion). The graph is checked here: a malformed one
    raises GraphError, and an unusable journal file JournalError, before anything runs.
    """

    def __init__(
        self,
        input_d: dict[str, Any],
        coro_map: Callable[[Any], Any] | None = None,
        env_vars: dict[str, Any] | None = None,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        collect_outputs: bool = False,
        journal: Journal | str | PathLike[str] | None = None,
        hooks: Iterable[object] = (),
        transport: Transport | None = None,
        fuse: bool = False,
    ) -> None:
        self._spec: GraphSpec = parse_graph(input_d, coro_map or _identity, queue_size=queue_size)
        self.env_vars = env_vars
        self._valve = Valve()
        self._watch = Watch()
        self._transport: Transport = transport if transport is not None else MemoryTransport()
        self._hooks: list[object] = list(hooks)
        self.signals = Signals()
        """Listeners for the lifecycle events of the run: see pipelines.signals."""
        self._processors: dict[str, Processor] = {}
        for name, spec in self._spec.nodes.items():
            cls = InputProcessor if spec.is_source else Processor
            self._processors[name] = cls(spec, env_vars, self)
            if collect_outputs and spec.is_sink and not spec.is_source:
                self._processors[name].collected = []
        wire(self._spec, self._processors, self._transport)
        self._lossy: dict[str, tuple[DroppingEdge, ...]] = {
            name: cast("tuple[DroppingEdge, ...]", processor.inputs)
            for name, processor in self._processors.items()
            if processor.spec.properties.input != "block"
        }
        self._collect_outputs = collect_outputs
        self._fuse = fuse
        self._fused: tuple[tuple[str, ...], ...] = ()
        refuse_outside_items(self._spec, self._processors)
        self._journal: Journal | None = None
        if journal is not None:
            from .journal.engine import open_run  # the core needs the journal only when given one

            run_journal = open_run(journal, self._spec)
            self._journal = run_journal.journal
            self._hooks.append(run_journal)
            for processor in self._processors.values():
                processor.refuse_input(
                    "a run with a journal records every item from its sources, and could not replay one "
                    "from outside after a crash"
                )
        self._state: RunState = "built"
        self._run_called = False
        self._tasks: list[runtime.Task[None]] = []
        self._pending = 0
        self._done: runtime.Future[None] | None = None
        self._failure: BaseException | None = None
        self._started_at: float | None = None
        self._ended_at: float | None = None

    # -- the original API ---------------------------------------------------------------------

    @property
    def nodes(self) -> list[Processor]:
        """The processors, in the order of ``input_d['nodes']``."""
        return list(self._processors.values())

    @property
    def liason_graph(self) -> dict[str, tuple[list[str], list[str]]]:
        """The wiring: for each node, in the order of ``input_d['nodes']``, the names of its input
        edges and of the edges it puts into (its successors' inputs).

        The original library kept a matrix of its queues here; an edge's name is its node's name,
        or ``'{node}<-{producer}'`` for each input of a join of independent sources.
        """
        return {
            name: ([edge.name for edge in p.inputs], [edge.name for edge in p.outputs])
            for name, p in self._processors.items()
        }

    def create_pipeline(self) -> None:
        """Start every node as a task on the running loop and return at once.

        Call it once; `await join()` then waits for the end of the run.
        """
        if self._state != "built":
            raise PipelineStateError(
                f"this Plumber was already started (state {self._state!r}); a Plumber runs once, "
                "build a new one to run the graph again"
            )
        try:
            done = runtime.new_future()
        except RuntimeError:
            raise PipelineStateError(
                "create_pipeline() needs a running event loop: call it from a coroutine, or use run()"
            ) from None
        if not runtime.hosted():
            runtime.require_asyncio(
                "create_pipeline() (it starts the nodes as tasks with no owner)", "use `await plumber.run()`"
            )
        for started in run_methods(self._hooks, "run_started"):
            started(self)  # the journal raises JournalError when its file cannot be written: nothing started
        if self._hooks:  # else every node keeps the hooks it was built with: none
            for processor in self._processors.values():
                processor.install(bind_node_hooks(processor, self._hooks))
        if self.keys_needed is None:
            heard = any(processor.ledger.hooks is not NO_HOOKS for processor in self._processors.values())
            for processor in self._processors.values():
                processor.go_keyless(followed=heard)  # the hooks follow some items
            if self._fuse and not heard:
                self._fused = tuple(segments(self._spec))
                for first, *rest in self._fused:
                    self._processors[first].fuse(Chain([self._processors[name] for name in rest]))
        for name, edges in self._lossy.items():
            settle_drops(self._processors[name], edges)
        self._done = done
        self._started_at = time.monotonic()
        self._state = "running"
        self.signals.emit("run_started")
        self._pending = len(self._processors)
        node_task = self._transport.node_task
        for name, processor in self._processors.items():
            task = runtime.spawn(node_task(processor), name=f"pipelines:{name}")
            task.add_done_callback(self._task_done)
            self._tasks.append(task)
        logger.debug("started %d nodes", len(self._tasks))

    @property
    def fused(self) -> tuple[tuple[str, ...], ...]:
        """The segments fused once the run started (pipelines.fusion), each its nodes in order; ()
        without `fuse`, when the items carry their keys (`keys_needed` says why), or hooks follow some."""
        return self._fused

    def add_hook(self, hook: object) -> None:
        """Install `hook` (see pipelines.hooks) before the run starts."""
        if self._state != "built":
            raise PipelineStateError(f"add_hook() after the run started (state {self._state!r})")
        self._hooks.append(hook)

    @property
    def keys_needed(self) -> str | None:
        """Why the run's items carry their lineage keys; None when they need not, and travel without
        them (faster: no key is made or taken apart at any node).

        Keys are needed by a hook (but one that follows only some items: pipelines.keyless), by a
        transport other than the in-memory one, and by some shapes of graph (pipelines.lineage.needs_keys)."""
        if keyed := [type(hook).__name__ for hook in self._hooks if needs_all_keys(hook)]:
            return f"hooks are installed ({', '.join(keyed)})"
        if type(self._transport) is not MemoryTransport:
            return f"the transport is a {type(self._transport).__name__}"
        return needs_keys(self._spec)

    @property
    def hooks(self) -> tuple[object, ...]:
        """The hooks installed, in the order they hear events."""
        return tuple(self._hooks)

    # -- running and waiting ------------------------------------------------------------------

    async def run(self) -> RunResult:
        """Run the graph to its end and return the RunResult.

        Starts the nodes unless create_pipeline() already did. Raises the exception of a node
        that failed (same type, with a note naming node and item), PipelineCancelled after
        cancel(), and PipelineStateError when called a second time. If the task awaiting run()
        is cancelled, the run is cancelled too, and run() returns only after every task of the
        run has finished.
        """
        if self._run_called:
            raise PipelineStateError("run() was already called on this Plumber; a Plumber runs once")
        self._run_called = True
        async with runtime.hosting():  # under trio, the nursery that owns the run's tasks
            if self._state == "built":
                self.create_pipeline()
            done = self._done
            if done is None:
                raise PipelineStateError(f"this Plumber cannot run (state {self._state!r})")
            try:
                await runtime.shield(done)
            except BaseException as exc:
                if not runtime.is_cancellation(exc):
                    raise
                self.cancel()
                await self._wait_finished()
                raise
        return self._outcome()

    async def join(self) -> RunResult:
        """Wait until the run started by create_pipeline() ends; return or raise as run() does.

        Cancelling the task that awaits join() stops waiting but leaves the run going.
        """
        if self._done is None:
            raise PipelineStateError("join() before the run started: call create_pipeline() or run() first")
        await runtime.shield(self._done)
        return self._outcome()

    async def _wait_finished(self) -> None:
        """Wait until every task has ended, even if the caller is cancelled meanwhile."""
        if self._done is not None:
            await wait_through_cancel(self._done, on_cancel=self.cancel)

    async def aclose(self) -> None:
        """Cancel whatever still runs, and wait until every task of the run has ended."""
        if self._state in LIVE_STATES:
            self.cancel()
        await self._wait_finished()

    async def __aenter__(self) -> Plumber:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Cancel whatever still runs, and wait until it has ended (`aclose()`)."""
        await self.aclose()

    # -- state and statistics -----------------------------------------------------------------

    @property
    def state(self) -> RunState:
        """'built', 'running', 'stopping', 'completed', 'stopped', 'failed' or 'cancelled'."""
        return self._state

    @property
    def failure(self) -> BaseException | None:
        """The exception the run failed with (what run() and join() raise), or None."""
        return self._failure

    @property
    def graph(self) -> nx.DiGraph[str]:
        """The graph as networkx sees it: data edges have kind='data', error routes kind='error'."""
        return self._spec.digraph

    @property
    def journal(self) -> Journal | None:
        """The run's journal (what it resumed, its run id), or None."""
        return self._journal

    @property
    def spec(self) -> GraphSpec:
        """The checked graph: one NodeSpec per node, and the networkx graph."""
        return self._spec

    def processor(self, name: str) -> Processor:
        """The processor of node `name` (KeyError when there is none)."""
        return self._processors[name]

    @property
    def valve(self) -> Valve:
        """What holds the sources while the run is paused (used by the processors)."""
        return self._valve

    @property
    def watch(self) -> Watch:
        """Looks at the nodes that have not been seen to suspend, now and then (used by the processors)."""
        return self._watch

    @property
    def started_at(self) -> float | None:
        return self._started_at

    @property
    def ended_at(self) -> float | None:
        return self._ended_at

    @property
    def cancelled(self) -> bool:
        return self._state == "cancelled"

    def stats(self) -> dict[str, NodeStats]:
        """Each node's counters now, by node name, in the order of ``input_d['nodes']``."""
        return {name: processor.stats() for name, processor in self._processors.items()}

    # -- internals ----------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """Fail the run with `exc` (called by a processor): cancel every task; join() raises it."""
        if self._failure is None and self._state != "cancelled":
            self._failure = exc
            self._state = "failed"
            logger.error("run failed: %r%s", exc, "".join(f"; {note}" for note in getattr(exc, "__notes__", ())))
        for task in self._tasks:
            task.cancel()

    def _task_done(self, task: runtime.Task[None]) -> None:
        if task.cancelled():
            if self._state in LIVE_STATES:
                # Nobody in the run cancelled it: someone outside did, and its node's work is lost.
                self.fail(PipelineError(f"task {task.get_name()!r} was cancelled from outside the run"))
        else:
            exc = task.exception()
            if exc is not None:
                exc.add_note(f"pipelines: task {task.get_name()!r} ended with this exception")
                self.fail(exc)
        self._pending -= 1
        if self._pending == 0:
            self._ended_at = time.monotonic()
            if self._state == "running":
                self._state = "completed"
            elif self._state == "stopping":
                self._state = "stopped"
            waits: list[Awaitable[None]] = []
            error: BaseException | None = None
            for ended in run_methods(self._hooks, "run_ended"):
                try:
                    wait = ended(self, self._state)
                except Exception as exc:
                    error = error or exc
                else:
                    if wait is not None:
                        waits.append(wait)
            if waits:  # the run ends once its hooks are done with it (the journal's last writes)
                runtime.spawn(self._end_after(waits, error), name="pipelines:run_ended")
            else:
                self._ended(error)

    async def _end_after(self, waits: list[Awaitable[None]], error: BaseException | None) -> None:
        for wait in waits:
            try:
                await wait
            except Exception as exc:
                error = error or exc
        self._ended(error)

    def _ended(self, hook_error: BaseException | None) -> None:
        if hook_error is not None and self._failure is None:
            self._failure = hook_error
            self._state = "failed"
        assert self._done is not None
        self._done.set_result(None)
        self.signals.emit("run_ended", state=self._state)
        logger.debug("run ended: %s", self._state)

    def _outcome(self) -> RunResult:
        if self._failure is not None:
            raise self._failure
        if self._state == "cancelled":
            lost = sum(s.in_flight + s.queue_depth for s in self.stats().values())
            raise PipelineCancelled(f"the run was cancelled with {lost} items queued or in flight")
        assert self._started_at is not None
        assert self._ended_at is not None
        outputs = {}
        if self._collect_outputs:
            outputs = {name: list(p.collected) for name, p in self._processors.items() if p.collected is not None}
        return RunResult(
            state=self._state, elapsed=self._ended_at - self._started_at, stats=self.stats(), outputs=outputs
        )
