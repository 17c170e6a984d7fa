"""What a request handler can get back instead of its item's result.

    PipelineError
    ├── Unavailable      the pipeline cannot take the item now (not started, ended, too far
    │                    behind): answer 503 and let the client retry later
    └── ItemDropped      the item was dropped on its way (a node returned None, or its join
                         group was discarded): there is no result to give

A node that failed on the item raises the node's own exception from `submit()` (with a note
naming the node); `submit(..., timeout=)` raises TimeoutError when no answer came in time.
"""

from __future__ import annotations

from ..errors import PipelineError

__all__ = ["ItemDropped", "Unavailable"]


class Unavailable(PipelineError):
    """The pipeline cannot take or answer the item now; a web handler maps it to 503."""


class ItemDropped(PipelineError):
    """The item was dropped on its way to the sink that answers; `node` says where."""

    def __init__(self, message: str, node: str) -> None:
        super().__init__(message)
        self.node = node
