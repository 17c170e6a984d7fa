"""Run a pipeline for as long as an aiohttp application runs, restarting it if asked to.

    app = web.Application()
    inbox = Inbox()
    attach(app, lambda: Plumber(graph_with(inbox.source)), inbox=inbox, restart=3)

    async def handle(request):
        try:
            return web.json_response(await inbox.submit(await request.json(), timeout=5))
        except ValueError as exc:  # a node refused this item: this request only
            raise web.HTTPBadRequest(text=str(exc)) from None
        except Unavailable as exc:  # the pipeline is not running, or too far behind
            raise web.HTTPServiceUnavailable(text=str(exc)) from None

The plumber is built and started when the app starts (on the app's loop), and drained when the
app shuts down: the sources stop, what is in flight reaches the sinks within `drain_timeout`
seconds, and whatever is still running then is cancelled. ``app[PLUMBER]`` is the first run and
``app[SUPERVISOR]`` the `Supervisor`, whose `plumber` is the current one.

A run that fails while the app serves (a failure no item owns: a setup, a teardown, a hook, a lost
connection) is logged, and its inbox answers Unavailable naming the failure. With `restart=N`, the
factory builds a fresh plumber, the inbox is bound to it and it starts, at most N times over the
app's life. Requests in flight when a run fails are not carried over: each gets Unavailable
naming the failure (so does each request that arrives before the new run has started), and a
client may send it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ..errors import describe_failure
from ..plumber import Plumber
from .hub import Hub
from .inbox import Inbox

__all__ = ["PLUMBER", "SUPERVISOR", "Supervisor", "attach"]

logger = logging.getLogger(__name__)


class Supervisor:
    """The pipeline of an app: builds it, runs it, restarts it after a failure (up to `limit` times).

    `plumber` is the current run; `restarts` counts the restarts so far; `failures` holds the
    exception of each run that failed, oldest first.
    """

    def __init__(
        self,
        build: Callable[[], Plumber],
        *,
        inbox: Inbox | None,
        hub: Hub | None,
        label: str,
        limit: int,
    ) -> None:
        self._build = build
        self._inbox = inbox
        self._hub = hub
        self._label = label
        self.limit = limit
        self.restarts = 0
        self.failures: list[BaseException] = []
        self._closing = False
        self.plumber = self._new_run()

    def __repr__(self) -> str:
        return f"<Supervisor {self._label!r} state={self.plumber.state} restarts={self.restarts}/{self.limit}>"

    def _new_run(self) -> Plumber:
        running = self._build()
        if self._inbox is not None:
            self._inbox.bind(running)
        if self._hub is not None:
            self._hub.add(running, self._label)
        return running

    async def run(self) -> None:
        """Run the current plumber to its end; after a failure, restart while the limit allows.

        Raises what the first run raised if it could not start (the app's startup reports it).
        """
        first = True
        while True:
            running = self.plumber
            failure: BaseException | None = None
            # run() rather than create_pipeline(): a distributed plumber connects to Redis first.
            try:
                await running.run()
            except Exception as exc:
                if running.state == "built":
                    if first:
                        raise  # it never started: the app does not start either
                    failure = exc  # a restart that could not start counts as one more failure
            first = False
            failure = failure or running.failure
            if failure is None or self._closing:
                return
            self.failures.append(failure)
            if self.restarts >= self.limit:
                if self.limit:
                    logger.error(
                        "the pipeline failed (%s) and stays down: the %d restarts allowed are spent",
                        describe_failure(failure),
                        self.limit,
                    )
                return
            self.restarts += 1
            logger.warning(
                "the pipeline failed (%s); restarting it (restart %d of %d)",
                describe_failure(failure),
                self.restarts,
                self.limit,
            )
            try:
                self.plumber = self._new_run()
            except Exception as exc:
                self.failures.append(exc)
                logger.error("the pipeline could not be built again (%s); it stays down", describe_failure(exc))
                return

    async def close(self, task: asyncio.Task[None], limit: float) -> None:
        """No more restarts; drain the current run (cancel what still runs after `limit` seconds)."""
        self._closing = True
        running = self.plumber
        if running.state == "built":  # a restart that has not started yet (a Redis connect)
            task.cancel()
        else:
            await _drain(running, limit)
        await asyncio.wait([task])


PLUMBER = web.AppKey("pipelines.plumber", Plumber)
SUPERVISOR = web.AppKey("pipelines.supervisor", Supervisor)


def attach(
    app: web.Application,
    plumber: Plumber | Callable[[], Plumber],
    *,
    inbox: Inbox | None = None,
    hub: Hub | None = None,
    label: str = "pipeline",
    drain_timeout: float = 30.0,
    restart: int = 0,
) -> None:
    """Start `plumber` (or the one a factory builds) with `app`; drain it when `app` shuts down.

    With `inbox`, the inbox is bound to the run before it starts. With `hub`, the run is shown by
    the control API and the dashboard as `label`. A run that fails while the app serves is logged
    and its inbox answers Unavailable naming the failure; the app keeps serving. With `restart=N`
    (a factory is then needed: a Plumber runs once), a failed run is replaced by a fresh one from
    the factory, bound to the inbox and added to the hub, at most N times; the requests in flight
    in the failed run get Unavailable. Raises ValueError for a negative `restart`, or a positive
    one without a factory.
    """
    if not isinstance(restart, int) or isinstance(restart, bool) or restart < 0:
        raise ValueError(f"restart must be an int >= 0 (how many times a failed run is replaced), got {restart!r}")
    if restart and isinstance(plumber, Plumber):
        raise ValueError(
            f"restart={restart} needs a factory that builds a fresh Plumber (a Plumber runs once), got a Plumber; "
            "pass e.g. lambda: Plumber(graph)"
        )

    build: Callable[[], Plumber]
    if isinstance(plumber, Plumber):
        only = plumber
        build = lambda: only  # noqa: E731 (a Plumber runs once: without restarts, built once)
    else:
        build = plumber

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        supervisor = Supervisor(build, inbox=inbox, hub=hub, label=label, limit=restart)
        running = supervisor.plumber
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_start(_: object) -> None:
            if not started.done():
                started.set_result(None)

        running.signals.connect("run_started", on_start)
        task = asyncio.get_running_loop().create_task(supervisor.run(), name="pipelines:web-run")
        await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            task.result()  # the run could not start: the app does not start either
        app[PLUMBER] = running
        app[SUPERVISOR] = supervisor
        try:
            yield
        finally:
            await supervisor.close(task, drain_timeout)

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
