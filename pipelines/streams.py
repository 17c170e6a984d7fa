"""Streams: feed items into a running graph from application code and iterate what its sinks return.

Two shapes, over the same run::

    async with open_stream(graph) as run:       # you send, and read, from your own tasks
        await run.send(item)                    # waits while max_pending items are in the run
        run.close()                             # end of input
        async for result in run: ...            # the sinks' results, until the graph has drained

    async for result in stream(graph, items):   # the items (an iterable or async iterable) fed for you
        ...

The **entry** is the node the items are fed into: a node without inputs, the graph's only source.
A graph written for streaming leaves its entry's ``coro`` out (``"numbers": {}``); a graph with a
source of its own can be streamed too, with ``entry="name"`` or when it has one node without
inputs: the stream's items then replace what its coroutine would have put, as
``pipelines.testing.run_graph(inputs=...)`` does. Each item sent gets the lineage key
``(entry, n)``, n counting from 0.

**Results** are what the sinks return (None is not a result, as everywhere), in the order they
come; ``ordered`` nodes keep input order. ``results(with_inputs=True)`` (``stream(..., pairs=True)``)
gives ``(input, output)`` pairs, matched by lineage: one input may give several outputs (several
sinks, an async generator) or none (a node returned None).

**Backpressure both ways.** An item is *pending* from ``send()`` until its path through the graph
has ended and every result it gave has been read. ``send()`` waits while `max_pending` items are
pending, so a reader that stops reading stops the writer after exactly `max_pending` items, and
what the stream keeps (inputs, results not read) stays bounded. A sink whose results wait unread
beyond `max_pending` is held after its batch until the reader takes some.

The stream is a hook (pipelines.hooks): it counts, per item, the envelopes alive in the graph,
as the journal and the web Inbox do, through the public hook methods only.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import SimpleNamespace, TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from . import runtime
from .errors import GraphError, PipelineCancelled, PipelineStateError
from .graph import DEFAULT_QUEUE_SIZE
from .plumber import Plumber
from .types import LIVE_STATES

if TYPE_CHECKING:
    from .driver import Processor
    from .graph import NodeSpec
    from .sources import SourceOutput
    from .types import Key, Outcome, RunState

__all__ = ["DEFAULT_MAX_PENDING", "Results", "Stream", "open_stream", "stream"]

DEFAULT_MAX_PENDING = 1000
"""Items a stream lets into its run at once by default: enough to keep every stage of a long chain busy."""

T = TypeVar("T")


def _identity(value: Any) -> Any:
    return value


class Stream:
    """A run of a graph fed by `send()` (or from `items`) and read by iterating its results.

    Build it with `open_stream()`; the run starts when the ``async with`` block is entered and
    ends when it is left. Leaving the block after reading every result of every item sent ends
    the run normally; leaving it otherwise (an exception, a ``break``, results not read) cancels
    what still runs, as leaving ``async with Plumber(...)`` does, and waits until every task of
    the run has ended. A run that failed raises its exception, with its own type, from the
    iterator, from `send()`, and on leaving the block (unless the block is already raising).
    """

    def __init__(
        self,
        graph: Mapping[str, Any],
        coro_map: Callable[[Any], Any] | None = None,
        env_vars: dict[str, Any] | None = None,
        *,
        items: Iterable[Any] | AsyncIterable[Any] | None = None,
        entry: str | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        hooks: Iterable[object] = (),
    ) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be an int >= 1, got {max_pending!r}")
        if items is not None and (isinstance(items, (str, bytes)) or not isinstance(items, (Iterable, AsyncIterable))):
            raise TypeError(f"items must be an iterable or an async iterable of items, got {type(items).__name__}")
        self._items = items
        self._max = max_pending
        name, nodes = _with_entry(graph, entry, self._feed)
        mapper = coro_map or _identity
        feed = nodes[name]["coro"]

        def resolve(value: Any) -> Any:
            return value if value is feed else mapper(value)

        plumber = Plumber({**graph, "nodes": nodes}, resolve, env_vars, queue_size=queue_size, hooks=hooks)
        spec = plumber.spec
        others = sorted(n for n, s in spec.nodes.items() if s.is_source and n != name)
        if not spec.nodes[name].is_source:
            feeders = ", ".join(spec.nodes[name].inputs + spec.nodes[name].error_sources)
            raise GraphError(f"entry {name!r}: it has inputs (from {feeders}); a stream feeds a node without inputs")
        if others:
            raise GraphError(
                f"node {others[0]!r} is a source too: a stream's items are the only input of its graph "
                f"(entry {name!r}); give {others[0]!r} an input or run the graph with Plumber"
            )
        if not spec.nodes[name].successors:
            raise GraphError(f"entry {name!r} has no successors: nothing would receive the stream's items")
        plumber.add_hook(_StreamHook(self, name))
        self._plumber = plumber
        self._entry = name
        self._fan = len(spec.nodes[name].successors)
        self._entered = False
        self._closed = False
        self._closed_by = ""
        """What ended the input: 'close()', or leaving the `async with` block."""
        self._ended = False
        self._pending = 0
        self._queue: collections.deque[Any] = collections.deque()  # sent, not yet put into the graph
        self._inputs: dict[int, Any] = {}  # position -> the item, while it is pending
        self._open: dict[int, int] = {}  # position -> its envelopes alive in the graph + its results unread
        self._buffer: collections.deque[tuple[int, Any]] = collections.deque()  # (position, result), unread
        self._holds: list[runtime.Future[None]] = []  # sinks held until the reader takes some results
        self._arrived = runtime.new_event()  # the feeder: an item was sent, or the input closed
        self._room = runtime.new_event()  # senders: fewer than max_pending items pending, or the run ended
        self._readable = runtime.new_event()  # readers: results came, or the run ended
        self._host: contextlib.AbstractAsyncContextManager[Any] | None = None
        """What owns the run's tasks while the block runs (a nursery under trio: runtime.hosting)."""

    def __repr__(self) -> str:
        return f"<Stream entry={self._entry!r} {self._plumber.state} pending={self._pending}/{self._max}>"

    # -- what a user reads ----------------------------------------------------------------------

    @property
    def plumber(self) -> Plumber:
        """The Plumber running the graph: its `stats()`, `state`, `signals`."""
        return self._plumber

    @property
    def entry(self) -> str:
        """The name of the node the items are fed into."""
        return self._entry

    @property
    def max_pending(self) -> int:
        """How many items may be pending at once; `send()` waits while that many are."""
        return self._max

    @property
    def pending(self) -> int:
        """Items sent whose path has not ended yet, or whose results have not all been read."""
        return self._pending

    @property
    def buffered(self) -> int:
        """Results waiting to be read."""
        return len(self._buffer)

    @property
    def closed(self) -> bool:
        """True once `close()` was called: the input has ended."""
        return self._closed

    # -- the run --------------------------------------------------------------------------------

    async def __aenter__(self) -> Stream:
        """Start the run on the running loop (once)."""
        if self._entered:
            raise PipelineStateError("this stream was already started; a stream runs once, open another")
        self._entered = True
        host = runtime.hosting()
        await host.__aenter__()
        try:
            self._plumber.create_pipeline()
        except BaseException as exc:
            await host.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._host = host
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """End the run: normally when every item sent was read, else by cancelling; raise its failure."""
        host, self._host = self._host, None
        try:
            await self._end_run(exc)
        finally:
            if host is not None:
                await host.__aexit__(None, None, None)  # every task of the run has ended by now

    async def _end_run(self, exc: BaseException | None) -> None:
        plumber = self._plumber
        cancelled_here = False
        if plumber.state == "running" and exc is None and self._items is None and not self._pending:
            self._end_input("the `async with` block was left")  # nothing is left in the graph: the run ends
            try:
                await plumber.join()
            except BaseException as error:
                if runtime.is_cancellation(error):
                    await plumber.aclose()
                    raise
                # the run's own failure: raised below
        else:
            cancelled_here = plumber.state in LIVE_STATES
            await plumber.aclose()  # cancels what still runs; waits until every task has ended
        try:
            await plumber.join()
        except PipelineCancelled:
            if not cancelled_here and exc is None:
                raise
        except BaseException:
            if exc is None:
                raise

    def close(self) -> None:
        """End the input: the items sent so far go through, then the run ends once the graph drains.

        With `items`, no more of them is taken. Closing twice does nothing.
        """
        self._end_input("close()")

    def _end_input(self, by: str) -> None:
        if not self._closed:
            self._closed = True
            self._closed_by = by
        self._arrived.set()

    async def send(self, item: Any) -> None:
        """Feed `item` into the entry; wait while `max_pending` items are pending.

        Returns once the item is queued for the entry, in order. Raises PipelineStateError outside
        the ``async with`` block, after `close()`, on a stream fed from `items`, or once the run
        has ended; the run's own exception (same type) when it failed, PipelineCancelled when it
        was cancelled (leaving the block does). Cancelling a send that waits sends nothing.
        """
        if self._items is not None:
            raise PipelineStateError("this stream is fed from its items; send() is for a stream opened without them")
        while True:
            if not self._entered:
                raise PipelineStateError("send() before the stream started: use `async with open_stream(...) as run`")
            if self._closed:
                raise PipelineStateError(f"send() after {self._closed_by}: the stream's input has ended")
            if self._ended or self._plumber.state != "running":
                await self._raise_end("send()")
            if self._pending < self._max:
                break
            self._room.clear()
            await self._room.wait()
        self._pending += 1
        self._queue.append(item)
        self._arrived.set()

    async def _raise_end(self, call: str) -> None:
        """Raise why the run cannot take items: its own exception when it failed."""
        state = self._plumber.state
        if state in ("failed", "cancelled"):
            await self._plumber.join()  # the run is ending: this raises its exception
        raise PipelineStateError(f"{call}: the run is {state} and takes no more items")

    # -- reading ----------------------------------------------------------------------------------

    def __aiter__(self) -> Results[Any]:
        return Results(self, False)

    @overload
    def results(self, *, with_inputs: Literal[False] = False) -> Results[Any]: ...
    @overload
    def results(self, *, with_inputs: Literal[True]) -> Results[tuple[Any, Any]]: ...
    @overload
    def results(self, *, with_inputs: bool) -> Results[Any]: ...
    def results(self, *, with_inputs: bool = False) -> Results[Any]:
        """The sinks' results as they come; with `with_inputs`, ``(input, output)`` pairs.

        Iteration ends once the input was closed (or `items` ran out) and the graph has drained,
        or raises the run's exception when it failed (after the results that came before).
        """
        return Results(self, with_inputs)

    async def _next_result(self, with_inputs: bool) -> Any:
        """The next result (or pair); StopAsyncIteration at the end. What `Results` calls."""
        buffer = self._buffer
        while not buffer:
            if self._ended:
                await self._plumber.join()  # raises the run's exception, or PipelineCancelled
                raise StopAsyncIteration
            if not self._entered:
                raise PipelineStateError("reading before the stream started: use `async with open_stream(...) as run`")
            self._readable.clear()
            await self._readable.wait()
        position, value = buffer.popleft()
        result = (self._inputs[position], value) if with_inputs else value
        opened = self._open
        left = opened[position] - 1
        if left:
            opened[position] = left
        else:
            self._done(position)
        holds = self._holds
        if holds and len(buffer) < self._max:
            for hold in holds:
                if not hold.done():
                    hold.set_result(None)
            holds.clear()
        return result

    # -- the entry's coroutine, and counting -------------------------------------------------------

    async def _feed(self, processor: Processor, output_q: SourceOutput) -> None:
        """The entry's coroutine: puts the items sent (or `items`) into the graph, in order.

        The entry is the only putter into `output_q`, so the n-th put takes the key (entry, n).
        """
        items = self._items
        inputs = self._inputs
        opened = self._open
        fan = self._fan
        put = output_q.put
        first = output_q.next_key
        assert first is not None  # the stream is a hook: the run keeps its keys
        position = first[1]
        if items is None:
            queue = self._queue
            while True:
                while queue:
                    item = queue.popleft()
                    inputs[position] = item
                    opened[position] = fan
                    position += 1
                    await put(item)
                if self._closed:
                    return
                self._arrived.clear()
                await self._arrived.wait()
        elif isinstance(items, AsyncIterable):
            source = aiter(items)
            try:
                while (self._pending < self._max and not self._closed) or await self._room_for_one():
                    self._pending += 1
                    try:
                        item = await anext(source)
                    except StopAsyncIteration:
                        self._pending -= 1
                        return
                    inputs[position] = item
                    opened[position] = fan
                    position += 1
                    await put(item)
            finally:
                if inspect.isasyncgen(source):
                    await source.aclose()  # an async generator left early ends here, not when collected
        else:
            iterator = iter(items)
            while (self._pending < self._max and not self._closed) or await self._room_for_one():
                self._pending += 1
                try:
                    item = next(iterator)
                except StopIteration:
                    self._pending -= 1
                    return
                inputs[position] = item
                opened[position] = fan
                position += 1
                await put(item)

    async def _room_for_one(self) -> bool:
        """Wait until one more item from `items` may enter; False once the input was closed."""
        while self._pending >= self._max and not self._closed:
            self._room.clear()
            await self._room.wait()
        return not self._closed

    def _add(self, position: int, count: int) -> None:
        """`count` envelopes of the item at `position` were made (or ended, when negative), or results read."""
        opened = self._open
        left = opened[position] + count
        if left:
            opened[position] = left
        else:
            self._done(position)

    def _done(self, position: int) -> None:
        """Nothing of the item at `position` is left in the run or unread: it is no longer pending."""
        del self._open[position]
        del self._inputs[position]
        self._pending -= 1
        self._room.set()

    def _finished(self) -> runtime.Future[None] | None:
        self._readable.set()
        if len(self._buffer) < self._max:
            return None
        hold = runtime.new_future()  # resolved by the reader; cancelled with the sink if the run ends
        self._holds.append(hold)
        return hold

    def _run_ended(self) -> None:
        self._ended = True
        self._readable.set()
        self._room.set()
        self._arrived.set()


