"""pipelines.web: one bad item fails one request; a failure of the run gives Unavailable; restarts."""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import Plumber, Processor
from pipelines.signals import Signal
from pipelines.web import PLUMBER, SUPERVISOR, Hub, Inbox, Unavailable, attach

from .helpers import until
from .web_helpers import serving

ITEM = {"style": "item"}


def answering(app: web.Application, inbox: Inbox) -> web.Application:
    """/work?x= answers 200 with the result, 400 with a node's ValueError, 503 when unavailable."""

    async def handle(request: web.Request) -> web.Response:
        try:
            result = await inbox.submit(request.query["x"])
        except ValueError as exc:  # a node refused this item: this request only
            raise web.HTTPBadRequest(text=str(exc)) from None
        except Unavailable as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None
        return web.json_response(result)

    app.router.add_get("/work", handle)
    return app


async def ask(session: aiohttp.ClientSession, url: str, x: Any) -> tuple[int, Any]:
    async with session.get(f"{url}/work", params={"x": str(x)}) as response:
        if response.status == 200:
            return 200, await response.json()
        return response.status, await response.text()


def diamond(inbox: Inbox, attempts: Counter[int]) -> dict[str, Any]:
    """requests -> parse -> (square with 4 workers, check with 2 attempts) -> pair (a join).

    parse refuses what is not a number; check refuses multiples of 7, on every attempt.
    """

    async def parse(text: str) -> int:
        return int(text)

    async def square(n: int) -> int:
        await asyncio.sleep(random.random() / 1000)  # variable latency: the join's members arrive out of order
        return n * n

    async def check(n: int) -> int:
        await asyncio.sleep(random.random() / 1000)
        attempts[n] += 1
        if n % 7 == 0:
            raise ValueError(f"{n} is a multiple of 7 (attempt {attempts[n]})")
        return n

    async def pair(values: tuple[int, int]) -> dict[str, int]:
        return {"square": values[0], "n": values[1]}

    return {
        "nodes": {
            "requests": {"coro": inbox.source},
            "parse": {"coro": parse, "properties": ITEM},
            "square": {"coro": square, "properties": {**ITEM, "workers": 4}},
            "check": {"coro": check, "properties": {**ITEM, "retry": {"max_attempts": 2, "backoff_factor": 0}}},
            "pair": {"coro": pair, "properties": ITEM},
        },
        "graph": {
            "requests": ["parse"],
            "parse": ["square", "check"],
            "square": ["pair"],
            "check": ["pair"],
            "pair": None,
        },
    }


def request_for(i: int) -> str:
    """Every 7th request is bad: a word parse refuses, or a multiple of 7 that check refuses."""
    return f"x{i}" if i % 14 == 0 else str(i)


def expected_answer(i: int) -> tuple[int, Any]:
    if i % 14 == 0:
        return 400, f"invalid literal for int() with base 10: 'x{i}'"
    if i % 7 == 0:
        return 400, f"{i} is a multiple of 7 (attempt 2)"  # the exception of the last attempt
    return 200, {"square": i * i, "n": i}


