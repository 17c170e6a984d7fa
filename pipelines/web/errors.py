"""What a request handler can get back instead of its item's result (defined in pipelines.errors).

    PipelineError
    ├── Unavailable      the pipeline cannot take the item now (not started, ended, too far
    │                    behind): answer 503 and let the client retry later
    ├── ItemDropped      the item was dropped on its way (a node returned None, or its join
    │                    group was discarded): there is no result to give
    └── Refused          a payload the GraphServer will not run

A node that failed on the item raises the node's own exception from `submit()` (with a note
naming the node); `submit(..., timeout=)` raises TimeoutError when no answer came in time.
"""

from __future__ import annotations

from ..errors import ItemDropped, Refused, Unavailable

__all__ = ["ItemDropped", "Refused", "Unavailable"]
