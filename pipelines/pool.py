"""Pool: the workers of one node, how many there are, and how they share the node's input.

Every worker of a node takes its work from the pool, never straight from the edge: one worker
at a time reads the edge (a whole batch in one handoff), and the others wait on the pool. So
that an item never waits in one worker's hands while another worker of its node is idle, the
pool looks at its workers whenever the event loop turns while one of them is in the middle of a
piece of work: a worker suspended in the node's function gives up the items of its piece it has
not started, and an idle worker (or a new one) takes them over.

- **Fixed** (`workers=N`): N workers for the whole run.
- **Elastic** (the default): one worker, and more while items wait and every worker is
  suspended in an await, up to `max_workers` (by default the node's input bound); a worker that
  finds nothing to do leaves.

Either way items start in input order, as they would with a task each: a worker that takes over
from a suspended one takes the items that one has not started, and hands on the outputs that one
finished before it suspended. A node whose function never suspends stays at one worker: the pool
only looks when the loop turns, which such a node never lets happen in the middle of its work.
Once its looks keep finding no worker in the middle of a piece, the pool looks less often: every
64th piece, when items arrive while no worker waits for them, and 10 ms after a piece started at
the latest; the first look that finds a worker suspended brings back a look per piece.

With `ordered`, outputs leave in input order (pipelines.ordering); otherwise as soon as they are
ready, so that no output waits for a slow neighbour.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from operator import length_hint
from typing import TYPE_CHECKING, Any

from . import runtime
from .ordering import OrderGate, Turn
from .types import Envelope, Key
from .worker import JoinTake, Worker

if TYPE_CHECKING:
    from .driver import Processor
    from .lineage import Joiner
    from .worker import Take

__all__ = ["Pool", "Watch"]

_CALMEST = 63
"""The most pieces a pool starts without a look, once looks keep finding no worker suspended."""

_WATCH = 0.01
"""Seconds after which a pool that starts pieces without a look looks anyway."""


class Watch:
    """The pools of one run that started pieces without a look, looked at within _WATCH seconds.

    One timer for the whole run, not one per node: a run of a thousand calm nodes would otherwise
    keep a thousand timers in the loop's heap.
    """

    __slots__ = ("_cancel", "_pools")

    def __init__(self) -> None:
        self._pools: set[Pool] = set()
        self._cancel: Callable[[], None] | None = None

    def add(self, pool: Pool) -> None:
        if not self._pools:
            self._cancel = runtime.call_later(_WATCH, self._fire)
        self._pools.add(pool)

    def discard(self, pool: Pool) -> None:
        pools = self._pools
        if pool in pools:
            pools.discard(pool)
            if not pools and self._cancel is not None:
                self._cancel()
                self._cancel = None

    def _fire(self) -> None:
        self._cancel = None
        pools, self._pools = self._pools, set()
        for pool in pools:
            pool.watched()


_NO_BATCH: list[Envelope] = []
"""The batch of a worker between pieces (never changed: no batch is)."""


class Member:
    """What the pool knows of one of its workers: the piece it is in the middle of."""

    __slots__ = ("batch", "emitting", "errors", "out", "rest", "size", "start", "stolen", "stop", "task", "turn")

    def __init__(self) -> None:
        self.out: list[Envelope] = []
        """The worker's outputs not handed on yet (the same list for its whole life)."""
        self.errors: list[Any] = []
        self.batch = _NO_BATCH
        """The batch the piece is part of: its items are `batch[start:stop]`. Shared with the workers
        that took over part of it, and never changed, so that taking over copies nothing."""
        self.start = 0
        self.stop = 0
        self.size = 0
        """Items in the piece when it started (`stop - start`, until another worker takes some)."""
        self.rest: Iterator[Envelope] | None = None
        """The worker's iterator over its piece (a list iterator over `batch`); None between pieces."""
        self.emitting = False
        """True while the worker hands outputs on: waiting for room downstream is not waiting on I/O."""
        self.stolen = 0
        """Items of the current piece another worker took over."""
        self.turn: Turn | None = None
        self.task: object = None
        """The task the worker runs in."""


