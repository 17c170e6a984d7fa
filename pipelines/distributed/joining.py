"""Joining a distributed run: the coordinator creates the run's keys and announces it; a worker finds
the run of its graph (or the one it was given), checks it runs the same graph, and waits for one
while none runs. Either way the process then registers its node instances, and is refused a node
that must run in one process at a time (a join, an ordered node, a node with state) when another
live process runs it already. `Session` (pipelines.distributed.session) inherits these steps.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import PipelineCancelled
from ..types import LIVE_STATES
from .errors import DistributedError
from .keys import RunKeys, decode_name, encode_name, redacted

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ..graph import GraphSpec
    from .edges import RedisEdge
    from .session import Options

__all__ = ["Joining"]


class Joining:
    """How a Session creates or finds its run, and registers its instances (see the module)."""

    url: str
    options: Options
    digest: str
    consumer: str
    group: str
    run_id: str | None
    keys: RunKeys
    local: frozenset[str]
    spec: GraphSpec
    _edges: list[RedisEdge]
    _on_wait: Callable[[str], None] | None
    _abandoned: bool
    _plan: str
    _done_nodes_plan: str
    _register_script: Any

    if TYPE_CHECKING:

        @property
        def redis(self) -> aioredis.Redis: ...

        async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def _plan_json(self) -> str:
        import networkx as nx

        order = list(nx.topological_sort(self.spec.digraph))
        edges: dict[str, list[list[Any]]] = {name: [] for name in order}
        for edge in self._edges:
            producers = [encode_name(p) for p in edge.producers]
            edges[edge.node].append([self.keys.stream(edge.node, edge.producer), producers, edge.maxsize])
        plan = [[encode_name(name), self.spec.nodes[name].is_source, edges[name]] for name in order]
        return json.dumps({"order": [encode_name(name) for name in self.spec.nodes], "plan": plan})

    def _use_run(self, run_id: str) -> None:
        self.run_id = run_id
        self.keys = RunKeys(run_id)
        for edge in self._edges:
            edge.key = self.keys.stream(edge.node, edge.producer)
        self._plan = self._plan_json()
        self._done_nodes_plan = json.dumps(json.loads(self._plan)["plan"])

    async def _create_run(self) -> None:
        self._use_run(self.run_id or uuid.uuid4().hex[:12])
        keys = self.keys
        r = self.redis
        if await self.call(r.exists, keys.run):
            raise DistributedError(f"run {keys.run_id!r} exists already on {redacted(self.url)}")
        for edge in self._edges:
            await self.call(r.xgroup_create, edge.key, self.group, id="0", mkstream=True)
        seconds, micros = await self.call(r.time)
        await self.call(
            r.hset,
            keys.run,
            mapping={
                "state": "running",
                "error": "",
                "graph": self.digest,
                "coordinator": self.consumer,
                "plan": self._plan,
                "started": seconds * 1000 + micros // 1000,
                "dead_after": self.options.dead_after,
            },
        )
        await self._register()
        await self.call(r.set, RunKeys.graph(self.digest), keys.run_id)

    async def _join_run(self) -> None:
        r = self.redis
        told = False
        while True:
            run_id = self.run_id
            if run_id is None:
                found = await self.call(r.get, RunKeys.graph(self.digest))
                run_id = found.decode() if found else None
            if run_id is not None:
                info = await self.call(r.hmget, RunKeys(run_id).run, ["state", "graph"])
                state, digest = (v.decode() if v is not None else None for v in info)
                if self.run_id is not None:
                    if state is None:
                        raise DistributedError(f"no run {run_id!r} on {redacted(self.url)}")
                    if digest != self.digest:
                        raise DistributedError(
                            f"run {run_id!r} runs another graph (digest {digest}, this file's is {self.digest}): "
                            "give the worker the same graph file and --set values as the run"
                        )
                if state in LIVE_STATES:
                    self._use_run(run_id)
                    reason = await self._register()
                    if reason is None:
                        return
                if self.run_id is not None:
                    raise DistributedError(f"run {run_id!r} is over ({state})")
            if not told and self._on_wait is not None:
                self._on_wait(f"waiting for a run of this graph (digest {self.digest}) on {redacted(self.url)}")
                told = True
            if self._abandoned:
                raise PipelineCancelled("stopped while waiting for a run to join")
            await asyncio.sleep(self.options.poll)

    async def _register(self) -> str | None:
        """Register this process's instances; None, or 'over' when the run ended meanwhile."""
        single = sorted(
            name
            for name in self.local
            if self.spec.nodes[name].join_mode is not None
            or self.spec.nodes[name].properties.ordered
            or self.spec.nodes[name].state is not None
        )
        reply = await self.call(
            self._register_script,
            keys=[],
            args=[
                self.keys.prefix,
                self.consumer,
                int(self.options.dead_after * 1000),
                json.dumps([encode_name(name) for name in sorted(self.local)]),
                json.dumps([encode_name(name) for name in single]),
            ],
        )
        if not reply:
            return None
        reason, node, other = (part.decode() for part in reply)
        reason, node = str(reason), decode_name(node)
        if reason == "single":
            spec = self.spec.nodes[node]
            if spec.join_mode is not None:
                why = "joins its inputs by lineage"
            elif spec.properties.ordered:
                why = "keeps its input order"
            else:
                why = "keeps its state in its process"
            raise DistributedError(
                f"node {node!r} {why}, so it runs in one worker at a time, and worker {other!r} runs it "
                f"(run {self.keys.run_id!r})"
            )
        return reason

    def abandon(self) -> None:
        """Stop waiting for a run to join."""
        self._abandoned = True
