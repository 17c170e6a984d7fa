"""Sources: `InputProcessor`, a node without inputs, and `SourceOutput`, the `output_q` it puts into.

The output keeps the asyncio.Queue calls that code written for the original library uses
(`await put(x)`, `put_nowait(x)`, `qsize()`, `maxsize`, `full()`, `empty()`), and behind them gives
each item its lineage key and hands it to the input edge of every successor.

Nothing is put after the end. Once the source's coroutine has returned (or failed, or was stopped),
its output is sealed: a put still waiting for room then is delivered before the source ends, and
any later `put` or `put_nowait` (from a task the coroutine left behind) raises
`PipelineStateError` naming the source, so an item is never accepted and left behind.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import AsyncGeneratorType
from typing import TYPE_CHECKING, Any

from . import runtime
from .driver import Processor, RunControl
from .edges import MemoryEdge
from .errors import PipelineError, PipelineStateError
from .fusion import FLUSH
from .hooks import NodeHooks, unfiltered
from .keyless import count_followed
from .lineage import DROPPED, Keyed
from .queues import QueueEmpty
from .valve import Valve

if TYPE_CHECKING:
    from .edges import Edge
    from .fusion import Chain
    from .graph import NodeSpec
    from .hooks import Admits
    from .ledger import Ledger

__all__ = ["InputProcessor", "SourceOutput"]

_STATS_LAG = 0.05
"""Seconds of the run's clock a fused source's counts may lag behind its items (`_flushed`)."""

_TURN = 0.005
"""Real seconds a fused source's segment may keep the loop before it lets it turn (`_flushed`)."""


class InputProcessor(Processor):
    """A node without inputs: its coroutine is called once and puts items into `output_q`.

    ``async def f(processor, output_q, **args)`` in the original style; in 'item' style, an async
    generator ``async def f(**args)`` whose yielded values are the items. `Plumber.stop()` cancels
    the coroutine where it is (usually waiting in `put`) and lets the rest of the graph drain.
    """

    kind = "source"

    def __init__(
        self,
        spec: NodeSpec | object = None,
        env_vars: dict[str, Any] | None = None,
        control: RunControl | None = None,
        **original: Any,
    ) -> None:
        super().__init__(spec, env_vars, control, **original)
        self._stopping = False
        self._producing: runtime.Task[Any] | None = None
        self._output = SourceOutput(self, [], self.valve)
        if self._hand is not None:  # built by hand (pipelines.standalone): it starts now
            self._start_by_hand(self._hand)

    @property
    def output_queue(self) -> SourceOutput:
        """The queue the source's coroutine puts items into (the `output_q` it receives)."""
        return self._output

    def wire(self, inputs: list[Edge], outputs: list[Edge], error_edge: Edge | None, ports: dict[int, int]) -> None:
        super().wire(inputs, outputs, error_edge, ports)
        self._output = SourceOutput(self, outputs, self.valve)

    def install(self, hooks: NodeHooks) -> None:
        super().install(hooks)
        if hooks.admits is not None:
            self._output = AdmittingSourceOutput(self, self.handoff.edges, self.valve, hooks.admits)

    def go_keyless(self, *, followed: bool = False) -> None:
        super().go_keyless(followed=followed)
        self._output.go_keyless()

    def fuse(self, chain: Chain) -> None:
        super().fuse(chain)
        self._output = FusedSourceOutput(self, self.handoff.edges, self.valve, chain)

    def stop_producing(self) -> None:
        self.stop()

    @property
    def stopped(self) -> bool:
        """Whether the source was asked to stop (stop())."""
        return self._stopping

    def stop(self) -> None:
        """Stop producing: cancel the coroutine if it runs, or keep it from starting.

        The rest of the run goes on: what the source already put drains to the sinks.
        """
        self._stopping = True
        if self._producing is not None:
            # A put that handed its item to some successors but not yet all finishes first: half
            # an item would leave a join downstream waiting for a member that never comes.
            self._output.stop_after_put(self._producing)

    async def work(self) -> None:
        try:
            await runtime.cancel_region(self._produce())
        finally:
            self._output.seal()
        if not self._control.cancelled and self._output.pending:
            await self._output.drained()  # puts already waiting for room are delivered before the end

    async def _produce(self) -> None:
        if self._stopping:
            return
        task = runtime.current_task()
        self._producing = task
        port = self._output
        spec = self._spec
        try:
            # an 'item' style source takes only its args; the original style gets (processor, output_q)
            produced = spec.coro(**spec.args) if spec.style == "item" else self.invoke(port)
            if inspect.isasyncgen(produced):
                async with contextlib.aclosing(produced) as agen:
                    await port.pump(agen)
            else:
                await produced
        except BaseException as exc:
            self._producing = None
            if runtime.is_cancellation(exc) and self._stopping and not self._control.cancelled:
                task.uncancel()  # the stop we asked for: end normally, so the rest drains
                return
            failure = self.as_failure(exc, task)  # re-raises a cancellation that is the run's own
            port.flush_counts()
            failure.add_note(f"pipelines: source {self.name!r} failed after putting {self.ledger.items_out} items")
            self._control.fail(failure)
        else:
            self._producing = None


