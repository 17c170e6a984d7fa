"""`--metrics-port`: serve the run's Prometheus metrics while the command runs (pipelines.metrics)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..plumber import Plumber
from .progress import write_line

__all__ = ["MetricsUnavailable", "check_metrics", "with_metrics"]

T = TypeVar("T")


class MetricsUnavailable(Exception):
    """The metrics cannot be served: the extra is missing, or the address cannot be bound."""


def check_metrics() -> None:
    """Raise MetricsUnavailable naming the extra to install when pipelines.metrics cannot be imported."""
    try:
        import pipelines.metrics  # noqa: F401
    except ImportError as exc:
        raise MetricsUnavailable(
            f"--metrics-port needs the metrics extra ({exc.name or exc} is missing): "
            "pip install 'aiopipelines[metrics]'"
        ) from None


async def with_metrics(plumber: Plumber, host: str, port: int, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Await `work()` while http://host:port/metrics serves `plumber`'s metrics (this process's own
    counts); the address is told on stderr first."""
    from ..metrics import serve_metrics

    try:
        serving = serve_metrics(plumber, host=host, port=port)
        bound_host, bound_port = await serving.__aenter__()
    except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
        raise MetricsUnavailable(
            f"cannot serve metrics on {host}:{port}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    try:
        write_line(sys.stderr, f"pipelines: metrics at {http_url(bound_host, bound_port, '/metrics')}")
        return await work()
    finally:
        await serving.__aexit__(None, None, None)


def http_url(host: str, port: int, path: str) -> str:
    """The URL of `path` on host:port, an IPv6 address in brackets."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}{path}"