class Results(Generic[T]):
    """An async iterator over a stream's results (or ``(input, output)`` pairs): see Stream.results()."""

    __slots__ = ("_stream", "_with_inputs")

    def __init__(self, stream: Stream, with_inputs: bool) -> None:
        self._stream = stream
        self._with_inputs = with_inputs

    def __aiter__(self) -> Results[T]:
        return self

    def __anext__(self) -> Awaitable[T]:
        return self._stream._next_result(self._with_inputs)  # the step itself: no frame of its own


def open_stream(
    graph: Mapping[str, Any],
    coro_map: Callable[[Any], Any] | None = None,
    env_vars: dict[str, Any] | None = None,
    *,
    items: Iterable[Any] | AsyncIterable[Any] | None = None,
    entry: str | None = None,
    max_pending: int = DEFAULT_MAX_PENDING,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    hooks: Iterable[object] = (),
) -> Stream:
    """A Stream over `graph`, to use as ``async with open_stream(graph) as run:``.

    `graph`, `coro_map`, `env_vars`, `queue_size` and `hooks` are the Plumber's. `entry` names
    the node items are fed into (by default the node without a ``coro``, else the one node
    without inputs). Without `items`, the block feeds the run with ``await run.send(item)`` and
    ends its input with ``run.close()``; with `items` (an iterable or an async iterable), the
    run is fed from them. The graph is checked here: GraphError before anything runs.
    """
    return Stream(
        graph,
        coro_map,
        env_vars,
        items=items,
        entry=entry,
        max_pending=max_pending,
        queue_size=queue_size,
        hooks=hooks,
    )


