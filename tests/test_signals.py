"""Signals: listeners see the lifecycle of a run; a failing listener never harms it."""

from __future__ import annotations

import logging
import re
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from pipelines import Plumber, Processor
from pipelines.signals import Signal, Signals

from .backends import started, trio_twins
from .helpers import chain, collector, source_of


def record(plumber: Plumber, *events: str) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    for event in events:
        plumber.signals.connect(event, lambda s: seen.append((s.event, s.node, s.item, s.attempt, s.state)))
    return seen


async def test_a_run_announces_its_start_its_nodes_and_its_end() -> None:
    _, sink = collector()
    plumber = Plumber(chain("inp", "out", coros={"inp": source_of([1]), "out": sink}))
    seen = record(plumber, "run_started", "node_started", "node_ended", "run_ended")
    await plumber.run()
    assert seen[0] == ("run_started", None, None, None, None)
    assert sorted(s for s in seen[1:-1] if s[0] == "node_started") == [
        ("node_started", "inp", None, None, None),
        ("node_started", "out", None, None, None),
    ]
    assert sorted(s for s in seen[1:-1] if s[0] == "node_ended") == [
        ("node_ended", "inp", None, None, None),
        ("node_ended", "out", None, None, None),
    ]
    assert seen[-1] == ("run_ended", None, None, None, "completed")


async def test_retries_and_failures_are_announced_with_the_item() -> None:
    attempts = 0

    async def flaky(processor: Processor, q_elt: tuple[int]) -> int:
        nonlocal attempts
        attempts += 1
        if q_elt[0] == 2 or attempts == 1:
            raise ConnectionError(f"item {q_elt[0]}")
        return q_elt[0]

    _, sink = collector()
    graph = chain(
        "inp",
        "f",
        "out",
        coros={"inp": source_of([1, 2]), "f": flaky, "out": sink},
        props={"f": {"retry": {"max_attempts": 2, "backoff_factor": 0}, "on_error": "skip"}},
    )
    plumber = Plumber(graph)
    seen = record(plumber, "item_retried", "item_failed")
    failures: list[BaseException | None] = []
    plumber.signals.connect("item_failed", lambda s: failures.append(s.exception))
    await plumber.run()
    assert seen == [
        ("item_retried", "f", (1,), 1, None),
        ("item_retried", "f", (2,), 1, None),
        ("item_failed", "f", (2,), None, None),
    ]
    assert [str(e) for e in failures] == ["item 2"]


async def test_stop_is_announced() -> None:
    putting = anyio.Event()

    async def endless(processor: Processor, output_q: Any) -> None:
        while True:
            putting.set()
            await output_q.put(0)

    _, sink = collector()
    plumber = Plumber(chain("inp", "out", coros={"inp": endless, "out": sink}))
    seen = record(plumber, "stop_requested", "run_ended")
    running = started(plumber.run)
    await putting.wait()
    await plumber.stop()
    await running
    assert seen == [("stop_requested", None, None, None, None), ("run_ended", None, None, None, "stopped")]


async def test_a_failing_listener_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    _, sink = collector()
    plumber = Plumber(chain("inp", "out", coros={"inp": source_of([1]), "out": sink}))

    def broken(signal: Signal) -> None:
        raise RuntimeError("listener bug")

    plumber.signals.connect("run_ended", broken)
    seen = record(plumber, "run_ended")
    with caplog.at_level(logging.ERROR, logger="pipelines"):
        result = await plumber.run()
    assert result.state == "completed"
    assert seen == [("run_ended", None, None, None, "completed")]
    assert [(r.name, r.getMessage().split(";")[0]) for r in caplog.records] == [
        ("pipelines.signals", f"listener {broken!r} of 'run_ended' raised")
    ]


def test_connect_checks_the_event_and_the_listener() -> None:
    signals = Signals()
    with pytest.raises(ValueError, match=re.escape("unknown event 'item_done' (events: run_started, run_ended, ")):
        signals.connect("item_done", print)

    async def coroutine(signal: Signal) -> None:
        pass

    with pytest.raises(TypeError, match=r"^a listener is a plain function called at once"):
        signals.connect("run_started", coroutine)  # type: ignore[arg-type]
    seen: list[str] = []
    listener = signals.connect("run_started", lambda s: seen.append(s.event))
    signals.emit("run_started")
    signals.disconnect("run_started", listener)
    signals.emit("run_started")
    assert seen == ["run_started"]


globals().update(trio_twins(globals()))
