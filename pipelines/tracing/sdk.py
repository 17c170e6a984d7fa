"""Spans built directly for the OpenTelemetry SDK: what its tracer would make, at a fraction of the cost.

A span started and ended through the SDK's tracer costs tens of microseconds (a lock, bounded
attribute checks, the sampler asked, a context made for the parent, a second object made at the
end). Tracing knows each span's times, parent and outcome only once the span is over, so it
builds the finished span, the SDK's public ``ReadableSpan``, and hands it to the span processors
of the tracer's provider (``on_end``): the span an exporter receives is the one the tracer would
have made. What differs: the processors are not told a span starts (``on_start``), and the
provider's sampler is asked once per trace, at its root; the trace's other spans follow its
decision, as under the SDK's default sampler (``ParentBased``).
"""

from __future__ import annotations

import traceback
from types import MappingProxyType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from .spans import attributes_of, status_of

__all__ = ["SdkSpans"]

_RANDOM_TRACE_ID = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)  # the W3C level 2 flag, in recent APIs
_NO_ATTRIBUTES: Any = MappingProxyType({})
_UNSET = Status(StatusCode.UNSET)


class SdkSpans:
    """Makes finished spans for an SDK tracer, and hands them to its provider's span processors."""

    __slots__ = ("_ids", "_info", "_on_end", "_random", "_resource", "_sampler", "_scope")

    def __init__(self, tracer: SdkTracer) -> None:
        self._on_end = tracer.span_processor.on_end
        self._resource = tracer.resource
        self._sampler = tracer.sampler
        self._ids = tracer.id_generator
        info = tracer.instrumentation_info
        self._info = info
        self._scope = InstrumentationScope(info.name, info.version, info.schema_url)
        is_random = getattr(self._ids, "is_trace_id_random", None)
        self._random = _RANDOM_TRACE_ID if is_random is not None and is_random() else 0

    def root(self, name: str, item: str, now: int) -> SpanContext | None:
        # As the tracer does for a span started without a context: the current span, if any, is its parent.
        current = context_api.get_current()
        parent: SpanContext | None = trace.get_current_span(current).get_span_context()
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
            random_id = _RANDOM_TRACE_ID if parent.trace_flags & _RANDOM_TRACE_ID else 0
        else:
            parent = None
            trace_id = self._ids.generate_trace_id()
            random_id = self._random
        attributes = attributes_of(name, item, "sent")
        sampled = self._sampler.should_sample(current, trace_id, name, SpanKind.INTERNAL, attributes, ())
        if sampled.decision is Decision.DROP:
            return None
        is_sampled = sampled.decision is Decision.RECORD_AND_SAMPLE
        flags = TraceFlags((TraceFlags.SAMPLED if is_sampled else 0) | random_id)
        context = SpanContext(trace_id, self._ids.generate_span_id(), False, flags, sampled.trace_state)
        self._on_end(
            ReadableSpan(
                name,
                context,
                parent,
                self._resource,
                sampled.attributes,  # the sampler's read-only copy of them
                start_time=now,
                end_time=now,
                instrumentation_info=self._info,
                instrumentation_scope=self._scope,
            )
        )
        # Recorded but not sampled: no exporter sees it, and its children would not be made.
        return context if is_sampled else None

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
        # The tracer would give a child its parent's trace, flags and trace state (a sampled parent).
        context = SpanContext(
            parent.trace_id, self._ids.generate_span_id(), False, parent.trace_flags, parent.trace_state
        )
        span = ReadableSpan(
            name,
            context,
            parent,
            self._resource,
            MappingProxyType(attributes_of(name, item, outcome)),
            () if failure is None else (_exception_event(failure, end),),
            [Link(linked, _NO_ATTRIBUTES) for linked in links] if links else (),
            status=_UNSET if failure is None else status_of(failure),
            start_time=start,
            end_time=end,
            instrumentation_info=self._info,
            instrumentation_scope=self._scope,
        )
        self._on_end(span)
        return context


def _exception_event(failure: BaseException, timestamp: int) -> Event:
    """The event a span records for an exception, with the attributes the SDK's record_exception gives it."""
    kind = type(failure)
    module = kind.__module__
    return Event(
        "exception",
        MappingProxyType(
            {
                "exception.type": f"{module}.{kind.__qualname__}"
                if module and module != "builtins"
                else kind.__qualname__,
                "exception.message": str(failure),
                "exception.stacktrace": "".join(traceback.format_exception(failure)),
                "exception.escaped": "False",
            }
        ),
        timestamp,
    )
