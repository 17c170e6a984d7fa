"""pipelines.trio_runtime: a plumber under trio (through anyio), with the semantics it has on asyncio.

Each test runs its graph under ``anyio.run(..., backend="trio")``; those on virtual time pass
trio's MockClock, which jumps to the next deadline whenever every task is blocked.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing

from pipelines import PipelineError, Plumber, Processor, RetryPolicy, runtime
from pipelines.errors import AsyncioOnlyError
from pipelines.testing import leftover_tasks

from .backends import Background
from .helpers import add_one, chain, collector, source_of, until
from .test_executors import square_with_pid


def on_trio(main: Callable[[], Awaitable[Any]], *, virtual: bool = False) -> Any:
    options = {"clock": trio.testing.MockClock(autojump_threshold=0)} if virtual else {}
    return anyio.run(main, backend="trio", backend_options=options)


def endless_source(started: anyio.Event | None = None) -> Any:
    async def endless(processor: Processor, output_q: Any) -> None:
        i = 0
        while True:
            await output_q.put(i)
            if started is not None:
                started.set()
            i += 1

    return endless


def test_a_plumber_inside_a_task_group_is_cancelled_with_its_scope() -> None:
    """The user's scope ends: the run is cancelled (teardown runs), and the cancellation goes on up."""
    torn_down: list[str] = []
    left: list[str] = ["not checked"]

    async def teardown(processor: Processor) -> None:
        await anyio.lowlevel.checkpoint()  # teardown may await: it runs shielded, to its end
        torn_down.append(processor.name)

    _, sink = collector()
    graph = chain("inp", "out", coros={"inp": endless_source(), "out": sink}, props={"out": {"teardown": teardown}})
    plumber = Plumber(graph)

    async def main() -> bool:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(plumber.run)
                await until(lambda: plumber.stats()["out"].items_in > 100)
                scope.cancel()
        left[:] = leftover_tasks()
        return scope.cancelled_caught

    assert on_trio(main) is True
    assert plumber.state == "cancelled"
    assert torn_down == ["out"]
    assert left == []


def test_a_deadline_around_run_cancels_the_run_and_is_not_swallowed() -> None:
    async def ticks(processor: Processor, output_q: Any) -> None:
        i = 0
        while True:
            await anyio.sleep(1)
            await output_q.put(i)
            i += 1

    seen, sink = collector()
    plumber = Plumber(chain("inp", "out", coros={"inp": ticks, "out": sink}))

    async def main() -> tuple[bool, float]:
        with anyio.move_on_after(5.5) as scope:
            await plumber.run()
        return scope.cancelled_caught, anyio.current_time()

    cancelled, now = on_trio(main, virtual=True)
    assert cancelled is True
    assert now == 5.5  # virtual time: the deadline fired exactly when due
    assert plumber.state == "cancelled"
    assert seen == [(i,) for i in range(5)]  # put at 1, 2, 3, 4 and 5 s; the sixth was due at 6 s


def test_create_pipeline_under_trio_names_run_instead() -> None:
    plumber = Plumber(chain("inp", "out", coros={"inp": source_of([1]), "out": collector()[1]}))

    async def main() -> None:
        plumber.create_pipeline()

    message = (
        "create_pipeline() (it starts the nodes as tasks with no owner) runs on asyncio only, not under trio; "
        "use `await plumber.run()`"
    )
    with pytest.raises(AsyncioOnlyError, match=f"^{re.escape(message)}$"):
        on_trio(main)
    assert plumber.state == "built"


