"""Joins by lineage: the items of one source item meet, whatever the latency, and drops never block."""

from __future__ import annotations

import random
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipelines import Plumber, Processor, RunResult

from .backends import BACKENDS, run_on, trio_twins
from .helpers import collector, source_of, until


def diamond(items: list[Any], left: Any, right: Any, sink: Any, **join_props: Any) -> dict[str, Any]:
    return {
        "nodes": {
            "src": {"coro": source_of(items)},
            "left": {"coro": left, "properties": {"workers": 4}},
            "right": {"coro": right, "properties": {"workers": 3}},
            "join": {"coro": sink, "properties": join_props},
        },
        "graph": {"src": ["left", "right"], "left": ["join"], "right": ["join"], "join": None},
    }


def with_random_latency(tag: str, seed: int) -> Any:
    rng = random.Random(seed)

    async def branch(processor: Processor, q_elt: tuple[int]) -> tuple[str, int]:
        for _ in range(rng.randrange(4)):
            await anyio.lowlevel.checkpoint()
        return (tag, q_elt[0])

    return branch


async def test_diamond_with_random_latency_never_mismatches_a_pair() -> None:
    seen, sink = collector()
    graph = diamond(list(range(10_000)), with_random_latency("L", 1), with_random_latency("R", 2), sink)
    result = await Plumber(graph).run()
    mismatched = [pair for pair in seen if pair[0][1] != pair[1][1]]
    assert mismatched == []
    assert sorted(pair[0][1] for pair in seen) == list(range(10_000))
    assert all(pair[0][0] == "L" and pair[1][0] == "R" for pair in seen)  # inputs in 'graph' order
    assert (result["join"].items_in, result["join"].dropped) == (10_000, 0)


async def test_an_item_dropped_on_one_branch_discards_its_group_and_blocks_nothing() -> None:
    async def drop_sevens(processor: Processor, q_elt: tuple[int]) -> int | None:
        for _ in range(q_elt[0] % 3):
            await anyio.lowlevel.checkpoint()
        return None if q_elt[0] % 7 == 0 else q_elt[0]

    seen, sink = collector()
    graph = diamond(list(range(1000)), drop_sevens, with_random_latency("R", 3), sink)
    result = await Plumber(graph).run()
    assert sorted(pair[0] for pair in seen) == [i for i in range(1000) if i % 7]
    assert all(left == right[1] for left, right in seen)
    sevens = len(range(0, 1000, 7))
    assert (result["left"].dropped, result["join"].dropped, result["join"].items_in) == (sevens, sevens, 1000)
    assert result["join"].completed == 1000 - sevens


async def test_an_item_skipped_after_an_error_discards_its_group() -> None:
    async def fail_on_fives(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] % 5 == 0:
            raise ValueError(q_elt[0])
        return q_elt[0]

    seen, sink = collector()
    graph = diamond(list(range(100)), fail_on_fives, with_random_latency("R", 4), sink)
    graph["nodes"]["left"]["properties"]["on_error"] = "skip"
    result = await Plumber(graph).run()
    assert sorted(pair[0] for pair in seen) == [i for i in range(100) if i % 5]
    assert (result["left"].skipped, result["join"].dropped) == (20, 20)


async def test_merge_without_aggregation_delivers_each_input_alone() -> None:
    seen, sink = collector()
    graph = diamond([1, 2, 3], with_random_latency("L", 5), with_random_latency("R", 6), sink, aggregate_inputs=False)
    result = await Plumber(graph).run()
    assert sorted(seen) == [(("L", i),) for i in (1, 2, 3)] + [(("R", i),) for i in (1, 2, 3)]
    assert result["join"].items_in == 6


async def test_a_join_deeper_than_one_step_pairs_through_chains() -> None:
    async def plus(processor: Processor, q_elt: tuple[int]) -> int:
        await anyio.lowlevel.checkpoint()
        return q_elt[0] + 100

    seen, sink = collector()
    graph = {
        "nodes": {
            "s": {"coro": source_of(list(range(300)))},
            "a1": {"coro": plus, "properties": {"workers": 3}},
            "a2": {"coro": plus, "properties": {"workers": 2}},
            "b": {"coro": with_random_latency("B", 7), "properties": {"workers": 5}},
            "j": {"coro": sink},
        },
        "graph": {"j": None, "b": ["j"], "a2": ["j"], "a1": ["a2"], "s": ["b", "a1"]},
    }
    await Plumber(graph).run()
    # inputs of j in the order of their keys in 'graph': b before a2
    assert sorted(seen) == [(("B", i), i + 200) for i in range(300)]


