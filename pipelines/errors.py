"""Exceptions raised by pipelines.

The hierarchy::

    PipelineError                 root of everything pipelines raises itself
    ├── GraphError (ValueError)   the graph dict is malformed; raised while building, before anything runs
    ├── PipelineStateError        a call that does not fit the plumber's state (run twice, stop before start)
    └── PipelineCancelled         the run was ended by Plumber.cancel(); its items were not all delivered

A user's own exception raised inside a node is never wrapped: run() and join() raise it with its own
type, and a note (PEP 678) naming the node and the item.
"""

from __future__ import annotations

__all__ = ["GraphError", "PipelineCancelled", "PipelineError", "PipelineStateError"]


class PipelineError(Exception):
    """Root of the exceptions pipelines raises itself."""


class GraphError(PipelineError, ValueError):
    """The graph dict is malformed. The message names the node and what was expected."""


class PipelineStateError(PipelineError, RuntimeError):
    """A call that does not fit the plumber's state, such as starting a plumber twice."""


class PipelineCancelled(PipelineError):
    """The run was cancelled with Plumber.cancel(): some items may not have reached a sink."""
