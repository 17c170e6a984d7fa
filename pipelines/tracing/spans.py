"""How Tracing makes its spans: each one already finished, with the times, parent and links it is given.

With the OpenTelemetry SDK's tracer, the spans are built directly (pipelines.tracing.sdk), a few
microseconds each; with any other implementation of the API, they are started and ended through
its tracer. Both make the same spans: names, trace and parent, links, attributes, status, the
exception event of a failure, start and end times.
"""

from __future__ import annotations

from typing import Protocol

from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode, Tracer

__all__ = ["Spans", "TracerSpans", "attributes_of", "spans_of", "status_of"]


class Spans(Protocol):
    """Makes the spans of the sampled items, each finished, and gives back its context."""

    def root(self, name: str, item: str, now: int) -> SpanContext | None:
        """The root span of a sampled item's trace, made at `now` by source `name`; None when the
        provider's sampler leaves the trace out (nothing more of it is made)."""
        ...

    def child(
        self,
        name: str,
        item: str,
        outcome: str,
        parent: SpanContext,
        links: list[SpanContext],
        start: int,
        end: int,
        failure: BaseException | None,
    ) -> SpanContext:
        """The span of node `name` in `parent`'s trace, linking `links`, from `start` to `end` (ns);
        `failure` recorded as an exception event and an error status."""
        ...


def attributes_of(name: str, item: str, outcome: str) -> dict[str, str]:
    """The attributes of a span: the node, the item's lineage key (its repr), the outcome."""
    return {"pipelines.node": name, "pipelines.item": item, "pipelines.outcome": outcome}


def status_of(failure: BaseException) -> Status:
    """The status of the span of an item that failed."""
    return Status(StatusCode.ERROR, f"{type(failure).__name__}: {failure}")


class TracerSpans:
    """Spans started and ended through a tracer: any implementation of the OpenTelemetry API."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def root(self, name: str, item: str, now: int) -> SpanContext | None:
        span = self._tracer.start_span(name, start_time=now, attributes=attributes_of(name, item, "sent"))
        span.end(end_time=now)
        return span.get_span_context()

    def child(
        self,
        name: str,
        item: str,
        outcome: str,
        parent: SpanContext,
        links: list[SpanContext],
        start: int,
        end: int,
        failure: BaseException | None,
    ) -> SpanContext:
        span = self._tracer.start_span(
            name,
            context=trace.set_span_in_context(NonRecordingSpan(parent)),
            links=[Link(context) for context in links],
            start_time=start,
            attributes=attributes_of(name, item, outcome),
        )
        if failure is not None:
            span.record_exception(failure, timestamp=end)
            span.set_status(status_of(failure))
        span.end(end_time=end)
        return span.get_span_context()


def spans_of(tracer: Tracer) -> Spans:
    """How to make spans with `tracer`: built directly when it is the SDK's, else through it."""
    try:
        from opentelemetry.sdk.trace import Tracer as SdkTracer
    except ModuleNotFoundError:  # the API alone, with another implementation
        return TracerSpans(tracer)
    if not isinstance(tracer, SdkTracer):
        return TracerSpans(tracer)
    from .sdk import SdkSpans

    return SdkSpans(tracer)
