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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
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
    {"aggregate_inputs", "on_error", "ordered", "queue_size", "retry", "style", "timeout", "workers"}
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
        try:
            plumber = self._build(sid, payload)
        except Refused as exc:
            logger.info("client %s: refused a payload: %s", sid, exc)
            await self.sio.emit("error", str(exc), to=sid, namespace=self.namespace)
            return
        self._count += 1
        run_id = f"{sid[:8]}-{self._count}"
        if self.hub is not None:
            run_id = self.hub.add(plumber, f"client {sid[:8]}", owner=sid).id
        task = asyncio.get_running_loop().create_task(
            self._run(sid, run_id, plumber), name=f"pipelines:client-{run_id}"
        )
        self._runs[sid][run_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _disconnect(self, sid: str, *args: Any) -> None:
        for task in self._runs.pop(sid, {}).values():
            task.cancel()

    # -- checking a payload -------------------------------------------------------------------

    def _build(self, sid: str, payload: Any) -> Plumber:
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
        try:
            plumber = Plumber(payload, self._resolve, env_vars={"sid": sid})
        except GraphError as exc:
            raise Refused(f"invalid graph: {exc}") from None
        return plumber

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

    def _resolve(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise LookupError(f"a coro must be the name of a registered coroutine, got {_kind(value)}")
        return self.registry(value)

    # -- running ------------------------------------------------------------------------------

    async def _run(self, sid: str, run_id: str, plumber: Plumber) -> None:
        results: collections.deque[Any] = collections.deque()
        arrived = asyncio.Event()

        def keep(key: Any, value: Any) -> None:
            if value is not None:
                results.append(value)
                arrived.set()

        plumber.add_hook(_SinkResults(keep))
        emit = self.sio.emit
        running = asyncio.ensure_future(plumber.run())
        running.add_done_callback(lambda _: arrived.set())
        # What the run ended with is told to the client below, or nobody is left to tell.
        running.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            while not running.done() or results:
                while results:
                    await emit("recv", data=_jsonable(results.popleft()), to=sid, namespace=self.namespace)
                if not running.done():
                    arrived.clear()
                    await arrived.wait()
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
            self._runs.get(sid, {}).pop(run_id, None)

    async def _lifetime(self, app: web.Application) -> AsyncIterator[None]:
        yield
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class _SinkResults:
    """A hook that hands every sink's results to `keep(key, value)` (pipelines.hooks)."""

    def __init__(self, keep: Callable[[Any, Any], None]) -> None:
        self._keep = keep

    def node_hooks(self, node: Processor) -> SimpleNamespace | None:
        return SimpleNamespace(result=self._keep) if not node.spec.successors else None


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