def test_pause_resume_and_stop_source_hold_and_end_the_sources() -> None:
    started = anyio.Event()
    seen, sink = collector()
    plumber = Plumber(chain("inp", "out", coros={"inp": endless_source(started), "out": sink}))

    async def main() -> Any:
        async with anyio.create_task_group() as group:
            running = Background(group, plumber.run)
            await started.wait()
            plumber.pause()
            await anyio.wait_all_tasks_blocked()
            held = plumber.stats()["inp"].items_out
            await anyio.wait_all_tasks_blocked()
            assert plumber.stats()["inp"].items_out == held  # nothing moves while paused
            assert len(seen) == held  # and what was put has drained to the sink
            plumber.resume()
            await until(lambda: plumber.stats()["inp"].items_out > held + 10)
            plumber.stop_source("inp")
        return await running.result()

    result = on_trio(main)
    assert result.state == "completed"
    assert seen == [(i,) for i in range(result["inp"].items_out)]


def test_a_failing_node_fails_the_run_with_its_own_exception() -> None:
    async def boom(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] == 7:
            raise KeyError("seven")
        return q_elt[0]

    plumber = Plumber(chain("inp", "b", "out", coros={"inp": source_of(list(range(100))), "b": boom, "out": add_one}))
    with pytest.raises(KeyError, match="seven") as info:
        on_trio(plumber.run)
    assert info.value.__notes__ == ["pipelines: node 'b' failed on item (7,)"]
    assert plumber.state == "failed"


def test_retries_back_off_and_timeouts_fire_on_trios_clock() -> None:
    attempts: list[tuple[int, float]] = []

    async def flaky(processor: Processor, q_elt: tuple[int]) -> int:
        attempts.append((q_elt[0], trio.current_time()))
        if len([a for a in attempts if a[0] == q_elt[0]]) < 3:
            raise ConnectionError("try again")
        return q_elt[0]

    async def slow(processor: Processor, q_elt: tuple[int]) -> int:
        await anyio.sleep(10 if q_elt[0] == 1 else 0)
        return q_elt[0]

    seen, sink = collector()
    retry = RetryPolicy(max_attempts=3, backoff_factor=1.0)
    graph = chain(
        "inp",
        "flaky",
        "slow",
        "out",
        coros={"inp": source_of([0, 1, 2]), "flaky": flaky, "slow": slow, "out": sink},
        props={
            "flaky": {"retry": retry, "workers": 1},
            "slow": {"timeout": 2.0, "on_error": "skip"},
        },
    )

    async def main() -> Any:
        result = await Plumber(graph).run()
        return result, trio.current_time()

    result, now = on_trio(main, virtual=True)
    # each item: tried at once, then after 1 s, then after 2 s (backoff 1 * 2**(n-1)); one worker
    assert attempts == [(0, 0.0), (0, 1.0), (0, 3.0), (1, 3.0), (1, 4.0), (1, 6.0), (2, 6.0), (2, 7.0), (2, 9.0)]
    assert result["flaky"].retried == 6
    assert sorted(seen) == [(0,), (2,)]  # item 1 timed out at 'slow' and was skipped
    assert (result["slow"].skipped, result["slow"].completed) == (1, 2)
    # the last item left 'flaky' at 9 s; item 1 timed out at 8 s (its 10 s sleep would have ended at 16 s)
    assert now == 9.0


def test_elastic_workers_grow_while_items_wait_behind_suspended_calls() -> None:
    async def io(processor: Processor, q_elt: tuple[int]) -> int:
        await anyio.sleep(1)
        return q_elt[0]

    seen, sink = collector()
    graph = chain("inp", "io", "out", coros={"inp": source_of(list(range(40))), "io": io, "out": sink})

    async def main() -> Any:
        result = await Plumber(graph).run()
        return result, trio.current_time()

    result, now = on_trio(main, virtual=True)
    assert sorted(seen) == [(i,) for i in range(40)]
    assert result["io"].peak_workers > 1
    assert now < 40  # the calls overlapped: one worker alone would have taken 40 s


def test_a_process_pool_node_runs_its_function_in_other_processes_under_trio() -> None:
    seen, sink = collector()
    graph = chain(
        "inp",
        "work",
        "out",
        coros={"inp": source_of(list(range(20))), "work": square_with_pid, "out": sink},
        props={"work": {"executor": "process", "max_workers": 2}},
    )
    result = on_trio(Plumber(graph).run)
    assert sorted(square for ((square, _),) in seen) == [i * i for i in range(20)]
    assert os.getpid() not in {pid for ((_, pid),) in seen}
    assert result["work"].completed == 20


