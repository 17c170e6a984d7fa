"""The exceptions of distributed runs (defined in pipelines.errors, with the rest of the tree).

PipelineError
├── DistributedError          a worker or run cannot start: no run to join, a node that runs once only, ...
│   └── RedisUnavailable      Redis cannot be reached, or went away during the run
├── RemoteFailure             the run failed in another process; the message says where and why
├── RemoteError               the exception of a Failure that crossed a process (type name and message)
├── DeliveryError             an item was delivered more than max_deliveries times without being acknowledged
└── SerializationError (TypeError)   an item that is not plain data cannot travel over Redis
"""

from __future__ import annotations

from ..errors import (
    DeliveryError,
    DistributedError,
    RedisUnavailable,
    RemoteError,
    RemoteFailure,
    SerializationError,
)

__all__ = [
    "DeliveryError",
    "DistributedError",
    "RedisUnavailable",
    "RemoteError",
    "RemoteFailure",
    "SerializationError",
]
