"""pipelines.web: a pipeline that lives with an aiohttp app, and request handlers answered by it."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pipelines import Plumber
from pipelines.web import PLUMBER, Inbox, ItemDropped, Unavailable, attach

from .helpers import until
from .web_helpers import item_chain, serving


async def plus_one(x: int) -> int:
    return x + 1


async def jitter(x: int) -> int:
    await asyncio.sleep(random.random() / 1000)  # variable latency: answers finish out of order
    return x * 10


async def label(x: int) -> str:
    return f"<{x}>"


def answering_app(inbox: Inbox, graph: dict[str, Any]) -> web.Application:
    app = web.Application()
    attach(app, lambda: Plumber(graph), inbox=inbox)

    async def handle(request: web.Request) -> web.Response:
        try:
            result = await inbox.submit(int(request.query["x"]))
        except Unavailable as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None
        return web.json_response(result)

    app.router.add_get("/work", handle)
    return app


async def test_each_request_gets_the_result_of_its_own_item() -> None:
    inbox = Inbox()
    graph = item_chain(inbox.source, ("a", plus_one), ("b", jitter), ("c", label), props={"b": {"workers": 8}})
    app = answering_app(inbox, graph)
    async with serving(app) as url, aiohttp.ClientSession() as session:

        async def ask(x: int) -> Any:
            async with session.get(f"{url}/work", params={"x": x}) as response:
                assert response.status == 200
                return await response.json()

        answers = await asyncio.gather(*(ask(x) for x in range(300)))
        assert answers == [f"<{(x + 1) * 10}>" for x in range(300)]
        stats = app[PLUMBER].stats()
        assert (stats["requests"].items_out, stats["c"].completed) == (300, 300)
    assert app[PLUMBER].state == "stopped"  # the app's shutdown drained the pipeline


async def test_answers_are_paired_by_lineage_through_a_join() -> None:
    inbox = Inbox()

    async def square(x: int) -> int:
        await asyncio.sleep(random.random() / 1000)
        return x * x

    async def pair(values: tuple[int, int]) -> tuple[int, int]:
        return values

    item = {"style": "item"}
    graph = {
        "nodes": {
            "requests": {"coro": inbox.source},
            "same": {"coro": plus_one, "properties": item},
            "square": {"coro": square, "properties": {**item, "workers": 4}},
            "pair": {"coro": pair, "properties": item},
        },
        "graph": {"requests": ["same", "square"], "same": ["pair"], "square": ["pair"], "pair": None},
    }
    plumber = Plumber(graph)
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        answers = await asyncio.gather(*(inbox.submit(x) for x in range(200)))
        assert answers == [(x + 1, x * x) for x in range(200)]


async def test_in_a_linear_graph_the_inbox_counts_nothing_and_answers_from_the_sink_result() -> None:
    inbox = Inbox()
    graph = item_chain(inbox.source, ("a", plus_one), ("c", label))
    plumber = Plumber(graph)
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        source, sink = plumber.processor("requests").ledger.hooks, plumber.processor("c").ledger.hooks
        assert (source.admits, sink.finished) == (None, None)  # one envelope per item: nothing to count
        assert sink.result is not None
        assert await asyncio.gather(*(inbox.submit(x) for x in range(50))) == [f"<{x + 1}>" for x in range(50)]
        assert inbox.pending == 0
    # With a fan-out, each item's envelopes are counted from the source to the sinks.
    inbox = Inbox(sink="c")
    graph = item_chain(inbox.source, ("a", plus_one), ("c", label))
    graph["nodes"]["other"] = {"coro": label, "properties": {"style": "item"}}
    graph["graph"]["a"] = ["c", "other"]
    graph["graph"]["other"] = None
    plumber = Plumber(graph)
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        source, sink = plumber.processor("requests").ledger.hooks, plumber.processor("c").ledger.hooks
        assert source.admits is not None
        assert sink.finished is not None
        assert await asyncio.gather(*(inbox.submit(x) for x in range(50))) == [f"<{x + 1}>" for x in range(50)]


async def test_a_dropped_item_and_a_skipped_item_end_their_wait_at_once() -> None:
    inbox = Inbox()

    async def only_odd(x: int) -> int | None:
        if x == 4:
            raise ValueError("four is refused")
        return x if x % 2 else None

    graph = item_chain(inbox.source, ("odd", only_odd), ("c", label), props={"odd": {"on_error": "skip"}})
    plumber = Plumber(graph)
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        assert await inbox.submit(3) == "<3>"
        with pytest.raises(ItemDropped, match=r"^node 'odd' dropped the item$") as dropped:
            await inbox.submit(2)
        assert dropped.value.node == "odd"
        with pytest.raises(ValueError, match=r"^four is refused$"):
            await inbox.submit(4)
        assert inbox.pending == 0


async def test_an_error_route_that_reaches_the_answering_sink_answers() -> None:
    inbox = Inbox()

    async def fragile(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x

    async def explain(failure: Any) -> str:
        return f"failed: {failure.exception}"

    async def answer(value: Any) -> str:
        return value if isinstance(value, str) else f"ok: {value}"

    graph = {
        "nodes": {
            "requests": {"coro": inbox.source},
            "fragile": {"coro": fragile, "properties": {"style": "item", "on_error": "explain"}},
            "explain": {"coro": explain, "properties": {"style": "item"}},
            "answer": {"coro": answer, "properties": {"style": "item", "aggregate_inputs": False}},
        },
        "graph": {"requests": ["fragile"], "fragile": ["answer"], "explain": ["answer"], "answer": None},
    }
    plumber = Plumber(graph)
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        assert await inbox.submit(5) == "ok: 5"
        assert await inbox.submit(-1) == "failed: negative"


async def test_too_many_pending_items_are_refused_at_once_and_nothing_is_lost() -> None:
    inbox = Inbox(max_pending=3)
    release = asyncio.Event()

    async def held(x: int) -> int:
        await release.wait()
        return x

    plumber = Plumber(item_chain(inbox.source, ("held", held)))
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        waiting = [asyncio.ensure_future(inbox.submit(x)) for x in range(3)]
        await until(lambda: plumber.stats()["requests"].items_out == 3)
        with pytest.raises(
            Unavailable,
            match=r"^inbox 'requests': 3 items are waiting for an answer \(max_pending=3\); the pipeline is too far "
            r"behind$",
        ):
            await inbox.submit(99)
        release.set()
        assert await asyncio.gather(*waiting) == [0, 1, 2]
        assert plumber.stats()["held"].completed == 3


async def test_no_answer_in_time_is_a_timeout_error_naming_the_inbox() -> None:
    inbox = Inbox(timeout=0.01)
    never = asyncio.Event()

    async def stuck(x: int) -> int:
        await never.wait()
        return x

    plumber = Plumber(item_chain(inbox.source, ("stuck", stuck)))
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        with pytest.raises(TimeoutError, match=r"^inbox 'requests': no answer within 0\.01 s$"):
            await inbox.submit(1)
        assert inbox.pending == 0  # the caller gave up: nothing keeps waiting for it


async def test_a_stopped_pipeline_refuses_with_unavailable_and_answers_what_it_took() -> None:
    inbox = Inbox()
    release = asyncio.Event()

    async def held(x: int) -> int:
        await release.wait()
        return x

    plumber = Plumber(item_chain(inbox.source, ("held", held)))
    inbox.bind(plumber)
    with pytest.raises(Unavailable, match=r"^inbox 'requests': the pipeline is built$"):
        await inbox.submit(0)
    plumber.create_pipeline()
    taken = asyncio.ensure_future(inbox.submit(1))
    await until(lambda: plumber.stats()["held"].in_flight == 1)
    stopping = asyncio.ensure_future(plumber.stop())
    await until(lambda: plumber.state == "stopping")
    with pytest.raises(Unavailable, match=r"^inbox 'requests': the pipeline is stopping$"):
        await inbox.submit(2)
    release.set()
    await stopping
    assert await taken == 1  # what was in flight when the stop came still got its answer
    with pytest.raises(Unavailable, match=r"^inbox 'requests': the pipeline is stopped$"):
        await inbox.submit(3)


async def test_the_handler_turns_unavailable_into_503() -> None:
    inbox = Inbox(max_pending=1)
    release = asyncio.Event()

    async def held(x: int) -> int:
        await release.wait()
        return x

    app = answering_app(inbox, item_chain(inbox.source, ("held", held)))
    async with serving(app) as url, aiohttp.ClientSession() as session:
        first = asyncio.ensure_future(session.get(f"{url}/work", params={"x": 7}))
        await until(lambda: inbox.pending == 1, limit=100_000)
        async with session.get(f"{url}/work", params={"x": 8}) as response:
            assert response.status == 503
            assert re.fullmatch(r".*max_pending=1\); the pipeline is too far behind", await response.text())
        release.set()
        async with await first as response:
            assert (response.status, await response.json()) == (200, 7)


async def test_shutting_the_app_down_drains_the_items_in_flight() -> None:
    inbox = Inbox()
    release = asyncio.Event()

    async def held(x: int) -> int:
        await release.wait()
        return -x

    app = web.Application()
    attach(app, lambda: Plumber(item_chain(inbox.source, ("held", held))), inbox=inbox)
    answers: list[asyncio.Future[Any]] = []
    async with serving(app):
        answers = [asyncio.ensure_future(inbox.submit(x)) for x in range(5)]
        await until(lambda: app[PLUMBER].stats()["requests"].items_out == 5)
        release.set()
    assert await asyncio.gather(*answers) == [0, -1, -2, -3, -4]
    assert app[PLUMBER].state == "stopped"


def test_binding_needs_exactly_one_inbox_node_and_one_answering_sink() -> None:
    inbox = Inbox()
    with pytest.raises(
        ValueError, match=r"^the graph must have exactly one node whose coro is this inbox's source, found 0$"
    ):
        inbox.bind(Plumber(item_chain(Inbox().source, ("c", label))))
    two_sinks = {
        "nodes": {
            "requests": {"coro": inbox.source},
            "a": {"coro": label, "properties": {"style": "item"}},
            "b": {"coro": label, "properties": {"style": "item"}},
        },
        "graph": {"requests": ["a", "b"], "a": None, "b": None},
    }
    with pytest.raises(
        ValueError,
        match=r"^node 'requests' reaches 2 sinks \(a, b\); name the one that answers with Inbox\(sink=\.\.\.\)$",
    ):
        inbox.bind(Plumber(two_sinks))
    named = Inbox(sink="nowhere")
    two_sinks["nodes"]["requests"] = {"coro": named.source}
    with pytest.raises(
        ValueError, match=r"^inbox sink 'nowhere' is not reachable from node 'requests' \(reachable sinks: a, b\)$"
    ):
        named.bind(Plumber(two_sinks))


async def test_a_named_sink_answers_when_several_are_reachable() -> None:
    inbox = Inbox(sink="b")

    async def other(x: int) -> str:
        return "from a"

    graph = {
        "nodes": {
            "requests": {"coro": inbox.source},
            "a": {"coro": other, "properties": {"style": "item"}},
            "b": {"coro": label, "properties": {"style": "item"}},
        },
        "graph": {"requests": ["a", "b"], "a": None, "b": None},
    }
    plumber = Plumber(graph)
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        assert [await inbox.submit(x) for x in range(3)] == ["<0>", "<1>", "<2>"]


# -- answers through expansions, filters and joins (issue 14, point 4) ---------------------------


def outcome_app(inbox: Inbox, graph: dict[str, Any]) -> web.Application:
    """An app whose /work?x= answers {"result": ...}, {"dropped": node} or {"error": message}."""
    app = web.Application()
    attach(app, lambda: Plumber(graph), inbox=inbox)

    async def handle(request: web.Request) -> web.Response:
        try:
            result = await inbox.submit(int(request.query["x"]))
        except ItemDropped as exc:
            return web.json_response({"dropped": exc.node})
        except ValueError as exc:
            return web.json_response({"error": str(exc)})
        return web.json_response({"result": result})

    app.router.add_get("/work", handle)
    return app


async def ask_all(app: web.Application, xs: list[int]) -> list[Any]:
    """Serve `app` and ask /work for each x at once; the JSON answers, in the order of `xs`."""
    async with serving(app) as url, aiohttp.ClientSession() as session:

        async def ask(x: int) -> Any:
            async with session.get(f"{url}/work", params={"x": x}) as response:
                assert response.status == 200
                return await response.json()

        return await asyncio.gather(*(ask(x) for x in xs))


async def twice(x: int) -> AsyncIterator[int]:
    yield -x  # the sibling the filter drops comes first, so its drop is heard before the result
    yield x


async def slow_label(x: int) -> str:
    await asyncio.sleep(random.random() / 1000)
    return f"<{x}>"


async def test_an_expanded_item_answers_with_the_sibling_a_filter_lets_through() -> None:
    inbox = Inbox()

    async def positive(x: int) -> int | None:
        return x if x > 0 else None

    graph = item_chain(inbox.source, ("twice", twice), ("positive", positive), ("c", slow_label))
    answers = await ask_all(outcome_app(inbox, graph), list(range(1, 41)))
    assert answers == [{"result": f"<{x}>"} for x in range(1, 41)]


async def test_an_expanded_item_every_sibling_of_which_is_dropped_answers_item_dropped() -> None:
    inbox = Inbox()

    async def nothing(x: int) -> int | None:
        await asyncio.sleep(random.random() / 1000)
        return None

    graph = item_chain(inbox.source, ("twice", twice), ("nothing", nothing), ("c", label))
    answers = await ask_all(outcome_app(inbox, graph), list(range(1, 21)))
    assert answers == [{"dropped": "nothing"}] * 20


async def test_an_expanded_item_skipped_on_every_path_answers_the_last_paths_exception() -> None:
    inbox = Inbox()

    async def refuse(x: int) -> int:
        await asyncio.sleep(random.random() / 1000)
        raise ValueError(f"refused {x}")

    graph = item_chain(
        inbox.source, ("twice", twice), ("refuse", refuse), ("c", label), props={"refuse": {"on_error": "skip"}}
    )
    answers = await ask_all(outcome_app(inbox, graph), list(range(1, 21)))
    assert [
        answer["error"] in (f"refused {x}", f"refused {-x}") for x, answer in zip(range(1, 21), answers, strict=True)
    ] == [True] * 20


async def test_a_diamond_join_one_branch_of_which_drops_answers_item_dropped() -> None:
    inbox = Inbox()

    async def keep(x: int) -> int:
        await asyncio.sleep(random.random() / 1000)
        return x

    async def even(x: int) -> int | None:
        await asyncio.sleep(random.random() / 1000)
        return x if x % 2 == 0 else None

    async def add(values: tuple[int, int]) -> int:
        return values[0] + values[1]

    item = {"style": "item"}
    graph = {
        "nodes": {
            "requests": {"coro": inbox.source},
            "keep": {"coro": keep, "properties": {**item, "workers": 4}},
            "even": {"coro": even, "properties": {**item, "workers": 4}},
            "add": {"coro": add, "properties": item},
        },
        "graph": {"requests": ["keep", "even"], "keep": ["add"], "even": ["add"], "add": None},
    }
    answers = await ask_all(outcome_app(inbox, graph), list(range(30)))
    assert answers == [{"result": 2 * x} if x % 2 == 0 else {"dropped": "even"} for x in range(30)]


# A random shape: a chain of stages, each one of these, with random latency inside every node.
STAGES = ("map", "expand", "filter", "skip", "diamond")


def random_shape(seed: int, inbox: Inbox, got: dict[int, list[int]]) -> dict[str, Any]:
    """A graph from the inbox through 1 to 4 random stages to a sink that records what it got per item.

    Values travel as [x, v]: x is the submitted item, v what the stages made of it.
    """
    rng = random.Random(seed)
    delays = random.Random(seed + 1)

    async def latency() -> None:
        await asyncio.sleep(delays.random() / 1000)  # latency, not waiting for anything

    def mapped(salt: int) -> Any:
        async def f(value: list[int]) -> list[int]:
            await latency()
            return [value[0], value[1] * 3 + salt]

        return f

    def expanded(k: int) -> Any:
        async def f(value: list[int]) -> AsyncIterator[list[int]]:
            for i in range(k):
                await latency()
                yield [value[0], value[1] * 4 + i]

        return f

    def filtered(salt: int) -> Any:
        async def f(value: list[int]) -> list[int] | None:
            await latency()
            return None if (value[1] + salt) % 3 == 0 else value

        return f

    def skipping(salt: int) -> Any:
        async def f(value: list[int]) -> list[int]:
            await latency()
            if (value[1] + salt) % 4 == 0:
                raise ValueError(f"refused {value[1]}")
            return value

        return f

    async def joined(values: tuple[list[int], list[int]]) -> list[int]:
        return [values[0][0], values[0][1] + values[1][1]]

    async def sink(value: list[int]) -> list[int]:
        got.setdefault(value[0], []).append(value[1])
        return value

    async def start(x: int) -> list[int]:
        return [x, x]

    nodes: dict[str, Any] = {"requests": {"coro": inbox.source}}
    graph: dict[str, Any] = {"requests": ["start"]}
    last = ["start"]

    def add(name: str, coro: Any, after: list[str], **props: Any) -> None:
        nodes[name] = {"coro": coro, "properties": {"style": "item", "workers": rng.choice([1, 3]), **props}}
        for node in after:
            graph.setdefault(node, []).append(name)

    add("start", start, [])
    for n in range(rng.randint(1, 4)):
        stage = rng.choice(STAGES)
        name = f"{stage}{n}"
        if stage == "map":
            add(name, mapped(rng.randrange(5)), last)
        elif stage == "expand":
            add(name, expanded(rng.randint(0, 3)), last)
        elif stage == "filter":
            add(name, filtered(rng.randrange(3)), last)
        elif stage == "skip":
            add(name, skipping(rng.randrange(4)), last, on_error="skip")
        else:
            add(f"{name}a", filtered(rng.randrange(3)), last)
            add(f"{name}b", mapped(rng.randrange(5)), last)
            add(name, joined, [f"{name}a", f"{name}b"], workers=1)
        last = [name]
    add("sink", sink, last, workers=1)
    graph["sink"] = None
    return {"nodes": nodes, "graph": graph}


@pytest.mark.parametrize("seed", range(40))
async def test_each_answer_agrees_with_what_the_sink_got_over_random_shapes(seed: int) -> None:
    inbox = Inbox()
    got: dict[int, list[int]] = {}
    graph = random_shape(seed, inbox, got)
    xs = list(range(1, 25))
    answers = await ask_all(outcome_app(inbox, graph), xs)
    for x, answer in zip(xs, answers, strict=True):
        if x in got:  # some path delivered: the first value the sink returned for it answers
            assert answer == {"result": [x, got[x][0]]}, (x, graph["graph"])
        else:  # every path ended elsewhere: dropped at a node of the graph, or refused by a skip
            assert set(answer) <= {"dropped", "error"}, (x, answer)
            assert answer.get("dropped", "sink") in graph["graph"], (x, answer)
            assert re.fullmatch(r"refused -?\d+", answer.get("error", "refused 0")), (x, answer)


async def test_an_inbox_zipped_with_another_source_answers_each_pair() -> None:
    inbox = Inbox()

    async def letters(processor: Any, output_q: Any) -> None:
        for letter in "abcdefghij":
            await output_q.put(letter)

    async def both(values: tuple[str, int]) -> str | None:
        await asyncio.sleep(random.random() / 1000)
        return f"{values[1]}{values[0]}" if values[1] % 3 else None

    graph = {
        "nodes": {
            "requests": {"coro": inbox.source},
            "letters": {"coro": letters},
            "both": {"coro": both, "properties": {"style": "item"}},
            "c": {"coro": label, "properties": {"style": "item"}},
        },
        # letters first: the join's outputs carry the lineage of its first input, not the inbox's
        "graph": {"letters": ["both"], "requests": ["both"], "both": ["c"], "c": None},
    }
    app = outcome_app(inbox, graph)
    async with serving(app) as url, aiohttp.ClientSession() as session:
        answers = []
        for x in range(1, 11):  # one after the other: the n-th request meets the n-th letter
            async with session.get(f"{url}/work", params={"x": x}) as response:
                answers.append(await response.json())
    expected = [f"<{x}{letter}>" if x % 3 else None for x, letter in zip(range(1, 11), "abcdefghij", strict=True)]
    assert answers == [{"dropped": "both"} if e is None else {"result": e} for e in expected]


async def test_callers_that_gave_up_while_queued_count_no_more_and_their_items_never_enter() -> None:
    """Requests queued behind a paused run whose callers give up free their places at once."""
    inbox = Inbox(max_pending=4)
    release = asyncio.Event()
    seen: list[int] = []

    async def held(x: int) -> int:
        seen.append(x)
        await release.wait()
        return x

    plumber = Plumber(item_chain(inbox.source, ("held", held)))
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        entered = asyncio.ensure_future(inbox.submit(0))
        await until(lambda: seen == [0])
        plumber.pause()  # the source waits at its next put: what is submitted after that stays queued
        queued = [asyncio.ensure_future(inbox.submit(10))]
        await until(lambda: inbox.pending == 2 and inbox.queued == 0)  # 10 is at the paused put
        queued += [asyncio.ensure_future(inbox.submit(x)) for x in (11, 12)]
        await until(lambda: inbox.queued == 2)
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        assert (inbox.pending, inbox.queued) == (1, 0)  # only the one that entered the graph
        more = [asyncio.ensure_future(inbox.submit(x)) for x in (20, 21, 22)]  # room for three again
        await until(lambda: inbox.pending == 4)
        plumber.resume()
        release.set()
        assert await asyncio.gather(entered, *more) == [0, 20, 21, 22]
        # 10 was at the put when its caller gave up: it goes through, unanswered; 11 and 12 never entered
        assert sorted(seen) == [0, 10, 20, 21, 22]
        assert inbox.pending == 0


async def test_many_callers_giving_up_at_once_each_cost_the_same() -> None:
    """Giving up looks up the caller's item, it does not scan the others: 3,000 callers that all
    give up at once leave nothing behind, and the source skips every queued one."""
    inbox = Inbox(max_pending=5_000)
    never = asyncio.Event()

    async def stuck(x: int) -> int:
        await never.wait()
        return x

    plumber = Plumber(item_chain(inbox.source, ("stuck", stuck), props={"stuck": {"queue_size": 1000}}))
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        waiting = [asyncio.ensure_future(inbox.submit(x)) for x in range(3_000)]
        await until(lambda: inbox.pending == 3_000)
        for task in waiting:
            task.cancel()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert inbox.pending == 0


async def test_an_item_that_fails_a_node_before_a_join_answers_its_own_request_with_the_exception() -> None:
    """With on_error 'fail' set on the node, the run fails; the failing item's own request still gets
    the node's exception, though the join keeps its other branch's copy (every other waits: Unavailable)."""
    inbox = Inbox()

    async def parse(x: int) -> int:
        return x

    async def fragile(x: int) -> int:
        if x == 13:
            raise RuntimeError("poison")
        return x

    async def other(x: int) -> int:
        await asyncio.Event().wait()  # never answers: the join waits on this branch
        return x

    async def joined(pair: tuple[int, int]) -> int:
        return pair[0]

    item = {"style": "item"}
    graph = {
        "nodes": {
            "requests": {"coro": inbox.source},
            "parse": {"coro": parse, "properties": item},
            "fragile": {"coro": fragile, "properties": {**item, "on_error": "fail"}},
            "other": {"coro": other, "properties": item},
            "join": {"coro": joined, "properties": item},
        },
        "graph": {
            "requests": ["parse"],
            "parse": ["fragile", "other"],
            "fragile": ["join"],
            "other": ["join"],
            "join": None,
        },
    }
    plumber = Plumber(graph)
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        answers = await asyncio.gather(inbox.submit(1), inbox.submit(13), return_exceptions=True)
    assert isinstance(answers[1], RuntimeError)
    assert str(answers[1]) == "poison"
    assert isinstance(answers[0], Unavailable)
    assert str(answers[0]).startswith("inbox 'requests': the pipeline failed before answering: RuntimeError: poison")
