"""Serving the metrics over HTTP: a /metrics route in an aiohttp app, or a small server of its own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .collector import RunCollector, RunsLike

if TYPE_CHECKING:
    from ..plumber import Plumber

__all__ = ["mount", "serve_metrics"]


def mount(
    app: web.Application,
    source: Plumber | RunsLike,
    *,
    path: str = "/metrics",
    token: str | None = None,
    registry: CollectorRegistry | None = None,
) -> CollectorRegistry:
    """Serve the metrics of `source` (a Plumber, or a Hub and all its runs) at GET `path` of `app`.

    The figures are read from the runs' stats at each scrape. The answer is the Prometheus text
    format, or OpenMetrics when the scraper asks for it. With `token`, a request must carry it
    (``Authorization: Bearer <token>`` or ``?token=``), else it is answered 401. `registry`: a
    registry to add the collector to (the application's own metrics are then served too); a new
    one by default. Returns the registry served. Call it before the app starts.
    """
    registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(source))
    allowed = _token_check(token)

    async def metrics(request: web.Request) -> web.Response:
        if allowed is not None and not allowed(request):
            return web.Response(status=401, text="this server requires a token\n")
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(registry), headers={"Content-Type": content_type})

    app.router.add_get(path, metrics)
    return registry


def _token_check(token: str | None) -> Callable[[web.Request], bool] | None:
    """What tells a request carrying `token` from one without it; None when no token is asked.

    The web layer's checks are imported only then: a token comes with a server of the web extra,
    and the metrics extra alone (prometheus_client and aiohttp) must be enough without one.
    """
    if token is None:
        return None
    from ..web.control import request_token
    from ..web.security import token_matches

    return lambda request: token_matches(token, request_token(request))


@contextlib.asynccontextmanager
async def serve_metrics(
    source: Plumber | RunsLike, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[str, int]]:
    """Serve the metrics of `source` at http://host:port/metrics while the block runs.

    Binds 127.0.0.1 unless told otherwise (the figures are read-only counts, served without a
    token); port 0 picks a free one. Yields ``(host, port)`` as bound. OSError when it cannot bind.
    """
    app = web.Application()
    mount(app, source)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield host, runner.addresses[0][1]
    finally:
        await runner.cleanup()
