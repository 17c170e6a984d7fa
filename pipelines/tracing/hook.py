"""Tracing: a hook that makes an OpenTelemetry span per item per node, for a sample of source items.

Whether an item is traced is decided once, where it enters the graph (a source's ``admits``): a
sampled item is then traced through every node it reaches, and all its spans share one trace,
whose root is the source's span. Each node's span is a child of the span of the node that handed
the item on (found by the item's lineage key); a join's span is the child of its first input's
span and links the others. A span runs from the moment the item was handed to the node (so it
includes the wait in the node's input) to the moment its path there ended; its attributes name
the node, the item's key and the outcome ('sent', 'result', or how it was settled: 'dropped',
'skipped', 'routed', 'failed', 'expanded'); an item that failed there records its exception.

An async generator node makes one span per output it yields (one, 'expanded', when it yields
none). Tombstones are not items: they make no span. A trace is closed once all its item's paths
have ended: the hook counts the envelopes of each traced item from the copies its node methods
hear (a join's members count as one once their group is complete). At most `max_open` traces are
open (beyond, the oldest is forgotten and its later spans are not made), so memory stays bounded
whatever runs, even if an item vanishes unheard (another hook passed it over).

Cost: with no Tracing installed, or with ``sample=0``, nothing is called per item. Installed, a
source hears only the position of its next sampled item, and the other nodes only the items at the
positions of the open traces (the ``positions`` of their node hooks, pipelines.hooks). Tracing
needs no other key (``needs_all_keys``): where nothing else needs them, only the sampled items
carry their keys, and an item that is not sampled costs the source an ``in`` test and the other
nodes nothing (pipelines.keyless); else it costs each node an ``in`` test and no call.
A span is made where the item's path at the node ends, already finished (pipelines.tracing.spans:
with the SDK's tracer provider, it is built directly and handed to the provider's span processors).
Spans do not cross processes: in a distributed run each process traces the items its own sources
emit.
"""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext, TracerProvider

from ..types import Key, Outcome, RunState
from .spans import Spans, spans_of

if TYPE_CHECKING:
    from ..driver import Processor
    from ..graph import GraphSpec
    from ..plumber import Plumber

__all__ = ["Tracing"]

_FAILED_OUTCOMES = ("skipped", "routed", "failed")
Root = tuple[str, int]
Handed = dict[tuple[str, Key], tuple[SpanContext, int]]
"""Per (node, key): the span of the item's path there, and when it ended (the next span's start)."""


class _Trace:
    """One sampled item's open trace: the spans its paths made so far, by node and key, and how
    many of its envelopes are still on their way (the trace closes when none is left)."""

    __slots__ = ("alive", "expanded", "handed", "item")

    def __init__(self, source: str, key: Key, item: str, span: SpanContext, now: int, alive: int) -> None:
        self.alive = alive
        self.item = item
        """repr of the source item's key: the item attribute of every span whose key is the same."""
        self.handed: Handed = {(source, key): (span, now)}
        self.expanded: set[tuple[str, Key]] = set()
        """(generator node, input key) whose outputs had spans: its 'expanded' end makes none."""


