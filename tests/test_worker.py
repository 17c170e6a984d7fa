"""The worker loop: batches shared among a node's workers, ordered output, handoff within a batch, zip joins."""

from __future__ import annotations

from typing import Any

import anyio

from pipelines import Plumber, Processor

from .backends import Background, trio_twins
from .helpers import chain, collector, until


def gated_source(go: anyio.Event, items: list[Any]) -> Any:
    """A source that puts `items` at once (no put waits: they fit the bound) once `go` is set."""

    async def source(processor: Processor, output_q: Any) -> None:
        await go.wait()
        for item in items:
            await output_q.put(item)

    return source


def waiting_getters(plumber: Plumber, node: str) -> int:
    return plumber.processor(node).inputs[0].statistics().waiting_getters


async def test_every_idle_worker_of_a_node_takes_over_what_waits_behind_a_busy_one(make_plumber: Any) -> None:
    go, release = anyio.Event(), anyio.Event()
    entered: list[int] = []

    async def work(processor: Processor, q_elt: tuple[int]) -> int:
        entered.append(q_elt[0])
        await release.wait()
        return q_elt[0]

    seen, sink = collector()
    graph = chain(
        "src",
        "w",
        "out",
        coros={"src": gated_source(go, list(range(6))), "w": work, "out": sink},
        props={"w": {"workers": 3}},
    )
    plumber = make_plumber(graph)
    async with anyio.create_task_group() as group:
        running = Background(group, plumber.run)
        await until(lambda: waiting_getters(plumber, "w") == 1 and plumber.stats()["w"].workers == 3)
        go.set()
        await until(lambda: len(entered) == 3)
        # one worker read the six; while it waits in item 0, the idle ones take over the next items
        assert entered == [0, 1, 2]
        stats = plumber.stats()["w"]
        # three items are being worked on; the other three wait, queued in the node, for a free worker
        assert (stats.items_in, stats.in_flight, stats.queue_depth) == (3, 3, 3)
        release.set()
    result = await running.result()
    assert sorted(seen) == [(i,) for i in range(6)]
    assert (result["w"].items_in, result["w"].completed) == (6, 6)


async def test_ordered_workers_emit_in_input_order_when_later_items_finish_first(make_plumber: Any) -> None:
    go = anyio.Event()
    gates = [anyio.Event() for _ in range(4)]
    entered: list[int] = []
    done: list[int] = []

    async def work(processor: Processor, q_elt: tuple[int]) -> int:
        entered.append(q_elt[0])
        await gates[q_elt[0]].wait()
        done.append(q_elt[0])
        return q_elt[0]

    seen, sink = collector()
    graph = chain(
        "src",
        "w",
        "out",
        coros={"src": gated_source(go, [0, 1, 2, 3]), "w": work, "out": sink},
        props={"w": {"workers": 4, "ordered": True}},
    )
    plumber = make_plumber(graph)
    async with anyio.create_task_group() as group:
        running = Background(group, plumber.run)
        await until(lambda: waiting_getters(plumber, "w") == 1 and plumber.stats()["w"].workers == 4)
        go.set()
        await until(lambda: len(entered) == 4)
        assert entered == [0, 1, 2, 3]  # one item in each worker, started in input order
        for i in (3, 2, 1):
            gates[i].set()
            await until(lambda i=i: done[-1:] == [i])
        await anyio.wait_all_tasks_blocked()
        # three finished, but the first is still being worked on: nothing may go out before it
        assert seen == []
        stats = plumber.stats()["w"]
        assert (stats.items_in, stats.completed, stats.in_flight) == (4, 3, 1)
        gates[0].set()
    await running.result()
    assert done == [3, 2, 1, 0]
    assert seen == [(0,), (1,), (2,), (3,)]


async def test_an_idle_consumer_gets_outputs_before_the_batch_ends(make_plumber: Any) -> None:
    go, hold = anyio.Event(), anyio.Event()

    async def work(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] == 1:
            await hold.wait()
        return q_elt[0]

    seen, sink = collector()
    graph = chain(
        "src",
        "w",
        "out",
        coros={"src": gated_source(go, [0, 1, 2]), "w": work, "out": sink},
        props={"w": {"workers": 1}},
    )
    plumber = make_plumber(graph)
    async with anyio.create_task_group() as group:
        running = Background(group, plumber.run)
        await until(lambda: waiting_getters(plumber, "w") == 1 and waiting_getters(plumber, "out") == 1)
        go.set()
        await until(lambda: seen == [(0,)])
        # 'w' is still inside the batch of three it took; the idle sink already has the first output
        stats = plumber.stats()["w"]
        # the item it is in, and the one after it, not started: queued in the node, not in flight
        assert (stats.items_in, stats.completed, stats.in_flight, stats.queue_depth) == (2, 0, 2, 1)
        hold.set()
    await running.result()
    assert seen == [(0,), (1,), (2,)]


