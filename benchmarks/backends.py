"""B15 backends: B1's chain on trio (through anyio) against the same chain on asyncio; and on asyncio
with the runtime's calls bound straight to asyncio's, as they were before the trio backend, to show
what the asyncio path pays for the choice of backend (nothing, within noise)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from functools import partial
from typing import Any

from pipelines import runtime

from .graphs import chain, pipeline
from .harness import Case, Config, Trial, alternate, optional, timed
from .linear import STAGES, expected
from .report import Row, throughput_rows

__all__ = ["B15"]

ASYNCIO = "asyncio: pipelines, @node f(item)"
DIRECT = "asyncio, runtime bound straight to asyncio (as before trio): pipelines, @node f(item)"
TRIO = "trio (anyio.run, backend='trio'): pipelines, @node f(item)"


def timed_on_trio(make: Callable[[], Awaitable[Any]], want: Any) -> Trial:
    """As harness.timed, under ``anyio.run(..., backend="trio")``."""
    import anyio
    import trio  # noqa: F401  # a missing trio is seen here, not inside the run

    def trial() -> float:
        gc.collect()

        async def main() -> tuple[float, Any]:
            work = make()
            start = time.perf_counter()
            got = await work
            return time.perf_counter() - start, got

        elapsed, got = anyio.run(main, backend="trio")
        if got != want:
            raise AssertionError(f"wrong result: expected {want!r}, got {got!r}")
        return elapsed

    return trial


@contextlib.contextmanager
def runtime_bound_to_asyncio() -> Iterator[None]:
    """Bind pipelines.runtime's calls to asyncio's own, with no question asked of the running loop."""

    def new_future() -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    def current_task() -> asyncio.Task[Any]:
        task = asyncio.current_task()
        assert task is not None
        return task

    async def first_of(gets: list[Coroutine[Any, Any, list[Any]]]) -> list[Any]:
        tasks = [asyncio.ensure_future(get) for get in gets]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        return [item for task in tasks if not task.cancelled() for item in task.result()]

    direct: dict[str, Any] = {
        "new_future": new_future,
        "new_event": asyncio.Event,
        "task_group": asyncio.TaskGroup,
        "sleep": asyncio.sleep,
        "timeout": asyncio.timeout,
        "spawn": lambda coro, name=None: asyncio.get_running_loop().create_task(coro, name=name),
        "current_task": current_task,
        "clock": lambda: asyncio.get_running_loop().time,
        "call_soon": lambda callback: asyncio.get_running_loop().call_soon(callback),
        "call_soon_of_running_loop": lambda: asyncio.get_running_loop().call_soon,
        "call_later": lambda delay, callback: asyncio.get_running_loop().call_later(delay, callback).cancel,
        "run_in_executor": lambda executor, call: asyncio.get_running_loop().run_in_executor(executor, call),
        "shield": asyncio.shield,
        "first_of": first_of,
        "cancel_region": lambda coro: coro,
        "hosting": contextlib.nullcontext,
        "hosted": lambda: True,
        "is_cancellation": lambda exc: isinstance(exc, asyncio.CancelledError),
    }
    saved = {name: getattr(runtime, name) for name in direct}
    for name, value in direct.items():
        setattr(runtime, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(runtime, name, value)


def _direct(trial: Trial) -> Trial:
    def bound() -> float:
        with runtime_bound_to_asyncio():
            return trial()

    return bound


B15_TITLE = "backends: B1 on trio, and on asyncio with the runtime bound straight to asyncio"
B15_LABELS = (ASYNCIO, DIRECT, TRIO)


def _run_b15(config: Config) -> list[Row]:
    n = config.size(200_000, 2_000)
    want = expected(n)
    make = pipeline(partial(chain, n, STAGES))
    trials = {
        ASYNCIO: timed(make, want, "asyncio"),  # the rows name their loop: not moved by --loop
        DIRECT: _direct(timed(make, want, "asyncio")),
        TRIO: optional("trio", lambda: timed_on_trio(make, want)),
    }
    results = alternate(trials, config.rounds)
    return throughput_rows("B15", n, results, {ASYNCIO: DIRECT, DIRECT: None, TRIO: ASYNCIO})


B15 = Case("B15", B15_TITLE, B15_LABELS, _run_b15)