async def test_bad_requests_among_good_ones_fail_alone_through_workers_a_join_and_retries() -> None:
    inbox = Inbox()
    attempts: Counter[int] = Counter()
    failed: list[Signal] = []
    retried: list[Signal] = []

    def build() -> Plumber:
        plumber = Plumber(diamond(inbox, attempts))
        plumber.signals.connect("item_failed", failed.append)
        plumber.signals.connect("item_retried", retried.append)
        return plumber

    app = web.Application()
    attach(app, build, inbox=inbox)
    answering(app, inbox)
    total = 200
    async with serving(app) as url, aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(ask(session, url, request_for(i)) for i in range(total)))
        assert answers == [expected_answer(i) for i in range(total)]
        plumber = app[PLUMBER]
        assert plumber.state == "running"  # the run went on
        assert (inbox.pending, inbox.in_graph) == (0, 0)
        words = [i for i in range(total) if i % 14 == 0]  # 15 of them
        sevens = [i for i in range(total) if i % 14 == 7]  # 14 of them
        numbers = total - len(words)
        stats = plumber.stats()
        assert (stats["parse"].items_in, stats["parse"].completed, stats["parse"].failed) == (total, numbers, 15)
        assert (stats["square"].items_in, stats["square"].completed, stats["square"].failed) == (numbers, numbers, 0)
        assert (stats["check"].items_in, stats["check"].completed, stats["check"].failed) == (numbers, numbers - 14, 14)
        assert stats["check"].retried == 14
        # The join discards the group of each item refused on the way (parse's tombstones reach it
        # through both branches; for check's, square's copy goes): nothing waits.
        assert (stats["pair"].items_in, stats["pair"].completed, stats["pair"].dropped) == (total, numbers - 14, 29)
        assert all(s.in_flight == 0 and s.queue_depth == 0 for s in stats.values())
        assert sorted((s.node, s.item) for s in failed) == sorted(
            [("parse", f"x{i}") for i in words] + [("check", i) for i in sevens]
        )
        assert sorted(s.item for s in retried) == sevens
        assert attempts == Counter({i: 2 if i % 7 == 0 else 1 for i in range(total) if i % 14})
        # After all that, a good request is still answered.
        assert await ask(session, url, 3) == (200, {"square": 9, "n": 3})
    assert app[PLUMBER].state == "stopped"
    assert app[SUPERVISOR].failures == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad=st.sets(st.integers(0, 39)), workers=st.integers(1, 4), on_branch=st.booleans())
def test_whichever_items_fail_exactly_those_submits_raise_and_the_counts_add_up(
    bad: set[int], workers: int, on_branch: bool
) -> None:
    """Items fail at a node before a diamond or on one of its branches; every other is answered."""
    asyncio.run(run_with_bad_items(bad, workers, on_branch))


async def run_with_bad_items(bad: set[int], workers: int, on_branch: bool) -> None:
    inbox = Inbox()

    async def gate(n: int) -> int:
        if not on_branch and n in bad:
            raise KeyError(n)
        return n

    async def left(n: int) -> int:
        await asyncio.sleep(0)
        if on_branch and n in bad:
            raise LookupError(f"left refuses {n}")
        return -n

    async def right(n: int) -> int:
        return n + 100

    async def join(values: tuple[int, int]) -> tuple[int, int]:
        return values

    graph = {
        "nodes": {
            "requests": {"coro": inbox.source},
            "gate": {"coro": gate, "properties": ITEM},
            "left": {"coro": left, "properties": {**ITEM, "workers": workers}},
            "right": {"coro": right, "properties": ITEM},
            "join": {"coro": join, "properties": ITEM},
        },
        "graph": {"requests": ["gate"], "gate": ["left", "right"], "left": ["join"], "right": ["join"], "join": None},
    }
    plumber = Plumber(graph)
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        outcomes = await asyncio.gather(*(inbox.submit(n) for n in range(40)), return_exceptions=True)
        for n, outcome in enumerate(outcomes):
            if n not in bad:
                assert outcome == (-n, n + 100)
            elif on_branch:
                assert type(outcome) is LookupError
                assert str(outcome) == f"left refuses {n}"
            else:
                assert type(outcome) is KeyError
                assert outcome.args == (n,)
        assert plumber.state == "running"
        assert (inbox.pending, inbox.in_graph) == (0, 0)
        stats = plumber.stats()
        failing = stats["left"] if on_branch else stats["gate"]
        assert failing.failed == len(bad)
        # Wherever an item failed, its tombstones reach the join, which discards the group.
        assert (stats["join"].items_in, stats["join"].completed, stats["join"].dropped) == (40, 40 - len(bad), len(bad))
        for s in stats.values():
            assert s.in_flight == 0
            assert s.items_in == s.completed + s.dropped + s.skipped + s.failed


def tripwire_graph(inbox: Inbox, hold: asyncio.Event | None = None) -> dict[str, Any]:
    """requests -> double; with `hold`, every item but 13 waits for it."""

    async def double(text: str) -> int:
        if hold is not None and text != "13":
            await hold.wait()
        return 2 * int(text)

    return {
        "nodes": {"requests": {"coro": inbox.source}, "double": {"coro": double, "properties": ITEM}},
        "graph": {"requests": ["double"], "double": None},
    }


