"""Running a plumber as a program: the first SIGINT or SIGTERM drains, the second cancels."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable

from .plumber import Plumber
from .stats import RunResult

__all__ = ["run_forever", "run_until_signalled"]

logger = logging.getLogger(__name__)

DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_until_signalled(plumber: Plumber, signals: Iterable[int] = DEFAULT_SIGNALS) -> RunResult:
    """Run `plumber` to its end; on the first of `signals` stop it and drain, on the second cancel.

    Returns the RunResult ('completed', or 'stopped' after a signal); raises what run() raises,
    PipelineCancelled after a second signal. The handlers are removed when the run ends.
    """
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if plumber.state == "running":
            logger.warning("%s: stopping the sources and draining; send it again to cancel", name)
            plumber.stop_nowait()
        else:
            logger.warning("%s: cancelling the run", name)
            plumber.cancel()

    installed = []
    for signum in signals:
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not on this platform
            continue
        installed.append(signum)
    try:
        return await plumber.run()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def run_forever(
    plumber: Plumber,
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> RunResult:
    """Run `plumber` on a new event loop until it ends, handling SIGINT and SIGTERM.

    The blocking counterpart of `run_until_signalled()` for a script's main block. Pass
    ``loop_factory=uvloop.new_event_loop`` to run on uvloop.
    """
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(run_until_signalled(plumber))
