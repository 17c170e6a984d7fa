"""pipelines.distributed in one process: the transport's guarantees against a real redis-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import Failure, PipelineCancelled, Processor, node
from pipelines.distributed import (
    DistributedError,
    DistributedPlumber,
    RedisTransport,
    RemoteFailure,
    SerializationError,
    scripts,
)
from pipelines.distributed.codec import decode, encode
from pipelines.distributed.keys import RunKeys
from pipelines.lineage import DROPPED
from tests.redis_server import RedisServer, redis_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as running:
        yield running


def transport(server: RedisServer, **options: Any) -> RedisTransport:
    quick = {"poll": 0.01, "heartbeat": 0.05, "dead_after": 0.5, **options}
    return RedisTransport(server.url, **quick)


async def eventually(condition: Callable[[], Awaitable[bool]], limit: int = 1000) -> None:
    """Poll `condition` every 10 ms until it holds, at most `limit` times."""
    for _ in range(limit):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


@node
async def numbers(count: int) -> Any:
    for i in range(count):
        yield i


@node
async def double(x: int) -> int:
    return 2 * x


def linear(count: int, sink: Any, *, middle: Any = double, props: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "nodes": {
            "numbers": {"coro": numbers, "args": {"count": count}},
            "work": {"coro": middle, "properties": props or {}},
            "sink": {"coro": sink},
        },
        "graph": {"numbers": ["work"], "work": ["sink"], "sink": None},
    }


def collector() -> tuple[list[Any], Any]:
    seen: list[Any] = []

    @node
    async def sink(x: Any) -> None:
        seen.append(x)

    return seen, sink


async def pending_of(server: RedisServer, plumber: DistributedPlumber, edge: str) -> list[Any]:
    """The values of the entries of `edge` that `plumber`'s process holds unacknowledged."""
    assert plumber.run_id is not None
    key = RunKeys(plumber.run_id).stream(edge)
    async with aioredis.Redis.from_url(server.url) as r:
        pending = await r.xpending_range(key, "pipelines", "-", "+", 1000, consumername=plumber.consumer)
        values = []
        for entry in pending:
            [(_, fields)] = await r.xrange(key, entry["message_id"], entry["message_id"])
            values.append(decode(fields[b"d"])[1])
    return values


@settings(max_examples=30, deadline=None)
@given(order=st.permutations([1, 2, 3, 4]))
def test_the_latest_publication_of_counts_wins_in_whatever_order_they_reach_redis(
    server: RedisServer, order: list[int]
) -> None:
    # A cancelled caller's publication still completes on its own connection, so an older one can
    # arrive after a newer one (the end-of-run counts were once overwritten by a periodic one).
    async def publish_all() -> dict[str, Any]:
        r = aioredis.Redis.from_url(server.url)
        try:
            key = RunKeys("publications").stats
            await r.delete(key)
            script = r.register_script(scripts.STATS)
            for n in order:
                value = json.dumps({"completed": 10 * n, "published": n})
                await script(keys=[key], args=[n, "double\tw1", value, "show\tw1", value])
            stored = await r.hgetall(key)
            return {k.decode(): json.loads(v)["completed"] for k, v in stored.items()}
        finally:
            await r.aclose()

    assert asyncio.run(publish_all()) == {"double\tw1": 40, "show\tw1": 40}


def test_envelopes_keep_their_types_through_the_codec() -> None:
    envelope = (("numbers", 3, 1), {"a": (1, [2, (3,)]), (1, 2): b"x", "n": None, "f": 1.5}, 2)
    assert decode(encode(envelope)) == envelope
    assert decode(encode((("s", 1), DROPPED, 0)))[1] is DROPPED
    failure = decode(encode((("s", 1), Failure("work", {1}, ValueError("bad")), 0)))[1]
    assert (failure.node, failure.item, str(failure.exception)) == ("work", "{1}", "ValueError: bad")
    with pytest.raises(SerializationError, match=r"^cannot serialize set \{1, 2\}$"):
        encode((("s", 1), {1, 2}, 0))


