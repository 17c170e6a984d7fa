"""Async generator nodes: held back by the bounded queues, and retried without sending an output twice."""

from __future__ import annotations

from typing import Any

import anyio.lowlevel

from pipelines import Plumber, Processor

from .backends import trio_twins
from .helpers import chain, collector, source_of


async def test_a_generator_node_is_held_back_by_the_bounded_queues() -> None:
    produced = 0
    leads: list[int] = []

    async def flood(processor: Processor, q_elt: tuple[int]) -> Any:
        nonlocal produced
        for i in range(5000):
            produced += 1
            yield i

    async def slow_sink(processor: Processor, q_elt: tuple[int]) -> None:
        leads.append(produced - len(leads))
        await anyio.lowlevel.checkpoint()

    graph = chain(
        "inp",
        "flood",
        "out",
        coros={"inp": source_of([0]), "flood": flood, "out": slow_sink},
        props={"out": {"queue_size": 10}},
    )
    result = await Plumber(graph).run()
    assert len(leads) == 5000
    # one chunk of 10 in the generator's hands, 10 in the queue, a batch of 10 in the sink's
    assert max(leads) <= 30
    assert (result["flood"].items_in, result["flood"].items_out, result["flood"].completed) == (1, 5000, 1)


async def test_a_generator_node_retries_without_sending_twice() -> None:
    attempts = 0

    async def flaky(processor: Processor, q_elt: tuple[int]) -> Any:
        nonlocal attempts
        attempts += 1
        for i in range(25):
            if attempts == 1 and i == 17:
                raise ConnectionError("reset")
            yield i

    seen, sink = collector()
    graph = chain(
        "inp",
        "g",
        "out",
        coros={"inp": source_of([0]), "g": flaky, "out": sink},
        props={"g": {"retry": {"max_attempts": 2, "backoff_factor": 0}}, "out": {"queue_size": 5}},
    )
    result = await Plumber(graph).run()
    assert seen == [(i,) for i in range(25)]
    assert (attempts, result["g"].retried, result["g"].items_out) == (2, 1, 25)


globals().update(trio_twins(globals()))
