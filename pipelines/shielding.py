"""Waiting for something to finish even while the waiting task is being cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["wait_through_cancel"]


async def wait_through_cancel(fut: asyncio.Future[Any], on_cancel: Callable[[], object] | None = None) -> None:
    """Wait until `fut` is done; if the caller is cancelled meanwhile, keep waiting, then re-raise.

    `on_cancel` is called at each cancellation of the caller. Used for cleanup that must run to
    its end (teardown hooks, the tasks of a run being cancelled); its own time bound lies in `fut`.
    """
    cancelled = False
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            cancelled = True
            if on_cancel is not None:
                on_cancel()
    if cancelled:
        raise asyncio.CancelledError
