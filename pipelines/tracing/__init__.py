"""pipelines.tracing: OpenTelemetry spans per item per node, for a sample of the source items.

Needs the ``otel`` extra (``pip install 'aiopipelines[otel]'``). The core never imports it, and a
run without a Tracing hook does no work for it.

    Plumber(graph, hooks=[Tracing(sample=0.01)])

See wiki/Observability.md.
"""

from .hook import Tracing

__all__ = ["Tracing"]
