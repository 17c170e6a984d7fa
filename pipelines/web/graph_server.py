"""GraphServer: socket.io clients submit graphs of registered coroutines and receive the results.

The protocol of the original pipelines demo, on the default namespace:

    client -> server  process_msg  a graph dict whose 'coro' values name registered coroutines
    server -> client  recv         each value a sink of that graph returns (None excluded)
    server -> client  done         {"run", "state", "stats": {node: counters}} when the run ends
    server -> client  error        a one-line message: a refused payload, or a run that failed

Only coroutines of the registry can run: a name it does not resolve (``os.system``,
``__import__``) is refused before anything runs, as are payloads that are not a graph dict, are
larger than the limits, or ask for properties a client may not set. After an error the server
keeps serving. Each run belongs to the client that sent it: its results go to that client only,
and the client's disconnect cancels its runs.

A run goes at its client's pace. The server holds at most ``Limits.max_pending_results`` results
of a run (plus one batch per sink worker) between its sinks and the client's acknowledgement of
them: ``recv`` events ask for socket.io acknowledgements, and a sink waits while the run's results
are at that bound, which through the bounded edges holds the whole run back. A client that never
reads holds its run; it does not grow the server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import web

from ..errors import GraphError, PipelineCancelled, Refused
from ..plumber import Plumber
from ..runtime import wait_through_cancel
from .hub import Hub

if TYPE_CHECKING:
    from ..driver import Processor

__all__ = ["ALLOWED_PROPERTIES", "GraphServer", "Limits"]

logger = logging.getLogger(__name__)

ALLOWED_PROPERTIES = frozenset(
    {"aggregate_inputs", "input", "on_error", "ordered", "queue_size", "retry", "style", "timeout", "workers"}
)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one payload and one client may ask for."""

    max_payload_bytes: int = 64 * 1024
    max_nodes: int = 32
    max_items: int = 10_000  # elements of any list or dict given in a node's 'args'
    max_runs_per_client: int = 4
    max_workers: int = 16
    max_queue_size: int = 1000
    # Results of one run held for its client: returned by a sink and not yet acknowledged by the
    # client. At the bound the sinks wait, and the run with them; one batch per sink worker (at
    # most the sink's queue_size) can come on top.
    max_pending_results: int = 1000

    def __post_init__(self) -> None:
        value = self.max_pending_results
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:  # 0 would hold every run for good
            raise ValueError(f"Limits: max_pending_results must be an int >= 1, got {value!r}")


