"""pipelines: asyncio producer-consumer graphs with bounded queues, joins by lineage and clean ends."""

from .drawing import to_ascii, to_dot, to_mermaid
from .errors import AsyncioOnlyError, GraphError, PipelineCancelled, PipelineError, PipelineStateError, RouteError
from .failure import Failure
from .files import load_graph
from .flow import parse_flow
from .nodes import node
from .plumber import Plumber
from .policies import RetryPolicy
from .processor import InputProcessor, Processor
from .program import run_forever, run_until_signalled
from .registry import Registry
from .routing import Routed, route
from .signals import Signal
from .stats import NodeStats, RunResult
from .streams import Stream, open_stream, stream

__all__ = [
    "AsyncioOnlyError",
    "Failure",
    "GraphError",
    "InputProcessor",
    "NodeStats",
    "PipelineCancelled",
    "PipelineError",
    "PipelineStateError",
    "Plumber",
    "Processor",
    "Registry",
    "RetryPolicy",
    "RouteError",
    "Routed",
    "RunResult",
    "Signal",
    "Stream",
    "load_graph",
    "node",
    "open_stream",
    "parse_flow",
    "route",
    "run_forever",
    "run_until_signalled",
    "stream",
    "to_ascii",
    "to_dot",
    "to_mermaid",
]

__version__ = "0.1.0"