async def test_independent_sources_pair_by_position() -> None:
    async def letters(processor: Processor, output_q: Any) -> None:
        for ch in "abcde":
            await output_q.put(ch)

    seen, sink = collector()
    graph = {
        "nodes": {
            "nums": {"coro": source_of([1, 2, 3, 4])},
            "chars": {"coro": letters},
            "slow": {"coro": with_random_latency("S", 8), "properties": {"workers": 3}},
            "zip": {"coro": sink},
        },
        "graph": {"nums": ["slow"], "chars": ["zip"], "slow": ["zip"], "zip": None},
    }
    result = await Plumber(graph).run()
    assert sorted(seen) == [("a", ("S", 1)), ("b", ("S", 2)), ("c", ("S", 3)), ("d", ("S", 4))]
    assert result["zip"].dropped == 1  # 'e' had no partner at end-of-stream


async def test_expanding_node_upstream_of_both_branches() -> None:
    async def explode(processor: Processor, q_elt: tuple[int]) -> Any:
        for i in range(q_elt[0]):
            yield (q_elt[0], i)

    async def tag(processor: Processor, q_elt: tuple[Any]) -> Any:
        await anyio.lowlevel.checkpoint()
        return ("t", *q_elt[0])

    seen, sink = collector()
    graph = {
        "nodes": {
            "s": {"coro": source_of([0, 1, 2, 3])},
            "x": {"coro": explode},
            "l": {"coro": tag, "properties": {"workers": 2}},
            "j": {"coro": sink},
        },
        "graph": {"s": ["x"], "x": ["l", "j"], "l": ["j"], "j": None},
    }
    result = await Plumber(graph).run()
    expected = [((n, i), ("t", n, i)) for n in range(4) for i in range(n)]
    assert sorted(seen) == expected
    assert (result["x"].dropped, result["j"].dropped) == (1, 0)  # 0 expands to nothing: nothing to pair


@pytest.mark.parametrize("short", [2, 0])
async def test_a_zip_join_ends_with_its_shortest_input_and_never_blocks_a_shared_source(short: int) -> None:
    """a, b -> j1; s, a, b -> j2: once s has ended, j2 drains a and b, which j1 needs, instead of waiting on one."""
    j1: list[Any] = []
    j2: list[Any] = []

    async def keep_j1(processor: Processor, q_elt: tuple[Any, ...]) -> None:
        j1.append(q_elt)

    async def keep_j2(processor: Processor, q_elt: tuple[Any, ...]) -> None:
        j2.append(q_elt)

    graph = {
        "nodes": {
            "s": {"coro": source_of([f"s{i}" for i in range(short)])},
            "a": {"coro": source_of(list(range(1000)))},
            "b": {"coro": source_of([-i for i in range(1000)])},
            "j1": {"coro": keep_j1},
            "j2": {"coro": keep_j2},
        },
        "graph": {"s": ["j2"], "a": ["j1", "j2"], "b": ["j1", "j2"], "j1": None, "j2": None},
    }
    result = await Plumber(graph).run()
    assert sorted(j1) == [(i, -i) for i in range(1000)]
    assert sorted(j2) == [(f"s{i}", i, -i) for i in range(short)]
    # every position of a and b that s never reached is a group discarded and counted
    assert (result["j2"].items_in, result["j2"].completed, result["j2"].dropped) == (1000, short, 1000 - short)