class Tripwire:
    """A hook whose sink method raises on the result 26: a bug outside any one item fails the run."""

    def node_hooks(self, node: Processor) -> Tripwire | None:
        return self if node.name == "double" else None

    def result(self, key: Any, value: Any) -> None:
        if value == 26:
            raise RuntimeError("the tripwire went off")


CAUSE = (
    r"RuntimeError: the tripwire went off \(task 'pipelines:double' ended with this exception\)"  # the failure's note
)


def with_tripwire(inbox: Inbox, hold: asyncio.Event | None = None) -> Callable[[], Plumber]:
    """A factory of tripwired runs; the first one holds its items with `hold`, the next ones do not."""
    built: list[Plumber] = []

    def build() -> Plumber:
        built.append(Plumber(tripwire_graph(inbox, None if built else hold), hooks=[Tripwire()]))
        return built[-1]

    return build


async def test_a_failing_hook_fails_the_run_and_submit_then_names_the_cause() -> None:
    inbox = Inbox()
    app = answering(web.Application(), inbox)
    attach(app, with_tripwire(inbox), inbox=inbox)
    async with serving(app) as url, aiohttp.ClientSession() as session:
        assert await ask(session, url, 4) == (200, 8)
        status, text = await ask(session, url, 13)
        assert status == 503
        assert re.fullmatch(rf"inbox 'requests': the pipeline failed before answering: {CAUSE}", text)
        status, text = await ask(session, url, 5)
        assert status == 503
        assert re.fullmatch(rf"inbox 'requests': the pipeline failed: {CAUSE}", text)
        assert app[PLUMBER].state == "failed"
        assert app[SUPERVISOR].restarts == 0
        assert [str(e) for e in app[SUPERVISOR].failures] == ["the tripwire went off"]


async def test_a_failing_setup_gives_unavailable_naming_the_node() -> None:
    inbox = Inbox()

    async def no_database(processor: Processor) -> None:
        raise ConnectionError("no database at db:5432")

    graph = tripwire_graph(inbox)
    graph["nodes"]["double"]["properties"] = {**ITEM, "setup": no_database}
    app = answering(web.Application(), inbox)
    attach(app, lambda: Plumber(graph), inbox=inbox)
    async with serving(app) as url, aiohttp.ClientSession() as session:
        await until(lambda: app[PLUMBER].state == "failed")
        assert await ask(session, url, 1) == (
            503,
            "inbox 'requests': the pipeline failed: ConnectionError: no database at db:5432 "
            "(setup of node 'double' failed)",
        )


async def test_an_explicit_on_error_fail_and_answer_failures_false_still_fail_the_run() -> None:
    for explicit in (True, False):
        inbox = Inbox(answer_failures=explicit)  # explicit on_error wins over the default
        graph = tripwire_graph(inbox)
        if explicit:
            graph["nodes"]["double"]["properties"] = {**ITEM, "on_error": "fail"}
        plumber = Plumber(graph)
        inbox.bind(plumber)
        plumber.create_pipeline()
        with pytest.raises(
            ValueError,
            match=r"^invalid literal for int\(\) with base 10: 'x'\npipelines: node 'double' failed on item 'x'$",
        ):
            await inbox.submit("x")  # the item's own request hears its exception
        with pytest.raises(ValueError, match=r"^invalid literal"):
            await plumber.join()  # and the run failed with it
        with pytest.raises(
            Unavailable,
            match=r"^inbox 'requests': the pipeline failed: ValueError: invalid literal for int\(\) with base 10: 'x' "
            r"\(node 'double' failed on item 'x'\)$",
        ):
            await inbox.submit("1")
        assert plumber.stats()["double"].failed == 1


