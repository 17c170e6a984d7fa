"""The worker loop: the loop every node with inputs runs, put together once per node.

A worker takes the envelopes waiting in its node's input in one batch, handles each (calls the
node's function, or passes a tombstone on), and hands the outputs to every successor in one batch.
Every worker runs one loop (`Worker.loop`). The common node, one that returns its output (or
routes it), has the items' steps written out in it, over envelopes or, in a keyless run, over the
bare values (pipelines.lineage.needs_keys); sinks and generators handle the items of a piece with
a step chosen for their role. What differs between nodes is chosen when the
worker starts, not tested per item:

- how a batch is taken (`take`): straight from the input edge, or through the join, which gives
  back only complete groups (a zip join also reads the input that is behind);
- how an item is called (`call`): the function itself, or under its retry policy and timeout
  (pipelines.calls); an async generator node, or a sink whose hooks may pass an item over, go
  through a `step` instead;
- what a sink does with a result (`on_result`), and how outputs are handed on (`emit`), with the
  hooks the node has installed, or none, to every successor or (a node that routes) to those each
  output is routed to (pipelines.routing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterator, Sized
from typing import TYPE_CHECKING, Any

from . import runtime
from .calls import HANDLED, PASSED_OVER, Expansion, with_retries
from .edges import MemoryEdge
from .hooks import Positions, unfiltered
from .keyless import Keyless
from .ledger import HookFailed
from .lineage import DISCARDED, DROPPED, NO_KEY, Joiner
from .types import Envelope, Key

if TYPE_CHECKING:
    from .driver import Processor
    from .edges import Edge
    from .ordering import Turn
    from .pool import Member, Pool

__all__ = ["Worker"]

Take = Callable[[int], Awaitable[list[Envelope]]]
Step = Callable[[Key, Any, list[Envelope], list[Any], "Turn | None"], Awaitable[Any]]
"""(key, arg, out, errors, turn) -> what the loop awaits for the item."""
Emit = Callable[[list[Envelope], list[Any]], Awaitable[None]]


class Worker:
    """One consumer of a node: its loop, and the steps chosen for its node when it starts."""

    __slots__ = (
        "_bare",
        "_call",
        "_counts_out",
        "_emit",
        "_extra",
        "_finished",
        "_gate",
        "_heard",
        "_idle",
        "_index",
        "_keyless",
        "_member",
        "_node",
        "_on_result",
        "_pool",
        "_put_now",
        "_step",
    )

    def __init__(self, node: Processor, pool: Pool, member: Member, *, extra: bool) -> None:
        self._node = node
        self._pool = pool
        self._member = member
        self._extra = extra
        self._gate = pool.gate
        hooks = node.ledger.hooks
        is_sink = not node.outputs
        self._counts_out = not is_sink and not node.spec.is_generator  # a generator counts its outputs itself
        self._finished: list[Key] | None = [] if is_sink and hooks.finished is not None else None
        reports = hooks.sent is not None and not node.spec.is_generator and not node.keyless  # (pipelines.keyless)
        # A node leading a fused segment hands on what the segment's last node gives (pipelines.fusion).
        last = node.chain.tail if node.chain is not None else node
        handoff = last.handoff
        emit = handoff.emit_reporting if reports else handoff.emit
        if node.router is not None:
            emit = handoff.emit_routed  # each output to the successors it is routed to
        self._emit = emit
        self._put_now = handoff.put_now if not reports and node.router is None and handoff.in_memory else None
        """Hands outputs on without a coroutine when there is room (plain `emit` to in-memory edges)."""
        spec = node.spec
        self._call = with_retries(
            node.invoke, spec.name, spec.properties.retry, spec.properties.timeout, node.ledger, node.signals
        )
        if node.router is not None and not spec.is_generator:
            self._call = _routed(self._call, node.router.deliver)  # its output is where it goes
        self._on_result = _value_step(node) if is_sink else None
        self._heard = _heard_only(node) if is_sink else None
        """A sink's result hook and its positions, when that is all it does with a value (see below)."""
        self._step = self._special_step(node)
        self._keyless = (
            Keyless(node, member, self._call, self._step, self._on_result, self._finished) if node.keyless else None
        )
        self._bare = spec.bare
        self._index = spec.index
        # Truthy while the consumer downstream waits: outputs ready may go on in the middle of a piece.
        self._idle: Sized = last.outputs[0].idle_consumers if last.outputs and self._gate is None else ()

    def sibling(self, member: Member, *, extra: bool) -> Worker:
        """Another worker of the same node: what was chosen for the node is shared, not chosen again.

        A pool of a hundred workers would otherwise put the same steps together a hundred times
        as the run starts. What belongs to one worker is its own: its place in the pool, the keys
        of a sink's finished items, and a step that hands outputs on itself (a generator's)."""
        twin = Worker.__new__(Worker)
        for name in Worker.__slots__:
            setattr(twin, name, getattr(self, name))
        twin._member = member
        twin._extra = extra
        if self._finished is not None:
            twin._finished = []
        if self._keyless is not None:
            twin._keyless = self._keyless.sibling(member, twin._finished)
        if self._step is not None:
            twin._step = twin._special_step(self._node)
        return twin

    def _flagged(self, emit: Emit) -> Emit:
        """`emit`, marked on the pool's record: a worker waiting for room downstream keeps its items."""
        member = self._member
        pool = self._pool

        async def flagged(out: list[Envelope], errors: list[Any]) -> None:
            pool.handing_on(member)
            try:
                await emit(out, errors)
            finally:
                pool.handed_on(member)

        return flagged

    def _special_step(self, node: Processor) -> Step | None:
        """The step of a node whose items need more than a call: a generator or an admitting sink.

        A step returns what the loop awaits: the call's own coroutine, so that it adds no frame.
        """
        admits = node.ledger.hooks.admits if not node.outputs else None
        fail_run = node.fail_run
        plain: Any  # the expansion, called with the key, or the call, with the item only
        if node.spec.is_generator:
            emit = self._flagged(self._emit) if self._pool.can_share else self._emit
            expansion = Expansion(node, node.invoke, emit, self._gate, _value_step(node), self._finished)
            if admits is None:
                return expansion
            plain = expansion
            with_key = True
        elif admits is not None:
            plain = self._call
            with_key = False
        else:
            return None

        def admitted(key: Key, arg: Any, out: list[Envelope], errors: list[Any], turn: Turn | None) -> Awaitable[Any]:
            try:
                taken = admits(key)
            except Exception as exc:  # the hook's failure, not the item's: it fails the run (as `guarded`)
                fail_run(exc)
                raise HookFailed from exc
            if not taken:
                return _PASSED_OVER
            waiting: Awaitable[Any] = plain(key, arg, out, errors, turn) if with_key else plain(arg)
            return waiting

        return admitted

    async def loop(self) -> None:
        """Take a piece of work, handle each item, hand the outputs on; until the input ends, a failure
        ends the run, or (an extra worker) there is nothing to do. The pool runs it, once.

        A node that returns its output has its items' steps written out here (over the bare values in
        a keyless run: pipelines.lineage.needs_keys), not in a call per piece: pieces are often of one
        item. A sink or a generator handles a piece with the step chosen for its role (`_handler`).
        """
        pool, member, ledger, handle = self._pool, self._member, self._node.ledger, self._handler()
        emit, put_now, gate, finished = self._emit, self._put_now, self._gate, self._finished
        call, bare, index, idle, counts_out = self._call, self._bare, self._index, self._idle, self._counts_out
        clock, followed, keyless = runtime.clock(), self._keyless, self._keyless is not None
        # Reused for every piece: an edge copies what it is given. Another worker may hand them on.
        out, errors, append = member.out, member.errors, member.out.append
        member.task = runtime.current_task()
        try:
            while True:
                # Most often, with several workers, the items a suspended one has not started.
                rest = (pool.steal(member) if pool.busy and not pool.has_stranded else None) or await self._next_piece()
                if rest is None:
                    return
                turn, size, started = member.turn, member.size, clock()
                many, passed, not_done = size > 1, 0, 0
                if (step := followed.items if followed is not None and followed.waiting else handle) is not None:
                    counts = await step(rest, turn)
                    if counts is None:  # an item's failure ends the run
                        return
                    passed, not_done = counts
                elif keyless:
                    for value in rest:
                        arg = value if bare else (value,)
                        try:
                            result = await call(arg)
                        except BaseException as exc:
                            not_done += 1
                            if ledger.fail(NO_KEY, arg, exc, runtime.current_task(), out, errors):
                                continue
                            return  # the run fails
                        if result is None:
                            not_done += 1
                            ledger.drop(NO_KEY, out)
                            continue
                        append(result)
                        if idle and many and not pool.calm:
                            await self._hand_on_early()
                else:
                    for key, value, _ in rest:
                        if value is DROPPED:
                            passed += 1
                            ledger.tombstone(key, out)
                            continue
                        try:
                            result = await call(value if bare else (value,))
                        except BaseException as exc:
                            not_done += 1
                            if ledger.fail(key, value if bare else (value,), exc, runtime.current_task(), out, errors):
                                continue
                            return  # the run fails
                        if result is None:
                            not_done += 1
                            ledger.drop(key, out)
                            continue
                        append((key, result, index))
                        if idle and many and not pool.calm:
                            await self._hand_on_early()
                handled = size - pool.finished(member) - passed
                ledger.piece_done(clock() - started, handled, passed, not_done, counts_out)
                # Hand its outputs on (in turn, for an ordered node), commit a sink's items.
                if gate is not None and turn is not None:
                    await self._emit_in_turn(turn, out, errors)
                elif out and not errors and put_now is not None and put_now(out):
                    out.clear()  # handed on now, without a coroutine
                elif out or errors:
                    await emit(out, errors)
                if finished:
                    await self._commit(finished)
        finally:
            if member.rest is not None:  # the run fails (or is cancelled) in the middle of a piece
                pool.finished(member)
            pool.left(member)  # this worker is done

    async def _next_piece(self) -> Iterator[Any] | None:
        """The worker's next piece (as `Pool.take` gives it), when it cannot just take over the items of
        a suspended worker: first hand on the outputs suspended workers finished (`Pool.stranded`).
        A worker alone in its pool and in no piece reads the input itself: there is no one to share with."""
        pool = self._pool
        if pool.has_stranded:
            stranded = pool.stranded()
            if stranded is not None:
                await self._emit(*stranded)
        if pool.live == 1 and not pool.busy and not self._extra:
            return pool.begin(self._member, await pool.read(1))
        return await pool.take(self._member, extra=self._extra)

    # -- the items of a piece, by the node's role ----------------------------------------------
    #
    # Each handles the items of one piece in order and returns (tombstones and items passed over,
    # items that gave no output), or None when an item's failure ends the run. `_consumed_items`
    # serves a sink that only consumes with the fewest steps per item; `_any_items` any other sink,
    # and a generator; a sink of a keyless run has its own (pipelines.keyless).

    def _handler(self) -> Callable[[Iterator[Any], Turn | None], Awaitable[tuple[int, int] | None]] | None:
        """The step for the items of a piece; None for a node that returns its output (written out in `loop`)."""
        node = self._node
        if node.chain is not None:
            return self._fused_items
        if self._step is None and node.outputs:
            return None
        if self._keyless is not None:
            return self._keyless.sink_items
        consumes = self._step is None and self._finished is None and not node.outputs
        if consumes and (self._on_result is None or self._heard is not None):
            return self._consumed_items
        return self._any_items

    async def _fused_items(self, rest: Iterator[Any], turn: Turn | None) -> tuple[int, int] | None:
        """A node leading a fused segment (pipelines.fusion): its outputs go on through the segment."""
        chain = self._node.chain
        assert chain is not None
        return await chain.lead(rest, self._call, self._bare, self._node.ledger, self._member.out, self._member.errors)

    async def _consumed_items(self, rest: Iterator[Envelope], turn: Turn | None) -> tuple[int, int] | None:
        """A sink whose results nobody keeps, and only a hook with `positions` hears (or none): call,
        and tell that hook of an item at one of its positions (the test made here, without a call)."""
        node = self._node
        ledger = node.ledger
        call = self._call
        bare = self._bare
        member = self._member
        told, positions = self._heard or (None, ())
        passed = not_done = 0
        for key, value, _ in rest:
            if value is DROPPED:
                passed += 1
                ledger.tombstone(key, member.out)
                continue
            try:
                result = await call(value if bare else (value,))
            except BaseException as exc:
                not_done += 1
                if not ledger.fail(
                    key, value if bare else (value,), exc, runtime.current_task(), member.out, member.errors
                ):
                    return None
                continue
            if told is not None and key[1] in positions:
                told(key, result)
        return passed, not_done

    async def _any_items(self, rest: Iterator[Envelope], turn: Turn | None) -> tuple[int, int] | None:
        """A sink or a generator: a step (a generator, a sink whose hooks admit each item) or a call,
        a sink's results kept and told."""
        node = self._node
        ledger = node.ledger
        call, step = self._call, self._step
        on_result = self._on_result
        note = self._finished.append if self._finished is not None else None
        bare = self._bare
        is_sink = not node.outputs
        out, errors = self._member.out, self._member.errors
        passed = not_done = 0
        for key, value, _ in rest:
            if value is DROPPED:
                passed += 1
                ledger.tombstone(key, out)
                continue
            arg = value if bare else (value,)
            try:
                if step is None:
                    result = await call(arg)
                else:
                    result = await step(key, arg, out, errors, turn)
                    if result is HANDLED:
                        continue
                    if result is PASSED_OVER:
                        passed += 1
                        continue
            except BaseException as exc:
                not_done += 1
                if not ledger.fail(key, arg, exc, runtime.current_task(), out, errors):
                    return None
                continue
            if is_sink:
                if on_result is not None:
                    on_result(key, result)
                if note is not None:
                    note(key)
            else:  # a generator that yielded nothing: a drop (it hands its outputs on itself)
                not_done += 1
                ledger.drop(key, out)
        return passed, not_done

    async def _hand_on_early(self) -> None:
        """The consumer downstream is idle: give it what is ready now, in the middle of the piece."""
        member = self._member
        self._pool.handing_on(member)  # waiting for room is not waiting on I/O: keep the rest
        try:
            await self._emit(member.out, member.errors)
        finally:
            self._pool.handed_on(member)

    async def _emit_in_turn(self, turn: Turn, out: list[Envelope], errors: list[Any]) -> None:
        """Hand an ordered node's outputs on when their turn comes."""
        gate = self._gate
        assert gate is not None
        await gate.wait_turn(turn)
        await self._emit(out, errors)
        gate.done(turn)

    async def _commit(self, finished: list[Key]) -> None:
        """Tell the hooks a sink finished these items; wait for what they return (the journal's commit)."""
        finish = self._node.ledger.hooks.finished
        assert finish is not None
        keys = finished[:]
        finished.clear()
        committed = finish(keys)
        if committed is not None:
            await committed  # before this worker takes more: what a crash can redo stays one batch


