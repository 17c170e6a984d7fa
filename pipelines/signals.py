"""Signals: listeners for the lifecycle events of a run.

    plumber.signals.connect("item_failed", lambda event: print(event.node, event.exception))

Events: ``run_started``, ``run_ended`` (with `state`), ``node_started``, ``node_ended``,
``item_retried`` (with `item`, `exception` and the `attempt` that failed), ``item_failed`` (an item
that still failed after its retries, whatever its node's on_error then does, with `item` and
`exception`), ``stop_requested``, ``paused`` and ``resumed`` (the whole run's sources, or with
`node`, that node alone), ``source_stopped`` (with `node`: one source asked to end its stream) and
``node_event`` (a custom event a node handled, pipelines.events: with `node`, the event's `name`,
its `params`, and the `exception` its handler raised, if any). A listener is a plain function
called at once with a `Signal`; an exception it raises is logged on the `pipelines` logger and
never reaches the run or the other listeners. To do async work, start a task from the listener.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .types import RunState

__all__ = ["EVENTS", "Signal", "Signals"]

logger = logging.getLogger(__name__)

EVENTS = (
    "run_started",
    "run_ended",
    "node_started",
    "node_ended",
    "item_retried",
    "item_failed",
    "stop_requested",
    "paused",
    "resumed",
    "source_stopped",
    "node_event",
)

Listener = Callable[["Signal"], object]


@dataclass(frozen=True, slots=True)
class Signal:
    """One event: its name and what it is about (None where it does not apply)."""

    event: str
    node: str | None = None
    item: Any = None
    exception: BaseException | None = None
    attempt: int | None = None
    state: RunState | None = None
    name: str | None = None
    """The name of a custom event (``node_event``)."""
    params: dict[str, Any] | None = None
    """The parameters of a custom event (``node_event``)."""


class Signals:
    """The listeners of one plumber, by event."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def connect(self, event: str, listener: Listener) -> Listener:
        """Call `listener(signal)` on each `event`; returns the listener, so it works as a decorator."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r} (events: {', '.join(EVENTS)})")
        if inspect.iscoroutinefunction(listener) or not callable(listener):
            raise TypeError(f"a listener is a plain function called at once; got {listener!r} (start a task from it)")
        self._listeners.setdefault(event, []).append(listener)
        return listener

    def disconnect(self, event: str, listener: Listener) -> None:
        """Stop calling `listener` on `event`; a listener that was not connected is ignored."""
        listeners = self._listeners.get(event, [])
        if listener in listeners:
            listeners.remove(listener)

    def emit(self, event: str, **details: Any) -> None:
        """Call the listeners of `event` in the order they connected; log and swallow their errors."""
        listeners = self._listeners.get(event)
        if not listeners:
            return
        signal = Signal(event, **details)
        for listener in list(listeners):
            try:
                listener(signal)
            except Exception:
                logger.exception("listener %r of %r raised; the run goes on", listener, event)
