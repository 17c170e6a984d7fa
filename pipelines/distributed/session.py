"""Session: one process's part in a distributed run, and the Redis keys that tie the parts together.

A run has an id; every key of it starts with ``pipelines:{RUN}:``:

    run               hash: state, error, graph, coordinator, plan, started, ended, stop
    in:EDGE           stream of each node's input (EDGE is the node, or 'node<-pred' for a zip join)
    instances         hash: 'node<TAB>worker' -> running | closed, one field per instance of a node
    alive             hash: worker -> the server time of its last heartbeat (ms)
    done              set of the nodes that have finished everywhere
    stats             hash: 'node<TAB>worker' -> that instance's NodeStats, as JSON (with 'published',
                      the number of the publication, so that an older one never overwrites it)

A node's name is percent-encoded wherever it goes into Redis (keys, fields, the plan, the `done`
set, the scripts' arguments; pipelines.distributed.keys), so that every name the core accepts
works here too.

and ``pipelines:graph:GRAPH`` holds the id of the latest run of a graph (GRAPH is a digest of the
graph dict), which is how a worker started without ``run=`` finds the run to join.

End-of-stream. A node is *done* when every producer of each of its input streams is done, the
streams are empty (acknowledged entries are deleted, so nothing unread and nothing in flight), and
no live instance of it is still running; a source is done when its instance has ended. The
`DONE_NODES` script checks this for every node in topological order, atomically; any process may call
it, and each does when idle. A worker is dead when its heartbeat is older than `dead_after`: its
instances no longer hold the run back, and the items it left are claimed by live instances.

The run ends when every node is done. The process running the sources is the *coordinator*; it
writes the final state. A failure anywhere writes state 'failed' with the error, and every process
fails with a `RemoteFailure` saying where and why; a cancel of the coordinator cancels every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import GraphError
from ..signals import Signal
from ..stats import NodeStats
from ..types import ENDED_STATES, LIVE_STATES
from . import scripts
from .edges import RedisEdge
from .errors import DistributedError, RedisUnavailable, RemoteFailure
from .joining import Joining
from .keys import RunKeys, decode_name, instance_field, redacted
from .stats import RunCounts

if TYPE_CHECKING:
    from ..driver import Processor
    from .plumber import DistributedPlumber

__all__ = ["GROUP", "Options", "RunKeys", "Session", "graph_digest", "redacted"]

logger = logging.getLogger(__name__)

GROUP = "pipelines"
KEEP_FINISHED_RUN = 24 * 3600  # seconds a finished run's keys stay readable (its stats, its state)
CLOSE_TIMEOUT = 5.0
FINAL = ENDED_STATES


@dataclass(frozen=True, slots=True)
class Options:
    """Tuning of a distributed run; see RedisTransport for what each means."""

    batch: int = 100
    claim_idle: float = 30.0
    max_deliveries: int = 5
    heartbeat: float = 1.0
    dead_after: float = 10.0
    poll: float = 0.05

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"RedisTransport: {field.name} must be a number > 0, got {value!r}")
        if self.dead_after <= self.heartbeat:
            raise ValueError(
                f"RedisTransport: dead_after ({self.dead_after}) must exceed heartbeat ({self.heartbeat}), "
                "or every worker would look dead between two heartbeats"
            )

    @property
    def block_ms(self) -> int:
        return max(1, int(self.poll * 1000))


def graph_digest(graph: Any) -> str:
    """A digest of a graph dict: processes running the same graph, with the same args, agree on it."""

    def named(obj: Any) -> str:
        return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__qualname__)}"

    text = json.dumps(graph, sort_keys=True, default=named)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Session(Joining):
    """This process's part in one run: its Redis connection, its node instances, its background work."""

    def __init__(
        self,
        url: str,
        options: Options,
        digest: str,
        *,
        coordinator: bool,
        nodes: Collection[str] | None,
        run_id: str | None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.options = options
        self.digest = digest
        self.coordinator = coordinator
        self._requested = None if nodes is None else list(nodes)
        self.local: frozenset[str] = frozenset()
        self.run_id = run_id
        self.keys = RunKeys(run_id or "?")
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.group = GROUP
        self.leaving = False
        self.opened = False
        self._on_wait = on_wait
        self._abandoned = False
        self._redis: aioredis.Redis | None = None
        self._plumber: DistributedPlumber | None = None
        self._edges: list[RedisEdge] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._calls: set[asyncio.Future[Any]] = set()
        self._closing: list[asyncio.Task[Any]] = []
        self._done: frozenset[str] = frozenset()
        self._watchers: dict[str, asyncio.Event] = {}
        self._plan = ""
        self._done_nodes_plan = "[]"
        self._counts = RunCounts()
        self._published = 0  # publications of this process's counts, numbered so a late one loses
        self._final_state: str | None = None

    # -- set up ------------------------------------------------------------------------------

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "the session is not open"
        return self._redis

    # -- the transport (pipelines.transport) ---------------------------------------------------

    def edge(self, name: str, node: str, producers: tuple[str, ...], maxsize: int) -> RedisEdge:
        """Every edge of the run is a Redis Stream."""
        edge = RedisEdge(self, name, node, producers, maxsize)
        self._edges.append(edge)
        return edge

    def node_task(self, node: Processor) -> Coroutine[Any, Any, None]:
        """A node given to this process runs here; any other is stood for by a task that ends
        when that node is done everywhere."""
        if node.name in self.local:
            return node.run()
        return self.watch(node.name)

    def attach(self, plumber: DistributedPlumber) -> None:
        """Take the checked graph from `plumber`, and work out which nodes run here (GraphError if none can)."""
        self._plumber = plumber
        self.spec = spec = plumber.spec
        sources = [name for name, node in spec.nodes.items() if node.is_source]
        if self.coordinator:
            local = sources
        elif self._requested is None:
            local = [name for name in spec.nodes if name not in sources]
        else:
            local = self._requested
            for name in local:
                if name not in spec.nodes:
                    raise GraphError(f"no node {name!r} to run (nodes: {', '.join(spec.nodes)})")
                if name in sources:
                    raise GraphError(f"node {name!r} is a source: sources run in the coordinator (pipelines run)")
        if not local:
            raise GraphError("this worker would run no node: every node of the graph is a source")
        self.local = frozenset(local)
        plumber.signals.connect("node_ended", self._node_ended)

    def processor(self, name: str) -> Processor:
        assert self._plumber is not None
        return self._plumber.processor(name)

    def processor_at(self, index: int) -> Processor:
        return self.processor(self.spec_names[index])

    @property
    def spec_names(self) -> list[str]:
        return list(self.spec.nodes)

    async def open(self) -> None:
        """Connect; the coordinator creates and announces the run, a worker finds it and registers."""
        options = self.options
        self._redis = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=5, socket_timeout=max(10.0, options.poll * 4), health_check_interval=0
        )
        self.put_script = self._redis.register_script(scripts.PUT)
        self.ack_script = self._redis.register_script(scripts.ACK)
        self.claim_script = self._redis.register_script(scripts.CLAIM)
        self._done_nodes_script = self._redis.register_script(scripts.DONE_NODES)
        self._register_script = self._redis.register_script(scripts.REGISTER)
        self._beat_script = self._redis.register_script(scripts.BEAT)
        self._finish_script = self._redis.register_script(scripts.FINISH)
        self._stopping_script = self._redis.register_script(scripts.STOPPING)
        self._stats_script = self._redis.register_script(scripts.STATS)
        try:
            await self.call(self._redis.ping)
            if self.coordinator:
                await self._create_run()
            else:
                await self._join_run()
        except BaseException:
            await self._disconnect()
            raise
        self.opened = True

    # -- calls to Redis ----------------------------------------------------------------------

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Await `fn(*args, **kwargs)`; a lost connection becomes one clear RedisUnavailable.

        The call runs shielded in a task of its own: the Redis client can lose a cancellation that
        lands in the middle of a command (and leave the connection half-read), so a cancelled
        caller stops waiting at once while the command, always short, completes on its own.
        """
        inner = asyncio.ensure_future(self._call(fn, args, kwargs))
        self._calls.add(inner)
        inner.add_done_callback(self._call_ended)
        return await asyncio.shield(inner)

    async def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            return await fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise RedisUnavailable(f"lost the connection to Redis at {redacted(self.url)}: {exc}") from None

    def _call_ended(self, inner: asyncio.Future[Any]) -> None:
        self._calls.discard(inner)
        if not inner.cancelled():
            inner.exception()  # retrieved: its caller may have stopped waiting

    async def done_nodes(self) -> frozenset[str]:
        """Mark done the nodes finished everywhere, and return them all; their last counts (each
        instance publishes them before it closes) are read first, so no run ends on older ones."""
        reply = await self.call(
            self._done_nodes_script,
            keys=[],
            args=[self.keys.prefix, int(self.options.dead_after * 1000), self._done_nodes_plan],
        )
        done = self._done | {decode_name(name.decode()) for name in reply}  # a done node stays done
        if done != self._done:
            with contextlib.suppress(DistributedError):  # the run is gone: _follow_the_run says so
                await self._counts.read(self.redis, self.keys.run_id)
            self._done = done = self._done | done  # with what a call that ran meanwhile found
            for name in done & self._watchers.keys():
                self._watchers[name].set()
        return done

    # -- tasks -------------------------------------------------------------------------------

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run `coro` as a task of this session; an exception it raises fails the run."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_ended)
        return task

    def _task_ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.fail(task.exception())  # type: ignore[arg-type]

    def fail(self, exc: BaseException) -> None:
        plumber = self._plumber
        if plumber is not None and plumber.state in LIVE_STATES:
            plumber.fail(exc)

    async def watch(self, name: str) -> None:
        """The task standing for node `name`, which runs elsewhere: it ends when the node is done."""
        event = self._watchers.setdefault(name, asyncio.Event())
        if name in self._done or self.leaving:
            event.set()
        await event.wait()

    def stopping(self) -> None:
        """A worker asked to stop leaves the run: its nodes finish what they took, and it exits."""
        if self.coordinator:
            return
        self.leaving = True
        for event in self._watchers.values():
            event.set()

    def filter_duplicates(self, node: str, envelopes: list[Any]) -> list[Any]:
        """Drop from a join's batch the items its groups already hold: a redelivery brings them twice."""
        processor = self.processor(node)
        if processor.spec.join_mode is None:
            return envelopes
        kept = []
        seen = set()
        for envelope in envelopes:
            key, _, producer = envelope
            if (key, producer) in seen or processor.holds(key, producer):
                logger.info("node %r: dropped a second delivery of item %r", node, key)
                continue
            seen.add((key, producer))
            kept.append(envelope)
        return kept

    def _node_ended(self, signal: Signal) -> None:
        name = signal.node
        plumber = self._plumber
        if name in self.local and plumber is not None and plumber.state in LIVE_STATES:
            self._closing.append(self.start(self._close_instance(name), f"pipelines:close:{name}"))

    async def _close_instance(self, name: str) -> None:
        """A local node ended: send what it still buffers, publish its counts, mark its instance closed."""
        processor = self.processor(name)
        mine = [*processor.outputs, processor.error_output]
        for edge in self._edges:
            if edge in mine:
                await edge.flush()
        await self._publish_stats([name])
        if self.coordinator and self._plumber is not None and self._plumber.state == "stopping":
            # before the end can reach any worker, so that each reports the run as stopped
            await self.call(self._stopping_script, keys=[self.keys.run], args=[])
        await self.call(self.redis.hset, self.keys.instances, instance_field(name, self.consumer), "closed")
        await self.done_nodes()

    # -- the background loop -----------------------------------------------------------------

    async def serve(self) -> None:
        """Heartbeats, settling, the run's state, stats: until cancelled when the local run ends."""
        assert self._plumber is not None
        plumber = self._plumber
        options = self.options
        loop = asyncio.get_running_loop()
        next_beat = next_stats = 0.0
        while True:
            now = loop.time()
            if now >= next_beat:
                next_beat = now + options.heartbeat
                await self.call(self._beat_script, keys=[self.keys.alive], args=[self.consumer])
                await self._touch()
            await self.done_nodes()
            await self._follow_the_run(plumber)
            if now >= next_stats:
                next_stats = now + min(0.5, options.heartbeat)
                await self._publish_stats(sorted(self.local))
                await self._counts.read(self.redis, self.keys.run_id)
            await asyncio.sleep(options.poll)

    async def _follow_the_run(self, plumber: DistributedPlumber) -> None:
        state, error, stop, coordinator = (
            v.decode() if v is not None else None
            for v in await self.call(self.redis.hmget, self.keys.run, ["state", "error", "stop", "coordinator"])
        )
        if state == "failed":
            self.fail(RemoteFailure(error or "the run failed in another process"))
        elif state == "cancelled" and not self.coordinator:
            plumber.cancel()
        elif state is None:
            self.fail(DistributedError(f"run {self.keys.run_id!r} is gone from Redis (its keys were deleted)"))
        elif self.coordinator:
            if stop and plumber.state == "running":
                logger.warning("run %s: stop requested through Redis; stopping the sources", self.keys.run_id)
                plumber.stop_nowait()
            if plumber.state == "stopping" and state == "running":
                await self.call(self._stopping_script, keys=[self.keys.run], args=[])
        elif coordinator is not None:
            beats = await self.call(self.redis.hget, self.keys.alive, coordinator)
            seconds, micros = await self.call(self.redis.time)
            age = seconds + micros / 1e6 - int(beats or 0) / 1000
            if age > self.options.dead_after:
                self.fail(
                    RemoteFailure(
                        f"the process running run {self.keys.run_id!r} (pipelines run) sent no heartbeat "
                        f"for {age:.1f}s: it stopped or lost Redis"
                    )
                )

    async def _touch(self) -> None:
        """Reset the idle time of the entries this process holds, so that nobody claims them while it lives."""
        for edge in self._edges:
            ids = edge.held_ids()
            if ids:
                await self.call(self.redis.xclaim, edge.key, self.group, self.consumer, 0, ids, justid=True)

    async def _publish_stats(self, names: list[str]) -> None:
        if not names:
            return
        assert self._plumber is not None
        self._published += 1
        pairs: list[str] = []
        for name in names:
            counts = {**self._plumber.processor(name).stats().as_dict(), "published": self._published}
            pairs += [instance_field(name, self.consumer), json.dumps(counts)]
        await self.call(self._stats_script, keys=[self.keys.stats], args=[self._published, *pairs])

    # -- the end -----------------------------------------------------------------------------

    async def close(self, state: str, failure: BaseException | None) -> None:
        """Leave the run: final counts, instances closed, and for the coordinator the final state."""
        if not self.opened:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._close(state, failure)
        except (RedisUnavailable, RedisError, TimeoutError) as exc:
            logger.debug("could not record the end of the run in Redis: %r", exc)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks))
            await self._disconnect()

    async def _close(self, state: str, failure: BaseException | None) -> None:
        for task in list(self._tasks):
            if task not in self._closing:
                task.cancel()
        if self._closing:
            await asyncio.wait(self._closing)
        r = self.redis
        await self._publish_stats(sorted(self.local))
        fields_ = {instance_field(name, self.consumer): "closed" for name in self.local}
        if fields_:
            await self.call(r.hset, self.keys.instances, mapping=fields_)
        if state == "failed" or (self.coordinator and state in FINAL):
            error = "" if failure is None else _describe(failure, self)
            await self.call(self._finish_script, keys=[self.keys.run], args=[state, error])
        if self.coordinator:
            seconds, micros = await self.call(r.time)
            await self.call(r.hset, self.keys.run, "ended", seconds * 1000 + micros // 1000)
            for key in [*(edge.key for edge in self._edges), *self._run_keys()]:
                await self.call(r.expire, key, KEEP_FINISHED_RUN)
        final = await self.call(r.hget, self.keys.run, "state")
        self._final_state = final.decode() if final else None
        await self._counts.read(r, self.keys.run_id)

    def _run_keys(self) -> list[str]:
        k = self.keys
        return [k.run, k.alive, k.instances, k.done, k.stats]

    async def _disconnect(self) -> None:
        if self._calls:
            await asyncio.wait(list(self._calls), timeout=CLOSE_TIMEOUT)
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.aclose()
            self._redis = None

    @property
    def final_state(self) -> str | None:
        """The run's state as Redis recorded it when this process left."""
        return self._final_state

    def stats(self) -> dict[str, NodeStats] | None:
        """The latest aggregated stats of the run (None before the first)."""
        return self._counts.latest


def _describe(failure: BaseException, session: Session) -> str:
    if isinstance(failure, RemoteFailure):
        return str(failure)
    notes = "; ".join(getattr(failure, "__notes__", ()))
    where = "the coordinator" if session.coordinator else f"worker {session.consumer}"
    return f"{type(failure).__name__}: {failure}" + (f" ({notes})" if notes else "") + f" [in {where}]"