def _routed(call: Callable[[Any], Awaitable[Any]], deliver: Callable[[Any], Any]) -> Callable[[Any], Awaitable[Any]]:
    """`call`, its output turned into where it goes (a `Delivery`, the value, or None for nowhere)."""

    async def routed(arg: Any) -> Any:
        return deliver(await call(arg))

    return routed


def _heard_only(node: Processor) -> tuple[Callable[[Key, Any], None], Positions] | None:
    """A sink's `result` hook and its positions, when that is all the sink does with a value: the
    hook hears only some positions (as Tracing's does), and the sink keeps no value."""
    told = node.ledger.hooks.result
    if told is None or node.collected is not None:
        return None
    method, positions = unfiltered(told)
    return None if positions is None else (method, positions)


def _value_step(node: Processor) -> Callable[[Key, Any], None] | None:
    """What a sink does with each value it returns or yields: keep it, tell the hooks."""
    collected = node.collected
    told = node.ledger.hooks.result
    positions = None
    if told is not None:
        told, positions = unfiltered(told)  # a hook that hears only some items: tested here, without a call
    if collected is None:
        if told is None or positions is None:
            return told
        heard = told
        only = positions

        def on_heard(key: Key, value: Any) -> None:
            if key[1] in only:
                heard(key, value)

        return on_heard
    keep = collected.append
    if told is None:
        return lambda key, value: None if value is None else keep(value)

    def on_value(key: Key, value: Any) -> None:
        if value is not None:
            keep(value)
        if positions is None or key[1] in positions:
            told(key, value)

    return on_value


