"""Keyless: the steps of a keyless run's items that the worker loop does not write out, and the
items such a run follows.

A keyless run (pipelines.lineage.needs_keys) has neither keys nor tombstones: each envelope is the
value itself, and a node that drops an item or fails on it has nothing to send on for it. A node
that returns its output has its keyless steps written out in the worker loop (pipelines.worker); a
sink has `Keyless.sink_items`.

Followed items. A hook that hears only the items at some positions, and says it needs no other key
(Tracing: pipelines.hooks, ``needs_all_keys``), does not make every item carry its lineage key. The
run is keyless but for the items at the positions its sources' hooks hear: those travel as
pipelines.lineage.Keyed envelopes, ``(key, value, producer)``, from the source to the sinks, and
every node method hears them as in a keyed run. Every other item travels as its bare value and
costs the run what it costs with no hook.

A node tells a followed item apart with one type test, and only in a piece its input edge says may
hold one: each edge counts the followed items put into it that no consumer has met yet
(`MemoryEdge.keyed`), its producers adding before they put (`count_followed`), its consumers
subtracting each they meet. A piece taken while the count is 0 goes through the keyless steps, with
no test per item; one taken while it is not goes through `Keyless.items`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import runtime
from .calls import PASSED_OVER
from .edges import MemoryEdge
from .lineage import NO_KEY, Keyed
from .types import Key

if TYPE_CHECKING:
    from .driver import Processor
    from .ordering import Turn
    from .pool import Member
    from .worker import Step

__all__ = ["Keyless", "count_followed"]

OnValue = Callable[[Key, Any], None]


def count_followed(edges: list[Any], count: int) -> None:
    """`count` followed items are about to be put into each of `edges`: each counts them first."""
    for edge in edges:
        if isinstance(edge, MemoryEdge):  # a keyless run's edges are
            edge.keyed += count


class Keyless:
    """One worker's steps for the items of a keyless run: a sink's (`sink_items`), and a piece that
    may hold followed items (`items`, when `waiting`)."""

    __slots__ = (
        "_bare",
        "_call",
        "_edges",
        "_errors",
        "_finished",
        "_index",
        "_input",
        "_ledger",
        "_on_result",
        "_out",
        "_sent",
        "_step",
        "keep",
    )

    def __init__(
        self,
        node: Processor,
        member: Member,
        call: Callable[[Any], Awaitable[Any]],
        step: Step | None,
        on_result: OnValue | None,
        finished: list[Key] | None,
    ) -> None:
        self._call = call
        self._step = step
        """A sink's step when its hooks admit each item (pipelines.worker): taken by followed items only."""
        self._on_result = on_result
        """What a sink does with a followed item's value: keep it and tell the hooks (pipelines.worker)."""
        self._finished = finished
        self._out, self._errors = member.out, member.errors
        self._ledger = node.ledger
        self._bare = node.spec.bare
        self._index = node.spec.index
        self._edges: list[Any] = node.handoff.edges if node.outputs else []
        self._sent = node.ledger.hooks.sent
        first = node.inputs[0] if node.inputs else None
        self._input = first if node.followed and isinstance(first, MemoryEdge) else None
        collected = node.collected if not node.outputs else None
        keep = collected.append if collected is not None else None
        self.keep: OnValue | None = None
        if keep is not None:
            self.keep = lambda key, value: None if value is None else keep(value)
        """A sink's step for a value no hook hears of: keep it, if the sink's values are kept."""

    def sibling(self, member: Member, finished: list[Key] | None) -> Keyless:
        """The same steps for another worker of the node (its own outputs and finished keys)."""
        twin = Keyless.__new__(Keyless)
        for name in Keyless.__slots__:
            setattr(twin, name, getattr(self, name))
        twin._out, twin._errors, twin._finished = member.out, member.errors, finished
        return twin

    @property
    def waiting(self) -> bool:
        """Whether the node's input may hold a followed item now: its next piece goes through `items`."""
        return self._input is not None and self._input.keyed > 0

    async def sink_items(self, rest: Iterator[Any], turn: Turn | None) -> tuple[int, int] | None:
        """A sink's piece: call, keep the result if the sink's results are kept. (0, items that gave
        no output), or None when an item's failure ends the run."""
        ledger, call, bare, keep = self._ledger, self._call, self._bare, self.keep
        out, errors = self._out, self._errors
        not_done = 0
        for value in rest:
            arg = value if bare else (value,)
            try:
                result = await call(arg)
            except BaseException as exc:
                not_done += 1
                if not ledger.fail(NO_KEY, arg, exc, runtime.current_task(), out, errors):
                    return None
                continue
            if keep is not None:
                keep(NO_KEY, result)
        return 0, not_done

    async def items(self, rest: Iterator[Any], turn: Turn | None) -> tuple[int, int] | None:
        """A piece that may hold followed items: each with its key (`_follow`), the others as the
        keyless steps handle them. (passed over, gave no output), or None when an item's failure
        ends the run."""
        keyed_in = self._input
        assert keyed_in is not None
        ledger, call, bare, keep = self._ledger, self._call, self._bare, self.keep
        out, errors = self._out, self._errors
        is_sink = not self._edges
        append = out.append
        passed = not_done = 0
        for value in rest:
            if type(value) is Keyed:
                keyed_in.keyed -= 1
                counts = await self._follow(value, turn)
                if counts is None:
                    return None
                passed += counts[0]
                not_done += counts[1]
                continue
            arg = value if bare else (value,)
            try:
                result = await call(arg)
            except BaseException as exc:
                not_done += 1
                if not ledger.fail(NO_KEY, arg, exc, runtime.current_task(), out, errors):
                    return None
                continue
            if is_sink:
                if keep is not None:
                    keep(NO_KEY, result)
            elif result is None:
                not_done += 1
                ledger.drop(NO_KEY, out)
            else:
                append(result)
        return passed, not_done

    async def _follow(self, envelope: Keyed, turn: Turn | None) -> tuple[int, int] | None:
        """One followed item, as a keyed run handles it: an output goes on as a Keyed, counted in each
        successor's edge and told to the `sent` hooks before it joins the outputs (which another
        worker may hand on as soon as this one waits: pipelines.pool); a sink tells its result hooks
        and notes the key finished."""
        ledger, out, errors = self._ledger, self._out, self._errors
        key, value, _ = envelope
        arg = value if self._bare else (value,)
        try:
            if self._step is None:
                result = await self._call(arg)
            else:  # a sink whose hooks admit each item
                result = await self._step(key, arg, out, errors, turn)
                if result is PASSED_OVER:
                    return 1, 0
        except BaseException as exc:
            if not ledger.fail(key, arg, exc, runtime.current_task(), out, errors):
                return None
            return 0, 1
        if not self._edges:
            if self._on_result is not None:
                self._on_result(key, result)
            if self._finished is not None:
                self._finished.append(key)
            return 0, 0
        if result is None:
            ledger.drop(key, out)
            return 0, 1
        edges = self._edges
        count_followed(edges, 1)
        if self._sent is not None:
            self._sent(key, result, len(edges))
        out.append(Keyed((key, result, self._index)))
        return 0, 0
