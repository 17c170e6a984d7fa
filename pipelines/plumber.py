"""Plumber: builds one Processor per node, wires them with bounded channels, and runs them.

Lifecycle::

    Plumber(input_d, coro_map)     checks the graph (GraphError) and builds the processors
    create_pipeline()              starts one task per node on the running loop (original API)
    pause() / resume()             hold the sources at their next put, and let them go on
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

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any

import networkx as nx

from .channels import Channel
from .errors import PipelineCancelled, PipelineError, PipelineStateError
from .graph import DEFAULT_QUEUE_SIZE, GraphSpec, parse_graph
from .processor import InputProcessor, Processor
from .runtime import wait_through_cancel
from .signals import Signals
from .stats import NodeStats, RunResult
from .valve import Valve

if TYPE_CHECKING:
    from os import PathLike

    from .journal import Journal
    from .journal.engine import RunJournal

__all__ = ["Plumber"]

logger = logging.getLogger(__name__)


def _identity(value: Any) -> Any:
    return value


class Plumber:
    """Builds and runs the pipeline described by `input_d`.

    `coro_map` is applied to each node's ``'coro'`` value to get its coroutine function (identity
    when omitted). `env_vars` is shared by every processor as ``processor.env_vars``. `queue_size`
    is the bound of every edge whose node does not set ``'properties': {'queue_size': N}``.
    With `collect_outputs`, what each sink's coroutine returns (None excluded, every value an async
    generator sink yields) is kept, in order, in ``RunResult.outputs[sink]``.
    With `journal` (a path or a `pipelines.journal.Journal`), the run is durable: see
    pipelines.journal. The graph is checked here: a malformed one raises GraphError, and an unusable
    journal file JournalError, before anything runs.
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
    ) -> None:
        self._spec: GraphSpec = parse_graph(input_d, coro_map or _identity, queue_size=queue_size)
        self.env_vars = env_vars
        self._valve = Valve()
        self._processors: dict[str, Processor] = {}
        for name, spec in self._spec.nodes.items():
            cls = InputProcessor if spec.is_source else Processor
            self._processors[name] = cls(spec, env_vars, self)
            if collect_outputs and spec.is_sink and not spec.is_source:
                self._processors[name].collected = []
        self._wire()
        self._journal: RunJournal | None = None
        if journal is not None:
            from .journal.engine import open_run

            self._journal = open_run(journal, self._spec, self._processors)
        self._state = "built"
        self._run_called = False
        self._tasks: list[asyncio.Task[None]] = []
        self._pending = 0
        self._done: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self.signals = Signals()
        """Listeners for the lifecycle events of the run: see pipelines.signals."""

    def _wire(self) -> None:
        specs = self._spec.nodes
        # One channel per node with inputs, shared by its producers; a join of independent
        # sources (zip) gets one per input instead, so it can hold back the input that runs ahead.
        shared: dict[str, Channel] = {}
        per_input: dict[tuple[str, str], Channel] = {}
        for name, spec in specs.items():
            if spec.join_mode == "zip":
                for pred in spec.inputs:
                    per_input[pred, name] = self._edge(f"{name}<-{pred}", name, (pred,), spec.queue_size)
            elif not spec.is_source:
                shared[name] = self._edge(name, name, spec.inputs + spec.error_sources, spec.queue_size)

        def edge(pred: str, succ: str) -> Channel:
            return per_input.get((pred, succ)) or shared[succ]

        for name, processor in self._processors.items():
            spec = specs[name]
            ports = {specs[pred].index: position for position, pred in enumerate(spec.inputs)}
            if spec.join_mode == "zip":
                inputs = [per_input[pred, name] for pred in spec.inputs]
            else:
                inputs = [shared[name]] if name in shared else []
            processor._wire(
                inputs,
                [edge(name, succ) for succ in spec.successors],
                shared.get(spec.properties.on_error),
                ports,
            )

    def _edge(self, name: str, node: str, producers: tuple[str, ...], maxsize: int) -> Channel:
        """The input channel `name` of `node`, fed by `producers` (a subclass may carry it elsewhere)."""
        return Channel(name, maxsize, producers=len(producers))

    def _node_task(self, name: str, processor: Processor) -> Coroutine[Any, Any, None]:
        """What runs as node `name`'s task (a subclass may run some nodes elsewhere)."""
        return processor._run()

    # -- the original API ---------------------------------------------------------------------

    @property
    def nodes(self) -> list[Processor]:
        """The processors, in the order of ``input_d['nodes']``."""
        return list(self._processors.values())

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
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise PipelineStateError(
                "create_pipeline() needs a running event loop: call it from a coroutine, or use run()"
            ) from None
        if self._journal is not None:
            self._journal.start(loop, self)  # JournalError when the file cannot be written: nothing started
        self._done = loop.create_future()
        self._started_at = time.monotonic()
        self._state = "running"
        self.signals.emit("run_started")
        self._pending = len(self._processors)
        for name, processor in self._processors.items():
            task = loop.create_task(self._node_task(name, processor), name=f"pipelines:{name}")
            task.add_done_callback(self._task_done)
            self._tasks.append(task)
        logger.debug("started %d nodes", len(self._tasks))

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
        if self._state == "built":
            self.create_pipeline()
        done = self._done
        if done is None:
            raise PipelineStateError(f"this Plumber cannot run (state {self._state!r})")
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
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
        await asyncio.shield(self._done)
        return self._outcome()

    async def stop(self) -> None:
        """Stop the sources, then wait while everything in flight drains to the sinks.

        The source coroutines are cancelled where they are (an item not yet accepted by a
        successor is not sent). run() and join() then return a RunResult whose state is 'stopped'.
        """
        self.stop_nowait()
        await self._wait_finished()

    def stop_nowait(self) -> None:
        """Ask the sources to stop and return at once; `stop()` also waits for the drain."""
        if self._state == "built":
            raise PipelineStateError("stop() before the run started")
        if self._state != "running":
            return
        self._state = "stopping"
        logger.info("stopping the sources; draining items in flight")
        self.signals.emit("stop_requested")
        for processor in self._processors.values():
            if isinstance(processor, InputProcessor):
                processor._request_stop()

    def pause(self) -> None:
        """Hold every source at its next put; what is already in the graph goes on to the sinks.

        Nothing is lost: a held put sends its item after resume(). stop() and cancel() work while
        paused. Pausing a run that is paused or has ended does nothing.
        """
        if self._state == "built":
            raise PipelineStateError("pause() before the run started")
        if self._valve.closed or self._state not in ("running", "stopping"):
            return
        self._valve.close()
        logger.info("paused the sources")
        self.signals.emit("paused")

    def resume(self) -> None:
        """Let the sources go on after pause(); does nothing when the run is not paused."""
        if not self._valve.closed:
            return
        self._valve.open()
        logger.info("resumed the sources")
        self.signals.emit("resumed")

    @property
    def paused(self) -> bool:
        """True between pause() and resume()."""
        return self._valve.closed

    def cancel(self) -> None:
        """End the run now: every task is cancelled; teardown hooks still run."""
        if self._state in ("completed", "stopped", "failed", "cancelled"):
            return
        if self._tasks and all(task.done() for task in self._tasks):
            return  # everything has ended already; only the bookkeeping is still to run
        self._state = "cancelled"
        for task in self._tasks:
            task.cancel()

    async def _wait_finished(self) -> None:
        """Wait until every task has ended, even if the caller is cancelled meanwhile."""
        if self._done is not None:
            await wait_through_cancel(self._done, on_cancel=self.cancel)

    async def __aenter__(self) -> Plumber:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Cancel whatever still runs, and wait until it has ended."""
        if self._state in ("running", "stopping"):
            self.cancel()
        await self._wait_finished()

    # -- state and statistics -----------------------------------------------------------------

    @property
    def state(self) -> str:
        """'built', 'running', 'stopping', 'completed', 'stopped', 'failed' or 'cancelled'."""
        return self._state

    @property
    def graph(self) -> nx.DiGraph[str]:
        """The graph as networkx sees it: data edges have kind='data', error routes kind='error'."""
        return self._spec.digraph

    @property
    def journal(self) -> Journal | None:
        """The run's journal (what it resumed, its run id), or None."""
        return self._journal.journal if self._journal is not None else None

    @property
    def valve(self) -> Valve:
        """What holds the sources while the run is paused (used by the processors)."""
        return self._valve

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

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            if self._state in ("running", "stopping"):
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
            if self._journal is not None:
                self._journal.close(self._state, self._ended)  # the run ends once its journal is written
            else:
                self._ended(None)

    def _ended(self, journal_error: BaseException | None) -> None:
        if journal_error is not None and self._failure is None:
            self._failure = journal_error
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
        outputs = {name: list(p.collected) for name, p in self._processors.items() if p.collected is not None}
        return RunResult(
            state=self._state, elapsed=self._ended_at - self._started_at, stats=self.stats(), outputs=outputs
        )