class GraphServer:
    """Runs the graphs socket.io clients send (event `process_msg`), with coroutines of `registry`.

    `registry` is called with each 'coro' name and returns the function or raises LookupError
    (a pipelines.Registry, or any such callable). With `hub`, every run is shown on the dashboard.
    """

    def __init__(
        self,
        sio: socketio.AsyncServer,
        registry: Callable[[str], Any],
        *,
        hub: Hub | None = None,
        limits: Limits | None = None,
        namespace: str = "/",
    ) -> None:
        self.sio = sio
        self.registry = registry
        self.hub = hub
        self.limits = limits or Limits()
        self.namespace = namespace
        self._runs: dict[str, dict[str, asyncio.Task[None]]] = collections.defaultdict(dict)
        self._count = 0
        self._tasks: set[asyncio.Task[None]] = set()  # every run not ended, also after its client left
        sio.on("process_msg", self._process_msg, namespace=namespace)
        sio.on("disconnect", self._disconnect, namespace=namespace)

    def attach(self, app: web.Application) -> None:
        """Cancel every client's runs when `app` shuts down."""
        app.cleanup_ctx.append(self._lifetime)

    def runs_of(self, sid: str) -> list[str]:
        """The ids of the runs of client `sid` that have not ended."""
        return list(self._runs.get(sid, {}))

    # -- handlers -----------------------------------------------------------------------------

    async def _process_msg(self, sid: str, payload: Any = None) -> None:
        outbox = _Outbox(self.limits.max_pending_results)
        try:
            plumber = self._build(sid, payload, outbox)
        except Refused as exc:
            logger.info("client %s: refused a payload: %s", sid, exc)
            await self.sio.emit("error", str(exc), to=sid, namespace=self.namespace)
            return
        self._count += 1
        run_id = f"{sid[:8]}-{self._count}"
        if self.hub is not None:
            run_id = self.hub.add(plumber, f"client {sid[:8]}", owner=sid).id
        task = asyncio.get_running_loop().create_task(
            self._run(sid, run_id, plumber, outbox), name=f"pipelines:client-{run_id}"
        )
        self._runs[sid][run_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _disconnect(self, sid: str, *args: Any) -> None:
        for task in self._runs.pop(sid, {}).values():
            task.cancel()

    # -- checking a payload -------------------------------------------------------------------

    def _build(self, sid: str, payload: Any, outbox: _Outbox) -> Plumber:
        limits = self.limits
        if not isinstance(payload, dict):
            raise Refused(f"payload must be a graph dict with 'nodes' and 'graph', got {_kind(payload)}")
        size = len(json.dumps(payload, default=repr))
        if size > limits.max_payload_bytes:
            raise Refused(f"payload is {size} bytes (max {limits.max_payload_bytes})")
        if len(self._runs.get(sid, {})) >= limits.max_runs_per_client:
            raise Refused(f"this client already has {limits.max_runs_per_client} runs going (the maximum)")
        nodes = payload.get("nodes")
        if isinstance(nodes, dict):
            if len(nodes) > limits.max_nodes:
                raise Refused(f"graph has {len(nodes)} nodes (max {limits.max_nodes})")
            for name, node in nodes.items():
                if isinstance(node, dict):
                    self._check_node(str(name), node)
        payload = self._capped(payload)
        try:
            plumber = Plumber(payload, functools.partial(self._resolve, outbox=outbox), env_vars={"sid": sid})
        except GraphError as exc:
            raise Refused(f"invalid graph: {exc}") from None
        plumber.add_hook(outbox)
        return plumber

    def _capped(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The graph with every node's elastic pool capped at `max_workers` (a node that sets no
        `workers` grows while its items wait, up to this)."""
        nodes, wiring = payload.get("nodes"), payload.get("graph")
        if not isinstance(nodes, dict) or not isinstance(wiring, dict):
            return payload
        fed = {succ for succs in wiring.values() if isinstance(succs, (list, tuple)) for succ in succs}
        capped = {}
        for name, node in nodes.items():
            props = node.get("properties") if isinstance(node, dict) else None
            if name in fed and isinstance(node, dict) and (props is None or isinstance(props, dict)):
                props = dict(props or {})
                if "workers" not in props:
                    props["max_workers"] = self.limits.max_workers
                node = {**node, "properties": props}
            capped[name] = node
        return {**payload, "nodes": capped}

    def _check_node(self, name: str, node: dict[str, Any]) -> None:
        limits = self.limits
        coro = node.get("coro")
        if not isinstance(coro, str):
            raise Refused(f"node {name!r}: 'coro' must be the name of a registered coroutine, got {_kind(coro)}")
        try:
            self.registry(coro)
        except LookupError as exc:
            raise Refused(f"node {name!r}: {exc}") from None
        properties = node.get("properties") or {}
        if isinstance(properties, dict):
            for key, value in properties.items():
                if key not in ALLOWED_PROPERTIES:
                    allowed = ", ".join(sorted(ALLOWED_PROPERTIES))
                    raise Refused(f"node {name!r}: property {key!r} cannot be set by a client (allowed: {allowed})")
                for prop, most in (("workers", limits.max_workers), ("queue_size", limits.max_queue_size)):
                    if key == prop and isinstance(value, int) and value > most:
                        raise Refused(f"node {name!r}: {prop} {value} is more than this server allows ({most})")
        args = node.get("args") or {}
        if isinstance(args, dict):
            for key, value in args.items():
                if isinstance(value, (list, dict)) and len(value) > limits.max_items:
                    raise Refused(f"node {name!r}: args {key!r} has {len(value)} items (max {limits.max_items})")
                # 'args': {'queue_size': N} bounds the node's queue, as in the original library
                if key == "queue_size" and isinstance(value, int) and value > limits.max_queue_size:
                    raise Refused(
                        f"node {name!r}: queue_size {value} is more than this server allows ({limits.max_queue_size})"
                    )

    def _resolve(self, value: Any, *, outbox: _Outbox) -> Any:
        if not isinstance(value, str):
            raise LookupError(f"a coro must be the name of a registered coroutine, got {_kind(value)}")
        fn = self.registry(value)
        # A sink that is an async generator hands over all the results of one item before its
        # `finished` can hold it back, so it waits for room in the outbox before each value.
        return _held_back(fn, outbox) if inspect.isasyncgenfunction(fn) else fn

    # -- running ------------------------------------------------------------------------------

    async def _run(self, sid: str, run_id: str, plumber: Plumber, outbox: _Outbox) -> None:
        emit = self.sio.emit
        running = asyncio.ensure_future(plumber.run())
        running.add_done_callback(lambda _: outbox.wake())
        # What the run ended with is told to the client below, or nobody is left to tell.
        running.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            while not running.done() or outbox.waiting:
                while outbox.waiting:
                    value, acknowledged = outbox.take()
                    await emit("recv", _jsonable(value), to=sid, namespace=self.namespace, callback=acknowledged)
                if not running.done():
                    await outbox.arrival()
            try:
                result = running.result()
                state = result.state
            except PipelineCancelled:
                return  # the client left, or the server is shutting down: nobody to tell
            except Exception as exc:
                state = "failed"
                await emit("error", f"run {run_id} failed: {_one_line(exc)}", to=sid, namespace=self.namespace)
            stats = {name: dataclasses.asdict(s) for name, s in plumber.stats().items()}
            await emit("done", {"run": run_id, "state": state, "stats": stats}, to=sid, namespace=self.namespace)
        finally:
            if not running.done():
                plumber.cancel()
                with contextlib.suppress(Exception):  # how it ended was retrieved by the callback above
                    await wait_through_cancel(running)
            outbox.close()  # the hub keeps ended runs (and their hooks) for a while: keep no result
            self._runs.get(sid, {}).pop(run_id, None)

    async def _lifetime(self, app: web.Application) -> AsyncIterator[None]:
        yield
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class _Outbox:
    """A hook: a run's results on their way to its client, at most `bound` of them at once.

    A result is held from the moment a sink returns it until the client acknowledges it. The
    sinks hear `result` (the value joins the outbox) and `finished`: while `bound` results are
    held, `finished` returns a wait for room, which holds the sink's worker (pipelines.hooks),
    and the bounded edges hold the rest of the run behind it.

    Why acknowledgements, and not the Engine.IO queue: `sio.emit()` to one client returns once
    the packet is queued for its transport, and that queue has no bound; reading its size would
    need python-engineio's internals, would say nothing with a Redis client manager (an emit is
    published to Redis, and queued by whichever server holds the client), and would not see a
    client that reads its socket but handles nothing. socket.io's acknowledgement is its public,
    end-to-end answer: python-socketio clients acknowledge an event when its handler returns, and
    a JavaScript client calls the function passed as the handler's last argument. One is asked
    for every `ask_every` results, and at the end of every burst (when nothing else is waiting),
    so that every result sent is covered by a request and a few requests are in flight at once:
    the client acknowledges while the server sends on.
    """

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.ask_every = max(1, bound // 4)
        self.waiting: collections.deque[Any] = collections.deque()  # returned by a sink, not sent yet
        self._unacknowledged = 0  # sent, not yet acknowledged by the client
        self._unasked = 0  # sent since the last acknowledgement request
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    @property
    def pending(self) -> int:
        """The results held for the client: waiting to be sent, or sent and not acknowledged."""
        return len(self.waiting) + self._unacknowledged

    # -- the hook (pipelines.hooks) -------------------------------------------------------------

    def node_hooks(self, node: Processor) -> SimpleNamespace | None:
        if node.spec.successors:
            return None
        return SimpleNamespace(result=self._result, finished=self._finished)

    def _result(self, key: Any, value: Any) -> None:
        if value is None:
            return
        self.waiting.append(value)
        self._arrived.set()
        if self.pending >= self.bound:
            self._room.clear()

    def _finished(self, keys: list[Any]) -> Awaitable[None] | None:
        return None if self._room.is_set() else self.room()

    # -- the run's side -------------------------------------------------------------------------

    async def room(self) -> None:
        """Wait until fewer than `bound` results are held."""
        await self._room.wait()

    async def arrival(self) -> None:
        """Wait for a result (or for `wake()`) since the last call."""
        await self._arrived.wait()
        self._arrived.clear()

    def wake(self) -> None:
        self._arrived.set()

    def take(self) -> tuple[Any, Callable[..., None] | None]:
        """The next result to send, and the acknowledgement callback to send it with (or None)."""
        value = self.waiting.popleft()
        self._unacknowledged += 1
        self._unasked += 1
        if self._unasked < self.ask_every and self.waiting:
            return value, None
        count, self._unasked = self._unasked, 0
        return value, functools.partial(self._acknowledged, count)

    def _acknowledged(self, count: int, *answer: Any) -> None:
        self._unacknowledged = max(0, self._unacknowledged - count)
        if self.pending < self.bound:
            self._room.set()

    def close(self) -> None:
        """Drop what is held; nothing waits for room any more."""
        self.waiting.clear()
        self._unacknowledged = self._unasked = 0
        self._room.set()


def _held_back(fn: Callable[..., Any], outbox: _Outbox) -> Callable[..., Any]:
    """`fn`, an async generator function, waiting for room in `outbox` before each value it yields.

    Only a sink needs it; another generator node waits the same way, which changes nothing that
    matters: it waits only while its run is at the bound, when the run cannot go on anyway. The
    wait counts in the node's `timeout`, if it has one, like any wait of the generator.
    """

    @functools.wraps(fn)
    async def held_back(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with contextlib.aclosing(fn(*args, **kwargs)) as values:
            async for value in values:
                if outbox.pending >= outbox.bound:
                    await outbox.room()
                yield value

    return held_back


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _one_line(exc: BaseException) -> str:
    notes = [n.removeprefix("pipelines: ") for n in getattr(exc, "__notes__", ())]
    text = f"{type(exc).__name__}: {exc}" + (f" ({'; '.join(notes)})" if notes else "")
    return " ".join(text.split())


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
