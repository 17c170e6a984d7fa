"""Inbox: a source node fed by request handlers, and the answer each item gets from a sink.

    inbox = Inbox()
    graph = {"nodes": {"requests": {"coro": inbox.source}, ...}, "graph": {...}}
    plumber = Plumber(graph)
    inbox.bind(plumber)                  # pipelines.web.attach() does this for you
    result = await inbox.submit(item, timeout=5)

Each submitted item enters the graph through the inbox's node and gets a lineage key there;
`submit()` returns what the answering sink returned for that key (for a node that expands an item
into several, the first that arrives). Nothing waits forever: a stopped or ended run, or more than
`max_pending` items waiting, raise Unavailable, and `timeout` bounds the wait.

One bad item fails one request: at every node the inbox's items reach whose `on_error` is not set
(it defaults to 'fail'), the inbox claims an item's failure as that item's own outcome
(the `claims` node method, pipelines.hooks), so `submit()` raises the node's exception and the
run goes on. A node with an explicit `on_error` keeps it; `Inbox(answer_failures=False)` leaves
every node's failures to fail the run. A failure that no item owns (a setup, a teardown, a hook, a
lost connection) still ends the run, and `submit()` then raises Unavailable naming it.

How the answer is found: the inbox counts, per submitted item, the envelopes of it alive in the
graph, as the journal does (pipelines.journal.engine): the inbox's put to k successors adds k, a
node handing one envelope on as c envelopes (outputs, tombstones, a failure routed to its error
node) adds c - 1, an async generator adds c per output and takes 1 off once its input is done, a
join's group of h members becomes one envelope when it resolves, and a sink finishing an item takes
1 off. The first result of the answering sink answers. When the count reaches 0 with no result,
every path ended elsewhere, and the answer is the reason the last path ended: the exception of the
node that skipped it or failed on it (or routed it to an error node whose own path then ended
without an answer), else ItemDropped naming the node that dropped it (for a join's discarded
group, the node upstream that dropped a member; else a sink that does not answer, where it ended).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import networkx as nx

from .. import runtime
from ..errors import ItemDropped, PipelineError, Unavailable, describe_failure
from ..lineage import is_linear
from ..types import ENDED_STATES, LIVE_STATES

if TYPE_CHECKING:
    from ..driver import Processor
    from ..plumber import Plumber
    from ..signals import Signal
    from ..types import Key, Outcome

__all__ = ["Inbox"]

logger = logging.getLogger(__name__)

_ENDS = ("dropped", "skipped", "routed", "failed")  # the outcomes that end a path without an answer

_LIVE = ("running",)


class Inbox:
    """A source for items submitted from outside the graph (request handlers, callbacks).

    `max_pending` bounds the items submitted and not yet answered: one more raises Unavailable
    at once, which is how a server sheds load instead of queueing without end. `timeout` is the
    default bound of each `submit()` (None: no bound). `sink` names the node whose results answer
    (needed only when several sinks are reachable from the inbox). With `answer_failures` (the
    default), an item that fails a node whose `on_error` is not set fails only its own
    `submit()`, with the node's exception, and the run goes on; False: it fails the run, as in a
    run without an inbox.
    """

    def __init__(
        self,
        *,
        max_pending: int = 1000,
        timeout: float | None = 30.0,
        sink: str | None = None,
        answer_failures: bool = True,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending!r}")
        self.max_pending = max_pending
        self.timeout = timeout
        self.answer_failures = answer_failures
        self._sink = sink
        self._plumber: Plumber | None = None
        self._name: str | None = None
        self._answering: str | None = None
        self._linear = False
        """Each item stays one envelope all the way (pipelines.lineage.is_linear): nothing is counted."""
        self._queue: collections.deque[tuple[Any, asyncio.Future[Any]]] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._waiting: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self._entered: dict[asyncio.Future[Any], tuple[str, int]] = {}  # the keys of _waiting, by future
        self._given_up = 0  # queued items whose callers stopped waiting (the source skips them)
        self._ended: str | None = None
        self._group: frozenset[str] = frozenset()
        self._heard: frozenset[str] = frozenset()
        self._alive: dict[int, int] = {}  # position of an item -> its envelopes alive in the graph
        self._ended_by: dict[int, tuple[str, BaseException | None]] = {}  # why its last path ended

    def __repr__(self) -> str:
        return f"<Inbox {self._name!r} pending={self.pending}/{self.max_pending}>"

    @property
    def pending(self) -> int:
        """Items submitted and not yet answered whose callers still wait (queued or in the graph)."""
        return self.queued + len(self._waiting)

    @property
    def queued(self) -> int:
        """Of `pending`, the items not yet handed to the graph (the inbox's node puts them in order)."""
        return len(self._queue) - self._given_up

    @property
    def in_graph(self) -> int:
        """Submitted items that still have envelopes in the graph (answered or not): 0 once all ended."""
        return len(self._alive)

    @property
    def node(self) -> str | None:
        """The name of the inbox's node, once bound."""
        return self._name

    @property
    def plumber(self) -> Plumber | None:
        """The run the inbox is bound to (the newest, after a restart), or None."""
        return self._plumber

    # -- binding to a run ---------------------------------------------------------------------

    def bind(self, plumber: Plumber) -> None:
        """Connect to the (not yet started) run whose graph has `inbox.source` as one node's coro.

        An inbox serves one run at a time: it can be bound again once its run has ended (a
        restart, pipelines.web.attach), or to replace a run that never started. Raises ValueError
        when the inbox's run is running or still ending, when no node, or more than one, uses this
        inbox, or when the answering sink is ambiguous or not reachable from the inbox.
        """
        if plumber.state != "built":
            raise ValueError(f"bind the inbox before the run starts (the run is {plumber.state!r})")
        old = self._plumber
        if old is not None and (old.state in LIVE_STATES or (old.state in ENDED_STATES and self._ended is None)):
            raise ValueError(
                f"inbox {self._name!r} is bound to a run that has not ended (state {old.state!r}); "
                "an inbox serves one run at a time"
            )
        mine = [p.name for p in plumber.nodes if getattr(p.processor_coro, "__self__", None) is self]
        if len(mine) != 1:
            raise ValueError(
                f"the graph must have exactly one node whose coro is this inbox's source, found {len(mine)}"
                + (f" ({', '.join(mine)})" if mine else "")
            )
        name = mine[0]
        graph = plumber.graph
        reachable = nx.descendants(graph, name)
        sinks = sorted(n for n in reachable if graph.out_degree(n) == 0)
        if self._sink is not None:
            if self._sink not in reachable:
                raise ValueError(
                    f"inbox sink {self._sink!r} is not reachable from node {name!r} (reachable sinks: "
                    f"{', '.join(sinks) or 'none'})"
                )
            answering = self._sink
        elif len(sinks) == 1:
            answering = sinks[0]
        else:
            raise ValueError(
                f"node {name!r} reaches {len(sinks)} sinks ({', '.join(sinks) or 'none'}); name the one that "
                "answers with Inbox(sink=...)"
            )
        # Sources zipped with the inbox share its items' counts (their n-th items meet its n-th).
        zipped = [
            {a for a in nx.ancestors(graph, node.name) if plumber.spec.nodes[a].is_source}
            for node in plumber.nodes
            if node.spec.join_mode == "zip"
        ]
        group = {name}
        while grown := [sources for sources in zipped if sources & group and not sources <= group]:
            group = group.union(*grown)
        heard = set(group).union(*(nx.descendants(graph, source) for source in group))
        self._plumber = plumber
        self._name = name
        self._answering = answering
        self._linear = is_linear(plumber.spec)
        self._group = frozenset(group)
        self._heard = frozenset(heard)
        self._ended = None
        plumber.add_hook(self)
        plumber.signals.connect("run_ended", self._run_ended)
        plumber.signals.connect("stop_requested", self._stop_requested)

    def node_hooks(self, node: Processor) -> SimpleNamespace | None:
        """The inbox counts its items at every node they can reach (pipelines.hooks), and answers."""
        if node.name not in self._heard:
            return None
        claims = self.answer_failures and "on_error" not in node.spec.properties.given
        return _ItemCount(self, node).methods(claims)

    def _take_waiting(self, position: int) -> asyncio.Future[Any] | None:
        """The caller's future of the item at `position`, no longer waiting here (None: no caller waits)."""
        assert self._name is not None
        future = self._waiting.pop((self._name, position), None)
        if future is not None:
            del self._entered[future]
        return future

    def _answer(self, position: int, value: Any) -> None:
        future = self._take_waiting(position)
        if future is not None and not future.done():
            future.set_result(value)

    def _fail(self, position: int, error: BaseException) -> None:
        """The item failed a node: that is its answer, whatever its other paths still do."""
        future = self._take_waiting(position)
        if future is not None and not future.done():
            future.set_exception(error if isinstance(error, Exception) else PipelineError(repr(error)))

    def _gone(self, position: int) -> None:
        """No envelope of the item is left: answer with the reason its last path ended."""
        assert self._name is not None
        node, error = self._ended_by.pop(position, (self._name, None))
        future = self._take_waiting(position)
        if future is None or future.done():
            return
        if error is None:
            future.set_exception(ItemDropped(f"node {node!r} dropped the item", node))
        else:
            future.set_exception(error if isinstance(error, Exception) else PipelineError(repr(error)))

    # -- the source node ----------------------------------------------------------------------

    async def source(self, processor: Processor, output_q: Any) -> None:
        """The coroutine of the inbox's node: puts each submitted item into the graph, in order."""
        runtime.require_asyncio("pipelines.web (aiohttp)", "serve the graph from an asyncio app")
        if self._plumber is None:
            raise PipelineError(
                f"source {processor.name!r}: this Inbox is not bound to the run; call inbox.bind(plumber) "
                "before it starts (pipelines.web.attach does)"
            )
        queue = self._queue
        waiting = self._waiting
        while True:
            while not queue:
                self._arrived = asyncio.Event()
                await self._arrived.wait()
            item, future = queue.popleft()
            if future.done():
                self._given_up -= 1
                continue  # its caller stopped waiting (timeout or cancel): do not start the work
            key = output_q.next_key
            waiting[key] = future  # before the put: the answer may come before put returns
            self._entered[future] = key
            try:
                await output_q.put(item)
            except BaseException:
                self._entered.pop(future, None)
                if waiting.pop(key, None) is not None and not future.done():
                    future.set_exception(
                        Unavailable(f"inbox {self._name!r}: the pipeline stopped before the item entered")
                    )
                raise

    # -- submitting ---------------------------------------------------------------------------

    async def submit(self, item: Any, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (the API the issue asks for)
        """Send `item` into the graph and return the answering sink's result for it.

        Raises Unavailable at once when the run is not running (not started, stopping, ended; a
        failed run's message names its failure) or `max_pending` items already wait, and when the
        run ends before answering; ItemDropped, or the exception of the node that failed on the
        item; TimeoutError when no answer came within `timeout` seconds (the inbox's own `timeout`
        when not given). Cancelling the caller stops its wait; the item, if it already entered the
        graph, still flows to the end and its result is discarded.
        """
        plumber = self._plumber
        if plumber is None:
            raise Unavailable("the inbox is not bound to a pipeline yet")
        if plumber.state not in _LIVE:
            raise Unavailable(f"inbox {self._name!r}: {_why_not_running(plumber)}")
        if self.pending >= self.max_pending:
            raise Unavailable(
                f"inbox {self._name!r}: {self.pending} items are waiting for an answer (max_pending="
                f"{self.max_pending}); the pipeline is too far behind"
            )
        limit = self.timeout if timeout is None else timeout
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._arrived is not None:
            self._arrived.set()
        try:
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            if future.done() and not future.cancelled():
                raise  # the answer itself was a TimeoutError raised by a node
            raise TimeoutError(f"inbox {self._name!r}: no answer within {limit} s") from None
        finally:
            if not future.done():
                future.cancel()
            if future.cancelled():  # the caller gave up
                key = self._entered.pop(future, None)
                if key is not None:
                    del self._waiting[key]  # it has entered: its answer will be discarded
                else:
                    self._given_up += 1  # still queued: the source skips it, and it waits for no answer

    # -- the end of the run -------------------------------------------------------------------

    def _stop_requested(self, signal: Signal) -> None:
        self._refuse_queued("the pipeline is stopping")

    def _run_ended(self, signal: Signal) -> None:
        plumber = self._plumber
        assert plumber is not None
        self._ended = signal.state
        failure = plumber.failure
        if failure is not None:
            why = f"the pipeline failed: {describe_failure(failure)}"
            unanswered = f"the pipeline failed before answering: {describe_failure(failure)}"
        else:
            why = f"the pipeline ended ({signal.state})"
            unanswered = f"the pipeline ended ({signal.state}) before answering"
        self._refuse_queued(why)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(Unavailable(f"inbox {self._name!r}: {unanswered}"))
        self._waiting.clear()
        self._entered.clear()
        self._alive.clear()
        self._ended_by.clear()

    def _refuse_queued(self, why: str) -> None:
        while self._queue:
            _, future = self._queue.popleft()
            if not future.done():
                future.set_exception(Unavailable(f"inbox {self._name!r}: {why}"))
        self._given_up = 0


def _why_not_running(plumber: Plumber) -> str:
    failure = plumber.failure
    if failure is not None:
        return f"the pipeline failed: {describe_failure(failure)}"
    return f"the pipeline is {plumber.state}"


class _ItemCount:
    """One node's share of the inbox's counting: its methods are the node hooks the inbox installs.

    The arithmetic is the journal's NodeTally's, for the items of the inbox (and of the sources
    zipped with it), keyed by position. In a linear graph each item is one envelope: nothing is
    counted, its path is over where it ends, and the answering sink's result is its answer.
    """

    __slots__ = (
        "_alive",
        "_ended_by",
        "_held",
        "_inbox",
        "_is_join",
        "_key_length",
        "_linear",
        "_spec",
        "_zip",
        "fan",
        "group",
        "name",
    )

    def __init__(self, inbox: Inbox, node: Processor) -> None:
        self._spec = spec = node.spec
        self._inbox = inbox
        self._alive = inbox._alive
        self._ended_by = inbox._ended_by
        self.group = inbox._group
        self.name = spec.name
        self.fan = len(spec.successors)
        self._is_join = spec.join_mode is not None
        self._zip = spec.join_mode == "zip"
        self._key_length = spec.key_length
        self._held: dict[tuple[Any, ...], int] = {}
        self._linear = inbox._linear

    def methods(self, claims: bool) -> SimpleNamespace:
        spec = self._spec
        methods: dict[str, Any] = {}
        if spec.is_source:
            if not self._linear:  # else there is nothing to count
                methods["admits"] = self.admits
            return SimpleNamespace(**methods)
        methods["settled"] = self.settled
        if claims:
            methods["claims"] = self.claims
        if spec.is_generator and self.fan:
            methods["sent"] = self.sent_output
        elif self.fan > 1:
            methods["sent"] = self.sent  # with one successor, handing on changes no count
        if self._is_join:
            methods["held"] = self.held
            methods["released"] = self.released
        if not self.fan:
            answering = self.name == self._inbox._answering
            if answering:
                methods["result"] = self.result
            if not (answering and self._linear):  # each item it finishes is answered by its result
                methods["finished"] = self.finished
        return SimpleNamespace(**methods)

    def _pass_on(self, position: int, copies: int) -> None:
        if self._linear:  # one envelope: its path is over here unless it went on
            if not copies:
                self._inbox._gone(position)
            return
        alive = self._alive
        left = alive[position] + copies - 1
        if left:
            alive[position] = left
        else:
            del alive[position]
            self._inbox._gone(position)

    def _ended(self, position: int, error: BaseException | None, weak: bool) -> None:
        """Note why a path ended; a weak reason (a join's discard, a sink that does not answer) keeps an earlier one."""
        if weak and position in self._ended_by:
            return
        self._ended_by[position] = (self.name, error)

    def admits(self, key: Key) -> bool:
        if key[0] in self.group and self.fan:
            self._alive[key[1]] = self._alive.get(key[1], 0) + self.fan
        return True

    def sent(self, key: Key, value: Any, copies: int) -> None:
        if key[0] in self.group:
            self._pass_on(key[1], copies)

    def sent_output(self, key: Key, value: Any, copies: int) -> None:
        if key[0] in self.group:
            self._alive[key[1]] += copies

    def settled(self, key: Key, outcome: Outcome, value: Any, copies: int) -> None:
        if key[0] not in self.group:
            return
        if outcome in _ENDS:
            if outcome == "dropped":
                self._ended(key[1], None, self._is_join)
            else:
                self._ended(key[1], value, False)
                if outcome == "failed" and isinstance(value, BaseException):
                    self._inbox._fail(key[1], value)  # answered now: another path may be held up by it
        self._pass_on(key[1], copies)

    def held(self, key: Key) -> None:
        if key[0] not in self.group:
            return
        match = key[1:] if self._zip else key
        if len(match) != self._key_length:
            self._pass_on(key[1], 0)  # a tombstone no group can ever wait for: the join ignores it
            return
        self._held[match] = self._held.get(match, 0) + 1

    def released(self, key: Key) -> None:
        if key[0] not in self.group:
            return
        held = self._held.pop(key[1:] if self._zip else key, 0)
        if held > 1:
            self._alive[key[1]] -= held - 1

    def claims(self, key: Key, exception: BaseException) -> bool:
        """An item of the inbox that failed here is its request's failure, not the run's."""
        return key[0] in self.group

    def result(self, key: Key, value: Any) -> None:
        if key[0] in self.group:
            self._inbox._answer(key[1], value)

    def finished(self, keys: list[Key]) -> None:
        group = self.group
        for key in keys:
            if key[0] in group:
                self._ended(key[1], None, True)
                self._pass_on(key[1], 0)