async def stream(
    graph: Mapping[str, Any],
    items: Iterable[Any] | AsyncIterable[Any],
    coro_map: Callable[[Any], Any] | None = None,
    env_vars: dict[str, Any] | None = None,
    *,
    pairs: bool = False,
    entry: str | None = None,
    max_pending: int = DEFAULT_MAX_PENDING,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    hooks: Iterable[object] = (),
) -> AsyncIterator[Any]:
    """Feed `items` into `graph` and yield what its sinks return, as they come.

    With `pairs`, yields ``(input, output)``. Ends when the items ran out and the graph has
    drained; raises the run's exception when it failed. It is an async generator: leaving the
    loop early cancels the run when the generator is closed, at once inside
    ``contextlib.aclosing(stream(...))``, else when it is garbage-collected.
    """
    if items is None:
        raise TypeError(
            "stream(graph, items): items must be an iterable or an async iterable, got None "
            "(to send items one at a time, use `async with open_stream(graph) as run`)"
        )
    runtime.require_asyncio(  # under trio, an async generator must not yield inside the run's nursery
        "pipelines.stream()",
        "use `async with open_stream(graph, items=...) as run: async for result in run: ...`",
    )
    run = open_stream(
        graph,
        coro_map,
        env_vars,
        items=items,
        entry=entry,
        max_pending=max_pending,
        queue_size=queue_size,
        hooks=hooks,
    )
    async with run:
        async for result in run.results(with_inputs=pairs):
            yield result


