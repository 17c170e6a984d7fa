"""The async libraries the core runs on, for tests: asyncio and uvloop (pytest-asyncio runs every
async test on both, see conftest.py) and trio, through anyio.

A test module whose async tests are written with anyio's primitives (anyio.Event, anyio.sleep,
task groups) gets a trio twin of each, ``test_x_on_trio``, by ending with
``globals().update(trio_twins(globals()))``; a test that is about asyncio itself is named in
`asyncio_only` with the reason, so that what does not run on trio is written down.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio
import anyio.abc
import trio.testing
import uvloop

from pipelines import Plumber
from pipelines.testing import leftover_tasks

T = TypeVar("T")

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
BACKENDS = (*LOOPS, "trio")
"""Where the core runs: asyncio's own loop, uvloop, and trio."""


def run_on(backend: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` to its end on `backend` (one of BACKENDS) and return what it returns."""
    if backend == "trio":
        return anyio.run(main, backend="trio")
    with asyncio.Runner(loop_factory=LOOPS[backend]) as runner:
        return runner.run(main())


class TrioVirtualClock:
    """The `virtual_clock` of a trio twin: trio's MockClock, which jumps to the next deadline
    whenever every task is blocked (the twin runs on it), seen as pipelines.testing's VirtualClock."""

    def __init__(self) -> None:
        self._start = anyio.current_time()

    @property
    def elapsed(self) -> float:
        return anyio.current_time() - self._start


def on_trio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """A synchronous test that runs the async `test` under trio, with the same arguments.

    The two fixtures of pipelines.testing, which are pytest-asyncio's, have trio counterparts
    here: `make_plumber` builds Plumbers that are closed at the end, after which no task of
    pipelines may be left; `virtual_clock` runs the test on trio's MockClock.
    """
    signature = inspect.signature(test)
    ours = [name for name in signature.parameters if name in ("make_plumber", "virtual_clock")]

    def twin(**kwargs: Any) -> None:
        async def main() -> None:
            built: list[Plumber] = []

            def make_plumber(*args: Any, **options: Any) -> Plumber:
                built.append(Plumber(*args, **options))
                return built[-1]

            given = {"make_plumber": make_plumber, "virtual_clock": TrioVirtualClock()}
            try:
                async with anyio.create_task_group() as group:
                    reset = _twin_group.set(group)
                    try:
                        await test(**kwargs, **{name: given[name] for name in ours})
                    finally:
                        _twin_group.reset(reset)
            finally:
                for plumber in built:
                    await plumber.aclose()
            assert leftover_tasks() == []

        options = {"clock": trio.testing.MockClock(autojump_threshold=0)} if "virtual_clock" in ours else {}
        anyio.run(main, backend="trio", backend_options=options)

    twin.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for name, p in signature.parameters.items() if name not in ours]
    )
    twin.__name__ = twin.__qualname__ = f"{test.__name__}_on_trio"
    twin.__module__ = test.__module__
    twin.__doc__ = test.__doc__
    marks = [mark for mark in getattr(test, "pytestmark", []) if mark.name != "asyncio"]  # pytest-asyncio's
    if marks:
        twin.pytestmark = marks  # type: ignore[attr-defined]
    return twin


def trio_twins(namespace: dict[str, Any], *, asyncio_only: dict[str, str] | None = None) -> dict[str, Any]:
    """A trio twin (`on_trio`) of every ``async def test_*`` in `namespace`, but those named in
    `asyncio_only` (test name: why it is about asyncio alone)."""
    asyncio_only = asyncio_only or {}
    unknown = sorted(set(asyncio_only) - set(namespace))
    assert not unknown, f"asyncio_only names no test of this module: {unknown}"
    twins: dict[str, Any] = {}
    for name, obj in list(namespace.items()):
        if name.startswith("test_") and inspect.iscoroutinefunction(obj) and name not in asyncio_only:
            twin = on_trio(obj)
            twins[twin.__name__] = twin
    return twins


_twin_group: ContextVar[anyio.abc.TaskGroup | None] = ContextVar("twin_group", default=None)


def started(call: Callable[[], Awaitable[T]]) -> Any:
    """`call()` started in the background: an asyncio task under pytest-asyncio, a `Background` in the
    task group of a trio twin. Either is awaited for its result, and has done() and cancel()."""
    group = _twin_group.get()
    if group is None:
        return asyncio.ensure_future(call())
    return Background(group, call)


class Background:
    """A call running in a task group: `await result()` waits for its end and returns or raises what it did.

    Only an Exception is kept for `result()`; a cancellation goes on up, as it must.
    """

    def __init__(self, group: anyio.abc.TaskGroup, call: Callable[[], Awaitable[Any]]) -> None:
        self._ended = anyio.Event()
        self._value: Any = None
        self._error: Exception | None = None
        self.scope = anyio.CancelScope()
        """Cancel it to cancel the call (`scope.cancelled_caught` tells whether it was)."""
        group.start_soon(self._run, call)

    async def _run(self, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            with self.scope:
                self._value = await call()
        except Exception as exc:
            self._error = exc
        finally:
            self._ended.set()

    def done(self) -> bool:
        return self._ended.is_set()

    def cancel(self) -> None:
        self.scope.cancel()

    def __await__(self) -> Any:
        return self.result().__await__()

    async def result(self) -> Any:
        await self._ended.wait()
        if self._error is not None:
            raise self._error
        return self._value
