"""What `pipelines run --redis` and `pipelines worker` build: the coordinator, or a worker."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..registry import Registry
from .plumber import DistributedPlumber
from .transport import RedisTransport

__all__ = ["distributed_plumber"]


def distributed_plumber(args: argparse.Namespace, graph: dict[str, Any], extra: dict[str, Any]) -> DistributedPlumber:
    """The coordinator (`run`) or a worker (`worker`) of the graph file's distributed run.

    Raises RedisUnavailable when the Redis at ``--redis`` does not answer, GraphError when the URL,
    a tuning value or the graph is wrong."""
    names = ("batch", "claim_idle", "max_deliveries", "heartbeat", "dead_after")
    tuning = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    try:
        transport = RedisTransport(args.redis, **tuning)
        # Before anything is printed: a URL that leads nowhere is one line, not a run that fails.
        asyncio.run(transport.ping())
    except ValueError as exc:  # a malformed URL or tuning value; RedisUnavailable goes up as it is
        from ..errors import GraphError

        raise GraphError(f"--redis: {exc}") from None
    registry = Registry(imports=True)
    if args.command == "worker":
        nodes = None if args.nodes is None else [n.strip() for n in args.nodes.split(",") if n.strip()]
        return transport.worker(graph, registry, nodes=nodes, run_id=args.run, on_wait=_say, **extra)
    plumber = transport.plumber(graph, registry, **extra)
    plumber.signals.connect("run_started", lambda _: _say(f"run {plumber.run_id} started on {transport!r}"))
    return plumber


def _say(message: str) -> None:
    print(f"pipelines: {message}", file=sys.stderr, flush=True)