async def test_a_graph_split_between_two_workers_delivers_every_item_once(server: RedisServer) -> None:
    seen, sink = collector()
    graph = linear(500, sink)
    t = transport(server)
    coordinator = t.plumber(graph)
    first, second = t.worker(graph, nodes=["work"]), t.worker(graph, nodes=["work", "sink"])
    result, *_ = await asyncio.gather(coordinator.run(), first.run(), second.run())
    assert sorted(seen) == [2 * i for i in range(500)]
    assert result.state == "completed"
    assert [(s.name, s.items_in, s.items_out, s.completed, s.in_flight) for s in result.stats.values()] == [
        ("numbers", 0, 500, 0, 0),
        ("work", 500, 500, 500, 0),
        ("sink", 500, 0, 500, 0),
    ]
    assert coordinator.run_id is not None
    assert await t.stats(coordinator.run_id) == result.stats


async def test_a_full_stream_holds_its_producer_at_the_bound(server: RedisServer) -> None:
    gate = asyncio.Event()
    seen: list[int] = []

    @node
    async def slow(x: int) -> None:
        await gate.wait()
        seen.append(x)

    graph = linear(60, slow, middle=double)
    graph["nodes"]["work"]["properties"] = {"queue_size": 5}
    t = transport(server, batch=3)
    coordinator, worker = t.plumber(graph), t.worker(graph, nodes=["sink"])
    running = asyncio.gather(coordinator.run(), worker.run())
    async with aioredis.Redis.from_url(server.url) as r:

        async def work_stream_length() -> int:
            run_id = coordinator.run_id
            return 0 if run_id is None else int(await r.xlen(RunKeys(run_id).stream("work")))

        async def full() -> bool:
            return await work_stream_length() == 5

        await eventually(full)
        lengths = []
        for _ in range(20):  # the source keeps trying; the stream never grows past its bound
            await asyncio.sleep(0.01)
            lengths.append(await work_stream_length())
        assert lengths == [5] * 20
        assert coordinator.processor("numbers").items_out <= 5 + 3  # the bound, and one local batch
        gate.set()
        # the worker of 'work' has not started yet: start it, and everything drains
        await asyncio.gather(running, t.worker(graph, nodes=["work"]).run())
    assert sorted(seen) == [2 * i for i in range(60)]


def holding_worker(t: RedisTransport, graph: dict[str, Any]) -> tuple[DistributedPlumber, asyncio.Event]:
    """A worker of 'work' whose coroutine stops at its first item, as a process that hangs would."""
    held = asyncio.Event()
    return t.worker(graph, nodes=["work"], env_vars={"held": held}), held


async def maybe_hold(processor: Processor, q_elt: tuple[int]) -> int:
    held = (processor.env_vars or {}).get("held")
    if held is not None:
        held.set()
        await asyncio.Event().wait()
    return q_elt[0]


async def test_items_a_stopped_worker_held_are_claimed_by_another(server: RedisServer) -> None:
    seen, sink = collector()
    graph = linear(300, sink, middle=maybe_hold)
    t = transport(server, claim_idle=0.2)
    coordinator, sink_worker = t.plumber(graph), t.worker(graph, nodes=["sink"])
    hanging, held = holding_worker(t, graph)
    running = asyncio.gather(coordinator.run(), sink_worker.run())
    hang = asyncio.ensure_future(hanging.run())
    await held.wait()
    taken = await pending_of(server, hanging, "work")
    assert taken  # it holds a batch, unacknowledged
    hanging.cancel()
    with pytest.raises(PipelineCancelled):
        await hang
    (result, _), _ = await asyncio.gather(running, t.worker(graph, nodes=["work"]).run())
    assert sorted(seen) == list(range(300))
    assert result["sink"].completed == 300


async def test_an_item_delivered_too_often_goes_to_the_error_node(server: RedisServer) -> None:
    seen, sink = collector()
    failures: list[Any] = []

    @node
    async def errors(failure: Failure) -> None:
        failures.append((failure.node, failure.item, failure.exception.type_name))  # type: ignore[attr-defined]

    graph = linear(200, sink, middle=maybe_hold, props={"on_error": "errors"})
    graph["nodes"]["errors"] = {"coro": errors}
    graph["graph"]["errors"] = None
    t = transport(server, claim_idle=0.2, max_deliveries=1)
    coordinator, others = t.plumber(graph), t.worker(graph, nodes=["sink", "errors"])
    hanging, held = holding_worker(t, graph)
    running = asyncio.gather(coordinator.run(), others.run())
    hang = asyncio.ensure_future(hanging.run())
    await held.wait()
    taken = await pending_of(server, hanging, "work")
    hanging.cancel()
    with pytest.raises(PipelineCancelled):
        await hang
    (result, _), _ = await asyncio.gather(running, t.worker(graph, nodes=["work"]).run())
    assert sorted(failures) == [("work", (x,), "DeliveryError") for x in sorted(taken)]
    assert sorted(seen) == sorted(set(range(200)) - set(taken))
    assert (result["work"].items_in, result["work"].failed, result["work"].completed) == (
        200,
        len(taken),
        200 - len(taken),
    )


