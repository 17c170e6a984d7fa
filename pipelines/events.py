"""Node events: custom events with parameters, sent to one node while the run goes on.

A node declares what it answers in its property ``events``, a dict of event names to async
handlers (functions, or names its coro_map resolves, as for setup and teardown)::

    async def set_threshold(processor, value):
        processor.env_vars["threshold"] = value

    {"coro": keep_above, "properties": {"events": {"threshold": set_threshold}}}

and `await plumber.send_event("node", "threshold", value=3)` calls
``await set_threshold(processor, value=3)`` between two items of that node: never while one of its
calls is in progress, whatever its number of workers. Events reach the node in the order they were
sent. An event waits until the calls in progress end; the calls that would start meanwhile wait
until the events waiting are handled (events go first, so a busy node cannot hold them back).
What the handler returns is what send_event returns; what it raises, send_event raises (the run
goes on). Either way the ``node_event`` signal tells the listeners (pipelines.signals).
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import runtime
from .errors import PipelineStateError

if TYPE_CHECKING:
    from .driver import Processor

__all__ = ["NodeEvents"]


class NodeEvents:
    """The events of one node: who is waiting to be handled, and the node's calls in progress."""

    __slots__ = ("_calls", "_calls_wait", "_handlers", "_handling", "_node", "_state", "_turns")

    def __init__(self, node: Processor, handlers: Mapping[str, Callable[..., Any]]) -> None:
        self._node = node
        self._handlers = dict(handlers)
        self._calls = 0
        """The node's calls in progress."""
        self._turns: deque[runtime.Future[None]] = deque()
        """The events waiting to be handled, in the order they were sent; the first is next."""
        self._handling = False
        self._calls_wait: runtime.Future[None] | None = None
        """What the calls that would start while events wait are waiting on."""
        self._state = "waiting"
        """'waiting' for the node's setup, 'open' while it takes items, 'ended' once its work is done."""

    def start(self) -> None:
        """The node is set up: the events sent so far may be handled (by the driver)."""
        self._state = "open"
        self._next()

    def end(self) -> None:
        """The node's work is done (its teardown comes next): events waiting are refused (by the driver)."""
        self._state = "ended"
        for turn in self._turns:
            if not turn.done():
                turn.set_exception(self._ended())
        self._turns.clear()

    def _ended(self) -> PipelineStateError:
        return PipelineStateError(f"node {self._node.name!r} has ended: it handles no more events")

    @property
    def names(self) -> tuple[str, ...]:
        """The events the node answers, in the order it declares them."""
        return tuple(self._handlers)

    def guard(self, call: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """`call` (the node's invoke), counted as in progress, and waiting while events wait."""

        async def guarded(arg: Any) -> Any:
            while self._turns or self._handling:
                if self._calls_wait is None:
                    self._calls_wait = runtime.new_future()
                await runtime.shield(self._calls_wait)
            self._calls += 1
            try:
                return await call(arg)
            finally:
                self._calls -= 1
                if not self._calls:
                    self._next()

        return guarded

    def handler(self, event: str) -> Callable[..., Any]:
        """The handler of `event`; LookupError naming the node's events when it has none such."""
        found = self._handlers.get(event)
        if found is None:
            known = ", ".join(map(repr, self._handlers)) or "none"
            raise LookupError(f"node {self._node.name!r} has no event {event!r} (its events: {known})")
        return found

    def check(self, event: str, params: Mapping[str, Any]) -> Callable[..., Any]:
        """The handler of `event`, once it is known to take `params`: LookupError for an unknown
        event, TypeError naming the handler's parameters when it cannot take these."""
        handler = self.handler(event)
        try:
            signature = inspect.signature(handler)
        except (TypeError, ValueError):  # no signature to tell: the call will
            return handler
        try:
            signature.bind(self._node, **params)
        except TypeError as exc:
            raise TypeError(
                f"event {event!r} of node {self._node.name!r} cannot take parameters {dict(params)!r}: {exc} "
                f"(its handler is {getattr(handler, '__qualname__', handler)}{signature})"
            ) from None
        return handler

    async def send(self, event: str, params: Mapping[str, Any]) -> Any:
        """Handle `event` with `params` once no call of the node is in progress; return what the
        handler returns (or raise what it raises)."""
        handler = self.check(event, params)
        if self._state == "ended":
            raise self._ended()
        turn: runtime.Future[None] = runtime.new_future()
        self._turns.append(turn)
        self._next()
        try:
            await turn
        except BaseException:
            if turn in self._turns:
                self._turns.remove(turn)  # cancelled while waiting: the event is not handled
                self._next()
            raise
        self._handling = True
        self._turns.popleft()
        error: BaseException | None = None
        try:
            return await handler(self._node, **params)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._handling = False
            self._next()
            self._node.signals.emit(
                "node_event",
                node=self._node.name,
                name=event,
                params=dict(params),
                exception=error if isinstance(error, Exception) else None,
            )

    def _next(self) -> None:
        """Give the turn to the first event waiting if no call is in progress; else, when no event
        waits, let the calls waiting on events go on."""
        if self._handling or self._state != "open":
            return
        if self._turns:
            first = self._turns[0]
            if not self._calls and not first.done():
                first.set_result(None)
        elif self._calls_wait is not None:
            self._calls_wait.set_result(None)
            self._calls_wait = None