class Tracing:
    """Install with ``Plumber(graph, hooks=[Tracing(sample=0.01)])``: traces 1% of the source items.

    `sample`: the fraction of source items traced, from 0 (none: the hook installs nothing) to 1
    (every item). `tracer_provider`: where the spans go (OpenTelemetry's global provider by
    default; configure it, with its exporter, before the run). `seed`: makes the choice of
    sampled items repeatable. `max_open`: how many traces are kept open at most. Give each
    Plumber a Tracing of its own: it keeps the open traces of one run.
    """

    needs_all_keys = False
    """Only the sampled items need their lineage keys (pipelines.hooks): in a run that needs keys for
    nothing else, the others travel without them, at the cost of a run with no hook."""

    def __init__(
        self,
        sample: float = 0.01,
        *,
        tracer_provider: TracerProvider | None = None,
        seed: int | None = None,
        max_open: int = 10_000,
    ) -> None:
        if not (isinstance(sample, int | float) and 0.0 <= sample <= 1.0):
            raise ValueError(f"Tracing: sample must be a fraction from 0 to 1, got {sample!r}")
        if max_open < 1:
            raise ValueError(f"Tracing: max_open must be at least 1, got {max_open!r}")
        self.sample = float(sample)
        self._provider = tracer_provider
        self._random = random.Random(seed)
        self._max_open = max_open
        self._spans: Spans | None = None
        self._spec: GraphSpec | None = None
        self._traces: dict[Root, _Trace] = {}
        """The open traces, by the source item's key (source, position); oldest first."""
        self._positions: dict[int, int] = {}
        """How many open traces have each position. Every node but a source hears only the items
        at these positions (the ``positions`` of its node hooks, tested by the core)."""

    # -- the run methods ----------------------------------------------------------------------

    def run_started(self, plumber: Plumber) -> None:
        self._spans = spans_of(trace.get_tracer("pipelines", tracer_provider=self._provider))
        self._spec = plumber.spec
        self._traces.clear()
        self._positions.clear()  # cleared, not replaced: every node's hooks name it

    def run_ended(self, plumber: Plumber, state: RunState) -> None:
        self._traces.clear()
        self._positions.clear()

    def node_hooks(self, node: Processor) -> object | None:
        if self.sample <= 0.0:
            return None
        assert self._spec is not None
        spec = self._spec.nodes[node.name]
        if spec.is_source:
            return _SourceHooks(self, spec.name, len(spec.successors))
        if spec.join_mode is not None:
            return _JoinHooks(
                self, spec.name, spec.inputs, spec.is_sink, spec.is_generator, spec.join_mode, spec.key_length
            )
        return _NodeHooks(self, spec.name, spec.inputs + spec.error_sources, spec.is_sink, spec.is_generator)

    @property
    def open_traces(self) -> int:
        """How many traces are open now: sampled items some of whose paths have not ended yet."""
        return len(self._traces)

    # -- spans --------------------------------------------------------------------------------

    def _gap(self) -> int:
        """How many items until the next sampled one (1: the next): a geometric draw, so that each
        item is sampled with probability `sample`, and nothing is drawn for the items between."""
        if self.sample >= 1.0:
            return 1
        u = 1.0 - self._random.random()  # in (0, 1]
        return int(math.log(u) / math.log1p(-self.sample)) + 1

    def _begin(self, source: str, key: Key, fan: int) -> None:
        """Item `key` enters the graph, sampled, as `fan` envelopes: the root span of its trace."""
        spans = self._spans
        assert spans is not None
        root: Root = (key[0], key[1])
        traces = self._traces
        if root in traces:
            return
        now = time.time_ns()
        item = repr(key)
        span = spans.root(source, item, now)
        if span is None or not fan:
            return  # the provider's sampler left this trace out, or the item goes nowhere
        traces[root] = _Trace(source, key, item, span, now, fan)
        positions = self._positions
        positions[root[1]] = positions.get(root[1], 0) + 1
        if len(traces) > self._max_open:
            self._close(next(iter(traces)))

    def _close(self, root: Root) -> None:
        """Forget the trace of `root`: its item's paths have all ended (or it is the oldest beyond max_open)."""
        del self._traces[root]
        positions = self._positions
        left = positions[root[1]] - 1
        if left:
            positions[root[1]] = left
        else:
            del positions[root[1]]

    def _count(self, key: Key, traced: _Trace, change: int) -> None:
        """`change` envelopes more (or fewer) of the item of `key` are on their way."""
        traced.alive += change
        if traced.alive <= 0:
            self._close(key[:2])  # a key's first two members are its root

    def _end(self, traced: _Trace, node: str, inputs: tuple[str, ...], key: Key, outcome: str, value: Any) -> None:
        """Item `key`'s path at `node` ended with `outcome`: its span."""
        handed = traced.handed
        found = _handed_to(handed, inputs, key)
        if not found:
            return  # a tombstone's path
        spans = self._spans
        assert spans is not None
        parent, started = found[0]
        links = [context for context, _ in found[1:]] if len(found) > 1 else _NO_LINKS
        failure = value if outcome in _FAILED_OUTCOMES and isinstance(value, BaseException) else None
        item = traced.item if len(key) == 2 else repr(key)
        now = time.time_ns()
        span = spans.child(node, item, outcome, parent, links, started, now, failure)
        handed[node, key] = (span, now)


_NO_LINKS: list[SpanContext] = []