@node
async def as_set(x: int) -> Any:
    return {x} if x == 3 else x


async def test_an_item_that_cannot_be_sent_is_skipped_by_its_node(server: RedisServer) -> None:
    seen, sink = collector()
    graph = linear(6, sink, middle=as_set, props={"on_error": "skip"})
    t = transport(server)
    result, _ = await asyncio.gather(t.plumber(graph).run(), t.worker(graph).run())
    assert sorted(seen) == [0, 1, 2, 4, 5]
    assert (result["work"].completed, result["work"].skipped, result["work"].items_out) == (5, 1, 5)


async def test_an_item_that_cannot_be_sent_fails_the_run_naming_its_node(server: RedisServer) -> None:
    _, sink = collector()
    graph = linear(6, sink, middle=as_set)
    t = transport(server)
    coordinator, worker = t.plumber(graph), t.worker(graph)
    outcomes = await asyncio.gather(coordinator.run(), worker.run(), return_exceptions=True)
    message = (
        "node 'work': item {3} cannot be sent to 'sink' over Redis: cannot serialize set {3} (only None, bool, "
        "int, float, str, bytes and lists, tuples and dicts of them travel)"
    )
    assert isinstance(outcomes[1], SerializationError)
    assert str(outcomes[1]) == message
    assert isinstance(outcomes[0], RemoteFailure)
    assert str(outcomes[0]).startswith(f"SerializationError: {message} (pipelines: node 'work' failed on item {{3}})")


async def test_a_second_worker_of_a_join_node_is_refused(server: RedisServer) -> None:
    seen: list[Any] = []

    @node
    async def pair_up(group: tuple[int, int]) -> None:
        seen.append(group)

    graph = {
        "nodes": {
            "numbers": {"coro": numbers, "args": {"count": 20}},
            "left": {"coro": double},
            "right": {"coro": double},
            "join": {"coro": pair_up},
        },
        "graph": {"numbers": ["left", "right"], "left": ["join"], "right": ["join"], "join": None},
    }
    t = transport(server)
    coordinator, first = t.plumber(graph), t.worker(graph)
    running = asyncio.gather(coordinator.run(), first.run())

    async def registered() -> bool:
        return first.run_id is not None

    await eventually(registered)
    second = t.worker(graph, nodes=["join"], run_id=first.run_id)
    with pytest.raises(DistributedError) as raised:
        await second.run()
    assert str(raised.value) == (
        f"node 'join' joins its inputs by lineage, so it runs in one worker at a time, and worker "
        f"{first.consumer!r} runs it (run {first.run_id!r})"
    )
    await running
    assert sorted(seen) == [(2 * i, 2 * i) for i in range(20)]


async def test_a_second_worker_of_a_stateful_node_is_refused(server: RedisServer) -> None:
    totals: list[int] = []

    @node(state=lambda: {"sum": 0})
    async def add_up(x: int, state: dict[str, int]) -> None:
        state["sum"] += x

    async def keep(processor: Any, state: dict[str, int]) -> None:
        totals.append(state["sum"])

    graph = {
        "nodes": {
            "numbers": {"coro": numbers, "args": {"count": 20}},
            "sum": {"coro": add_up, "properties": {"teardown": keep}},
        },
        "graph": {"numbers": ["sum"], "sum": None},
    }
    t = transport(server)
    coordinator, first = t.plumber(graph), t.worker(graph)
    running = asyncio.gather(coordinator.run(), first.run())

    async def registered() -> bool:
        return first.run_id is not None

    await eventually(registered)
    second = t.worker(graph, nodes=["sum"], run_id=first.run_id)
    with pytest.raises(DistributedError) as raised:
        await second.run()
    assert str(raised.value) == (
        f"node 'sum' keeps its state in its process, so it runs in one worker at a time, and worker "
        f"{first.consumer!r} runs it (run {first.run_id!r})"
    )
    await running
    assert totals == [sum(range(20))]  # one holder of the state: the sum of every item