async def test_a_restart_serves_the_next_requests_and_past_the_limit_they_get_503() -> None:
    inbox = Inbox()
    hub = Hub()
    app = answering(web.Application(), inbox)
    attach(app, with_tripwire(inbox, asyncio.Event()), inbox=inbox, hub=hub, restart=1)
    async with serving(app) as url, aiohttp.ClientSession() as session:
        supervisor = app[SUPERVISOR]
        first = supervisor.plumber
        assert first is app[PLUMBER]
        # Requests in flight when the run fails are not carried over: each gets 503 naming the cause.
        in_flight = [asyncio.ensure_future(ask(session, url, x)) for x in (1, 2)]
        await until(lambda: first.stats()["double"].in_flight == 2, limit=100_000)
        status, text = await ask(session, url, 13)
        assert status == 503
        assert re.fullmatch(rf"inbox 'requests': the pipeline failed before answering: {CAUSE}", text)
        for status, text in await asyncio.gather(*in_flight):
            assert status == 503
            assert re.fullmatch(rf"inbox 'requests': the pipeline failed before answering: {CAUSE}", text)
        await until(lambda: supervisor.restarts == 1 and supervisor.plumber.state == "running")
        second = supervisor.plumber
        assert second is not first
        assert first.state == "failed"
        assert inbox.plumber is second
        assert await asyncio.gather(*(ask(session, url, x) for x in range(5))) == [(200, 2 * x) for x in range(5)]
        status, text = await ask(session, url, 13)  # fails the second run: the one restart is spent
        assert status == 503
        assert re.fullmatch(rf"inbox 'requests': the pipeline failed before answering: {CAUSE}", text)
        await until(lambda: second.state == "failed")
        for x in (1, 2):
            status, text = await ask(session, url, x)
            assert status == 503
            assert re.fullmatch(rf"inbox 'requests': the pipeline failed: {CAUSE}", text)
        assert supervisor.plumber is second
        assert supervisor.restarts == 1
        assert [str(e) for e in supervisor.failures] == ["the tripwire went off"] * 2
        assert [(run.label, run.plumber) for run in hub.runs()] == [("pipeline", first), ("pipeline", second)]


async def test_a_factory_that_fails_on_a_restart_leaves_the_pipeline_down(caplog: pytest.LogCaptureFixture) -> None:
    inbox = Inbox()
    tripwired = with_tripwire(inbox)
    builds: list[str] = []

    def build() -> Plumber:
        builds.append("build")
        if len(builds) > 1:
            raise OSError("the graph file is gone")
        return tripwired()

    app = answering(web.Application(), inbox)
    attach(app, build, inbox=inbox, restart=5)
    async with serving(app) as url, aiohttp.ClientSession() as session:
        assert (await ask(session, url, 13))[0] == 503
        supervisor = app[SUPERVISOR]
        await until(lambda: len(supervisor.failures) == 2)
        assert [repr(e) for e in supervisor.failures] == [
            "RuntimeError('the tripwire went off')",
            "OSError('the graph file is gone')",
        ]
        status, text = await ask(session, url, 1)
        assert status == 503
        assert re.fullmatch(rf"inbox 'requests': the pipeline failed: {CAUSE}", text)
    assert builds == ["build", "build"]
    assert [r.getMessage() for r in caplog.records if r.name == "pipelines.web.attach" and r.levelname != "INFO"] == [
        "the pipeline failed (RuntimeError: the tripwire went off (task 'pipelines:double' ended with this "
        "exception)); restarting it (restart 1 of 5)",
        "the pipeline could not be built again (OSError: the graph file is gone); it stays down",
    ]


def test_restart_needs_a_factory_and_a_count() -> None:
    inbox = Inbox()
    with pytest.raises(ValueError, match=r"^restart=2 needs a factory that builds a fresh Plumber"):
        attach(web.Application(), Plumber(tripwire_graph(inbox)), inbox=inbox, restart=2)
    with pytest.raises(ValueError, match=r"^restart must be an int >= 0 .*, got -1$"):
        attach(web.Application(), lambda: Plumber(tripwire_graph(inbox)), restart=-1)


async def test_an_inbox_cannot_be_bound_to_a_second_run_while_its_run_goes_on() -> None:
    inbox = Inbox()
    plumber = Plumber(tripwire_graph(inbox))
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        with pytest.raises(
            ValueError,
            match=r"^inbox 'requests' is bound to a run that has not ended \(state 'running'\); an inbox serves one "
            r"run at a time$",
        ):
            inbox.bind(Plumber(tripwire_graph(inbox)))
        await plumber.stop()
    again = Plumber(tripwire_graph(inbox))
    inbox.bind(again)  # its run has ended: bound anew
    async with again:
        again.create_pipeline()
        assert await inbox.submit("21") == 42
