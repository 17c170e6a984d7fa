"""Fusion: a linear run of nodes handled in one task, each item through all of them in turn.

Opt-in (``Plumber(..., fuse=True)``, ``pipelines run --fuse``): a node whose only producer has it as
its only successor is fused into that producer's segment, so that each item goes from the
segment's first node (a source, or any node) through every node of it in one task, with no edge,
no piece and no task switch between them. It removes the concurrency between the nodes of a
segment, which is why it is never the default: while one of them awaits (I/O, a sleep), none of
the others runs, and a fused node has one worker (an elastic pool adds none).

What fuses (`segments`): only in a run whose items travel without their keys (pipelines.lineage,
`Plumber.keys_needed` is None: no hook, no journal, no join...), and only nodes that are plain
steps: one input, at most one fixed worker (or the default elastic pool), no setup, no state, no
executor, no event handlers; a source leads one unless its code calls `put_nowait`. The first node
of a segment keeps its own setup, executor and so on; a node that is not the first also keeps its
teardown, run after the segment has ended.

What stays as without fusion: every node's function is called with its own args, retries,
timeout and on_error; each node counts its items in, out, dropped, skipped and failed (a
segment led by a source adds up its counts, the source's included, every few items: at most every
`FLUSH`, fewer when items are slow, and at every loss, so that stats() read during the run lag by
about 50 ms of the run's clock at most); a segment led by a source lets the loop turn between two
items every few milliseconds, even when nothing in it awaits; pause(node) of a fused node holds its
segment before its next item; stop() and cancel() work as without fusion (a source stopped while
an item is in its segment lets that item through first). What differs: a fused node's input is
never used (depth 0), and its busy time and latency are those of its whole segment.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import runtime
from .calls import with_retries
from .lineage import NO_KEY

if TYPE_CHECKING:
    from .driver import Processor
    from .graph import GraphSpec, NodeSpec
    from .ledger import Ledger
    from .valve import Valve

__all__ = ["FLUSH", "Chain", "segments"]

FLUSH = 100
"""A segment led by a source adds up its nodes' counts every FLUSH items at most (and at every loss)."""


def segments(graph: GraphSpec) -> list[tuple[str, ...]]:
    """The segments of a keyless run's graph that fuse: each its first node, then the nodes fused
    into it in order (two nodes or more), in the order of the graph's nodes."""
    nodes = graph.nodes
    fused: list[tuple[str, ...]] = []
    taken: set[str] = set()
    for name, spec in nodes.items():
        if name in taken or not _may_lead(spec) or _joins_producer(graph, spec):
            continue
        run = [name]
        while True:
            last = nodes[run[-1]]
            if len(last.successors) != 1:
                break
            after = nodes[last.successors[0]]
            if not _may_follow(after) or after.name in taken:
                break
            run.append(after.name)
        if len(run) > 1:
            fused.append(tuple(run))
            taken.update(run)
    return fused


def _plain(spec: NodeSpec) -> bool:
    """One worker at most, a step of one input to one output: no generator, no route."""
    props = spec.properties
    return props.workers in (None, 1) and not spec.is_generator and spec.route is None and len(spec.inputs) <= 1


def _may_lead(spec: NodeSpec) -> bool:
    if spec.is_source:
        return not _names(spec.coro, "put_nowait")
    return _plain(spec)


