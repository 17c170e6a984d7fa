"""B14 strong baselines: B1's chain against what a skilled engineer writes by hand to go fast.

The naive reference of B1 (`asyncio.Queue(100)`, one `get` and one `put` per item) flatters us.
These are the strong ones, our own code, each a task per node and the same checksum:

- a batch channel: a list swapped whole from producer to consumer, one waiter per side, bounded;
- lists of up to 100 items through `asyncio.Queue(1)`;
- `asyncio.Queue(100)` drained with `get_nowait` and fed with `put_nowait` while there is room;
- the floor: no queue and no task, one loop awaiting the stage coroutines per item; and two floors
  with B1's own functions (its source, its stages and its sink, called in one loop, in either
  style): what a fused run could reach with nothing of ours.

Rows: pipelines in both styles, without and with fusion (``Plumber(fuse=True)``: the whole chain in
the source's task, pipelines.fusion), and every baseline, for three stages and for thirty; each
against the batch channel of the same length. Then B2's and B3's graphs (a merge of four branches,
one node with four workers, the diamond join), each run by pipelines and written by hand in the same
four ways (benchmarks/strong_graphs.py; the batch channels are `SharedChannel`s where several tasks
put or take), every row against the batch channels of the same graph.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from itertools import pairwise
from types import MethodType
from typing import Any

from .batch_channels import BOUND, BatchChannel
from .graphs import (
    Total,
    add_one,
    add_one_q,
    chain,
    count_up,
    diamond,
    fan_out,
    into_total,
    into_total_q,
    numbers,
    pipeline,
    processor_chain,
)
from .harness import Case, Config, Trial, alternate, in_tasks, timed
from .report import Row, throughput_rows
from .strong_graphs import (
    batch_diamond,
    batch_merge,
    batch_workers,
    draining_diamond,
    draining_merge,
    draining_workers,
    floor_diamond,
    floor_merge,
    floor_workers,
    list_diamond,
    list_merge,
    list_workers,
)

__all__ = ["B14", "batch_chain", "draining_chain", "list_chain"]

_END = object()


async def _add_one(x: int) -> int:
    return x + 1


async def batch_chain(n: int, stages: int) -> int:
    """source -> `stages` x + 1 tasks -> a summing sink, joined by BatchChannels."""
    channels = [BatchChannel() for _ in range(stages + 1)]

    async def produce() -> None:
        first = channels[0]
        for i in range(n):
            await first.put(i)
        first.close()

    async def stage(inbox: BatchChannel, outbox: BatchChannel, fn: Callable[[int], Awaitable[int]]) -> None:
        while batch := await inbox.get_all():
            await outbox.put_many([await fn(x) for x in batch])
        outbox.close()

    async def total() -> int:
        result = 0
        last = channels[-1]
        while batch := await last.get_all():
            result += sum(batch)
        return result

    return await in_tasks(total(), produce(), *(stage(inbox, outbox, _add_one) for inbox, outbox in pairwise(channels)))


async def list_chain(n: int, stages: int) -> int:
    """source -> `stages` tasks -> a summing sink, passing lists of up to BOUND items through Queue(1)."""
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(1) for _ in range(stages + 1)]

    async def produce() -> None:
        first, batch = queues[0], []
        for i in range(n):  # item by item, as every other contender's source gives them
            batch.append(i)
            if len(batch) == BOUND:
                await first.put(batch)
                batch = []
        if batch:
            await first.put(batch)
        await first.put(_END)

    async def stage(inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any]) -> None:
        while (batch := await inbox.get()) is not _END:
            await outbox.put([await _add_one(x) for x in batch])
        await outbox.put(_END)

    async def total() -> int:
        result = 0
        while (batch := await queues[-1].get()) is not _END:
            result += sum(batch)
        return result

    return await in_tasks(total(), produce(), *(stage(inbox, outbox) for inbox, outbox in pairwise(queues)))


async def draining_chain(n: int, stages: int) -> int:
    """source -> `stages` tasks -> a summing sink over Queue(BOUND), each task draining what waits
    with get_nowait and handing on with put_nowait while there is room."""
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(BOUND) for _ in range(stages + 1)]

    async def produce() -> None:
        first = queues[0]
        for i in range(n):
            if first.full():
                await first.put(i)
            else:
                first.put_nowait(i)
        await first.put(_END)

    async def stage(inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any]) -> None:
        while True:
            x = await inbox.get()
            while True:
                out = _END if x is _END else await _add_one(x)
                if outbox.full():
                    await outbox.put(out)
                else:
                    outbox.put_nowait(out)
                if x is _END:
                    return
                if inbox.empty():
                    break
                x = inbox.get_nowait()

    async def total() -> int:
        result = 0
        last = queues[-1]
        while True:
            x = await last.get()
            while x is not _END:
                result += x
                if last.empty():
                    break
                x = last.get_nowait()
            else:
                return result

    return await in_tasks(total(), produce(), *(stage(inbox, outbox) for inbox, outbox in pairwise(queues)))


async def floor(n: int, stages: int) -> int:
    """No queue and no task: one loop awaiting `stages` x + 1 coroutines per item."""
    result = 0
    for i in range(n):
        x = i
        for _ in range(stages):
            x = await _add_one(x)
        result += x
    return result


async def item_floor(n: int, stages: int) -> int:
    """The floor with B1's own functions: its source generator, `stages` awaits of its x + 1 and a
    call of its sink per item, in one loop: what fusion could reach, with nothing of ours."""
    total = Total()
    async for x in numbers(n):
        for _ in range(stages):
            x = await add_one(x)
        await into_total(x, total)
    return total.value


async def original_floor(n: int, stages: int) -> int:
    """The floor of the original style: its source awaits `put` per item, and each put awaits the
    stage functions in turn, each given the processor and a 1-tuple. The processor is bound as a
    method's self (types.MethodType), the cheapest way to bind it, as pipelines binds it (a
    functools.partial costs about 20 ns more a call)."""
    total = Total()
    processor = object()  # the stages do not look at it
    calls = [MethodType(add_one_q, processor) for _ in range(stages)]

    class Through:
        async def put(self, x: int) -> None:
            for call in calls:
                x = await call((x,))
            await into_total_q(None, (x,), total)  # type: ignore[arg-type]

    await count_up(None, Through(), n)  # type: ignore[arg-type]
    return total.value


def _labels(stages: int) -> dict[str, str]:
    return {
        "processor": f"{stages} stages: pipelines, f(processor, q_elt)",
        "item": f"{stages} stages: pipelines, @node f(item)",
        "processor fused": f"{stages} stages: pipelines fused, f(processor, q_elt)",
        "item fused": f"{stages} stages: pipelines fused, @node f(item)",
        "batch": f"{stages} stages: batch channel (list swap)",
        "lists": f"{stages} stages: lists of 100 through Queue(1)",
        "drain": f"{stages} stages: Queue(100) drained with get_nowait",
        "floor": f"{stages} stages: floor, one loop awaiting per item",
        "item floor": f"{stages} stages: floor with B1's source and sink functions",
        "original floor": f"{stages} stages: floor of the original style (put, bound method)",
    }


def _shape_labels(graph: str, batch: str) -> dict[str, str]:
    return {
        "pipelines": f"{graph}: pipelines",
        "batch": f"{graph}: {batch}",
        "lists": f"{graph}: lists of 100 through Queue(1)",
        "drain": f"{graph}: Queue(100) drained with get_nowait",
        "floor": f"{graph}: floor, one loop awaiting per item",
    }


SHAPES = {
    "merge": _shape_labels("B2's merge of 4", "batch channels"),
    "workers": _shape_labels("B2's workers=4", "batch channels"),
    "diamond": _shape_labels("B3's diamond join", "batch channels (seq dict)"),
}
STAGE_COUNTS = (3, 30)
B14_TITLE = "strong baselines: B1's chain (3 and 30 stages), B2's and B3's shapes against hand-written batching code"
B14_LABELS = (
    *(label for stages in STAGE_COUNTS for label in _labels(stages).values()),
    *(label for labels in SHAPES.values() for label in labels.values()),
)


def _trials(n: int, stages: int) -> tuple[dict[str, Trial], dict[str, str | None]]:
    want = n * (n - 1) // 2 + stages * n
    labels = _labels(stages)
    makes: dict[str, Callable[[], Awaitable[Any]]] = {
        "processor": pipeline(partial(processor_chain, n, stages)),
        "item": pipeline(partial(chain, n, stages)),
        "processor fused": pipeline(partial(processor_chain, n, stages), fuse=True),
        "item fused": pipeline(partial(chain, n, stages), fuse=True),
        "batch": partial(batch_chain, n, stages),
        "lists": partial(list_chain, n, stages),
        "drain": partial(draining_chain, n, stages),
        "floor": partial(floor, n, stages),
        "item floor": partial(item_floor, n, stages),
        "original floor": partial(original_floor, n, stages),
    }
    trials = {labels[key]: timed(make, want) for key, make in makes.items()}
    references: dict[str, str | None] = {label: labels["batch"] for label in labels.values()}
    references[labels["batch"]] = None
    return trials, references


def _shape_trials(n: int) -> dict[str, tuple[dict[str, Trial], dict[str, str | None]]]:
    """B2's and B3's graphs, each run by pipelines (as in those cases) and by every hand-written
    reference, against the batch channels of the same graph."""
    plain_sum = n * (n - 1) // 2 + n
    graphs: dict[str, tuple[int, dict[str, Callable[[], Awaitable[Any]]]]] = {
        "merge": (
            4 * plain_sum,
            {
                "pipelines": pipeline(partial(fan_out, n, 4, 1)),
                "batch": partial(batch_merge, n, 4),
                "lists": partial(list_merge, n, 4),
                "drain": partial(draining_merge, n, 4),
                "floor": partial(floor_merge, n, 4),
            },
        ),
        "workers": (
            plain_sum,
            {
                "pipelines": pipeline(partial(chain, n, 1, properties={"workers": 4})),
                "batch": partial(batch_workers, n, 4),
                "lists": partial(list_workers, n, 4),
                "drain": partial(draining_workers, n, 4),
                "floor": partial(floor_workers, n),
            },
        ),
        "diamond": (
            n,  # every pair right
            {
                "pipelines": pipeline(partial(diamond, n)),
                "batch": partial(batch_diamond, n),
                "lists": partial(list_diamond, n),
                "drain": partial(draining_diamond, n),
                "floor": partial(floor_diamond, n),
            },
        ),
    }
    shapes: dict[str, tuple[dict[str, Trial], dict[str, str | None]]] = {}
    for shape, (want, makes) in graphs.items():
        labels = SHAPES[shape]
        references: dict[str, str | None] = {label: labels["batch"] for label in labels.values()}
        references[labels["batch"]] = None
        shapes[shape] = ({labels[key]: timed(make, want) for key, make in makes.items()}, references)
    return shapes


def _run_b14(config: Config) -> list[Row]:
    rows: list[Row] = []
    for stages, full in zip(STAGE_COUNTS, (200_000, 50_000), strict=True):
        n = config.size(full, 1_000)
        trials, references = _trials(n, stages)
        rows += throughput_rows("B14", n, alternate(trials, config.rounds), references)
    n = config.size(100_000, 1_000)
    for trials, references in _shape_trials(n).values():
        rows += throughput_rows("B14", n, alternate(trials, config.rounds), references)
    return rows


B14 = Case("B14", B14_TITLE, B14_LABELS, _run_b14)
