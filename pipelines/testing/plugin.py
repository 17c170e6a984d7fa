"""The pytest plugin of pipelines, registered through the `pytest11` entry point.

Fixtures:

- ``make_plumber``: builds Plumbers like the class does; at the end of the test every one of them
  is cancelled, waited for, and the test fails if a task of pipelines is still pending;
- ``virtual_clock``: puts the test's event loop on virtual time (see pipelines.testing) and
  yields the clock.

They are async fixtures of pytest-asyncio, so they work in its strict and auto modes; without
pytest-asyncio installed the plugin adds nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..plumber import Plumber
from .virtual_time import VirtualClock, virtual_time

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the plugin is inert without pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]

__all__ = ["leftover_tasks"]


def leftover_tasks() -> list[str]:
    """Names of the tasks of pipelines still pending on the running loop."""
    current = asyncio.current_task()
    return sorted(
        t.get_name()
        for t in asyncio.all_tasks()
        if t is not current and not t.done() and t.get_name().startswith("pipelines:")
    )


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def make_plumber() -> AsyncIterator[Callable[..., Plumber]]:
        """Build Plumbers (same arguments as Plumber); each is cancelled and checked at teardown."""
        made: list[Plumber] = []

        def make(*args: Any, **kwargs: Any) -> Plumber:
            plumber = Plumber(*args, **kwargs)
            made.append(plumber)
            return plumber

        yield make
        for plumber in made:
            plumber.cancel()
        for plumber in made:
            await plumber._wait_finished()
        left = leftover_tasks()
        assert left == [], f"tasks of pipelines still pending after the test: {', '.join(left)}"

    @pytest_asyncio.fixture
    async def virtual_clock() -> AsyncIterator[VirtualClock]:
        """The test's event loop on virtual time; needs asyncio's own loop (not uvloop)."""
        async with virtual_time() as clock:
            yield clock