def _names(function: Any, name: str) -> bool:
    """Whether the code of `function` (or of a function defined in it) names `name`: a source
    whose code calls `put_nowait` leads no segment, since a put that cannot wait cannot take its
    item through the segment (the item would go to the first fused node's own input, and that
    node's task would handle it beside the segment)."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    codes = [code] if isinstance(code, types.CodeType) else []
    while codes:
        code = codes.pop()
        if name in code.co_names:
            return True
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    return False


def _may_follow(spec: NodeSpec) -> bool:
    props = spec.properties
    return (
        not spec.is_source
        and _plain(spec)
        and len(spec.inputs) == 1
        and spec.setup is None
        and spec.state is None
        and props.executor is None
        and not spec.events
    )


def _joins_producer(graph: GraphSpec, spec: NodeSpec) -> bool:
    """Whether `spec` would be fused into its producer (then it does not lead a segment of its own)."""
    if spec.is_source or len(spec.inputs) != 1:
        return False
    producer = graph.nodes[spec.inputs[0]]
    return len(producer.successors) == 1 and _may_lead(producer) and _may_follow(spec)


Call = Callable[[Any], Awaitable[Any]]
Step = tuple[Call, bool]


def _no_clock() -> float:
    return 0.0  # until `Chain.begin`, in the running loop, reads the run's clock


class Chain:
    """The nodes fused after a segment's first node, called in turn on each item in its task.

    `run` takes one item through them, for a node leading the segment (`lead`, on each of its
    outputs); a source leading it has the same steps written out in its own output
    (`pipelines.sources.FusedSourceOutput`: its pump, and its put), with `steps`, `sink`, `keep`,
    `count` and `lose`.
    """

    __slots__ = (
        "_clock",
        "_entered",
        "_ledgers",
        "_lost",
        "_nodes",
        "_since",
        "keep",
        "sink",
        "steps",
        "tail",
    )

    def __init__(self, nodes: list[Processor]) -> None:
        self._nodes = nodes
        self.tail = nodes[-1]
        """The segment's last node: its outputs are the segment's."""
        steps = _own([(_call_of(node), node.spec.bare) for node in nodes])
        self.sink: Step | None = None if self.tail.outputs else steps.pop()
        """A sink ending the segment: its call, and whether it takes the value bare (else in a 1-tuple)."""
        self.steps: tuple[Step, ...] = tuple(steps)
        """The fused nodes that hand an output on (all but a sink at the end), as `sink`."""
        collected = self.tail.collected
        self.keep = collected.append if collected is not None else None
        """Where a sink's results go when the run keeps them (None: nowhere)."""
        self._ledgers: tuple[Ledger, ...] = tuple(node.ledger for node in nodes)
        self._lost = [0] * len(nodes)
        self._entered = 0
        self._clock: Callable[[], float] = _no_clock
        self._since = 0.0

    @property
    def valves(self) -> tuple[Valve, ...]:
        """The fused nodes' own valves: closed, the segment holds (`Processor.fuse`)."""
        return tuple(node.valve for node in self._nodes)

    def begin(self) -> None:
        """Start the time counted to the fused nodes (a node leading the segment: at each piece)."""
        if self._clock is _no_clock:
            self._clock = runtime.clock()
        self._since = self._clock()

    async def run(self, value: Any, out: list[Any], errors: list[Any]) -> bool:
        """Take `value` through every fused node; its output, if any, joins `out` (or the sink's
        results). False when an item's failure fails the run."""
        if self._entered >= FLUSH:
            self.flush()
        self._entered += 1
        stage = 0
        try:
            for call, bare in self.steps:
                value = await call(value if bare else (value,))
                if value is None:
                    return self.lose(stage, value, None, out, errors)
                stage += 1
            if self.sink is not None:
                call, bare = self.sink
                value = await call(value if bare else (value,))
                if value is not None and self.keep is not None:
                    self.keep(value)
                return True
        except BaseException as exc:
            return self.lose(stage, value, exc, out, errors)
        out.append(value)
        return True

    async def lead(
        self, rest: Iterator[Any], call: Call, bare: bool, ledger: Ledger, out: list[Any], errors: list[Any]
    ) -> tuple[int, int] | None:
        """The items of a piece of the node leading the segment (its `call`, `ledger`): each of its
        outputs through the segment, into `out`. As a worker's step for a piece (pipelines.worker):
        (0, the items that gave no output at the leading node), or None when the run fails."""
        not_done = 0
        self.begin()
        try:
            for value in rest:
                arg = value if bare else (value,)
                try:
                    result = await call(arg)
                except BaseException as exc:
                    not_done += 1
                    if not ledger.fail(NO_KEY, arg, exc, runtime.current_task(), out, errors):
                        return None
                    continue
                if result is None:
                    not_done += 1
                    ledger.drop(NO_KEY, out)
                elif not await self.run(result, out, errors):
                    return None
        finally:
            self.flush()
        return 0, not_done

    async def hand_on(self, out: list[Any]) -> None:
        """Give the segment's outputs to the last node's successors, waiting for room; empties `out`."""
        handoff = self.tail.handoff
        if handoff.in_memory and handoff.put_now(out):
            out.clear()
        else:
            await handoff.emit(out, [])

    def count(self, entered: int) -> None:
        """`entered` more items went into the segment and came out of it (a source's output, every
        FLUSH items and at the end; a loss goes through `lose`): add the counts up now."""
        self._entered += entered
        self.flush()

    def lose(
        self, stage: int, value: Any, exc: BaseException | None, out: list[Any], errors: list[Any], entered: int = 0
    ) -> bool:
        """The `stage`-th fused node dropped `value` (`exc` None: it returned None) or failed on it:
        counted, with the `entered` items not counted yet (a source's pump: this one among them), and
        its on_error applied. False when the run fails."""
        self._entered += entered
        self._lost[stage] += 1
        self.flush()
        ledger = self._ledgers[stage]
        if exc is None:
            ledger.drop(NO_KEY, out)
            return True
        step = self.steps[stage] if stage < len(self.steps) else self.sink
        assert step is not None
        arg = value if step[1] else (value,)
        return ledger.fail(NO_KEY, arg, exc, runtime.current_task(), out, errors)

    def flush(self) -> None:
        """Add what the fused nodes did since the last flush (or `begin`) to their counts, with the
        time it took: each node's busy time and latency are the segment's."""
        entered = self._entered
        if not entered:
            return
        now = self._clock()
        seconds, self._since = now - self._since, now
        lost = self._lost
        hands_on = len(self.steps)
        for i, ledger in enumerate(self._ledgers):
            ledger.items_in += entered
            ledger.piece_done(seconds, entered, 0, lost[i], i < hands_on)
            entered -= lost[i]
            lost[i] = 0
        self._entered = 0


def _call_of(node: Processor) -> Call:
    """How the segment calls a fused node: its function bound to its args, with its retries and timeout."""
    spec = node.spec
    return with_retries(
        node.invoke, spec.name, spec.properties.retry, spec.properties.timeout, node.ledger, node.signals
    )


def _own(steps: list[Step]) -> list[Step]:
    """`steps`, each call an object of its own, so that a fused source tells which node lost an item
    by the call it was in (`FusedSourceOutput.pump`): nodes sharing a function with no args share
    the same call. A plain function is copied (its code, globals, defaults and closure: no frame
    in between); anything else is wrapped."""
    seen: set[int] = set()
    owned: list[Step] = []
    for call, bare in steps:
        own = call if id(call) not in seen else _copy(call)
        seen.add(id(own))
        owned.append((own, bare))
    return owned


def _copy(call: Call) -> Call:
    """Another object calling as `call` does."""
    if isinstance(call, types.FunctionType):
        copy = types.FunctionType(call.__code__, call.__globals__, call.__name__, call.__defaults__, call.__closure__)
        copy.__kwdefaults__ = call.__kwdefaults__
        copy.__qualname__ = call.__qualname__
        return copy

    def wrapped(value: Any) -> Awaitable[Any]:
        return call(value)

    return wrapped
