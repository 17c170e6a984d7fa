"""Run a pipeline for as long as an aiohttp application runs.

    app = web.Application()
    inbox = Inbox()
    attach(app, lambda: Plumber(graph_with(inbox.source)), inbox=inbox)

    async def handle(request):
        try:
            return web.json_response(await inbox.submit(await request.json(), timeout=5))
        except Unavailable as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None

The plumber is built and started when the app starts (on the app's loop), and drained when the
app shuts down: the sources stop, what is in flight reaches the sinks within `drain_timeout`
seconds, and whatever is still running then is cancelled. ``app[PLUMBER]`` is the running plumber.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ..plumber import Plumber
from .hub import Hub
from .inbox import Inbox

__all__ = ["PLUMBER", "attach"]

logger = logging.getLogger(__name__)

PLUMBER = web.AppKey("pipelines.plumber", Plumber)


def attach(
    app: web.Application,
    plumber: Plumber | Callable[[], Plumber],
    *,
    inbox: Inbox | None = None,
    hub: Hub | None = None,
    label: str = "pipeline",
    drain_timeout: float = 30.0,
) -> None:
    """Start `plumber` (or the one a factory builds) with `app`; drain it when `app` shuts down.

    With `inbox`, the inbox is bound to the run before it starts. With `hub`, the run is shown by
    the control API and the dashboard as `label`. A run that fails while the app serves is logged
    and its inbox answers Unavailable; the app keeps serving.
    """

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        running = plumber() if callable(plumber) and not isinstance(plumber, Plumber) else plumber
        if inbox is not None:
            inbox.bind(running)
        if hub is not None:
            hub.add(running, label)
        running.create_pipeline()
        app[PLUMBER] = running
        try:
            yield
        finally:
            await _drain(running, drain_timeout)

    app.cleanup_ctx.append(lifecycle)


async def _drain(plumber: Plumber, limit: float) -> None:
    """Stop the sources and wait for the drain; past `limit` seconds, cancel what still runs."""
    try:
        async with asyncio.timeout(limit):
            # A stop interrupted by the timeout cancels the run and waits until it has ended.
            await plumber.stop()
    except TimeoutError:
        logger.warning("the pipeline did not drain within %s s and was cancelled", limit)
    logger.info("the pipeline ended %s", plumber.state)
