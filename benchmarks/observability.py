"""B11 observability: B1's graph with metrics scraped every second, and with tracing at 1%.

One row is no pipelines tracing at all, the floor of the 1% rows: B1's sink hands, for every
hundredth item, one span per node of the graph, made as cheaply as the SDK allows, to the same
BatchSpanProcessor. What that row costs is the SDK's part of tracing (the processor's queue, its
thread, the spans' lives), which no change to pipelines can remove.

Timed in CPU seconds of the process (its threads included: the span exporter's), not wall time:
what is measured is the work metrics and tracing add, and on a shared machine the wall time of a
CPU-bound run mostly measures the other tenants. The scraper is a process of its own, as
Prometheus is: what the run pays is answering the scrapes, not making them. (A scraping thread in
the run's own process would make the run hand the GIL to it every few milliseconds while it
waits for an answer, a cost no real deployment has.)
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pipelines import Plumber, node

from .graphs import Total, chain, run_total
from .harness import Case, Config, Trial, alternate, optional, timed
from .linear import STAGES, expected
from .report import Row, throughput_rows

__all__ = ["B11"]

OFF = "no metrics, no tracing"
METRICS = "metrics on, /metrics scraped every second"
HOOK = "tracing on, no item sampled (the hook alone)"
TRACING = "tracing on, 1% of items sampled"
TRACING_LESS = "tracing on, 0.1% of items sampled"
TRACING_TUNED = "tracing on, 1%, spans exported 16,384 at a time"
BOTH = "metrics and tracing on"
SDK_FLOOR = "no tracing; the sink hands 1% of items' spans to the SDK"

SCRAPE_EVERY = 1.0  # seconds, as a Prometheus scrape_interval would be set tight
SAMPLE = 0.01
TUNED_BATCH = 16_384
"""A BatchSpanProcessor's max_export_batch_size that wakes its thread seldom (the default, 512,
wakes it every 512 spans, and each wake costs a busy event loop several milliseconds of CPU)."""
NONE = 1e-12  # installed, and in practice never samples: what the hook costs per item by itself


_SCRAPE = """
import sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
while True:
    with urllib.request.urlopen(url, timeout=10) as response:
        if b"pipelines_node_items_in_total" not in response.read():
            sys.exit("the scrape did not show the node counters")
    print("scraped", flush=True)
    time.sleep(every)
