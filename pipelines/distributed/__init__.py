"""Distributed runs: every edge a Redis Stream with a consumer group, nodes in worker processes.

    transport = RedisTransport("redis://127.0.0.1:6379/0")
    result = await transport.plumber(graph, registry).run()            # the coordinator: runs the sources
    await transport.worker(graph, registry, nodes=["parse"]).run()     # a worker, in another process

The core never imports this package; importing it imports redis and msgpack (the ``redis`` extra).
See wiki/Distributed.md for the topology, the guarantees and how failures behave.
"""

from __future__ import annotations

from .errors import (
    DeliveryError,
    DistributedError,
    RedisUnavailable,
    RemoteError,
    RemoteFailure,
    SerializationError,
)
from .plumber import DistributedPlumber
from .stats import run_stats
from .transport import RedisTransport

__all__ = [
    "DeliveryError",
    "DistributedError",
    "DistributedPlumber",
    "RedisTransport",
    "RedisUnavailable",
    "RemoteError",
    "RemoteFailure",
    "SerializationError",
    "run_stats",
]
