"""pipelines.tracing: OpenTelemetry spans per item per node, for a sample of the source items.

Needs the ``otel`` extra (``pip install 'aiopipelines[otel]'``). The core never imports it, and a
run without a Tracing hook does no work for it.

    Plumber(graph, hooks=[Tracing(sample=0.01)])

See wiki/Observability.md.
"""

try:
    from .hook import Tracing
except ModuleNotFoundError as exc:
    if exc.name is None or exc.name.partition(".")[0] != "opentelemetry":
        raise
    raise ModuleNotFoundError(
        f"pipelines.tracing needs the otel extra ({exc.name} is missing): pip install 'aiopipelines[otel]'",
        name=exc.name,
    ) from None

__all__ = ["Tracing"]