class Pool:
    """The workers of `node`: fixed or elastic, sharing its input."""

    __slots__ = (
        "_armed",
        "_call_soon",
        "_ended",
        "_expands",
        "_group",
        "_holding",
        "_inputs",
        "_listeners",
        "_members",
        "_missed",
        "_model",
        "_node",
        "_reading",
        "_skip",
        "_task",
        "_waiting",
        "_watch",
        "_watched",
        "busy",
        "calm",
        "cap",
        "emitting",
        "fixed",
        "gate",
        "has_stranded",
        "live",
        "peak",
        "read",
    )

    def __init__(self, node: Processor, joiner: Joiner | None, watch: Watch) -> None:
        self._node = node
        props = node.spec.properties
        self.fixed = props.workers if node.chain is None else 1  # a fused segment runs in one task
        self.cap = self.fixed or props.max_workers or node.spec.queue_size
        self.gate = OrderGate() if props.ordered and self.cap > 1 else None
        self._inputs = node.inputs
        self.read: Take = node.inputs[0].get_many if joiner is None else JoinTake(node, joiner, node.emit)
        """The node's input, a batch at a time: its edge's get_many, or the join's take."""
        self._waiting: deque[runtime.Future[None]] = deque()
        self._members: list[Member] = []
        self._model: Worker | None = None  # the pool's first worker, which the others copy
        self._holding: dict[Member, None] = {}
        """The workers whose piece may still hold items they have not started, or outputs they have not
        handed on, in the order their pieces started (the input's order): where `_steal` and `_look`
        look, kept only while there are two workers. A piece of one item (of a node that is not a
        generator) is never there: its item starts as soon as it does, and its output leaves with it."""
        self._reading = False
        self._ended = False
        self._armed = False
        self.calm = 0
        """Pieces to start without a look: grows while looks find no worker suspended mid-piece, and is
        0 once one does. A calm node's workers do not hand outputs on in the middle of a piece."""
        self._skip = 0
        self._missed = False
        """Items arrived while every worker in a piece was handing outputs on."""
        self._watch = watch
        self._watched = False
        """In the run's watch: a piece started without a look since the last one."""
        self._expands = node.spec.is_generator
        self.has_stranded = False
        """Whether a look found outputs finished by a worker that is now suspended (see `stranded`)."""
        self._group: runtime.TaskGroup | None = None
        self._task: runtime.Task[None] | None = None
        self._call_soon: Callable[[Callable[[], object]], object] = runtime.call_soon
        self.live = 0
        """Workers running now."""
        self.peak = 0
        """The most workers that ran at once."""
        self.busy = 0
        """Workers in the middle of a piece."""
        self.emitting = 0
        """Workers handing outputs on in the middle of a piece (see `handing_on`)."""
        # An edge may tell when items wait with no worker to take them (optional in the Edge protocol).
        self._listeners: list[Callable[[Callable[[], object] | None], None]] = []
        if self.fixed is None and self.cap > 1:
            for edge in node.inputs:
                listen = getattr(edge, "on_backlog", None)
                if listen is not None:
                    listen(self.arm)
                    self._listeners.append(listen)

    @property
    def can_share(self) -> bool:
        """Whether a piece may be shared out: there is, or may be, another worker."""
        return self.cap > 1

    @property
    def unstarted(self) -> int:
        """Items taken from the input that no worker has started yet: queued, not in flight."""
        if not self.busy:  # no worker is in a piece (a node that ended, say)
            return 0
        return sum(length_hint(member.rest) for member in self._members if member.rest is not None)

    async def run(self) -> None:
        """Run the workers until the input has ended and every piece is done."""
        self._task = runtime.current_task()
        self._call_soon = runtime.call_soon_of_running_loop()
        try:
            async with runtime.task_group() as group:
                self._group = group
                for _ in range((self.fixed or 1) - 1):
                    self._start(extra=False)
                await self._new_worker(Member(), extra=False).loop()  # the first runs in the node's own task
        except BaseExceptionGroup as errors:
            if len(errors.exceptions) == 1:
                raise errors.exceptions[0] from None  # the one exception itself, as a node without a pool raises
            raise
        finally:
            self._group = None
            self._watch.discard(self)
            for listen in self._listeners:
                listen(None)

    def _new_worker(self, member: Member, *, extra: bool) -> Worker:
        if self.live == 1:  # a second worker: the first one's piece can be shared from now on
            for other in self._members:
                if other.rest is not None:
                    self._holding[other] = None
        self._members.append(member)
        self.live += 1
        self.peak = max(self.peak, self.live)
        if self._model is not None:  # what was chosen for the node is shared, not chosen again
            return self._model.sibling(member, extra=extra)
        self._model = Worker(self._node, self, member, extra=extra)
        return self._model

    def _start(self, *, extra: bool) -> None:
        assert self._group is not None
        if self._task is not None and self._task.cancelling():
            return  # the node is being cancelled (the run failed or was cancelled): no new worker
        member = Member()
        self._group.create_task(self._new_worker(member, extra=extra).loop())

    def left(self, member: Member) -> None:
        """A worker ended (end of input, a failure, or an extra worker with nothing to do): its loop
        says so as it returns."""
        self._members.remove(member)
        self._holding.pop(member, None)
        self.live -= 1

    def key_in_hand(self, task: object) -> Key | None:
        """The key of the item the worker running in `task` is handling; None between its pieces,
        or when no worker of the pool runs in `task`.

        Read off the worker's place in its piece: nothing is noted per item.
        """
        for member in self._members:
            if member.task is task and member.rest is not None:
                batch = member.batch
                # The item before the iterator's position (which a cut puts at the batch's end).
                at = min(len(batch) - length_hint(member.rest), member.stop) - 1
                return batch[at][0] if at >= member.start else None
        return None

    def stranded(self) -> tuple[list[Envelope], list[Any]] | None:
        """Outputs finished by workers now suspended in the middle of a piece, taken off them to be
        handed on by the caller, so that no output waits for its neighbour (None: there are none).

        Only where order is not kept: an ordered node's outputs leave in their turn.
        """
        if not self.has_stranded:
            return None
        self.has_stranded = False
        out: list[Envelope] = []
        errors: list[Any] = []
        for member in self._members:
            if member.rest is not None and not member.emitting and (member.out or member.errors):
                out += member.out
                member.out.clear()
                errors += member.errors
                member.errors.clear()
        return (out, errors) if out or errors else None

    # -- taking work --------------------------------------------------------------------------

    async def take(self, member: Member, *, extra: bool) -> Iterator[Envelope] | None:
        """Start the next piece of a worker: the items a suspended worker has not started, else a
        batch from the input. Returns the iterator the worker works through (which the pool may cut
        short; the piece has `member.size` items, its turn is `member.turn`), or None at the end of the
        input (or, for an extra worker, when there is nothing). The worker calls `finished` after it."""
        while True:
            if self.busy:  # another worker is in the middle of a piece: it may have items to spare
                rest = self.steal(member)
                if rest is not None:
                    return rest
            if self._ended:
                if self.busy == 0:
                    self._wake(len(self._waiting))
                    return None
            elif not self._reading and not (extra and self._empty()):
                self._reading = True
                try:
                    batch = await self.read(1)
                finally:
                    self._reading = False
                if batch and self._waiting:
                    # Idle workers take over what this one leaves, or (one of them) read on.
                    self._wake(len(batch))
                return self.begin(member, batch)
            if extra:
                return None
            waiter = runtime.new_future()
            self._waiting.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)

    def begin(self, member: Member, batch: list[Envelope]) -> Iterator[Envelope] | None:
        """Start `batch`, just read from the input, as the worker's next piece (as `take` does); None
        when it is empty: the input has ended.

        A worker alone in its pool and not in the middle of a piece reads the input itself
        (`read`) and calls this, sparing the round through `take`: no other worker can share then.
        """
        if not batch:
            self._ended = True
            self._wake(len(self._waiting))
            return None
        self._node.ledger.items_in += len(batch)  # in flight from now (a steal moves them): stats() shows them so
        return self._start_piece(member, batch, 0, self.gate.ticket() if self.gate is not None else None)

    def steal(self, member: Member) -> Iterator[Envelope] | None:
        """Start, as the worker's next piece, the items a worker suspended in the middle of its piece
        has not started (as `take` does first, without waiting); None when no worker has any to spare.

        The victim goes on with the item it is in, and its piece ends there; the items after it start
        here, in input order, as with a task each (their outputs, when order is kept, right after the
        victim's). Nothing is copied: both pieces are parts of one batch."""
        holding = self._holding
        stale: list[Member] = []  # ended, or in its last item with nothing to take: removed after the loop
        for victim in holding:
            rest = victim.rest
            if rest is not None and victim.emitting:
                continue
            left = 0 if rest is None else length_hint(rest)
            last = rest is None or not (victim.out or victim.errors or self._expands)
            if left:
                batch = victim.batch
                cut = len(batch) - left
                rest.__setstate__(len(batch))  # type: ignore[union-attr]  # the victim's list iterator stops at the cut
                victim.stop, victim.stolen = cut, victim.stolen + left
                turn = self.gate.split(victim.turn) if self.gate is not None and victim.turn is not None else None
                if last:
                    del holding[victim]  # safe: the loop over `holding` ends here
                break
            if last:
                stale.append(victim)
        else:
            victim = None
        for ended in stale:
            del holding[ended]
        return None if victim is None else self._start_piece(member, batch, cut, turn)

    def _empty(self) -> bool:
        return all(edge.empty() for edge in self._inputs)

    def _wake(self, count: int) -> None:
        waiting = self._waiting
        while count > 0 and waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    def _start_piece(self, member: Member, batch: list[Envelope], start: int, turn: Turn | None) -> Iterator[Envelope]:
        rest = iter(batch)
        if start:
            cursor: Any = rest
            cursor.__setstate__(start)  # a list iterator from that position on
        member.batch = batch
        member.rest = rest
        member.start = start
        member.stop = stop = len(batch)
        member.size = size = stop - start
        member.turn = turn
        member.stolen = 0
        self.busy += 1
        if self.live > 1 and (size > 1 or self._expands):
            self._holding[member] = None
        if not self._armed:
            if self._skip:
                # A node not seen suspended: looked at every so many pieces, when items arrive
                # (the edge's backlog), and at the latest _WATCH seconds after a piece started.
                self._skip -= 1
                if not self._watched:
                    self._watched = True
                    self._watch.add(self)
            else:
                self._armed = True
                self._call_soon(self._look)
        return rest

    def finished(self, member: Member) -> int:
        """A worker finished its piece; returns how many of its items another worker took over."""
        member.rest = None
        member.batch = _NO_BATCH
        if self._holding:
            self._holding.pop(member, None)
        self.busy -= 1
        if self._ended and self.busy == 0:
            self._wake(len(self._waiting))
        return member.stolen  # reset when its next piece starts

    # -- growing ------------------------------------------------------------------------------

    def arm(self) -> None:
        """Items arrived while no worker waits for them: look at the workers when the loop next turns,
        if one may be suspended in the node's function.

        Not for workers between pieces (they read next), nor for workers handing outputs on (more
        workers would wait for the same room): one of those that goes back to its piece looks then
        (`handed_on`).
        """
        if self._armed or self._group is None or not self.busy:
            return
        if self.busy > self.emitting:
            self._armed = True
            self._call_soon(self._look)
        else:
            self._missed = True

    def handing_on(self, member: Member) -> None:
        """A worker hands outputs on in the middle of its piece: waiting for room downstream is not
        waiting on I/O, so it keeps the items it has not started, and is not counted as suspended."""
        member.emitting = True
        self.emitting += 1

    def handed_on(self, member: Member) -> None:
        """A worker that handed outputs on in the middle of its piece goes back to it."""
        member.emitting = False
        self.emitting -= 1
        if self._missed:
            self._missed = False
            self.arm()

    def watched(self) -> None:
        """The run's watch: a piece started without a look _WATCH seconds ago or less; look if still busy."""
        self._watched = False
        if self.busy and not self._armed:
            self._look()

    def _look(self) -> None:
        """The loop turned while workers may be suspended: if work waits behind them, wake or add one."""
        self._armed = False
        if self._group is None:
            return
        calling = self.busy - self.emitting  # workers suspended in the middle of a piece
        unstarted = 0
        stranded = False
        # Only a piece of several items (or a generator's) can hold items not started or outputs
        # not handed on: those are in _holding (while there are two workers, else in _members).
        for member in self._holding if self.live > 1 else self._members:
            if member.rest is not None and not member.emitting:
                unstarted += length_hint(member.rest)
                stranded = stranded or bool(member.out or member.errors)
        if not calling:
            # The common case of a node that never suspends: its pieces are done in one go. The
            # next looks come later and later (every 64th piece at most), or when items arrive.
            self.calm = min(2 * self.calm + 1, _CALMEST)
            self._skip = self.calm
            return
        self.calm = self._skip = 0  # a worker is suspended mid-piece: look at every piece
        if stranded and self.gate is None:
            self.has_stranded = True
        else:
            stranded = False
        waits_at_input = calling == self.live and not self._reading and not self._ended and not self._empty()
        if not (unstarted or stranded or waits_at_input):
            return
        # A worker for each item waiting behind the suspended ones (at least one for their outputs,
        # or for the input): waiting workers first, then new ones up to the cap.
        wanted = max(unstarted, 1)
        woken = min(wanted, len(self._waiting))
        self._wake(woken)
        if self.fixed is None:
            for _ in range(min(wanted - woken, self.cap - self.live)):
                self._start(extra=True)
