"""Ledger: where each item's path ended at one node, recorded in one place.

A node's counters live here, and every way an item can end at a node other than being handed
on (dropped, skipped, routed to the error node, failing the run, a tombstone passing through) is
one method, which counts it, sends the tombstone a join downstream waits for, and tells the
installed hooks. The counts keep the identity documented in pipelines.stats.

An item that fails under on_error 'fail' fails the run, unless an installed hook claims the failure
as the item's own outcome (the `claims` node method, pipelines.hooks): an Inbox does, so that a bad
request fails that request only. Then the item is counted failed and the run goes on.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import runtime
from .errors import PipelineError
from .failure import Failure
from .hooks import NO_HOOKS, Claims, NodeHooks, Positions, Settled, unfiltered
from .lineage import DROPPED
from .stats import LATENCY_BOUNDS, NodeStats
from .types import Envelope, Key

if TYPE_CHECKING:
    from .edges import Edge
    from .signals import Signals

__all__ = ["HookFailed", "Ledger", "as_failure", "guarded", "short_repr"]

logger = logging.getLogger(__name__)

_ITEM_REPR_LIMIT = 200


class Ledger:
    """The counters of one node and the outcomes of its items."""

    __slots__ = (
        "_claims",
        "_fail_run",
        "_forward",
        "_index",
        "_kind",
        "_name",
        "_on_error",
        "_positions",
        "_routes",
        "_settled",
        "_settled_plain",
        "_signals",
        "_tombstones",
        "blocked_seconds",
        "busy_seconds",
        "completed",
        "dropped",
        "failed",
        "hooks",
        "items_in",
        "items_out",
        "latency_counts",
        "retried",
        "skipped",
    )

    def __init__(
        self, name: str, index: int, kind: str, on_error: str, forward_drops: bool, signals: Signals, fail_run: Any
    ) -> None:
        self._name = name
        self._index = index
        self._kind = kind
        self._on_error = on_error
        self._forward = forward_drops
        self._signals = signals
        self._fail_run = fail_run
        self._tombstones = 0
        self._routes = 0
        self.hooks: NodeHooks = NO_HOOKS
        self._settled: Settled | None = None
        self._settled_plain: Settled | None = None
        self._positions: Positions | None = None
        self._claims: Claims | None = None
        self.items_in = 0
        self.items_out = 0
        self.completed = 0
        self.failed = 0
        self.retried = 0
        self.skipped = 0
        self.dropped = 0
        self.blocked_seconds = 0.0
        self.busy_seconds = 0.0
        self.latency_counts = [0] * (len(LATENCY_BOUNDS) + 1)

    def piece_done(self, seconds: float, handled: int, passed: int, not_done: int, counts_out: bool) -> None:
        """A worker spent `seconds` on a piece: `handled` items of it finished here, `not_done` of them
        gave no output (or failed); `passed` tombstones and items passed over were not items here.
        `counts_out`: the node's outputs are counted here (a generator counts its own)."""
        self.busy_seconds += seconds
        if handled > 0:
            self.latency_counts[bisect_left(LATENCY_BOUNDS, seconds / handled)] += handled
        if passed:
            self.items_in -= passed
        self.completed += handled - not_done
        if counts_out:
            self.items_out += handled - not_done

    def wire(self, fan: int, error_route: bool) -> None:
        """The node hands each output on as `fan` envelopes; `error_route`: it has an error node."""
        self._tombstones = fan if self._forward else 0
        self._routes = self._tombstones + 1 if error_route else self._tombstones

    def install(self, hooks: NodeHooks) -> None:
        self.hooks = hooks
        self._settled = hooks.settled
        self._claims = hooks.claims
        # A drop and a tombstone are on an item's usual path: a hook's positions are tested here, not by a call.
        if hooks.settled is not None:
            self._settled_plain, self._positions = unfiltered(hooks.settled)
        else:
            self._settled_plain, self._positions = None, None

    @property
    def in_flight(self) -> int:
        return self.items_in - self.completed - self.dropped - self.skipped - self.failed

    def snapshot(
        self, inputs: Sequence[Edge], elapsed: float, paused: bool, unstarted: int = 0, workers: int = 0, peak: int = 0
    ) -> NodeStats:
        """The node's stats now: its counters, its `inputs`' depth, `elapsed` seconds into the run.

        `unstarted` items were taken by a worker and not started: queued, not in flight (nor in);
        `workers` run now, at most `peak` at once; `paused`: the node itself is paused.
        """
        items_in = self.items_in - unstarted
        processed = items_in if inputs else self.items_out
        in_flight = self.in_flight - unstarted
        handled = items_in - in_flight
        if len(inputs) == 1:  # the common case, without a generator per figure
            edge = inputs[0]
            depth, bound, lost = edge.qsize(), edge.maxsize, edge.statistics().dropped
        else:
            depth = sum(edge.qsize() for edge in inputs)
            bound = sum(edge.maxsize for edge in inputs)
            lost = sum(edge.statistics().dropped for edge in inputs)
        return NodeStats(
            self._name,
            items_in,
            self.items_out,
            self.completed,
            self.failed,
            self.retried,
            self.skipped,
            self.dropped,
            in_flight,
            depth + unstarted,
            bound,
            self.blocked_seconds,
            processed / elapsed if elapsed > 0 else 0.0,
            self.busy_seconds / handled if handled > 0 else 0.0,
            workers,
            peak,
            unstarted,
            lost,
            paused,
            tuple(self.latency_counts),
        )

    # -- outcomes ---------------------------------------------------------------------------------

    def tombstone(self, key: Key, out: list[Envelope]) -> None:
        """A tombstone reached a node that is not a join: it passes through on its way to one."""
        if self._forward:
            out.append((key, DROPPED, self._index))
        settled = self._settled_plain
        if settled is not None and key and (self._positions is None or key[1] in self._positions):
            settled(key, "passed", None, self._tombstones)

    def drop(self, key: Key, out: list[Envelope]) -> None:
        """The item produced nothing (None returned, or its join group discarded)."""
        self.dropped += 1
        if self._forward:
            out.append((key, DROPPED, self._index))
        settled = self._settled_plain
        if settled is not None and key and (self._positions is None or key[1] in self._positions):
            settled(key, "dropped", None, self._tombstones)

    def fail(
        self, key: Key, arg: Any, exc: BaseException, task: runtime.Task[Any], out: list[Envelope], errors: list[Any]
    ) -> bool:
        """The item raised `exc` after its retries: apply on_error. False when the run must stop.

        Under on_error 'fail', a hook that claims the failure makes it the item's own outcome: it
        is counted failed, its tombstones go on, and the run goes on. Re-raises a cancellation
        that is the run's own.
        """
        failure = as_failure(exc, task, f"{self._kind} {self._name!r}")
        self._signals.emit("item_failed", node=self._name, item=arg, exception=failure)
        shown = short_repr(arg)
        settled = self._settled if key else None  # NO_KEY: an item no hook follows (a keyless run)
        on_error = self._on_error
        if on_error == "fail":
            self.failed += 1
            failure.add_note(f"pipelines: node {self._name!r} failed on item {shown}")
            if self._claims is not None and key:
                try:
                    claimed = self._claims(key, failure)
                except Exception as hook_error:  # a bug in the hook fails the run, as from any node method
                    self._fail_run(hook_error)
                    return False
                if claimed:
                    if self._forward:
                        out.append((key, DROPPED, self._index))
                    logger.info("node %r: item %s failed (%r); a hook answers for it", self._name, shown, failure)
                    if settled is not None:
                        settled(key, "failed", failure, self._tombstones)
                    return True
            if settled is not None:
                settled(key, "failed", failure, 0)
            self._fail_run(failure)
            return False
        if self._forward:
            out.append((key, DROPPED, self._index))
        if on_error == "skip":
            self.skipped += 1
            logger.warning("node %r: skipped item %s after %r", self._name, shown, failure)
            if settled is not None:
                settled(key, "skipped", failure, self._tombstones)
            return True
        self.failed += 1
        logger.info("node %r: item %s failed (%r); routed to %r", self._name, shown, failure, on_error)
        errors.append((key, Failure(self._name, arg, failure), self._index))
        if settled is not None:
            settled(key, "routed", failure, self._routes)
        return True