def test_send_event_reaches_a_node_between_its_items() -> None:
    handled: list[Any] = []

    async def scale(processor: Processor, q_elt: tuple[int]) -> int:
        return q_elt[0]

    async def on_set(processor: Processor, factor: int) -> str:
        handled.append(factor)
        return f"factor {factor}"

    started = anyio.Event()
    graph = chain(
        "inp",
        "s",
        "out",
        coros={"inp": endless_source(started), "s": scale, "out": collector()[1]},
        props={"s": {"events": {"set": on_set}}},
    )
    plumber = Plumber(graph)

    async def main() -> Any:
        async with anyio.create_task_group() as group:
            running = Background(group, plumber.run)
            await started.wait()
            answer = await plumber.send_event("s", "set", factor=3)
            await plumber.stop()
        return answer, (await running.result()).state

    assert on_trio(main) == ("factor 3", "stopped")
    assert handled == [3]


def test_a_thread_pool_node_keeps_to_its_bound() -> None:
    """max_workers=2: never more than two calls at once, on trio as on asyncio."""
    lock = threading.Lock()
    running = [0]
    peak = [0]

    threads: set[str] = set()

    def call(item: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            threads.add(threading.current_thread().name)
        with lock:
            running[0] -= 1
        return item

    graph = chain(
        "inp",
        "t",
        "out",
        coros={"inp": source_of(list(range(200))), "t": call, "out": collector()[1]},
        props={"t": {"executor": "thread", "max_workers": 2}},
    )
    result = on_trio(Plumber(graph).run)
    assert result["t"].completed == 200
    assert 1 <= peak[0] <= 2
    assert all(name.startswith("pipelines:t") for name in threads)  # the node's own pool


def test_a_task_started_outside_a_run_is_one_clear_line() -> None:
    async def main() -> None:
        runtime.spawn(anyio.lowlevel.checkpoint())

    message = (
        "a task started outside Plumber.run() has no owner, which only asyncio allows; "
        "under trio, start the graph with `await plumber.run()` (it owns its tasks)"
    )
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        on_trio(main)


def test_the_run_error_names_the_node_of_a_cancelled_task_as_on_asyncio() -> None:
    """A BaseException from a node's own code fails the run, as on asyncio, and every task ends."""

    async def bad(processor: Processor, q_elt: tuple[int]) -> None:
        raise SystemExit(4)

    plumber = Plumber(chain("inp", "b", coros={"inp": source_of([1]), "b": bad}))
    with pytest.raises(PipelineError, match=r"^node 'b': the coroutine raised SystemExit\(4\)"):
        on_trio(plumber.run)


_STREAMED = {"nodes": {"inp": {}, "out": {"coro": add_one}}, "graph": {"inp": ["out"], "out": None}}


def test_open_stream_under_trio_feeds_and_reads_in_order() -> None:
    from pipelines import open_stream

    async def main() -> tuple[list[Any], list[Any], int]:
        async with open_stream(_STREAMED, max_pending=3) as run, anyio.create_task_group() as group:

            async def feed() -> None:
                for i in range(20):
                    await run.send(i)  # waits while 3 are pending: the reader below makes room
                run.close()

            group.start_soon(feed)
            got = [result async for result in run]
        async with open_stream(_STREAMED, items=range(5)) as fed:
            pairs = [pair async for pair in fed.results(with_inputs=True)]
        return got, pairs, run.plumber.stats()["out"].completed

    got, pairs, completed = on_trio(main)
    assert sorted(got) == [i + 1 for i in range(20)]
    assert sorted(pairs) == [(i, i + 1) for i in range(5)]
    assert completed == 20


def test_open_stream_under_trio_left_early_cancels_the_run_and_leaves_no_task() -> None:
    from pipelines import open_stream

    async def main() -> tuple[list[Any], str, list[str]]:
        async with open_stream(_STREAMED, items=range(1000)) as run:
            got = []
            async for result in run:
                got.append(result)
                if len(got) == 3:
                    break
        return got, run.plumber.state, leftover_tasks()

    got, state, left = on_trio(main)
    assert got == [1, 2, 3]
    assert state == "cancelled"
    assert left == []


def test_open_stream_under_trio_raises_the_runs_own_exception() -> None:
    from pipelines import open_stream

    async def fails(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] == 2:
            raise ValueError("two is bad")
        return q_elt[0]

    graph = {"nodes": {"inp": {}, "out": {"coro": fails}}, "graph": {"inp": ["out"], "out": None}}

    async def main() -> None:
        async with open_stream(graph, items=range(5)) as run:
            async for _ in run:
                pass

    with pytest.raises(ValueError, match=r"^two is bad\npipelines: node 'out' failed on item \(2,\)$"):
        on_trio(main)


def test_open_stream_under_trio_is_cancelled_with_the_callers_scope() -> None:
    from pipelines import open_stream

    async def main() -> tuple[bool, str]:
        with anyio.move_on_after(0.05) as scope:
            async with open_stream(_STREAMED) as run:
                await run.send(1)
                await anyio.sleep_forever()  # the scope's deadline cancels the block and the run with it
        return scope.cancelled_caught, run.plumber.state

    caught, state = on_trio(main, virtual=True)
    assert caught  # the cancellation reached the caller's scope: not swallowed
    assert state == "cancelled"


def test_stream_under_trio_says_to_use_open_stream() -> None:
    from pipelines import stream

    async def main() -> None:
        async for _ in stream(_STREAMED, [1, 2]):
            raise AssertionError("a stream() generator ran under trio")

    message = (
        "pipelines.stream() runs on asyncio only, not under trio; use `async with open_stream(graph, items=...) "
        "as run: async for result in run: ...`"
    )
    with pytest.raises(AsyncioOnlyError, match=f"^{re.escape(message)}$"):
        on_trio(main)


def test_a_journal_under_trio_says_it_runs_on_asyncio_only(tmp_path: Any) -> None:
    graph = chain("inp", "out", coros={"inp": source_of([1, 2]), "out": collector()[1]})
    plumber = Plumber(graph, journal=tmp_path / "run.journal")
    message = (
        "the journal runs on asyncio only, not under trio; run this graph under asyncio "
        "(`asyncio.run(plumber.run())`) to make it durable"
    )
    with pytest.raises(AsyncioOnlyError, match=f"^{re.escape(message)}$"):
        on_trio(plumber.run)
    assert plumber.state == "built"  # nothing started


def test_a_processor_built_by_hand_under_trio_says_it_runs_on_asyncio_only() -> None:
    import asyncio

    from pipelines.processor import Processor as HandProcessor

    async def main() -> None:
        HandProcessor(name="rev", coro=add_one, input_srcs=[asyncio.Queue()], output_dests=[asyncio.Queue()])

    message = (
        "Processor 'rev' built by hand (over asyncio queues) runs on asyncio only, not under trio; "
        "put the node in a graph and run it with Plumber"
    )
    with pytest.raises(AsyncioOnlyError, match=f"^{re.escape(message)}$"):
        on_trio(main)


def test_a_distributed_run_under_trio_says_it_runs_on_asyncio_only() -> None:
    from pipelines.distributed import RedisTransport

    graph = chain("inp", "out", coros={"inp": source_of([1]), "out": collector()[1]})
    plumber = RedisTransport("redis://127.0.0.1:6379/0").plumber(graph)  # run() would connect; it stops first
    message = (
        "the Redis transport (redis.asyncio) runs on asyncio only, not under trio; "
        "run a distributed graph under asyncio (`asyncio.run(...)`)"
    )
    with pytest.raises(AsyncioOnlyError, match=f"^{re.escape(message)}$"):
        on_trio(plumber.run)
    assert plumber.state == "built"


def test_an_inbox_under_trio_says_it_runs_on_asyncio_only() -> None:
    from pipelines.web import Inbox

    inbox = Inbox()
    graph = {
        "nodes": {"inbox": {"coro": inbox.source}, "out": {"coro": add_one}},
        "graph": {"inbox": ["out"], "out": None},
    }
    plumber = Plumber(graph)
    inbox.bind(plumber)
    with pytest.raises(AsyncioOnlyError, match=r"^pipelines\.web \(aiohttp\) runs on asyncio only, not under trio; "):
        on_trio(plumber.run)
    assert plumber.state == "failed"


def test_zero_backoff_still_lets_other_tasks_run_between_attempts() -> None:
    """As on asyncio (tests/test_policies.py): 1,000 retries with no backoff never hold the run. trio
    runs the tasks of one scheduling batch in any order, so another task runs at least once in every
    two attempts (asyncio's order gives once between every two)."""
    turns = 0
    seen: list[int] = []
    stop = anyio.Event()

    async def other_task() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await anyio.lowlevel.checkpoint()

    async def flaky(processor: Processor, q_elt: tuple[str]) -> str:
        seen.append(turns)
        if len(seen) <= 1000:
            raise ConnectionError("not yet")
        return q_elt[0]

    graph = chain(
        "one",
        "flaky",
        "keep",
        coros={"one": source_of(["x"]), "flaky": flaky, "keep": collector()[1]},
        props={"flaky": {"retry": RetryPolicy(max_attempts=1001, backoff_factor=0)}},
    )

    async def main() -> Any:
        async with anyio.create_task_group() as group:
            group.start_soon(other_task)
            try:
                return await Plumber(graph).run()
            finally:
                stop.set()

    result = on_trio(main)
    assert (result["flaky"].retried, len(seen)) == (1000, 1001)
    assert all(seen[i + 2] > seen[i] for i in range(len(seen) - 2))


def test_a_sinks_output_queue_gives_its_values_now_and_says_waiting_is_asyncios() -> None:
    async def times_ten(processor: Processor, q_elt: tuple[int]) -> int:
        return q_elt[0] * 10

    plumber = Plumber(chain("inp", "out", coros={"inp": source_of([0, 1, 2]), "out": times_ten}))
    results = plumber.processor("out").output_queue

    async def main() -> list[int]:
        await plumber.run()
        values = [results.get_nowait() for _ in range(results.qsize())]
        await results.get()  # empty now: it would wait
        return values

    message = (
        "waiting on a sink's output_queue (an asyncio.Queue) runs on asyncio only, not under trio; "
        "take what it holds with get_nowait(), or build the Plumber with collect_outputs=True"
    )
    with pytest.raises(AsyncioOnlyError, match=f"^{re.escape(message)}$"):
        on_trio(main)
    assert results.empty()  # the three values were taken before


# -- the primitives themselves, as the core uses them -------------------------------------------


def test_a_future_is_awaited_for_its_value_and_a_cancelled_waiter_cancels_it_unless_shielded() -> None:
    async def main() -> None:
        fut = runtime.new_future()
        assert not fut.done()
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: anyio.lowlevel.checkpoint())
            fut.set_result("x")
        assert await fut == "x"

        waited = runtime.new_future()
        with anyio.move_on_after(1):
            await waited  # as asyncio's `await fut`: the waiter's cancellation cancels the future
        assert waited.cancelled()

        shielded = runtime.new_future()
        with anyio.move_on_after(1):
            await runtime.shield(shielded)
        assert not shielded.done()  # left as it was, for whoever else waits on it
        shielded.set_result(7)
        assert await runtime.shield(shielded) == 7

    on_trio(main, virtual=True)