"""


class _Scraper:
    """A process that GETs a /metrics URL at once, then every SCRAPE_EVERY seconds, as Prometheus would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.scrapes = 0
        self._process = subprocess.Popen(
            [sys.executable, "-c", _SCRAPE, url, str(SCRAPE_EVERY)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> None:
        """End the scraper; raise AssertionError if a scrape it made was wrong."""
        failed = self._process.poll() not in (None, 0)
        self._process.terminate()
        out, err = self._process.communicate()
        self.scrapes = out.count("scraped")
        if failed:
            raise AssertionError(f"the metrics scraper failed: {err.strip()}")


def _make_sdk_floor(n: int) -> Callable[[], Awaitable[int]]:
    """A `make` for cpu_timed: B1's chain, whose sink also hands one span per node, every
    1/SAMPLE items, to a span processor as B11's tracing rows have it: the SDK's cost alone."""

    def make() -> Awaitable[int]:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, TraceFlags

        total = Total()
        graph = chain(n, STAGES, total)
        processor = _discarding_processor()
        resource = Resource.create()
        names = list(graph["nodes"])
        context = SpanContext(1, 1, False, TraceFlags(TraceFlags.SAMPLED))
        every = round(1 / SAMPLE)
        seen = 0

        @node
        async def into_total_with_spans(x: int, total: Total) -> None:
            nonlocal seen
            total.value += x
            seen += 1
            if seen == every:
                seen = 0
                for name in names:
                    processor.on_end(ReadableSpan(name, context, resource=resource))

        graph["nodes"]["sink"] = {"coro": into_total_with_spans, "args": {"total": total}}
        return _observed(Plumber(graph), total, False, processor)

    return make


def _make(n: int, metrics: bool, sample: float | None, batch: int = 512) -> Callable[[], Awaitable[int]]:
    """A `make` for cpu_timed: B1's item-style chain, with what is switched on."""

    def make() -> Awaitable[int]:
        total = Total()
        hooks: list[Any] = []
        provider = None
        if sample is not None:
            provider = _discarding_provider(batch)
            from pipelines.tracing import Tracing

            hooks.append(Tracing(sample=sample, tracer_provider=provider, seed=1))
        plumber = Plumber(chain(n, STAGES, total), hooks=hooks)
        return _observed(plumber, total, metrics, provider)

    return make


async def _observed(plumber: Plumber, total: Total, metrics: bool, provider: Any) -> int:
    try:
        if not metrics:
            return await run_total(plumber, total)
        from pipelines.metrics import serve_metrics

        async with serve_metrics(plumber) as (host, port):
            scraper = _Scraper(f"http://{host}:{port}/metrics")
            try:
                return await run_total(plumber, total)
            finally:
                stopping = threading.Thread(target=scraper.stop)  # joins the thread off the loop
                stopping.start()
                while stopping.is_alive():
                    await _pause()
    finally:
        if provider is not None:
            provider.shutdown()


async def _pause() -> None:
    await asyncio.sleep(0.001)


def cpu_timed(make: Callable[[], Awaitable[Any]], expected: Any) -> Trial:
    """As harness.timed, in CPU seconds of the whole process instead of wall seconds."""
    return timed(make, expected, clock=time.process_time)


def _discarding_provider(batch: int = 512) -> Any:
    """An OpenTelemetry SDK provider whose spans are batched (`batch` at a time, the SDK's default
    512) and exported nowhere (the export's own cost belongs to the exporter chosen, not to pipelines)."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    provider.add_span_processor(_discarding_processor(batch))
    return provider


def _discarding_processor(batch: int = 512) -> Any:
    """The span processor of `_discarding_provider`: a BatchSpanProcessor exporting nowhere."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    # A queue big enough that no span is dropped: dropping would make tracing look cheaper than it is.
    return BatchSpanProcessor(Discard(), max_queue_size=2**17, max_export_batch_size=batch)


B11_TITLE = "observability: B1's graph (item style) with metrics scraped and tracing sampled, in CPU time"
B11_LABELS = (OFF, METRICS, HOOK, TRACING_LESS, TRACING, TRACING_TUNED, BOTH, SDK_FLOOR)


def _run_b11(config: Config) -> list[Row]:
    n = config.size(500_000, 2_000)
    want = expected(n)

    def trial(metrics: bool, sample: float | None, package: str, batch: int = 512) -> Trial:
        return optional(package, lambda: cpu_timed(_make(n, metrics, sample, batch), want))

    results = alternate(
        {
            OFF: cpu_timed(_make(n, False, None), want),
            METRICS: trial(True, None, "prometheus_client"),
            HOOK: trial(False, NONE, "opentelemetry-sdk"),
            TRACING_LESS: trial(False, SAMPLE / 10, "opentelemetry-sdk"),
            TRACING: trial(False, SAMPLE, "opentelemetry-sdk"),
            TRACING_TUNED: trial(False, SAMPLE, "opentelemetry-sdk", TUNED_BATCH),
            BOTH: trial(True, SAMPLE, "prometheus_client, opentelemetry-sdk"),
            SDK_FLOOR: optional("opentelemetry-sdk", lambda: cpu_timed(_make_sdk_floor(n), want)),
        },
        config.rounds,
    )
    return throughput_rows("B11", n, results, {label: OFF for label in B11_LABELS if label != OFF})


B11 = Case("B11", B11_TITLE, B11_LABELS, _run_b11)