def _with_entry(graph: Mapping[str, Any], entry: str | None, feed: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """The entry's name, and the graph's nodes with the entry's coroutine replaced by `feed`."""
    if not isinstance(graph, Mapping) or not isinstance(graph.get("nodes"), Mapping):
        Plumber(graph)  # type: ignore[arg-type]  # raises the GraphError that says what is wrong
        raise AssertionError("unreachable")
    nodes = {name: dict(d) if isinstance(d, Mapping) else d for name, d in graph["nodes"].items()}
    if entry is None:
        entry = _find_entry(graph, nodes)
    elif entry not in nodes:
        raise GraphError(f"entry {entry!r} is not a node of the graph (nodes: {', '.join(sorted(map(str, nodes)))})")
    node_d = nodes[entry]
    if not isinstance(node_d, Mapping):
        raise GraphError(f"node {entry!r}: must be a dict, got {type(node_d).__name__}")
    properties = node_d.get("properties")
    if isinstance(properties, Mapping):
        properties = {k: v for k, v in properties.items() if k != "style"}  # the feed is in the original style
    # Its own args are its coroutine's; any other key stays, for the graph's check to judge.
    rest = {k: v for k, v in node_d.items() if k not in ("coro", "args", "properties")}
    nodes[entry] = {**rest, "coro": feed, "properties": properties}
    return entry, nodes


def _find_entry(graph: Mapping[str, Any], nodes: dict[str, Any]) -> str:
    without_coro = [n for n, d in nodes.items() if isinstance(d, Mapping) and d.get("coro") is None]
    if len(without_coro) == 1:
        return str(without_coro[0])
    if len(without_coro) > 1:
        raise GraphError(
            f"nodes {', '.join(map(repr, without_coro))} have no 'coro'; a stream feeds one of them: "
            "name it with entry=..."
        )
    successors = graph.get("graph") if isinstance(graph.get("graph"), Mapping) else {}
    assert isinstance(successors, Mapping)
    fed = set()
    for succ in successors.values():
        if isinstance(succ, str):
            fed.add(succ)
        elif isinstance(succ, (list, tuple)):
            fed.update(succ)
    for d in nodes.values():
        on_error = ((d.get("properties") or {}) if isinstance(d, Mapping) else {}).get("on_error")
        if isinstance(on_error, str):
            fed.add(on_error)
    starts = [n for n in nodes if n not in fed]
    if len(starts) != 1:
        raise GraphError(
            f"the graph has {len(starts)} nodes without inputs ({', '.join(map(repr, starts)) or 'none'}): "
            "leave the entry's 'coro' out, or name it with entry=..."
        )
    return str(starts[0])


class _StreamHook:
    """The stream's hook: counts each item's envelopes at every node, and hears the sinks and the end."""

    def __init__(self, stream: Stream, entry: str) -> None:
        self._stream = stream
        self._entry = entry

    def node_hooks(self, node: Processor) -> SimpleNamespace | None:
        if node.name == self._entry:
            return None  # the feed counts what enters
        return _Tally(self._stream, self._entry, node.spec).methods()

    def run_ended(self, plumber: Plumber, state: RunState) -> None:
        self._stream._run_ended()


class _Tally:
    """One node's share of counting a stream's items: the node hooks the stream installs there.

    The arithmetic of the journal's NodeTally and the web Inbox's count: putting an item to k
    successors makes k envelopes; a node handing one on as c envelopes adds c - 1; an async
    generator adds c per output and takes 1 off once its input is done; a join's group of h
    members becomes one envelope; a sink finishing an item takes 1 off.
    """

    __slots__ = ("_add", "_buffer", "_entry", "_held", "_key_length", "_open", "_spec", "_stream", "fan")

    def __init__(self, stream: Stream, entry: str, spec: NodeSpec) -> None:
        self._stream = stream
        self._add = stream._add
        self._open = stream._open
        self._buffer = stream._buffer
        self._entry = entry
        self._spec = spec
        self.fan = len(spec.successors)
        self._key_length = spec.key_length
        self._held: dict[Key, int] = {}

    def methods(self) -> SimpleNamespace:
        spec = self._spec
        methods: dict[str, Any] = {"settled": self.settled}
        if spec.is_generator and self.fan:
            methods["sent"] = self.sent_output
        elif self.fan > 1:
            methods["sent"] = self.sent  # with one successor, handing on changes no count
        if spec.join_mode is not None:
            methods["held"] = self.held
            methods["released"] = self.released
        if not self.fan:
            methods["result"] = self.result
            methods["finished"] = self.finished
        return SimpleNamespace(**methods)

    def sent(self, key: Key, value: Any, copies: int) -> None:
        if key[0] == self._entry:
            self._add(key[1], copies - 1)

    def sent_output(self, key: Key, value: Any, copies: int) -> None:
        if key[0] == self._entry:
            self._add(key[1], copies)

    def settled(self, key: Key, outcome: Outcome, value: Any, copies: int) -> None:
        if key[0] == self._entry:
            self._add(key[1], copies - 1)

    def held(self, key: Key) -> None:
        if key[0] != self._entry:
            return
        if len(key) != self._key_length:
            self._add(key[1], -1)  # a tombstone no group can ever wait for: the join ignores it
            return
        self._held[key] = self._held.get(key, 0) + 1

    def released(self, key: Key) -> None:
        if key[0] != self._entry:
            return
        held = self._held.pop(key, 0)
        if held > 1:
            self._add(key[1], 1 - held)

    def result(self, key: Key, value: Any) -> None:
        if value is not None and key[0] == self._entry:
            self._open[key[1]] += 1  # unread: the item stays pending until it is read
            self._buffer.append((key[1], value))

    def finished(self, keys: list[Key]) -> runtime.Future[None] | None:
        add = self._add
        entry = self._entry
        for key in keys:
            if key[0] == entry:
                add(key[1], -1)
        return self._stream._finished()
