"""Steering a run while it goes: pause and resume it or one node, stop it (its sources) or one
source, cancel it, send a node a custom event. These are the Plumber's methods (`Plumber` inherits
them); each may be called from the run's loop at any time, and says so when the run's state makes
it meaningless.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import runtime
from .errors import PipelineStateError
from .sources import InputProcessor
from .types import ENDED_STATES, LIVE_STATES

if TYPE_CHECKING:
    from .driver import Processor
    from .events import NodeEvents
    from .signals import Signals
    from .types import RunState
    from .valve import Valve

__all__ = ["Steering"]

logger = logging.getLogger("pipelines.plumber")  # the Plumber's messages, under its logger


class Steering:
    """The Plumber's stop, cancel, pause, resume, stop_source and send_event (pipelines.plumber)."""

    _processors: dict[str, Processor]
    _state: RunState
    _valve: Valve
    signals: Signals
    _tasks: list[runtime.Task[None]]

    if TYPE_CHECKING:

        async def _wait_finished(self) -> None: ...

    async def stop(self) -> None:
        """Stop the sources, then wait while everything in flight drains to the sinks.

        The source coroutines are cancelled where they are (an item not yet accepted by a
        successor is not sent, nor one a source still gives after the stop). run() and join() then
        return a RunResult whose state is 'stopped'.
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
        for name, processor in self._processors.items():
            if processor.valve.shut:  # a paused node would hold the drain forever
                processor.valve.open()
                self.signals.emit("resumed", node=name)
            if isinstance(processor, InputProcessor):
                processor.stop()

    def cancel(self) -> None:
        """End the run now: every task is cancelled; teardown hooks still run."""
        if self._state in ENDED_STATES:
            return
        if self._tasks and all(task.done() for task in self._tasks):
            return  # everything has ended already; only the bookkeeping is still to run
        self._state = "cancelled"
        for task in self._tasks:
            task.cancel()

    def pause(self, node: str | None = None) -> None:
        """Hold every source at its next put; what is already in the graph goes on to the sinks.

        Nothing is lost: a held put sends its item after resume(). stop() and cancel() work while
        paused. Pausing a run that is paused or has ended does nothing.

        With `node`, hold that node alone, from its next read of its input (a worker already
        waiting on an empty input takes the batch that comes first): its input fills up to its
        bound, then its producers wait; the rest of the graph keeps flowing. A paused source holds
        at its next put. A node may be paused before the run starts. LookupError for an unknown node.
        """
        if node is not None:
            processor = self._node(node)
            if processor.valve.shut or self._state in ENDED_STATES:
                return
            processor.valve.close()
            logger.info("paused node %r", node)
            self.signals.emit("paused", node=node)
            return
        if self._state == "built":
            raise PipelineStateError("pause() before the run started")
        if self._valve.closed or self._state not in LIVE_STATES:
            return
        self._valve.close()
        logger.info("paused the sources")
        self.signals.emit("paused")

    def resume(self, node: str | None = None) -> None:
        """Let the sources go on after pause(); does nothing when the run is not paused.

        With `node`, let that node go on after pause(node) (whatever the run's own pause does).
        """
        if node is not None:
            processor = self._node(node)
            if not processor.valve.shut:
                return
            processor.valve.open()
            logger.info("resumed node %r", node)
            self.signals.emit("resumed", node=node)
            return
        if not self._valve.closed:
            return
        self._valve.open()
        logger.info("resumed the sources")
        self.signals.emit("resumed")

    @property
    def paused(self) -> bool:
        """True between pause() and resume() (of the whole run; see `paused_nodes` for single nodes)."""
        return self._valve.closed

    @property
    def paused_nodes(self) -> tuple[str, ...]:
        """The nodes paused one by one (`pause(node)`), in the order of ``input_d['nodes']``."""
        return tuple(name for name, processor in self._processors.items() if processor.valve.shut)

    def stop_source(self, node: str) -> None:
        """End the stream of source `node` now, as stop() does for every source; the rest goes on.

        Its coroutine is cancelled where it is (an item not yet accepted is not sent); its
        successors get end-of-stream once its items have drained, and the run ends as it would
        have had the source returned (state 'completed' when nothing else happens). Only a source
        can be stopped: for any other node, ValueError (pause it, or stop the run). Stopping a
        source that has ended does nothing.
        """
        processor = self._node(node)
        if not isinstance(processor, InputProcessor):
            raise ValueError(
                f"node {node!r} is not a source: only a source can be stopped (its stream ends); "
                f"hold it with pause({node!r}), or stop the whole run with stop()"
            )
        if self._state == "built":
            raise PipelineStateError("stop_source() before the run started")
        if self._state not in LIVE_STATES or processor.stopped:
            return
        logger.info("stopping source %r", node)
        self.signals.emit("source_stopped", node=node)
        processor.valve.open()  # a source held at a put ends there, rather than wait for resume
        processor.stop()

    async def send_event(self, node: str, event: str, /, **params: Any) -> Any:
        """Have node `node` handle the custom `event` with `params`, between two of its items.

        Waits until the handler it declares (property 'events', pipelines.events) has run and
        returns what it returns, or raises what it raises; the run goes on either way. Events
        reach a node in the order they are sent, never while one of its calls is in progress.
        LookupError for an unknown node or event, TypeError for parameters its handler cannot take,
        PipelineStateError when the run or the node has ended, or the run has not started.
        """
        events = self.check_event(node, event, **params)
        return await events.send(event, params)

    def check_event(self, node: str, event: str, /, **params: Any) -> NodeEvents:
        """Raise what send_event() would refuse before it waits (see there); the node's events if none."""
        processor = self._node(node)
        events = processor.events
        if events is None:
            raise LookupError(
                f"node {node!r} has no event {event!r} (its events: none; declare them in its property 'events')"
            )
        events.check(event, params)
        if self._state == "built":
            raise PipelineStateError("send_event() before the run started")
        if self._state in ENDED_STATES:
            raise PipelineStateError(f"send_event() after the run ended (state {self._state!r})")
        return events

    def _node(self, name: str) -> Processor:
        """The processor of node `name`; LookupError naming the nodes when there is none such."""
        processor = self._processors.get(name) if isinstance(name, str) else None
        if processor is None:
            raise LookupError(f"unknown node {name!r} (nodes: {', '.join(self._processors)})")
        return processor