class HookFailed(BaseException):
    """A hook's node method raised while an item was being handled: the run fails with the hook's exception.

    A BaseException, so that neither the node's retries nor its on_error mistake it for the item's failure.
    """


def guarded(method: Callable[..., Any], fail_run: Callable[[BaseException], None]) -> Callable[..., Any]:
    """`method` (a hook's), failing the run if it raises where the item's own failures are caught."""

    def call(*args: Any) -> Any:
        try:
            return method(*args)
        except Exception as exc:
            fail_run(exc)
            raise HookFailed from exc

    return call


def as_failure(exc: BaseException, task: runtime.Task[Any], what: str) -> BaseException:
    """The exception an item failed with in `what` (``node 'x'``); re-raise a cancellation of the run's own,
    and a hook's failure (the run is failing with it)."""
    if isinstance(exc, Exception):
        return exc
    if isinstance(exc, HookFailed):
        raise exc
    if runtime.is_cancellation(exc):
        if task.cancelling() or not isinstance(exc, runtime.CancelledError):
            raise exc  # trio raises Cancelled only for a scope really cancelled
        # The coroutine raised CancelledError of its own (say, awaiting a future someone
        # cancelled): that is a failure of the item, not a cancellation of the run.
        failure = PipelineError(f"{what}: the coroutine raised CancelledError though the run was not cancelled")
    else:
        # SystemExit, KeyboardInterrupt or another BaseException from the node's own code: it
        # must not tear through the event loop; it fails the item like any error.
        failure = PipelineError(f"{what}: the coroutine raised {type(exc).__name__}({exc})")
    failure.__cause__ = exc
    return failure


def short_repr(value: Any) -> str:
    """repr(value), cut to a length that fits in a log line or an error message."""
    text = repr(value)
    if len(text) > _ITEM_REPR_LIMIT:
        text = text[: _ITEM_REPR_LIMIT - 3] + "..."
    return text