class SourceOutput:
    """The output queue of a source. `put()` waits while a successor's input is full."""

    __slots__ = (
        "_bare",
        "_drained",
        "_edges",
        "_index",
        "_ledger",
        "_name",
        "_partial",
        "_pending",
        "_seq",
        "_single",
        "_source_valve",
        "_stopped",
        "_stopping",
        "_valve",
    )

    def __init__(self, source: Processor, edges: list[Edge], valve: Valve) -> None:
        self._ledger: Ledger = source.ledger
        # A valve of its own, following the source's: a stop closes it, so that no item is let in
        # after the stop was asked for (by the test of the valve each put already makes).
        self._valve: Valve | _Ended = Valve(leader=valve)
        self._source_valve = valve
        self._stopped: runtime.Task[Any] | None = None
        """The source's task, once a stop was asked for: puts made in it from then on are refused."""
        self._edges = edges
        self._name = source.name
        self._index = source.spec.index
        self._seq = 0
        self._bare = False
        self._single = edges[0] if len(edges) == 1 else None
        self._pending = 0
        self._partial = 0
        self._stopping: runtime.Task[Any] | None = None
        self._drained: runtime.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<SourceOutput of {self._name!r} {self.qsize()}/{self.maxsize}>"

    @property
    def maxsize(self) -> int:
        """The smallest bound among the successors' inputs (0 when the source has no successor)."""
        return min((edge.maxsize for edge in self._edges), default=0)

    def qsize(self) -> int:
        """Items waiting in the fullest successor's input."""
        return max((edge.qsize() for edge in self._edges), default=0)

    def full(self) -> bool:
        return any(edge.full() for edge in self._edges)

    def empty(self) -> bool:
        return all(edge.empty() for edge in self._edges)

    @property
    def ended(self) -> bool:
        """True once the source has ended: every put from then on raises PipelineStateError."""
        return isinstance(self._valve, _Ended)

    @property
    def pending(self) -> int:
        """Puts waiting for room in a successor's input (they are delivered before the source ends)."""
        return self._pending

    def stop_after_put(self, producer: runtime.Task[Any]) -> None:
        """Cancel `producer` (the source's coroutine) now, or, while a put has sent its item to
        some successors and waits for room in another, once that put has sent it to all: the
        put then raises CancelledError, as if the stop had come just after it. From now on no put
        is let in (`_at_valve`): an item given after the stop (by a generator that goes on before
        the cancellation reaches it, or another task) is not accepted."""
        self._refuse_puts(producer)
        if self._partial:
            self._stopping = producer
        else:
            producer.cancel()

    def _refuse_puts(self, producer: runtime.Task[Any]) -> None:
        self._stopped = producer
        if isinstance(self._valve, Valve):
            self._valve.close()

    def flush_counts(self) -> None:
        """Bring the source's stats up to date now: a fused source adds up its segment's counts only
        every so many items (none to add here)."""

    def seal(self) -> None:
        """The source has ended: refuse every put from now on (puts already waiting go through)."""
        valve = self._valve
        if isinstance(valve, Valve):
            self._valve = _Ended(self._name)
            valve.open()  # a put still waiting at it (in a task the stop did not end) is refused now

    def _held(self) -> bool:
        """Paused or ended: what refuses a `put_nowait` (after a stop, an item that finds room still
        goes: a source may hand on a last item as its cancellation reaches it)."""
        return self._source_valve.closed or isinstance(self._valve, _Ended)

    async def _at_valve(self) -> None:
        """Wait while the valve is closed: paused (until resumed), ended (then it raises), or stopped.
        Stopped, the put's item is not accepted: in the source's task, the stop's cancellation lands
        here, at once, or (while another put's item is partly sent) once that item is whole
        (`_stop_if_asked`), since on trio cancelling this put's task would cancel that put too; in
        another task (one the source started ends with it), the put waits until the source has
        ended, then raises PipelineStateError."""
        while self._valve.closed:
            if self._stopped is not None and not self._partial and runtime.task_or_none() is self._stopped:
                await runtime.sleep(0)  # the stop's cancellation, if it is on its way to this task
                await runtime.raise_cancelled(runtime.current_task())
            await self._valve.wait_open()

    async def drained(self) -> None:
        """Wait until no put is waiting for room."""
        while self._pending:
            self._drained = runtime.new_future()
            await self._drained

    @property
    def next_key(self) -> tuple[str, int] | None:
        """The lineage key the next put will give its item: (source name, position); None in a
        keyless run, whose items have none."""
        return None if self._bare else (self._name, self._seq)

    async def put(self, item: Any) -> None:
        """Send `item` to every successor, waiting while one of their inputs is full.

        Cancelling a blocked put is safe: successors that had room got the item, and it is
        counted; when none had, the item was not sent at all. A stop (`InputProcessor.stop`) never
        splits an item: a put that has given it to some successors first gives it to the rest,
        then raises CancelledError. Several puts may wait at once
        (a source that puts from several tasks): each item keeps its own position. While the run
        is paused, put waits before the item takes its position.
        """
        if self._valve.closed:  # paused, ended or stopped
            await self._at_valve()
        # Take the position before any await, so concurrent puts never share a key.
        envelope = item if self._bare else self._envelope(item)  # a keyless run's item goes on bare
        if self._single is not None and self._single.put_nowait(envelope):
            self._ledger.items_out += 1  # the common case: one successor, with room
            return
        full = self._offer(envelope)
        if full >= 0:
            await self._send(envelope, full)

    async def pump(self, items: AsyncIterator[Any]) -> None:
        """Send every item of `items` on as `put` would, waiting only where `put` would wait: the
        loop of a source that yields its items. The common source, with one successor, hands each
        item on with no call of ours in between (bare in a keyless run, else in its envelope)."""
        single = self._single
        if single is None:
            await self._pump_to_each(items)
            return
        valve, ledger, room = self._valve, self._ledger, single.put_nowait
        if self._bare:
            async for item in items:
                if not valve.closed and room(item):
                    ledger.items_out += 1
                else:  # paused, or no room now: put waits
                    await self.put(item)
            return
        name, index = self._name, self._index
        async for item in items:
            seq = self._seq
            if not valve.closed and room(((name, seq), item, index)):
                self._seq = seq + 1
                ledger.items_out += 1
            else:  # put waits, and gives the item the same position
                await self.put(item)

    async def _pump_to_each(self, items: AsyncIterator[Any]) -> None:
        """`pump` for a source with several successors (or none): each item goes to every one that
        has room with no call of ours (`_envelope` and `_offer` written out: the per-item path); from the
        first that has none, `_send` waits as `put` would."""
        edges, valve, ledger = self._edges, self._valve, self._ledger
        bare, name, index = self._bare, self._name, self._index
        async for item in items:
            if valve.closed:  # paused, ended or stopped: put waits (or refuses the item)
                await self.put(item)
                continue
            if bare:
                envelope = item
            else:
                envelope = ((name, self._seq), item, index)
                self._seq += 1
            for full, edge in enumerate(edges):
                if not edge.put_nowait(envelope):
                    await self._send(envelope, full)
                    break
            else:
                ledger.items_out += 1

    def _envelope(self, item: Any) -> Any:
        """The envelope of the next item: with its key and the source's index, or (a keyless run)
        the item itself."""
        if self._bare:
            return item
        envelope = ((self._name, self._seq), item, self._index)
        self._seq += 1
        return envelope

    def _offer(self, envelope: Any) -> int:
        """Hand `envelope` to the successors while they have room: -1 when all had (it is counted),
        else the index of the first that had none, from which `_send` goes on."""
        for i, edge in enumerate(self._edges):
            if not edge.put_nowait(envelope):
                return i
        self._ledger.items_out += 1
        return -1

    async def _send(self, envelope: Any, start: int) -> None:
        """Send to the successors from the `start`-th on (those before it have the item), waiting
        where an input is full."""
        ledger, edges = self._ledger, self._edges
        sent = start > 0 or not edges
        partial = sent
        reached = start
        self._pending += 1
        if partial:
            self._partial += 1
        try:
            for edge in edges[start:]:
                if not edge.put_nowait(envelope):
                    ledger.blocked_seconds += await edge.put_many([envelope])
                reached += 1
                sent = True
                if not partial:
                    partial = True
                    self._partial += 1
        finally:
            if reached < len(edges):  # the put was given up (cancelled) before these had the item
                self._not_sent(envelope, edges[reached:])
            if sent:
                ledger.items_out += 1
            if partial:
                self._partial -= 1
            self._pending -= 1
            if not self._pending and self._drained is not None and not self._drained.done():
                self._drained.set_result(None)
        await self._stop_if_asked()

    def _not_sent(self, envelope: Any, edges: list[Edge]) -> None:
        """A put was given up before `edges` had `envelope` (see AdmittingSourceOutput)."""

    async def _stop_if_asked(self) -> None:
        """The source was stopped while an item was partly sent: now that it is whole, stop."""
        producer = self._stopping
        if producer is not None and not self._partial:
            self._stopping = None
            if producer is runtime.current_task():
                await runtime.raise_cancelled(producer)  # the item is in the graph whole; the stop lands here
            producer.cancel()

    def put_nowait(self, item: Any) -> None:
        """Send `item` to every successor now, or raise asyncio.QueueFull and send it to none.

        While the run is paused, every put_nowait raises asyncio.QueueFull; once the source has
        ended, PipelineStateError.
        """
        if self._held() or not all(edge.accepts_now() for edge in self._edges):
            if isinstance(self._valve, _Ended):
                self._valve.refuse()
            raise runtime.QueueFull
        envelope = self._envelope(item)
        if self._admit(envelope):
            for edge in self._edges:
                edge.put_nowait(envelope)
            self._ledger.items_out += 1

    def _admit(self, envelope: Any) -> bool:
        return True

    def go_keyless(self) -> None:
        """Send the items without their keys from now on (a keyless run, pipelines.lineage.needs_keys)."""
        self._bare = True

    def get_nowait(self) -> Any:
        """Take back the oldest item this source put that still waits in its successor's input.

        Raises QueueEmpty when there is none. The item is not handed on (`items_out` no
        longer counts it). Only for a source with one successor, over an in-memory edge.
        """
        envelope = self._taking_edge().take_nowait(DROPPED, self._index)
        if envelope is None:
            raise QueueEmpty
        self._ledger.items_out -= 1
        return envelope[1]

    async def get(self) -> Any:
        """`get_nowait()`, waiting while none of this source's items waits in its successor's input.

        Raises PipelineStateError once that input has ended and holds none of them.
        """
        envelope = await self._taking_edge().take(DROPPED, self._index)
        if envelope is None:
            raise PipelineStateError(f"source {self._name!r}: its successor's input has ended")
        self._ledger.items_out -= 1
        return envelope[1]

    def _taking_edge(self) -> MemoryEdge:
        edge = self._single
        if not isinstance(edge, MemoryEdge):
            raise PipelineError(
                f"source {self._name!r}: get on its output queue needs exactly one successor, over an "
                "in-memory edge (take from a successor's input_queue instead)"
            )
        return edge


