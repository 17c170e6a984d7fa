"""The stats of a distributed run: each node's counters summed over the processes running it."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from ..stats import NodeStats
from .errors import DistributedError
from .keys import RunKeys, decode_name, split_instance_field

__all__ = ["RunCounts", "run_stats"]

_SUMMED = ("items_in", "items_out", "completed", "failed", "retried", "skipped", "dropped", "in_flight")


async def run_stats(r: aioredis.Redis, run_id: str) -> dict[str, NodeStats]:
    """The stats of a run, summed over every instance of each node, by node, in the graph's order.

    `queue_depth` is what the node's input streams hold now (unread or unacknowledged), `rate` is
    items per second over the run so far, `latency` the mean over the instances weighted by items.
    Each process publishes its counts every half second and when its nodes end. The items an
    instance held when it stopped, was cancelled or died go back to the stream and are counted
    where they are handled again, so they are not counted as in flight, nor in, for that instance.
    """
    keys = RunKeys(run_id)
    plan, started, ended, dead_after = await r.hmget(keys.run, ["plan", "started", "ended", "dead_after"])
    if plan is None or started is None:
        raise DistributedError(f"no run {run_id!r} in this Redis")
    described = json.loads(plan)
    seconds, micros = await r.time()
    end = int(ended) if ended else seconds * 1000 + micros // 1000
    elapsed = max(0.0, (end - int(started)) / 1000)
    now = seconds * 1000 + micros // 1000
    alive = {_text(k): int(v) for k, v in (await r.hgetall(keys.alive)).items()}
    states = {_text(k): _text(v) for k, v in (await r.hgetall(keys.instances)).items()}
    by_node: dict[str, list[dict[str, Any]]] = {decode_name(name): [] for name in described["order"]}
    for field, value in (await r.hgetall(keys.stats)).items():
        instance = _text(field)
        name, worker = split_instance_field(instance)
        if name not in by_node:
            continue
        part = json.loads(value)
        live = states.get(instance) == "running" and now - alive.get(worker, 0) <= float(dead_after or 0) * 1000
        if not live:
            part["items_in"] -= part["in_flight"]
            part["in_flight"] = 0
        by_node[name].append(part)
    inputs = {decode_name(name): edges for name, _, edges in described["plan"]}
    result = {}
    for name, parts in by_node.items():
        totals = {field: sum(part[field] for part in parts) for field in _SUMMED}
        depth = 0
        for stream, _, _ in inputs[name]:
            depth += await r.xlen(stream)
        handled = [part["items_in"] - part["in_flight"] for part in parts]
        busy = sum(part["latency"] * h for part, h in zip(parts, handled, strict=True))
        processed = totals["items_in"] if inputs[name] else totals["items_out"]
        result[name] = NodeStats(
            name=name,
            **totals,
            queue_depth=depth,
            queue_bound=sum(bound for _, _, bound in inputs[name]),
            blocked_seconds=sum(part["blocked_seconds"] for part in parts),
            workers=sum(part.get("workers", 0) for part in parts),
            peak_workers=max((part.get("peak_workers", 0) for part in parts), default=0),
            rate=processed / elapsed if elapsed > 0 else 0.0,
            latency=busy / sum(handled) if sum(handled) > 0 else 0.0,
        )
    return result


class RunCounts:
    """The counts of a run (`run_stats`) as this process last read them. Reads may overlap (the
    periodic one, the one made when nodes finish): one that ends after a read begun later is
    dropped, so the counts never go back to older ones."""

    __slots__ = ("_begun", "_kept", "latest")

    def __init__(self) -> None:
        self.latest: dict[str, NodeStats] | None = None
        self._begun = 0
        self._kept = 0

    async def read(self, r: aioredis.Redis, run_id: str) -> None:
        self._begun += 1
        number = self._begun
        counts = await run_stats(r, run_id)
        if number > self._kept:
            self._kept, self.latest = number, counts


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
