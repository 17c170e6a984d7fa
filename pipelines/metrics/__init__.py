"""pipelines.metrics: Prometheus metrics of runs, read from their stats when scraped.

Needs the ``metrics`` extra (``pip install 'aiopipelines[metrics]'``). The core never imports it.

    mount(app, plumber_or_hub)               GET /metrics in your aiohttp app
    async with serve_metrics(plumber): ...   a small server of its own (`pipelines worker --metrics-port`)
    RunCollector(plumber_or_hub)             the collector, for a prometheus_client registry of your own

See wiki/Observability.md for the metric names.
"""

try:
    from .collector import OUTCOMES, RUN_STATES, RunCollector
    from .exposition import mount, serve_metrics
except ModuleNotFoundError as exc:
    if exc.name is None or exc.name.partition(".")[0] not in ("prometheus_client", "aiohttp"):
        raise
    raise ModuleNotFoundError(
        f"pipelines.metrics needs the metrics extra ({exc.name} is missing): pip install 'aiopipelines[metrics]'",
        name=exc.name,
    ) from None

__all__ = ["OUTCOMES", "RUN_STATES", "RunCollector", "mount", "serve_metrics"]
