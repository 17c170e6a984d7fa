"""The exceptions of distributed runs.

PipelineError
├── DistributedError          a worker or run cannot start: no run to join, a node that runs once only, ...
│   └── RedisUnavailable      Redis cannot be reached, or went away during the run
├── RemoteFailure             the run failed in another process; the message says where and why
├── RemoteError               the exception of a Failure that crossed a process (type name and message)
├── DeliveryError             an item was delivered more than max_deliveries times without being acknowledged
└── SerializationError (TypeError)   an item that is not plain data cannot travel over Redis
"""

from __future__ import annotations

from ..errors import PipelineError

__all__ = [
    "DeliveryError",
    "DistributedError",
    "RedisUnavailable",
    "RemoteError",
    "RemoteFailure",
    "SerializationError",
]


class DistributedError(PipelineError):
    """A distributed run or worker cannot start or go on; the message says why."""


class RedisUnavailable(DistributedError):
    """Redis cannot be reached, or went away during the run."""


class RemoteFailure(PipelineError):
    """The run failed in another process (a worker, or the process running the sources)."""


class RemoteError(PipelineError):
    """The exception of a Failure that crossed a process: its type's name, and its message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message


class DeliveryError(PipelineError):
    """An item was delivered more than `max_deliveries` times without being acknowledged."""


class SerializationError(PipelineError, TypeError):
    """An item that cannot travel over Redis: only plain data does (see pipelines.distributed.codec)."""
