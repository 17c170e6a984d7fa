"""Every exception pipelines raises, in one tree.

::

    PipelineError                     root of everything pipelines raises itself
    ├── GraphError (ValueError)       the graph dict is malformed; raised while building, before anything runs
    ├── PipelineStateError (RuntimeError)  a call that does not fit the plumber's state (run twice, stop before start)
    ├── AsyncioOnlyError (RuntimeError)  a part that runs on asyncio alone was called under trio; says what to use
    ├── RouteError (ValueError)       a node routed an output to a name that is not one of its successors
    ├── PipelineCancelled             the run was ended by Plumber.cancel(); its items were not all delivered
    ├── JournalError                  a journal file that cannot be used (pipelines.journal)
    ├── Unavailable                   the pipeline cannot take or answer an item now: a 503 (pipelines.web)
    ├── ItemDropped                   the item was dropped on its way to the sink that answers (pipelines.web)
    ├── Refused                       a payload a GraphServer will not run; its message is what the client gets
    ├── DistributedError              a distributed run or worker cannot start or go on (pipelines.distributed)
    │   └── RedisUnavailable          Redis cannot be reached, or went away during the run
    ├── RemoteFailure                 the run failed in another process
    ├── RemoteError                   the exception of a Failure that crossed a process (type name and message)
    ├── DeliveryError                 an item was delivered more than max_deliveries times without being acknowledged
    └── SerializationError (TypeError)  an item that is not plain data cannot travel over Redis

A user's own exception raised inside a node is never wrapped: run() and join() raise it with its own
type, and a note (PEP 678) naming the node and the item. The subpackages re-export the classes that
belong to them (``from pipelines.web import Unavailable`` works as well).
"""

from __future__ import annotations

__all__ = [
    "describe_failure",
    "AsyncioOnlyError",
    "DeliveryError",
    "DistributedError",
    "GraphError",
    "ItemDropped",
    "JournalError",
    "PipelineCancelled",
    "PipelineError",
    "PipelineStateError",
    "RedisUnavailable",
    "Refused",
    "RemoteError",
    "RemoteFailure",
    "RouteError",
    "SerializationError",
    "Unavailable",
]


class PipelineError(Exception):
    """Root of the exceptions pipelines raises itself."""


class GraphError(PipelineError, ValueError):
    """The graph dict is malformed. The message names the node and what was expected."""


class PipelineStateError(PipelineError, RuntimeError):
    """A call that does not fit the plumber's state, such as starting a plumber twice."""


class AsyncioOnlyError(PipelineError, RuntimeError):
    """A part that runs on asyncio alone (create_pipeline(), streams, the journal, aiohttp, socket.io,
    Redis) was called under trio. The message names it and what to use instead."""


class RouteError(PipelineError, ValueError):
    """A node routed an output where it cannot go: a failure of that item, under the node's on_error.

    The message names the node, the target and the node's successors and descriptors."""


class PipelineCancelled(PipelineError):
    """The run was cancelled with Plumber.cancel(): some items may not have reached a sink."""


class JournalError(PipelineError):
    """A journal file that cannot be used: not a journal, another graph's, a newer format, or unwritable.

    The message names the file and says what was expected.
    """


class Unavailable(PipelineError):
    """The pipeline cannot take or answer the item now; a web handler maps it to 503."""


class ItemDropped(PipelineError):
    """The item was dropped on its way to the sink that answers; `node` says where."""

    def __init__(self, message: str, node: str) -> None:
        super().__init__(message)
        self.node = node


class Refused(PipelineError):
    """A payload a GraphServer will not run; its message is what the client gets."""


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


def describe_failure(exc: BaseException) -> str:
    """One line naming a run's failure: its type, its message and its notes (which name the node)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    notes = [note.removeprefix("pipelines: ") for note in getattr(exc, "__notes__", ())]
    return f"{text} ({'; '.join(notes)})" if notes else text