def test_wait_through_cancel_waits_to_the_end_then_raises_the_cancellation() -> None:
    events: list[str] = []

    async def main() -> bool:
        fut = runtime.new_future()

        async def finish_later() -> None:
            await anyio.sleep(5)
            events.append("finished")
            fut.set_result(None)

        async with anyio.create_task_group() as group:
            group.start_soon(finish_later)
            with anyio.move_on_after(1) as scope:
                await runtime.wait_through_cancel(fut, on_cancel=lambda: events.append("cancelled"))
                events.append("not reached")
            events.append(f"raised at {anyio.current_time()}")
        return scope.cancelled_caught

    assert on_trio(main, virtual=True) is True
    assert events == ["cancelled", "finished", "raised at 5.0"]


def test_first_of_keeps_what_every_get_that_returned_took() -> None:
    async def main() -> list[int]:
        first, second, never = runtime.new_future(), runtime.new_future(), runtime.new_future()

        async def get(fut: Any, items: list[int]) -> list[int]:
            await fut
            return items

        async def both_at_once() -> None:
            await anyio.sleep(1)
            first.set_result(None)
            second.set_result(None)  # woken in the same turn: both gets return before the others are cancelled

        async with anyio.create_task_group() as group:
            group.start_soon(both_at_once)
            taken = await runtime.first_of([get(first, [1, 2]), get(never, [9]), get(second, [3])])
        assert never.cancelled()  # the get still waiting was cancelled, and took nothing
        return taken

    assert on_trio(main, virtual=True) == [1, 2, 3]