class AdmittingSourceOutput(SourceOutput):
    """A source's output when a hook hears each item enter (`admits`), and may pass it over.

    Keyless (a run whose hooks follow only the items at their positions: pipelines.hooks), an item
    at a position the hooks hear goes on with its key, as a pipelines.lineage.Keyed counted in each
    successor's edge first (`MemoryEdge.keyed`); every other item goes bare, as with no hook.
    """

    __slots__ = ("_admits", "_heard")

    def __init__(self, source: Processor, edges: list[Edge], valve: Valve, admits: Admits) -> None:
        super().__init__(source, edges, valve)
        # A hook that hears only some positions (pipelines.hooks): tested here, without a call.
        self._admits, self._heard = unfiltered(admits)

    def _envelope(self, item: Any) -> Any:
        seq = self._seq
        self._seq = seq + 1
        if self._bare and self._heard is not None and seq not in self._heard:
            return item  # an item no hook follows
        envelope = ((self._name, seq), item, self._index)
        return Keyed(envelope) if self._bare else envelope

    def _admit(self, envelope: Any) -> bool:
        if self._bare and type(envelope) is not Keyed:
            return True
        key = envelope[0]
        heard = self._heard
        if (heard is not None and key[1] not in heard) or self._admits(key):
            if self._bare:
                count_followed(self._edges, 1)  # each successor's edge counts a followed item first
            return True
        return False

    async def pump(self, items: AsyncIterator[Any]) -> None:
        hand = self._hand_admitted
        heard, single = self._heard, self._single
        if not self._bare or heard is None or single is None:
            async for item in items:  # the hooks hear each item: a call per item anyway
                waiting = hand(item)
                if waiting is not None:
                    await waiting
            return
        # Keyless, one successor: an item no hook follows goes on bare with no call of ours.
        valve, ledger, room = self._valve, self._ledger, single.put_nowait
        async for item in items:
            seq = self._seq
            if seq in heard or valve.closed:
                waiting = hand(item)
                if waiting is not None:
                    await waiting
            elif room(item):
                self._seq = seq + 1
                ledger.items_out += 1
            else:  # put waits, and gives the item the same position
                await self.put(item)

    def _hand_admitted(self, item: Any) -> Awaitable[None] | None:
        """Hand `item` on without a coroutine where none is needed, letting the hooks hear it enter
        first (they may pass it over): None when it went on at once (or was passed over), else
        what to await to finish its put."""
        if self._valve.closed:
            return self.put(item)
        seq = self._seq
        self._seq = seq + 1
        heard = self._heard
        envelope: Any
        if heard is None or seq in heard:
            key = (self._name, seq)
            if not self._admits(key):
                return None
            envelope = (key, item, self._index)
            if self._bare:
                envelope = Keyed(envelope)
                count_followed(self._edges, 1)
        elif self._bare:
            envelope = item
        else:
            envelope = ((self._name, seq), item, self._index)
        single = self._single
        if single is not None and single.put_nowait(envelope):
            self._ledger.items_out += 1
            return None
        full = self._offer(envelope)
        return None if full < 0 else self._send(envelope, full)

    def _not_sent(self, envelope: Any, edges: list[Edge]) -> None:
        if type(envelope) is Keyed:  # counted in every successor's edge before the put began
            count_followed(edges, -1)

    def _taking_edge(self) -> MemoryEdge:
        raise PipelineError(
            f"source {self._name!r}: get on its output queue is not possible while a hook hears each item "
            "enter (a journal): the item was recorded as sent"
        )

    async def put(self, item: Any) -> None:
        if self._valve.closed:
            await self._at_valve()
        waiting = self._hand_admitted(item)  # the valve is open: it hands the item on, or starts to
        if waiting is not None:
            await waiting


