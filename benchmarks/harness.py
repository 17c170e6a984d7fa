"""Rounds, timing and loops: how every figure of the suite is measured.

A trial measures one round of one contender and returns a number (seconds, or bytes). The trials
of a case run in alternating rounds, the order rotated each round, so that drift on a shared
machine hits every contender alike; a figure is the median over the rounds, and a ratio is the
median of the per-round ratios to the reference measured in the same round.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .report import Row

__all__ = [
    "Case",
    "Config",
    "Samples",
    "Trial",
    "Unavailable",
    "alternate",
    "default_loop",
    "in_tasks",
    "loop_factory",
    "optional",
    "timed",
    "use_loop",
]

Trial = Callable[[], float]


@dataclass(frozen=True)
class Config:
    """How a run is sized: rounds per figure, and whether to use the tiny smoke sizes."""

    rounds: int = 5
    smoke: bool = False

    def size(self, full: int, smoke: int) -> int:
        return smoke if self.smoke else full


@dataclass(frozen=True)
class Case:
    """One benchmark: an id (B1...), what it measures, the labels of its rows, and how to run it."""

    id: str
    title: str
    labels: tuple[str, ...]
    run: Callable[[Config], list[Row]]


class Unavailable(Exception):
    """A contender that cannot run here (an optional package is missing or fails); says why."""

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else "unavailable"


@dataclass(frozen=True)
class Samples:
    """The values one contender measured, one per round, in round order."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def ratio_to(self, reference: Samples) -> float:
        """Median over rounds of reference / self: above 1 when self took less (time, bytes)."""
        return statistics.median(r / v for r, v in zip(reference.values, self.values, strict=True))


Result = Samples | Unavailable


def alternate(trials: Mapping[str, Trial], rounds: int) -> dict[str, Result]:
    """Run every trial once per round, rotating the order each round; a contender that raises
    Unavailable is dropped from later rounds. Any other exception propagates."""
    labels = list(trials)
    values: dict[str, list[float]] = {label: [] for label in labels}
    missing: dict[str, Unavailable] = {}
    for round_index in range(rounds):
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            if label in missing:
                continue
            try:
                values[label].append(trials[label]())
            except Unavailable as exc:
                missing[label] = exc
    return {label: missing.get(label) or Samples(tuple(values[label])) for label in labels}


T = TypeVar("T")


async def in_tasks(result: Coroutine[Any, Any, T], *others: Coroutine[Any, Any, Any]) -> T:
    """Run `others`, then `result`, each as a task of one group (the nodes of a graph written by
    hand, its sink last); return what `result` returned. A coroutine that never became a task (the
    group failed first) is closed, not left unawaited."""
    waiting = [*others, result]
    try:
        async with asyncio.TaskGroup() as group:
            while waiting:
                task = group.create_task(waiting[0])
                del waiting[0]
    finally:
        for coroutine in waiting:
            coroutine.close()
    return task.result()


LOOPS = ("asyncio", "uvloop")

_default_loop = "asyncio"


def use_loop(name: str) -> None:
    """Run every trial that names no loop of its own on `name` ('asyncio' or 'uvloop'):
    ``python -m benchmarks --loop uvloop``."""
    global _default_loop
    if name not in LOOPS:
        raise ValueError(f"unknown loop {name!r}; the loops are {', '.join(LOOPS)}")
    _default_loop = name


def default_loop() -> str:
    """The loop of the trials that name none (see `use_loop`)."""
    return _default_loop


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory of fresh event loops: 'asyncio' or 'uvloop' (Unavailable when not installed)."""
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            raise Unavailable(f"uvloop not installed ({exc})") from None
        return uvloop.new_event_loop
    raise ValueError(f"unknown loop {name!r}")


def timed(
    make: Callable[[], Awaitable[Any]],
    expected: Any,
    loop: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Trial:
    """A trial timing one run on a fresh event loop (in wall seconds, or by another `clock`, such as
    time.process_time for the CPU seconds of the whole process, its threads included).

    ``make()`` prepares the run (building a Plumber, say) outside the timed span and returns the
    awaitable to time; its result must equal `expected`, so that a fast but wrong contender fails
    loudly instead of winning.
    """

    def trial() -> float:
        factory = loop_factory(loop or _default_loop)
        gc.collect()
        with asyncio.Runner(loop_factory=factory) as runner:
            work = make()
            start = clock()
            got = runner.run(_await(work))
            elapsed = clock() - start
        if got != expected:
            raise AssertionError(f"wrong result: expected {expected!r}, got {got!r}")
        return elapsed

    return trial


async def _await(work: Awaitable[Any]) -> Any:
    return await work


def optional(package: str, trial: Callable[[], Trial]) -> Trial:
    """A trial using an optional package: missing or failing, it becomes Unavailable with the reason.

    `trial` builds the real trial; it imports the package, so that a missing one is seen here.
    """

    def guarded() -> float:
        try:
            return trial()()
        except ImportError as exc:
            raise Unavailable(f"{package} not installed ({exc.msg}); pip install -e '.[bench]'") from None
        except (AssertionError, Unavailable):
            raise
        except Exception as exc:
            raise Unavailable(f"{package} failed: {type(exc).__name__}: {exc}") from None

    return guarded