class _Ready:
    """An awaitable already done, with `value` as its result; awaited any number of times."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield


_PASSED_OVER = _Ready(PASSED_OVER)


class JoinTake:
    """A join's `take`: offers each arrival to the joiner and gives back the complete groups.

    A group one of whose inputs dropped the item is discarded here (counted, and a tombstone sent
    on where a join waits downstream). A zip join has one input edge per source, and reads the one
    that is behind, so that a fast source is held back by its bound instead of filling the groups;
    once one of them has ended, the groups it will never complete are discarded at once (and their
    tombstones sent on), so that a join downstream waiting for them is not held up to the end.
    """

    __slots__ = (
        "_abandoned",
        "_arrivals",
        "_cancel_safe",
        "_emit",
        "_ended",
        "_held",
        "_inputs",
        "_joiner",
        "_ledger",
        "_released",
    )

    def __init__(self, node: Processor, joiner: Joiner, emit: Callable[[list[Envelope], list[Any]], Awaitable[None]]):
        self._joiner = joiner
        self._inputs: list[Edge] = list(node.inputs)
        self._arrivals = [0] * len(self._inputs)
        self._ledger = node.ledger
        self._emit = emit
        self._held = node.ledger.hooks.held
        self._released = node.ledger.hooks.released
        self._cancel_safe = all(isinstance(edge, MemoryEdge) for edge in self._inputs)
        self._ended: set[int] = set()
        self._abandoned: list[Key] = []
        """Keys of the groups discarded because an input ended, not yet counted and passed on."""

    async def __call__(self, share: int) -> list[Envelope]:
        joiner = self._joiner
        ledger = self._ledger
        held = self._held
        released = self._released
        while True:
            batch = await self._next(share)
            if self._abandoned:
                dropped: list[Envelope] = []
                for key in self._abandoned:
                    if released is not None:
                        released(key)
                    ledger.items_in += 1
                    ledger.drop(key, dropped)
                self._abandoned.clear()
                if dropped:
                    await self._emit(dropped, [])
                if not batch:
                    continue  # the discards of an input that ended: read on (the end is an empty read alone)
            if not batch:
                return []
            groups: list[Envelope] = []
            tombstones: list[Envelope] = []
            for key, value, producer in batch:
                group = joiner.offer(key, value, producer)
                if held is not None:
                    held(key)
                if group is None:
                    continue
                group_key, values = group
                if released is not None:
                    released(group_key)
                if values is DISCARDED:
                    ledger.items_in += 1
                    ledger.drop(group_key, tombstones)
                    continue
                groups.append((group_key, values, producer))
            if tombstones:
                await self._emit(tombstones, [])
            if groups:
                return groups

    async def _next(self, share: int) -> list[Envelope]:
        inputs = self._inputs
        if len(inputs) == 1:
            return await inputs[0].get_many(share)
        arrivals = self._arrivals
        while True:
            live = [i for i, edge in enumerate(inputs) if not (edge.closed and edge.empty())]
            if len(live) + len(self._ended) < len(inputs):
                for i in range(len(inputs)):
                    if i not in live and i not in self._ended:
                        self._ended.add(i)
                        self._abandoned += self._joiner.input_ended(i)
                if self._abandoned:
                    return []  # the caller passes the discards on first, then reads again
            if not live:
                return []
            if len(live) < len(inputs):
                # An input has ended: no group beyond what it gave can complete, so the others are
                # only drained, from whichever has items, never waiting on one while another is
                # full (its producer may be the one everything else depends on).
                batch = await self._drain(live, share)
                if batch:
                    return batch
                continue  # another input ended meanwhile (its read gave nothing): only the last end is the node's
            i = min(live, key=arrivals.__getitem__)
            batch = await inputs[i].get_many(share)
            if batch:
                arrivals[i] += len(batch)
                return batch

    async def _drain(self, live: list[int], share: int) -> list[Envelope]:
        """What any of the `live` inputs has now; if none has anything, wait for the first that gets some."""
        inputs = self._inputs
        ready = [i for i in live if not inputs[i].empty()]
        if ready:
            return await inputs[ready[0]].get_many(share)
        if not self._cancel_safe:
            # An edge whose reads belong to the task that made them (Redis: what a task took is
            # acknowledged by its next read) cannot be read from a task of its own: wait on one.
            return await inputs[live[0]].get_many(share)
        return await runtime.first_of([inputs[i].get_many(share) for i in live])