class FusedSourceOutput(SourceOutput):
    """The output of a source leading a fused segment (pipelines.fusion, a keyless run): each item
    goes through the nodes fused after the source, in its task, and what the last gives on to that
    node's successors. A stop lets an item already in the segment through first (as `put` lets an
    item that some successors have go to the rest). The segment's counts are added up every FLUSH
    items, at a loss and at the end (`Chain.count`, `Chain.lose`)."""

    __slots__ = (
        "_calls",
        "_chain",
        "_clock",
        "_entered",
        "_flushed_at",
        "_keep",
        "_lean",
        "_lean_items",
        "_lean_puts",
        "_limit",
        "_out",
        "_place",
        "_sink",
        "_sink_bare",
        "_turned_at",
    )

    def __init__(self, source: Processor, edges: list[Edge], valve: Valve, chain: Chain) -> None:
        super().__init__(source, edges, valve)
        self._bare = True
        self._chain = chain
        self._entered = 0
        self._out: list[Any] = []
        self._place = {id(call): i for i, (call, _) in enumerate(chain.steps)}
        """Each fused node's place by its call (each call is an object of its own: pipelines.fusion)."""
        self._calls = tuple(call for call, _ in chain.steps)
        sink: tuple[Any, bool] = chain.sink or (None, True)
        self._sink, self._sink_bare = sink
        self._keep = chain.keep
        self._lean_puts = (
            self._sink is not None and not self._sink_bare and self._keep is None and not any(b for _, b in chain.steps)
        )
        """Whether `put` takes its shortest form: every fused node and the sink take the item in a 1-tuple
        (the original style), and the sink's results are not kept."""
        self._lean: AsyncGeneratorType[Any, Any] | None = None
        """The source's generator while `_lean_pump` runs it (and no put of its items waits)."""
        self._lean_items = (
            self._sink is not None and self._sink_bare and self._keep is None and all(bare for _, bare in chain.steps)
        )
        """Whether a generator's items take `_lean_pump`: every node of the segment and its sink take
        the value itself, and the sink's results are not kept."""
        self._limit = 1
        """The counts are added up every `_limit` items (`_flushed`): from 1 up to FLUSH, fewer when
        items are slow, so that stats() read during the run lag by about _STATS_LAG at most."""
        self._clock: Callable[[], float] | None = None  # the run's clock, read in the running loop
        self._flushed_at = self._turned_at = 0.0
        chain.begin()

    def stop_after_put(self, producer: runtime.Task[Any]) -> None:
        # In `_lean_pump`, the source's task is suspended either in its generator (then the
        # generator runs: the stop lands there) or on an item's path through the segment.
        lean = self._lean
        if lean is not None and not lean.ag_running:
            self._refuse_puts(producer)
            self._stopping = producer  # the item goes through first; then the pump stops
        else:
            super().stop_after_put(producer)

    async def pump(self, items: AsyncIterator[Any]) -> None:
        """`put` for each item, written out with its names held here: the per-item path of a
        fused source that yields its items (`_lean_pump`'s, when the segment allows). The items are
        counted here, and at the end."""
        if self._lean_items and isinstance(items, AsyncGeneratorType):
            await self._lean_pump(items)
            return
        valve, chain, out, entered = self._valve, self._chain, self._out, 0
        steps, keep, hand_on = chain.steps, self._keep, chain.hand_on
        sink, sink_bare = self._sink, self._sink_bare
        place, limit, due = self._place, self._limit, False
        call: Any = None
        try:
            async for value in items:
                if valve.closed:  # paused, ended or stopped: put waits, then sends the item through (or refuses it)
                    await self.put(value)
                    continue
                if entered >= limit:
                    self._entered += entered
                    entered = 0
                    limit, due = self._flushed(limit)
                entered += 1
                self._partial += 1
                try:
                    failure = None
                    try:
                        for call, bare in steps:
                            value = await call(value if bare else (value,))
                            if value is None:
                                break
                        else:
                            call = None
                        if call is None and sink is not None:
                            value = await sink(value if sink_bare else (value,))
                            if value is not None and keep is not None:
                                keep(value)
                    except BaseException as exc:
                        failure = exc
                    if call is None and failure is None:
                        if sink is None:
                            out.append(value)
                            await hand_on(out)
                    else:  # lost at the fused node `call` (None: past them all, at the sink)
                        self._entered += entered
                        entered = 0
                        await self._lost(len(steps) if call is None else place[id(call)], value, failure)
                finally:
                    self._partial -= 1
                if self._stopping is not None:
                    await self._stop_if_asked()
                if due:  # between items: a stop that comes now cancels here
                    due = False
                    await runtime.sleep(0)
        finally:
            self._entered += entered

    async def _lean_pump(self, items: AsyncGeneratorType[Any, Any]) -> None:
        """`pump` for the commonest segment: the source's generator, nodes and sink that each take
        the value itself, a sink whose results are not kept. Each item costs what B1's own
        functions cost called in one loop, and the valve's test, the count and the stop's test: no
        count of the items inside the segment (a stop tells an item on its way through the segment
        from the generator at work by whether the generator runs: `stop_after_put`)."""
        valve, calls, sink, place = self._valve, self._calls, self._sink, self._place
        assert sink is not None
        entered, limit, due = 0, self._limit, False
        call: Any = None
        self._lean = items
        try:
            async for value in items:
                if valve.closed:  # paused, ended or stopped: put waits, then sends the item through (or refuses it)
                    self._lean = None  # put counts the item inside itself (`_partial`)
                    await self.put(value)
                    self._lean = items
                    continue
                if entered >= limit:
                    self._entered += entered
                    entered = 0
                    limit, due = self._flushed(limit)
                entered += 1
                try:
                    for call in calls:
                        value = await call(value)
                        if value is None:
                            break
                    else:
                        call = None
                        await sink(value)
                except BaseException as exc:
                    failure: BaseException | None = exc
                else:
                    failure = None  # through to the sink, or dropped
                if call is not None or failure is not None:  # lost at the fused node `call` (None: at the sink)
                    self._entered += entered
                    entered = 0
                    await self._lost(len(calls) if call is None else place[id(call)], value, failure)
                if self._stopping is not None:
                    await self._stop_if_asked()
                if due:  # between items: a stop that comes now lands at the next test
                    due = False
                    await runtime.sleep(0)
                    if self._stopping is not None:
                        await self._stop_if_asked()
        finally:
            self._lean = None
            self._entered += entered

    def _flushed(self, limit: int) -> tuple[int, bool]:
        """Add up the segment's counts, `limit` items after the last time. Returns the next limit
        (halved when those items took more than _STATS_LAG of the run's clock, else doubled, up to
        FLUSH), and whether the loop is due a turn: a segment whose nodes never await would otherwise
        keep every other task (a stop, a timer, a signal handler, a stats reader) from running."""
        self._count()
        clock = self._clock
        if clock is None:
            clock = self._clock = runtime.clock()
        now = clock()
        slow, self._flushed_at = now - self._flushed_at > _STATS_LAG, now
        limit = max(1, limit // 2) if slow else min(FLUSH, 2 * limit)
        real = time.monotonic()
        if real - self._turned_at < _TURN:
            return limit, False
        self._turned_at = real
        return limit, True

    def flush_counts(self) -> None:
        self._count()

    def seal(self) -> None:
        self._count()  # the segment's last counts
        super().seal()

    def _count(self) -> None:
        self._ledger.items_out += self._entered
        self._chain.count(self._entered)
        self._entered = 0

    async def _lost(self, stage: int, value: Any, failure: BaseException | None) -> None:
        """The item was lost at the `stage`-th fused node: dropped (`failure` None), or failed (a
        keyless run routes no failure). Counted with the items before it."""
        entered, self._entered = self._entered, 0
        self._ledger.items_out += entered
        if not self._chain.lose(stage, value, failure, self._out, self._out, entered):
            # The item failed the run, which cancelled this task: the cancellation lands here.
            await runtime.raise_cancelled(runtime.current_task())

    async def put(self, value: Any) -> None:
        """One item's whole path through the segment (`Chain.run` written out, with the names it needs
        held by this output): the per-item path of an original-style source, which puts its items.
        Written out here for the commonest segment (every node and the sink in the original style,
        the sink's results not kept); `_put_any` takes any other, and an item that finds the valve
        closed."""
        if not self._lean_puts or self._valve.closed or self._entered >= self._limit:
            await self._put_any(value)
            return
        self._entered += 1
        self._partial += 1
        try:
            try:
                for call in self._calls:
                    value = await call((value,))
                    if value is None:
                        break
                else:
                    call = None
                    await self._sink((value,))
            except BaseException as exc:
                failure: BaseException | None = exc
            else:
                failure = None
            if call is not None or failure is not None:  # lost at the fused node `call` (None: at the sink)
                await self._lost(len(self._calls) if call is None else self._place[id(call)], value, failure)
        finally:
            self._partial -= 1
        if self._stopping is not None:
            await self._stop_if_asked()

    async def _put_any(self, value: Any) -> None:
        """`put` for any segment: nodes in either style, a sink or none (the segment's last node hands
        its outputs on), the sink's results kept or not."""
        if self._valve.closed:  # paused, ended or stopped
            await self._at_valve()
        if self._entered >= self._limit:
            self._limit, due = self._flushed(self._limit)
            if due:  # before the item is taken: a stop that comes now refuses it, as at the valve
                await runtime.sleep(0)
                if self._valve.closed:
                    await self._at_valve()
        self._entered += 1
        self._partial += 1
        try:
            call: Any = None
            failure = None
            try:
                for call, bare in self._chain.steps:
                    value = await call(value if bare else (value,))
                    if value is None:
                        break
                else:
                    call = None
                sink = self._sink
                if call is None and sink is not None:
                    value = await sink(value if self._sink_bare else (value,))
                    if value is not None and self._keep is not None:
                        self._keep(value)
            except BaseException as exc:
                failure = exc
            if call is None and failure is None:
                if self._sink is None:  # a list of its own: puts from several tasks may wait at once
                    await self._chain.hand_on([value])
            else:  # lost at the fused node `call` (None: past them all, at the sink)
                await self._lost(len(self._calls) if call is None else self._place[id(call)], value, failure)
        finally:
            self._partial -= 1
        if self._stopping is not None:
            await self._stop_if_asked()


class _Ended:
    """The valve of a source that has ended: always closed, and waiting at it raises.

    Swapped in for the run's valve when the source ends, so that refusing a late put costs the
    put's fast path nothing: it already tests the valve.
    """

    __slots__ = ("_name",)
    closed = True

    def __init__(self, name: str) -> None:
        self._name = name

    def refuse(self) -> None:
        raise PipelineStateError(
            f"source {self._name!r} has ended: its coroutine returned, so nothing it puts now would "
            "be processed; await every put before the source's coroutine returns"
        )

    async def wait_open(self) -> None:
        self.refuse()
