"""Inbox: a source node fed by request handlers, and the answer each item gets from a sink.

    inbox = Inbox()
    graph = {"nodes": {"requests": {"coro": inbox.source}, ...}, "graph": {...}}
    plumber = Plumber(graph)
    inbox.bind(plumber)                  # pipelines.web.attach() does this for you
    result = await inbox.submit(item, timeout=5)

Each submitted item enters the graph through the inbox's node and gets a lineage key there;
`submit()` returns what the answering sink returned for that key (for a node that expands an item
into several, the first that arrives). An item that is dropped, skipped or routed away on every
path to that sink ends the wait with ItemDropped or the node's exception; nothing waits forever:
a stopped or ended run, or more than `max_pending` items waiting, raise Unavailable, and
`timeout` bounds the wait.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import networkx as nx

from ..errors import ItemDropped, PipelineError, Unavailable

if TYPE_CHECKING:
    from ..driver import Processor
    from ..plumber import Plumber
    from ..signals import Signal
    from ..types import Key, Outcome

__all__ = ["Inbox"]

logger = logging.getLogger(__name__)

_LIVE = ("running",)


class Inbox:
    """A source for items submitted from outside the graph (request handlers, callbacks).

    `max_pending` bounds the items submitted and not yet answered: one more raises Unavailable
    at once, which is how a server sheds load instead of queueing without end. `timeout` is the
    default bound of each `submit()` (None: no bound). `sink` names the node whose results answer
    (needed only when several sinks are reachable from the inbox).
    """

    def __init__(self, *, max_pending: int = 1000, timeout: float | None = 30.0, sink: str | None = None) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending!r}")
        self.max_pending = max_pending
        self.timeout = timeout
        self._sink = sink
        self._plumber: Plumber | None = None
        self._name: str | None = None
        self._answering: str | None = None
        self._queue: collections.deque[tuple[Any, asyncio.Future[Any]]] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._waiting: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self._ended: str | None = None
        self._deciders: set[str] = set()
        self._rescued: set[str] = set()

    def __repr__(self) -> str:
        return f"<Inbox {self._name!r} pending={self.pending}/{self.max_pending}>"

    @property
    def pending(self) -> int:
        """Items submitted and not yet answered whose callers still wait (queued or in the graph)."""
        return len(self._queue) + len(self._waiting)

    @property
    def node(self) -> str | None:
        """The name of the inbox's node, once bound."""
        return self._name

    # -- binding to a run ---------------------------------------------------------------------

    def bind(self, plumber: Plumber) -> None:
        """Connect to the (not yet started) run whose graph has `inbox.source` as one node's coro.

        Raises ValueError when no node, or more than one, uses this inbox, or when the answering
        sink is ambiguous or not reachable from the inbox.
        """
        if plumber.state != "built":
            raise ValueError(f"bind the inbox before the run starts (the run is {plumber.state!r})")
        mine = [p.name for p in plumber.nodes if getattr(p.processor_coro, "__self__", None) is self]
        if len(mine) != 1:
            raise ValueError(
                f"the graph must have exactly one node whose coro is this inbox's source, found {len(mine)}"
                + (f" ({', '.join(mine)})" if mine else "")
            )
        name = mine[0]
        graph = plumber.graph
        data: nx.DiGraph[str] = nx.DiGraph(
            [(u, v) for u, v, attrs in graph.edges(data=True) if attrs["kind"] == "data"]
        )
        data.add_nodes_from(graph.nodes)
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
        # A node that lies on every data path from the inbox to the answering sink decides the
        # item's fate: if it drops or fails the item, no answer can come any more.
        deciders = {answering}
        if nx.has_path(data, name, answering):
            dominators = nx.immediate_dominators(data, name)
            node = dominators[answering]
            while node != name:
                deciders.add(node)
                node = dominators[node]
        # ...unless its failures are routed to an error node from which the answer still comes.
        rescued = {
            node
            for node in deciders
            for _, target, attrs in graph.out_edges(node, data=True)
            if attrs["kind"] == "error" and (target == answering or nx.has_path(graph, target, answering))
        }
        self._plumber = plumber
        self._name = name
        self._answering = answering
        self._deciders = deciders
        self._rescued = rescued
        plumber.add_hook(self)
        plumber.signals.connect("run_ended", self._run_ended)
        plumber.signals.connect("stop_requested", self._stop_requested)

    def node_hooks(self, node: Processor) -> SimpleNamespace | None:
        """The inbox hears the nodes that decide an item's fate (pipelines.hooks)."""
        name = node.name
        if name not in self._deciders:
            return None
        waiting = self._waiting
        source = self._name
        rescued = name in self._rescued

        def settled(key: Key, outcome: Outcome, value: Any, copies: int) -> None:
            if key[0] != source or outcome not in ("dropped", "skipped", "routed"):
                return
            future = waiting.pop(key[:2], None)
            if future is None or future.done():
                return
            if outcome == "dropped":
                future.set_exception(ItemDropped(f"node {name!r} dropped the item", name))
            elif outcome == "skipped" or not rescued:
                assert isinstance(value, BaseException)
                error = value if isinstance(value, Exception) else PipelineError(repr(value))
                future.set_exception(error)
            else:
                waiting[key[:2]] = future  # routed to an error node from which the answer comes

        if name != self._answering:
            return SimpleNamespace(settled=settled)

        def result(key: Key, value: Any) -> None:
            if key[0] != source:
                return
            future = waiting.pop(key[:2], None)
            if future is not None and not future.done():
                future.set_result(value)

        return SimpleNamespace(settled=settled, result=result)

    # -- the source node ----------------------------------------------------------------------

    async def source(self, processor: Processor, output_q: Any) -> None:
        """The coroutine of the inbox's node: puts each submitted item into the graph, in order."""
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
                continue  # its caller stopped waiting (timeout or cancel): do not start the work
            key = output_q.next_key
            waiting[key] = future  # before the put: the answer may come before put returns
            try:
                await output_q.put(item)
            except BaseException:
                if waiting.pop(key, None) is not None and not future.done():
                    future.set_exception(
                        Unavailable(f"inbox {self._name!r}: the pipeline stopped before the item entered")
                    )
                raise

    # -- submitting ---------------------------------------------------------------------------

    async def submit(self, item: Any, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (the API the issue asks for)
        """Send `item` into the graph and return the answering sink's result for it.

        Raises Unavailable at once when the run is not running (not started, stopping, ended) or
        `max_pending` items already wait; ItemDropped, or the exception of the node that failed on
        the item; TimeoutError when no answer came within `timeout` seconds (the inbox's own
        `timeout` when not given). Cancelling the caller stops its wait; the item, if it already entered the
        graph, still flows to the end and its result is discarded.
        """
        plumber = self._plumber
        if plumber is None:
            raise Unavailable("the inbox is not bound to a pipeline yet")
        if plumber.state not in _LIVE:
            raise Unavailable(f"inbox {self._name!r}: the pipeline is {plumber.state}")
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
            if future.cancelled():  # the caller gave up: the source skips it if it has not entered yet
                for key, waiting in list(self._waiting.items()):
                    if waiting is future:  # it has entered: its answer will be discarded
                        del self._waiting[key]
                        break

    # -- the end of the run -------------------------------------------------------------------

    def _stop_requested(self, signal: Signal) -> None:
        self._refuse_queued("the pipeline is stopping")

    def _run_ended(self, signal: Signal) -> None:
        self._ended = signal.state
        self._refuse_queued(f"the pipeline ended ({signal.state})")
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(
                    Unavailable(f"inbox {self._name!r}: the pipeline ended ({signal.state}) before answering")
                )
        self._waiting.clear()

    def _refuse_queued(self, why: str) -> None:
        while self._queue:
            _, future = self._queue.popleft()
            if not future.done():
                future.set_exception(Unavailable(f"inbox {self._name!r}: {why}"))