@settings(max_examples=60, deadline=None)
@example(a=2, b=7, bounds=(1, 1, 1), workers=1, order=("a", "x", "b", "z", "j"))  # hung: z held b's 2..6
@example(a=2, b=7, bounds=(2, 2, 2), workers=1, order=("a", "x", "b", "z", "j"))
@given(
    order=st.permutations(["a", "b", "x", "z", "j"]),
    a=st.integers(0, 12),
    b=st.integers(0, 12),
    bounds=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    workers=st.sampled_from([None, 1, 2]),
)
@pytest.mark.parametrize("loop", BACKENDS)
def test_a_zip_whose_output_meets_one_of_its_sources_again_never_waits_for_what_cannot_come(
    loop: str, order: list[str], a: int, b: int, bounds: tuple[int, int, int], workers: int | None
) -> None:
    """a -> x; (x, b) -> z, a zip; (z, b) -> j. Once a ran out, b's later items can never pair at z:
    z discards those groups as they come and sends their tombstones on, so j discards its halves
    instead of waiting for z while b, blocked on j's full input, can never end (it used to hang)."""
    pairs: list[Any] = []

    async def x(processor: Processor, q_elt: tuple[int]) -> int:
        return q_elt[0] * 10

    async def z(processor: Processor, q_elt: tuple[int, int]) -> int:
        return sum(q_elt)  # b's item and x's

    async def j(processor: Processor, q_elt: tuple[Any, ...]) -> None:
        pairs.append(tuple(sorted(q_elt)))  # b's item and z's, in the order of 'graph'; b's is the smaller

    bx, bz, bj = bounds
    x_props: dict[str, Any] = {"queue_size": bx}
    if workers is not None:
        x_props["workers"] = workers
    graph = {
        "nodes": {
            "a": {"coro": source_of(list(range(a)))},
            "b": {"coro": source_of([100 + i for i in range(b)])},
            "x": {"coro": x, "properties": x_props},
            "z": {"coro": z, "properties": {"queue_size": bz}},
            "j": {"coro": j, "properties": {"queue_size": bj}},
        },
    }
    successors = {"a": ["x"], "b": ["z", "j"], "x": ["z"], "z": ["j"], "j": None}
    graph["graph"] = {name: successors[name] for name in order}  # the order of the inputs of z and j
    plumber = Plumber(graph)

    async def main() -> RunResult:
        with anyio.fail_after(30):
            return await plumber.run()

    result = run_on(loop, main)
    paired = min(a, b)
    assert sorted(pairs) == [(100 + i, 100 + 11 * i) for i in range(paired)]
    stats = result["j"]
    assert (stats.completed, stats.in_flight) == (paired, 0)
    assert stats.items_in == stats.completed + stats.dropped
    assert result["z"].completed == paired


async def test_a_zip_draining_its_inputs_ends_only_when_the_last_of_them_ends() -> None:
    """a is empty, so the zip of (a, b, c) only drains b and c. c ends while the zip waits on both,
    b still open: the zip reads on, so b, whose items fill the zip's input of 1, is never left
    waiting for room (it was: c's end was taken for the zip's own, and the run hung)."""
    c_may_end = anyio.Event()
    b_may_put = anyio.Event()

    async def a(processor: Processor, output_q: Any) -> None:
        return

    async def b(processor: Processor, output_q: Any) -> None:
        await b_may_put.wait()
        for i in range(20):
            await output_q.put(i)

    async def c(processor: Processor, output_q: Any) -> None:
        await output_q.put(100)
        await output_q.put(101)
        await c_may_end.wait()

    async def j(processor: Processor, q_elt: tuple[int, ...]) -> None:
        raise AssertionError(f"nothing can pair, yet {q_elt} did")

    nodes = {"a": {"coro": a}, "b": {"coro": b}, "c": {"coro": c}, "j": {"coro": j, "properties": {"queue_size": 1}}}
    plumber = Plumber({"nodes": nodes, "graph": {"a": ["j"], "b": ["j"], "c": ["j"], "j": None}})
    from_b, from_c = plumber.processor("j").inputs[1:]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(plumber.run)
            # The zip has taken c's two items and waits on b and c at once. (Waiting on both comes
            # first once, between c's two puts: c's second put may not have run yet then.)
            await until(
                lambda: (
                    plumber.stats()["c"].items_out == 2
                    and from_b.statistics().waiting_getters == from_c.statistics().waiting_getters == 1
                )
            )
            c_may_end.set()
            await anyio.wait_all_tasks_blocked()
            # c has ended; the zip reads on, from b alone.
            assert from_c.closed
            assert (from_b.statistics().waiting_getters, from_c.statistics().waiting_getters) == (1, 0)
            b_may_put.set()
    stats = plumber.stats()
    assert plumber.state == "completed"
    assert (stats["b"].items_out, stats["c"].items_out) == (20, 2)
    # a zip pairs by position: b's 20 positions (c's two among them) are 20 groups, every one discarded
    assert (stats["j"].items_in, stats["j"].completed, stats["j"].dropped) == (20, 0, 20)


globals().update(trio_twins(globals()))
