"""Errors are never silent: fail, skip, retry, timeout, and routing to an error node."""

from __future__ import annotations

import logging
import re
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from pipelines import Failure, Plumber, Processor, RetryPolicy
from pipelines.testing import VirtualClock

from .backends import Background, trio_twins
from .helpers import add_one, chain, collector, source_of


async def fails_on_three(processor: Processor, q_elt: tuple[int]) -> int:
    if q_elt[0] == 3:
        raise ValueError(f"bad item {q_elt[0]}")
    return q_elt[0]


async def test_fail_raises_the_original_exception_with_a_note() -> None:
    _, sink = collector()
    graph = chain("inp", "f", "out", coros={"inp": source_of(list(range(10))), "f": fails_on_three, "out": sink})
    plumber = Plumber(graph)
    with pytest.raises(ValueError, match=r"^bad item 3") as info:
        await plumber.run()
    assert type(info.value) is ValueError
    assert info.value.__notes__ == ["pipelines: node 'f' failed on item (3,)"]
    assert plumber.state == "failed"
    assert plumber.stats()["f"].failed == 1


async def test_fail_releases_a_producer_blocked_on_a_full_queue() -> None:
    cancelled: list[str] = []
    blocked = anyio.Event()
    release = anyio.Event()

    async def source(processor: Processor, output_q: Any) -> None:
        try:
            for i in range(100):
                if output_q.full():
                    blocked.set()
                await output_q.put(i)
        except anyio.get_cancelled_exc_class():
            cancelled.append("source")
            raise

    async def fail_when_released(processor: Processor, q_elt: tuple[int]) -> None:
        await release.wait()
        raise KeyError("late")

    graph = chain("inp", "f", coros={"inp": source, "f": fail_when_released}, props={"f": {"queue_size": 2}})
    plumber = Plumber(graph)
    async with anyio.create_task_group() as group:
        running = Background(group, plumber.run)
        await blocked.wait()
        release.set()
    with pytest.raises(KeyError, match="late"):
        await running.result()
    assert cancelled == ["source"]


async def test_an_exception_in_a_source_fails_the_run() -> None:
    async def source(processor: Processor, output_q: Any) -> None:
        await output_q.put(1)
        await output_q.put(2)
        raise ConnectionError("feed lost")

    _, sink = collector()
    with pytest.raises(ConnectionError, match="feed lost") as info:
        await Plumber(chain("inp", "out", coros={"inp": source, "out": sink})).run()
    assert info.value.__notes__ == ["pipelines: source 'inp' failed after putting 2 items"]


async def test_skip_counts_and_logs_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    seen, sink = collector()
    graph = chain(
        "inp",
        "f",
        "out",
        coros={"inp": source_of(list(range(6))), "f": fails_on_three, "out": sink},
        props={"f": {"on_error": "skip"}},
    )
    with caplog.at_level(logging.WARNING, logger="pipelines"):
        result = await Plumber(graph).run()
    assert seen == [(0,), (1,), (2,), (4,), (5,)]
    f = result["f"]
    assert (f.items_in, f.completed, f.skipped, f.failed, f.in_flight) == (6, 5, 1, 0, 0)
    warnings = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert warnings == [("pipelines.ledger", "WARNING", "node 'f': skipped item (3,) after ValueError('bad item 3')")]


async def test_retry_until_success() -> None:
    attempts: dict[int, int] = {}

    async def flaky(processor: Processor, q_elt: tuple[int]) -> int:
        attempts[q_elt[0]] = attempts.get(q_elt[0], 0) + 1
        if q_elt[0] == 1 and attempts[1] < 3:
            raise ConnectionError("try again")
        return q_elt[0]

    seen, sink = collector()
    graph = chain(
        "inp",
        "f",
        "out",
        coros={"inp": source_of([0, 1, 2]), "f": flaky, "out": sink},
        props={"f": {"retry": {"max_attempts": 3, "backoff_factor": 0}}},
    )
    result = await Plumber(graph).run()
    # item 1's retries yield to the loop, so another worker takes item 2 meanwhile: no order is kept
    assert sorted(seen) == [(0,), (1,), (2,)]
    assert attempts == {0: 1, 1: 3, 2: 1}
    assert (result["f"].retried, result["f"].completed, result["f"].failed) == (2, 3, 0)


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_retry_gives_up_after_max_attempts_without_a_last_wait(virtual_clock: VirtualClock) -> None:
    calls: list[float] = []

    async def always(processor: Processor, q_elt: tuple[int]) -> None:
        calls.append(virtual_clock.elapsed)
        raise TimeoutError("down")

    policy = RetryPolicy(max_attempts=4, backoff_factor=1.0, max_backoff=3.0)
    graph = chain("inp", "f", coros={"inp": source_of([7]), "f": always}, props={"f": {"retry": policy}})
    plumber = Plumber(graph)
    with pytest.raises(TimeoutError, match="down"):
        await plumber.run()
    assert calls == [0.0, 1.0, 3.0, 6.0]  # waits of 1, 2, then 3 (the cap)
    assert virtual_clock.elapsed == 6.0  # and none after the last attempt
    assert plumber.stats()["f"].retried == 3


