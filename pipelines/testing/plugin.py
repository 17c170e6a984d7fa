"""The pytest plugin of pipelines, registered through the `pytest11` entry point.

Fixtures:

- ``make_plumber``: builds Plumbers like the class does; at the end of the test every one of them
  is cancelled, waited for, and the test fails if a task of pipelines is still pending;
- ``virtual_clock``: puts the test's event loop on virtual time (see pipelines.testing) and
  yields the clock.

They are async fixtures of pytest-asyncio, so they work in its strict and auto modes, and they
run on the test's own loop: a test whose loop scope is not 'function' gets a clear error (use
``virtual_time()`` inside such a test). Without pytest-asyncio installed the plugin adds nothing.
The library itself is imported only when a fixture is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

from .. import runtime

if TYPE_CHECKING:
    from ..plumber import Plumber
    from .virtual_time import VirtualClock

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the plugin is inert without pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]

__all__ = ["leftover_tasks"]


def leftover_tasks() -> list[str]:
    """Names of the tasks of pipelines still pending on the running loop (or in the running trio run)."""
    if runtime.running_loop() is None:
        import trio  # no asyncio loop runs the caller: trio does (RuntimeError when neither does)

        names: list[str] = []
        tasks = [trio.lowlevel.current_root_task()]
        while tasks:
            task = tasks.pop()
            if task is not None:
                names += [task.name] if task.name.startswith("pipelines:") else []
                tasks += [child for nursery in task.child_nurseries for child in nursery.child_tasks]
        return sorted(names)
    current = asyncio.current_task()
    return sorted(
        t.get_name()
        for t in asyncio.all_tasks()
        if t is not current and not t.done() and t.get_name().startswith("pipelines:")
    )


def _require_function_loop(request: pytest.FixtureRequest, fixture: str) -> None:
    """Fail clearly unless the test runs on a function-scoped loop, the one this fixture gets."""
    marker = request.node.get_closest_marker("asyncio")
    scope = None
    if marker is not None:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    scope = scope or request.config.getini("asyncio_default_test_loop_scope") or "function"
    if scope != "function":
        pytest.fail(
            f"the {fixture} fixture runs on the test's function-scoped event loop, but this test runs on a "
            f"{scope}-scoped loop; use pipelines.testing.virtual_time() or Plumber inside the test instead",
            pytrace=False,
        )


if pytest_asyncio is not None:

    @pytest_asyncio.fixture(loop_scope="function")
    async def make_plumber(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Plumber]]:
        """Build Plumbers (same arguments as Plumber); each is cancelled and checked at teardown."""
        from ..plumber import Plumber

        _require_function_loop(request, "make_plumber")
        made: list[Plumber] = []

        def make(*args: Any, **kwargs: Any) -> Plumber:
            plumber = Plumber(*args, **kwargs)
            made.append(plumber)
            return plumber

        yield make
        for plumber in made:
            plumber.cancel()
        for plumber in made:
            await plumber.aclose()
        left = leftover_tasks()
        assert left == [], f"tasks of pipelines still pending after the test: {', '.join(left)}"

    @pytest_asyncio.fixture(loop_scope="function")
    async def virtual_clock(request: pytest.FixtureRequest) -> AsyncIterator[VirtualClock]:
        """The test's event loop on virtual time; needs asyncio's own loop (not uvloop)."""
        from .virtual_time import virtual_time

        _require_function_loop(request, "virtual_clock")
        async with virtual_time() as clock:
            yield clock