async def test_a_zip_join_holds_a_fast_source_back_by_its_bound() -> None:
    bound = 4
    count = 40
    put = {"fast": 0, "slow": 0}
    leads: list[int] = []
    paired = [anyio.Event() for _ in range(count)]
    depths: list[tuple[int, int, int, int]] = []

    async def fast(processor: Processor, output_q: Any) -> None:
        for i in range(count):
            await output_q.put(i)
            put["fast"] += 1
            leads.append(put["fast"] - put["slow"])

    async def slow(processor: Processor, output_q: Any) -> None:
        for i in range(count):
            await output_q.put(f"s{i}")
            put["slow"] += 1
            await paired[i].wait()  # the next only once this one met its partner

    seen: list[tuple[int, str]] = []

    async def pair(processor: Processor, q_elt: tuple[int, str]) -> None:
        seen.append(q_elt)
        paired[q_elt[0]].set()

    class Depths:
        """At each arrival at the join, the depth of each of its inputs and of the node."""

        def node_hooks(self, node: Processor) -> Any:
            if node.name != "zip":
                return None

            class Held:
                def held(self, key: Any) -> None:
                    stats = plumber.stats()["zip"]
                    depths.append((*(edge.qsize() for edge in node.inputs), stats.queue_depth, stats.queue_bound))

            return Held()

    graph = {
        "nodes": {"fast": {"coro": fast}, "slow": {"coro": slow}, "zip": {"coro": pair}},
        "graph": {"fast": ["zip"], "slow": ["zip"], "zip": None},
    }
    plumber = Plumber(graph, queue_size=bound, hooks=[Depths()])
    result = await plumber.run()
    assert seen == [(i, f"s{i}") for i in range(count)]
    assert len(depths) == 2 * count
    assert all(f <= bound and s <= bound and d == f + s and b == 2 * bound for f, s, d, b in depths)
    # the fast source ran ahead until its input was full, and never further than that input and the one batch
    # the join reads from it when it is not ahead (a join that read it whenever it had items would let it run
    # to the end while the slow one waits for its first pair): it is held back by its bound
    assert bound <= max(leads) <= 2 * bound
    assert (result["zip"].items_in, result["zip"].completed, result["zip"].dropped) == (count, count, 0)


globals().update(trio_twins(globals()))


async def test_the_workers_of_a_pool_share_the_node_steps_and_each_keeps_its_own(tmp_path: Any) -> None:
    """A pool puts the node's steps together once (`Worker.sibling`); a step that hands outputs on
    itself (a generator's) and a sink's finished keys stay each worker's own."""
    from pipelines.pool import Member, Pool, Watch

    checked: list[str] = []

    async def source(processor: Processor, output_q: Any) -> None:
        for name in ("gen", "out"):  # the run's hooks are bound now
            node = plumber.processor(name)
            pool = Pool(node, node.joiner, Watch())
            first, second = (pool._new_worker(Member(), extra=False) for _ in range(2))
            assert first._call is second._call
            assert first._member is not second._member
            if name == "gen":  # a generator's step hands its outputs on: each worker its own
                assert first._step is not None
                assert first._step is not second._step
            else:  # the journal's sink notes the keys it finished, each worker its own
                assert first._finished == second._finished == []
                assert first._finished is not second._finished
            checked.append(name)
        await output_q.put(1)

    async def twice(processor: Processor, q_elt: tuple[int]) -> Any:
        yield q_elt[0]
        yield q_elt[0]

    seen, sink = collector()
    graph = chain("src", "gen", "out", coros={"src": source, "gen": twice, "out": sink}, props={"gen": {"workers": 3}})
    plumber = Plumber(graph, journal=tmp_path / "run.db")
    await plumber.run()
    assert checked == ["gen", "out"]
    assert seen == [(1,), (1,)]