def _handed_to(handed: Handed, inputs: tuple[str, ...], key: Key) -> list[tuple[SpanContext, int]]:
    """The spans of the inputs that handed `key` on (or the item it was made from, after a generator)."""
    if len(inputs) == 1:  # most nodes: one lookup
        entry = handed.get((inputs[0], key))
        if entry is not None:
            return [entry]
    while len(key) >= 2:
        found = [entry for name in inputs if (entry := handed.get((name, key))) is not None]
        if found:
            return found
        key = key[:-1]
    return []


class _SourceHooks:
    """A source's node methods: it hears only the position of its next sampled item (`positions`,
    tested by the core without a call), and there begins the item's trace and draws the next."""

    __slots__ = ("admits", "positions")

    def __init__(self, tracing: Tracing, name: str, fan: int) -> None:
        begin = tracing._begin
        gap = tracing._gap
        positions = self.positions = {gap() - 1}  # positions count from 0; the core holds this set

        def admits(key: Key) -> bool:
            begin(name, key, fan)
            positions.clear()
            positions.add(key[1] + gap())
            return True

        self.admits = admits


class _NodeHooks:
    """The node methods of a node with inputs: end the span of each traced item's path here, and
    count its envelopes (those handed on, less the one that ended here).

    `positions` are those of the open traces: the core calls these methods only for their items
    (and another source's items at the same positions, which find no trace).
    """

    __slots__ = ("finished", "positions", "result", "sent", "settled")

    def __init__(self, tracing: Tracing, name: str, inputs: tuple[str, ...], is_sink: bool, is_generator: bool) -> None:
        traces = tracing._traces
        end = tracing._end
        count = tracing._count
        handed_on = 0 if is_generator else -1  # a generator's input ends apart, with 'expanded'
        self.positions = tracing._positions

        def sent(key: Key, value: Any, copies: int) -> None:
            traced = traces.get(key[:2])  # a key's first two members are its root
            if traced is None:
                return  # another source's item at the same position, or a trace forgotten
            end(traced, name, inputs, key, "sent", None)
            if is_generator:
                traced.expanded.add((name, key[:-1]))
            count(key, traced, copies + handed_on)

        def result(key: Key, value: Any) -> None:
            traced = traces.get(key[:2])
            if traced is None:
                return
            end(traced, name, inputs, key, "result", None)
            if not is_generator:
                count(key, traced, -1)  # a generator's items end in `finished`, after all they yield

        def settled(key: Key, outcome: Outcome, value: Any, copies: int) -> None:
            traced = traces.get(key[:2])
            if traced is None:
                return
            if outcome == "expanded" and (name, key) in traced.expanded:
                traced.expanded.discard((name, key))  # its outputs had spans
            elif outcome != "passed":  # a tombstone is no item: no span
                end(traced, name, inputs, key, outcome, value)
            count(key, traced, copies - 1)

        def finished(keys: list[Key]) -> None:
            for key in keys:
                traced = traces.get(key[:2])
                if traced is not None:
                    count(key, traced, -1)

        self.sent = None if is_sink else sent
        self.result = result if is_sink else None
        self.settled = settled
        self.finished = finished if is_sink and is_generator else None


class _JoinHooks(_NodeHooks):
    """A join's node methods: its members are counted as one envelope once their group is complete."""

    __slots__ = ("held", "released")

    def __init__(
        self,
        tracing: Tracing,
        name: str,
        inputs: tuple[str, ...],
        is_sink: bool,
        is_generator: bool,
        join_mode: str,
        key_length: int,
    ) -> None:
        super().__init__(tracing, name, inputs, is_sink, is_generator)
        traces = tracing._traces
        count = tracing._count
        zip_mode = join_mode == "zip"
        members: dict[Key, list[Key]] = {}
        """Per group (as the join matches it), the keys of the traced members it holds."""

        def held(key: Key) -> None:
            traced = traces.get(key[:2])
            if traced is None:
                return
            match = key[1:] if zip_mode else key
            if len(match) != key_length:
                count(key, traced, -1)  # a tombstone no group can wait for: the join drops it
            else:
                members.setdefault(match, []).append(key)

        def released(key: Key) -> None:
            group = members.pop(key[1:] if zip_mode else key, ())
            traced = traces.get(key[:2])
            if traced is not None:
                traced.alive += 1  # the group, now one item of the group's key, before its members go
            for member in group:
                member_trace = traces.get(member[:2])
                if member_trace is not None:
                    count(member, member_trace, -1)

        self.held = held
        self.released = released
