"""RunCollector: a prometheus_client collector that reads the runs' stats when it is scraped.

Nothing is counted on the side: every figure comes from ``plumber.stats()`` at the moment of the
scrape, so a run nobody scrapes does no work for metrics at all. A distributed run's process
shows the counts of the nodes it runs itself (each worker its own), so that summing over the
processes counts every item once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..stats import LATENCY_BOUNDS, NodeStats
from ..types import RunState

if TYPE_CHECKING:
    from ..plumber import Plumber

__all__ = ["OUTCOMES", "RUN_STATES", "RunCollector", "RunsLike"]

OUTCOMES = ("completed", "dropped", "skipped", "failed")
"""How a node finished an item, as ``pipelines_node_items_processed_total`` labels it."""

RUN_STATES: tuple[RunState, ...] = ("built", "running", "stopping", "completed", "stopped", "failed", "cancelled")


class _Entry(Protocol):
    id: str
    label: str
    plumber: Plumber


class RunsLike(Protocol):
    """What lists several runs: a pipelines.web.Hub."""

    def runs(self) -> Sequence[_Entry]: ...


class RunCollector(Collector):
    """The metrics of one plumber (labelled by ``node``), or of every run of a Hub (labelled by
    ``run``, ``pipeline`` and ``node``), read at scrape time.

    Register it with a ``prometheus_client.CollectorRegistry`` (pipelines.metrics.mount and
    serve_metrics do) or with the default REGISTRY, next to an application's own metrics. A
    scrape served on the run's event loop (mount, serve_metrics) reads one consistent moment; one
    served from another thread (prometheus_client's start_http_server) reads the counters while
    they move, so the figures of one scrape may be a few items apart.
    """

    def __init__(self, source: Plumber | RunsLike) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []  # names are known only once runs exist; the registry then asks collect()

    def collect(self) -> Iterator[Metric]:
        several = hasattr(self._source, "runs")
        run_labels = ["run", "pipeline"] if several else []
        node_labels = [*run_labels, "node"]
        families = _Families(node_labels, run_labels)
        for labels, plumber in self._runs():
            families.add_run(labels, plumber)
        yield from families.all()

    def _runs(self) -> Iterable[tuple[list[str], Plumber]]:
        source = self._source
        if hasattr(source, "runs"):
            for entry in source.runs():
                yield [entry.id, entry.label], entry.plumber
        else:
            yield [], source


def own_stats(plumber: Plumber) -> dict[str, NodeStats]:
    """The counts of the nodes this process runs: all of them, or a distributed run's local nodes."""
    local: list[str] | None = getattr(plumber, "local_nodes", None)
    if local is None:
        return plumber.stats()
    return {name: plumber.processor(name).stats() for name in local}


class _Families:
    """The metric families of one scrape, filled run by run."""

    def __init__(self, node_labels: list[str], run_labels: list[str]) -> None:
        def counter(name: str, doc: str, extra: Sequence[str] = ()) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=[*node_labels, *extra])

        def gauge(name: str, doc: str, labels: Sequence[str] = node_labels) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=list(labels))

        self.items_in = counter("pipelines_node_items_in", "Items a node took from its input (a join: groups).")
        self.items_out = counter("pipelines_node_items_out", "Outputs a node handed on (a source: items it put).")
        self.processed = counter(
            "pipelines_node_items_processed",
            "Items a node finished, by outcome: completed, dropped (nothing returned), skipped or failed.",
            ["outcome"],
        )
        self.retries = counter("pipelines_node_retries", "Attempts that failed and were tried again.")
        self.blocked = counter(
            "pipelines_node_blocked_seconds", "Seconds a node waited on a full output (backpressure)."
        )
        self.in_flight = gauge("pipelines_node_items_in_flight", "Items a node has started and not finished.")
        self.depth = gauge("pipelines_node_queue_depth", "Items waiting in a node's input.")
        self.bound = gauge("pipelines_node_queue_bound", "How many items a node's input holds at most.")
        self.workers = gauge("pipelines_node_workers", "Workers a node runs now.")
        self.latency = HistogramMetricFamily(
            "pipelines_node_latency_seconds",
            "Seconds a node's workers spent per item they finished (an item counts its batch's mean).",
            labels=node_labels,
        )
        self.state = gauge(
            "pipelines_run_state", "1 for the state the run is in, 0 for the others.", [*run_labels, "state"]
        )

    def add_run(self, labels: list[str], plumber: Plumber) -> None:
        current = plumber.state
        for state in RUN_STATES:
            self.state.add_metric([*labels, state], 1.0 if state == current else 0.0)
        for name, stats in own_stats(plumber).items():
            node = [*labels, name]
            self.items_in.add_metric(node, stats.items_in)
            self.items_out.add_metric(node, stats.items_out)
            for outcome in OUTCOMES:
                self.processed.add_metric([*node, outcome], getattr(stats, outcome))
            self.retries.add_metric(node, stats.retried)
            self.blocked.add_metric(node, stats.blocked_seconds)
            self.in_flight.add_metric(node, stats.in_flight)
            self.depth.add_metric(node, stats.queue_depth)
            self.bound.add_metric(node, stats.queue_bound)
            self.workers.add_metric(node, stats.workers)
            handled = stats.items_in - stats.in_flight
            self.latency.add_metric(node, _buckets(stats.latency_counts), stats.latency * handled)

    def all(self) -> Iterator[Metric]:
        yield self.items_in
        yield self.items_out
        yield self.processed
        yield self.retries
        yield self.blocked
        yield self.in_flight
        yield self.depth
        yield self.bound
        yield self.workers
        yield self.latency
        yield self.state


def metric_names() -> list[str]:
    """The names of the families a scrape shows (counters without their ``_total``)."""
    return [family.name for family in _Families(["node"], []).all()]


def _buckets(counts: Sequence[int]) -> list[tuple[str, float]]:
    """Prometheus' cumulative buckets (le, count) from the stats' counts per bucket."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip([*map(str, LATENCY_BOUNDS), "+Inf"], counts, strict=False):
        total += count
        buckets.append((bound, float(total)))
    return buckets or [("+Inf", 0.0)]
