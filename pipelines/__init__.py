"""pipelines: asyncio producer-consumer graphs with bounded queues, joins by lineage and clean ends."""

from .errors import GraphError, PipelineCancelled, PipelineError, PipelineStateError
from .failure import Failure
from .nodes import node
from .plumber import Plumber
from .policies import RetryPolicy
from .processor import InputProcessor, Processor
from .program import run_forever, run_until_signalled
from .stats import NodeStats, RunResult

__all__ = [
    "Failure",
    "GraphError",
    "InputProcessor",
    "NodeStats",
    "PipelineCancelled",
    "PipelineError",
    "PipelineStateError",
    "Plumber",
    "Processor",
    "RetryPolicy",
    "RunResult",
    "node",
    "run_forever",
    "run_until_signalled",
]

__version__ = "0.1.0"