async def test_retry_only_on_the_listed_exceptions() -> None:
    calls = 0

    async def wrong(processor: Processor, q_elt: tuple[int]) -> None:
        nonlocal calls
        calls += 1
        raise TypeError("not retryable")

    graph = chain(
        "inp",
        "f",
        coros={"inp": source_of([1]), "f": wrong},
        props={"f": {"retry": RetryPolicy(max_attempts=5, retry_on=(ConnectionError,))}},
    )
    with pytest.raises(TypeError, match="not retryable"):
        await Plumber(graph).run()
    assert calls == 1


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_timeout_per_item(virtual_clock: VirtualClock) -> None:
    never = anyio.Event()

    async def maybe_hangs(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] == 2:
            await never.wait()
        return q_elt[0]

    seen, sink = collector()
    retry = {"max_attempts": 2, "backoff_factor": 0.5}
    graph = chain(
        "inp",
        "f",
        "out",
        coros={"inp": source_of([1, 2, 3]), "f": maybe_hangs, "out": sink},
        props={"f": {"timeout": 2.0, "on_error": "skip", "retry": retry}},
    )
    result = await Plumber(graph).run()
    assert seen == [(1,), (3,)]
    assert (result["f"].skipped, result["f"].retried) == (1, 1)
    assert virtual_clock.elapsed == 2.0 + 0.5 + 2.0  # two timed-out attempts and the wait between


async def test_failed_items_are_routed_to_the_error_node() -> None:
    failures: list[Failure] = []

    async def on_failure(processor: Processor, q_elt: tuple[Failure]) -> None:
        failures.append(q_elt[0])

    seen, sink = collector()
    graph = {
        "nodes": {
            "inp": {"coro": source_of(list(range(5)))},
            "f": {"coro": fails_on_three, "properties": {"on_error": "errors"}},
            "out": {"coro": sink},
            "errors": {"coro": on_failure},
        },
        "graph": {"inp": ["f"], "f": ["out"], "out": None, "errors": None},
    }
    result = await Plumber(graph).run()
    assert seen == [(0,), (1,), (2,), (4,)]
    assert len(failures) == 1
    failure = failures[0]
    assert (failure.node, failure.item, type(failure.exception), str(failure.exception)) == (
        "f",
        (3,),
        ValueError,
        "bad item 3",
    )
    assert (result["f"].failed, result["f"].completed, result["errors"].items_in) == (1, 4, 1)


async def test_an_error_node_of_several_nodes_ends_after_all_of_them() -> None:
    failures: list[tuple[str, Any]] = []

    async def odd_fails(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] % 2:
            raise ValueError(q_elt[0])
        return q_elt[0]

    async def on_failure(processor: Processor, q_elt: tuple[Failure]) -> None:
        failures.append((q_elt[0].node, q_elt[0].item))

    _, sink = collector()
    route = {"on_error": "errors"}
    graph = {
        "nodes": {
            "inp": {"coro": source_of(list(range(6)))},
            "a": {"coro": odd_fails, "properties": route},
            "b": {"coro": add_one},
            "c": {"coro": odd_fails, "properties": route},
            "out": {"coro": sink, "properties": {"aggregate_inputs": False}},
            "errors": {"coro": on_failure},
        },
        "graph": {"inp": ["a", "b"], "a": ["out"], "b": ["c"], "c": ["out"], "out": None, "errors": None},
    }
    await Plumber(graph).run()
    assert sorted(failures) == [("a", (1,)), ("a", (3,)), ("a", (5,)), ("c", (1,)), ("c", (3,)), ("c", (5,))]


def test_retry_policy_delays_grow_exponentially_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=6, backoff_factor=0.5, max_backoff=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(backoff_factor=1.0, jitter=0.5)
    assert all(0.5 <= jittered.delay(1) <= 1.5 for _ in range(100))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be an int >= 1, got 0"),
        ({"backoff_factor": -1}, "backoff_factor must be a finite number >= 0, got -1"),
        ({"jitter": 2}, "jitter must be a number between 0 and 1, got 2"),
        (
            {"retry_on": (KeyboardInterrupt,)},
            "retry_on must hold subclasses of Exception, got <class 'KeyboardInterrupt'>",
        ),
    ],
)
def test_retry_policy_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        RetryPolicy(**kwargs)


globals().update(trio_twins(globals()))