def test_a_worker_names_the_nodes_it_can_run(server: RedisServer, tmp_path: Path) -> None:
    _, sink = collector()
    t = transport(server)
    with pytest.raises(ValueError, match=r"^node 'numbers' is a source: sources run in the coordinator"):
        t.worker(linear(1, sink), nodes=["numbers"])
    with pytest.raises(ValueError, match=r"^no node 'nope' to run \(nodes: numbers, work, sink\)$"):
        t.worker(linear(1, sink), nodes=["nope"])


# -- node names over Redis (issue 14, point 7) -----------------------------------------------------


@node
async def from_hundred(count: int) -> Any:
    for i in range(count):
        yield 100 + i


@node
async def add_up(pair: tuple[int, int]) -> int:
    return pair[0] + pair[1]


def strangely_named(count: int) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Sources named with a TAB and 'y', a zip join 'x' of both, and a node 'x<-y' fed by 'y' (the
    name of x's input stream from y in the core), then sinks named with a space, ':', unicode, a TAB."""
    seen: dict[str, list[Any]] = {"joined": [], "other": []}

    @node
    async def joined(x: int) -> None:
        seen["joined"].append(x)

    @node
    async def other(x: int) -> None:
        seen["other"].append(x)

    graph = {
        "nodes": {
            "src\tA": {"coro": numbers, "args": {"count": count}},
            "y": {"coro": from_hundred, "args": {"count": count}},
            "a b:c": {"coro": double},
            "x": {"coro": add_up},
            "x<-y": {"coro": double},
            "sink ☃ : é": {"coro": joined},
            "sink\t%41{z}": {"coro": other},
        },
        "graph": {
            "src\tA": ["a b:c"],
            "a b:c": ["x"],
            "y": ["x", "x<-y"],
            "x": ["sink ☃ : é"],
            "x<-y": ["sink\t%41{z}"],
            "sink ☃ : é": None,
            "sink\t%41{z}": None,
        },
    }
    return graph, seen


async def test_node_names_with_tabs_spaces_arrows_colons_and_unicode_run_to_completion(server: RedisServer) -> None:
    graph, seen = strangely_named(200)
    t = transport(server)
    coordinator = t.plumber(graph)
    first = t.worker(graph, nodes=["a b:c", "x", "sink ☃ : é"])
    second = t.worker(graph, nodes=["x<-y", "sink\t%41{z}"])
    result, *_ = await asyncio.wait_for(asyncio.gather(coordinator.run(), first.run(), second.run()), 60)
    assert result.state == "completed"
    assert sorted(seen["joined"]) == [2 * i + 100 + i for i in range(200)]
    assert sorted(seen["other"]) == [2 * (100 + i) for i in range(200)]
    assert {name: (s.items_in, s.items_out, s.completed) for name, s in result.stats.items()} == {
        "src\tA": (0, 200, 0),
        "y": (0, 200, 0),
        "a b:c": (200, 200, 200),
        "x": (200, 200, 200),
        "x<-y": (200, 200, 200),
        "sink ☃ : é": (200, 0, 200),
        "sink\t%41{z}": (200, 0, 200),
    }
    assert coordinator.run_id is not None
    assert await t.stats(coordinator.run_id) == result.stats


async def test_a_node_named_like_a_zip_joins_input_has_a_stream_of_its_own(server: RedisServer) -> None:
    keys = RunKeys("r")
    assert keys.stream("x<-y") != keys.stream("x", "y")
    assert keys.stream("a\tb") == "pipelines:{r}:in:a%09b"
    graph, seen = strangely_named(30)
    t = transport(server)
    result, _ = await asyncio.wait_for(asyncio.gather(t.plumber(graph).run(), t.worker(graph).run()), 60)
    assert result.state == "completed"
    assert (sorted(seen["joined"]), sorted(seen["other"])) == (
        [3 * i + 100 for i in range(30)],
        [200 + 2 * i for i in range(30)],
    )


async def test_a_source_with_a_tab_in_its_name_ends_its_run(server: RedisServer) -> None:
    seen, sink = collector()
    graph = linear(50, sink)
    graph["nodes"]["num\tbers"] = graph["nodes"].pop("numbers")
    graph["graph"]["num\tbers"] = graph["graph"].pop("numbers")
    t = transport(server)
    result, _ = await asyncio.wait_for(asyncio.gather(t.plumber(graph).run(), t.worker(graph).run()), 30)
    assert (result.state, sorted(seen)) == ("completed", [2 * i for i in range(50)])