def test_an_event_sets_clears_and_wakes_every_waiter() -> None:
    async def main() -> list[str]:
        event = runtime.new_event()
        woken: list[str] = []

        async def wait(name: str) -> None:
            await event.wait()
            woken.append(name)

        async with anyio.create_task_group() as group:
            group.start_soon(wait, "a")
            group.start_soon(wait, "b")
            await anyio.wait_all_tasks_blocked()
            assert woken == []
            event.set()
        assert event.is_set()
        event.clear()
        assert not event.is_set()
        with anyio.move_on_after(1) as scope:
            await event.wait()
        assert scope.cancelled_caught  # cleared: a new wait waits again
        return sorted(woken)

    assert on_trio(main, virtual=True) == ["a", "b"]


def test_call_soon_runs_in_order_at_the_next_turn_and_call_later_can_be_cancelled() -> None:
    calls: list[tuple[str, float]] = []

    def note(what: str) -> Callable[[], None]:
        return lambda: calls.append((what, anyio.current_time()))

    async def main() -> None:
        async with runtime.hosting():  # what Plumber.run() opens: the owner of timers and of the call_soon pump
            runtime.call_soon(note("one"))
            runtime.call_soon(note("two"))
            assert calls == []  # not before the caller yields
            await anyio.wait_all_tasks_blocked()
            assert calls == [("one", 0.0), ("two", 0.0)]
            runtime.call_later(2, note("later"))
            cancel = runtime.call_later(3, note("cancelled"))
            cancel()
            await anyio.sleep(5)
            assert runtime.clock()() == anyio.current_time() == 5.0
        assert calls[2:] == [("later", 2.0)]

    on_trio(main, virtual=True)


def test_awaiting_a_task_gives_its_result_and_a_cancelled_awaiter_cancels_the_task_unless_shielded() -> None:
    async def main() -> None:
        async with runtime.hosting():
            assert await runtime.spawn(_seven()) == 7

            forever = runtime.spawn(anyio.sleep_forever(), name="pipelines:forever")
            with anyio.move_on_after(1):
                await forever  # as asyncio's `await task`: the awaiter's cancellation cancels the task
            await runtime.wait_through_cancel(forever)
            assert forever.cancelled()

            kept = runtime.spawn(anyio.sleep(5), name="pipelines:kept")
            with anyio.move_on_after(1):
                await runtime.shield(kept)
            assert not kept.done()  # shielded: it runs on
            await runtime.wait_through_cancel(kept)
            assert kept.done()
            assert not kept.cancelled()
            assert anyio.current_time() == 6.0  # started at 1 s, after the first wait; slept 5 s

    on_trio(main, virtual=True)


async def _seven() -> int:
    await anyio.lowlevel.checkpoint()
    return 7
