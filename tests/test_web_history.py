"""The history the hub keeps of each run: samples that add up to the final figures, in a bounded ring.

Sampling is controlled here: the source itself samples its run before it puts chosen items, so
what the source had put at each sample is known exactly; the run's end takes the last sample.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import Plumber, Processor
from pipelines.web import Hub, RunEntry

from .conftest import LOOP_FACTORIES


def graph_of(items: list[int], modulus: int, points: set[int], entry_of: list[RunEntry]) -> dict[str, Any]:
    """numbers -> multiples (a filter) -> keep, and numbers -> picky (skips what it raises on)."""

    async def numbers(processor: Processor, output_q: Any) -> None:
        for i in items:
            if i in points:
                entry_of[0].sample()  # it has put exactly i items so far
            await output_q.put(i)

    async def multiples(processor: Processor, q_elt: tuple[int]) -> int | None:
        return q_elt[0] if q_elt[0] % modulus == 0 else None

    async def picky(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] % 3 == 1:
            raise ValueError(q_elt[0])
        return q_elt[0]

    async def keep(processor: Processor, q_elt: tuple[int]) -> None:
        pass

    return {
        "nodes": {
            "numbers": {"coro": numbers},
            "multiples": {"coro": multiples},
            "keep": {"coro": keep},
            "picky": {"coro": picky, "properties": {"on_error": "skip"}},
        },
        "graph": {"numbers": ["multiples", "picky"], "multiples": ["keep"], "keep": None, "picky": None},
    }


@pytest.mark.parametrize("loop", sorted(LOOP_FACTORIES))
@settings(max_examples=25, deadline=None)
@given(
    count=st.integers(0, 40),
    points=st.sets(st.integers(0, 45), max_size=6),
    modulus=st.integers(2, 4),
    queue_size=st.integers(1, 4),
)
def test_the_samples_of_a_run_add_up_to_each_nodes_final_figures(
    loop: str, count: int, points: set[int], modulus: int, queue_size: int
) -> None:
    hub = Hub()
    entry_of: list[RunEntry] = []
    plumber = Plumber(graph_of(list(range(count)), modulus, points, entry_of), queue_size=queue_size)
    entry_of.append(hub.add(plumber, "numbers"))
    assert len(entry_of[0].history) == 0  # nothing before the run starts
    with asyncio.Runner(loop_factory=LOOP_FACTORIES[loop]) as runner:
        result = runner.run(asyncio.wait_for(plumber.run(), 30))
    history = entry_of[0].history
    samples = history.samples()
    inside = sorted(p for p in points if p < count)
    assert [s.seq for s in samples] == list(range(1, len(inside) + 2))  # one per point, and the last one
    assert history.nodes == ("numbers", "multiples", "keep", "picky")
    put = [sum(s.out[0] for s in samples[: k + 1]) for k in range(len(samples))]
    assert put == [*inside, count]
    final = result.stats
    out = {name: sum(s.out[i] for s in samples) for i, name in enumerate(history.nodes)}
    # A sink's out is what it completed: it emits nothing.
    assert out == {
        "numbers": final["numbers"].items_out,
        "multiples": final["multiples"].items_out,
        "keep": final["keep"].completed,
        "picky": final["picky"].completed,
    }
    assert out["numbers"] == count
    assert out["multiples"] == out["keep"] == len(range(0, count, modulus))
    assert out["picky"] == count - len(range(1, count, 3))
    for i, name in enumerate(history.nodes):
        # A sample holds what a node's input edge held: never above its bound (the items a worker
        # took and has not started are its stats' `taken`, not sampled).
        assert all(0 <= s.queue[i] <= final[name].queue_bound for s in samples)
        assert all(0 <= s.workers[i] <= max(final[name].peak_workers, 0) for s in samples)
    assert [s.t for s in samples] == sorted(s.t for s in samples)
    assert samples[-1].t == result.elapsed
    assert samples[-1].queue == (0, 0, 0, 0)
    assert samples[-1].workers == (0, 0, 0, 0)


async def test_the_history_is_a_ring_of_the_newest_samples() -> None:
    hub = Hub(samples_kept=3)
    plumber = Plumber(graph_of([0, 1, 2, 3, 4], 2, set(), []))
    await plumber.run()
    entry = hub.add(plumber, "ended")  # added once ended: its one sample is its final figures
    assert entry.history.as_json() == [
        {
            "seq": 1,
            "t": plumber.ended_at - plumber.started_at,  # type: ignore[operator]
            "nodes": {
                "numbers": {"out": 5, "queue": 0, "workers": 0},
                "multiples": {"out": 3, "queue": 0, "workers": 0},
                "keep": {"out": 3, "queue": 0, "workers": 0},
                "picky": {"out": 3, "queue": 0, "workers": 0},
            },
        }
    ]
    hub.sample()  # only running runs are sampled
    assert entry.history.last_seq == 1
    for _ in range(4):
        entry.sample()
    assert [s.seq for s in entry.history.samples()] == [3, 4, 5]
    assert [s.seq for s in entry.history.samples(after=4)] == [5]
    assert [s.out for s in entry.history.samples()] == [(0, 0, 0, 0)] * 3  # nothing moved since


async def test_a_run_not_yet_started_is_not_sampled_and_a_forgotten_run_takes_its_history_along() -> None:
    hub = Hub(keep_ended=1)
    waiting = Plumber(graph_of([1], 2, set(), []))
    entry = hub.add(waiting, "not started")
    hub.sample()
    assert len(entry.history) == 0

    ended = []
    for _ in range(3):
        plumber = Plumber(graph_of([1, 2], 2, set(), []))
        await plumber.run()
        ended.append(plumber)
    first = hub.add(ended[0], "first")
    histories = weakref.WeakSet([first.history])
    del first
    hub.add(ended[1], "second")  # keeps one ended run: the first goes
    hub.remove(entry.id)
    hub.remove("r99")  # an unknown id is ignored
    gc.collect()
    # The plumbers are still held here, and their signals no longer hold the forgotten entries.
    assert len(histories) == 0
    assert [e.label for e in hub.runs()] == ["second"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"samples_kept": 0}, "Hub: samples_kept must be at least 1; got 0"),
        ({"sample_every": 0}, "Hub: sample_every must be a positive number of seconds; got 0"),
        ({"sample_every": float("nan")}, "Hub: sample_every must be a positive number of seconds; got nan"),
    ],
)
def test_a_hub_refuses_a_history_it_could_not_keep(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^Hub: ") as caught:
        Hub(**options)
    assert str(caught.value) == message
