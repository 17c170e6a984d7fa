"""`pipelines serve FILE`: run a graph file with the live dashboard and the HTTP control API.

It serves Prometheus metrics at /metrics too, when the metrics extra is installed (pipelines.metrics).
The server binds 127.0.0.1 unless told otherwise; bound anywhere else it requires a token (made
up and printed when --token is not given). It keeps serving after the run ends, so its final
counts stay on the page, until Ctrl-C or SIGTERM: the first stops a run still going, lets it
drain and then ends the server; the next one cancels the run.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from ..errors import describe_failure
from ..plumber import Plumber
from .extras import needs
from .observe import http_url
from .progress import format_summary, show, write_line

__all__ = ["serve"]

EXIT_CODES = {"completed": 0, "stopped": 0, "failed": 1, "cancelled": 130}


def serve(plumber: Plumber, *, host: str, port: int, token: str | None, label: str) -> int:
    """Serve until a signal ends it; returns the exit code of the run (2 when it cannot serve).

    Raises ExtraMissing when the ``web`` extra is not installed."""
    with needs("web", "serve"):
        from ..web import required_token
    token = required_token(host, token)
    return asyncio.run(_serve(plumber, host, port, token, label))


async def _serve(plumber: Plumber, host: str, port: int, token: str | None, label: str) -> int:
    from aiohttp import web

    from ..web import HUB, attach, make_app

    app = make_app(token=token)
    attach(app, plumber, hub=app[HUB], label=label)
    try:
        from ..metrics import mount
    except ImportError:
        pass  # without the metrics extra there is no /metrics; the rest serves as before
    else:
        mount(app, app[HUB], token=token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
            write_line(sys.stderr, f"pipelines: cannot serve on {host}:{port}: {getattr(exc, 'strerror', None) or exc}")
            return 2
        bound = runner.addresses[0][1]
        suffix = f"?token={token}" if token else ""
        print(f"pipelines: dashboard at {http_url(host, bound, '/')}{suffix} (Ctrl-C to stop)", flush=True)
        finished = asyncio.Event()
        leaving = False

        def on_signal() -> None:
            nonlocal leaving
            leaving = True
            if plumber.state == "running":
                write_line(sys.stderr, "pipelines: stopping the sources; Ctrl-C again to cancel")
                plumber.stop_nowait()
            elif plumber.state == "stopping":
                plumber.cancel()
            else:
                finished.set()

        def on_end(_: object) -> None:
            if leaving:
                finished.set()
            elif plumber.failure is not None:  # said at once: the dashboard stays up to look at it
                write_line(sys.stderr, f"pipelines: run failed: {describe_failure(plumber.failure)} (Ctrl-C to leave)")

        plumber.signals.connect("run_ended", on_end)
        if plumber.failure is not None:
            on_end(None)  # it failed before the server was up

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal)
        try:
            await finished.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
    finally:
        await runner.cleanup()
    show(format_summary(plumber.stats(), plumber.spec))
    show(f"{plumber.state}")
    return EXIT_CODES.get(plumber.state, 1)
