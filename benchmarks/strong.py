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
one node with four workers, the diamond join) against the same written with batch channels
(`SharedChannel` where several tasks put or take), each pipelines row against its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from itertools import pairwise
from types import MethodType
from typing import Any

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
from .harness import Case, Config, Trial, alternate, timed
from .report import Row, throughput_rows

__all__ = [
    "B14",
    "BatchChannel",
    "SharedChannel",
    "batch_chain",
    "batch_diamond",
    "batch_merge",
    "batch_workers",
    "draining_chain",
    "list_chain",
]

BOUND = 100
_END = object()


async def _add_one(x: int) -> int:
    return x + 1


class BatchChannel:
    """A bounded channel that hands everything waiting to its consumer in one swap.

    One producer and one consumer, so one waiter per side. A put that finds room does not
    suspend; a producer waits only while `bound` items are waiting.
    """

    __slots__ = ("_bound", "_closed", "_getter", "_items", "_putter")

    def __init__(self, bound: int = BOUND) -> None:
        self._items: list[Any] = []
        self._bound = bound
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None
        self._closed = False

    async def put(self, item: Any) -> None:
        while len(self._items) >= self._bound:
            await self._wait_for_room()
        self._items.append(item)
        self._wake_getter()

    async def put_many(self, items: list[Any]) -> None:
        while len(self._items) >= self._bound:
            await self._wait_for_room()
        self._items += items
        self._wake_getter()

    async def get_all(self) -> list[Any]:
        """Everything waiting, at least one item; [] once closed and empty."""
        while not self._items:
            if self._closed:
                return []
            self._getter = asyncio.get_running_loop().create_future()
            await self._getter
        items, self._items = self._items, []
        putter, self._putter = self._putter, None
        if putter is not None and not putter.done():
            putter.set_result(None)
        return items

    def close(self) -> None:
        self._closed = True
        self._wake_getter()

    async def _wait_for_room(self) -> None:
        self._putter = asyncio.get_running_loop().create_future()
        await self._putter

    def _wake_getter(self) -> None:
        getter, self._getter = self._getter, None
        if getter is not None and not getter.done():
            getter.set_result(None)


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

    async with asyncio.TaskGroup() as group:
        group.create_task(produce())
        for inbox, outbox in pairwise(channels):
            group.create_task(stage(inbox, outbox, _add_one))
        result = group.create_task(total())
    return result.result()


class SharedChannel(BatchChannel):
    """A BatchChannel several tasks put into and take from: a queue of waiters on each side, and
    closed once each of its `producers` has closed it. A take still takes everything waiting."""

    __slots__ = ("_getters", "_open", "_putters")

    def __init__(self, producers: int, bound: int = BOUND) -> None:
        super().__init__(bound)
        self._open = producers
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()

    async def put(self, item: Any) -> None:
        while len(self._items) >= self._bound:
            await self._room()
        self._items.append(item)
        if self._getters:
            _wake(self._getters, one=True)

    async def put_many(self, items: list[Any]) -> None:
        while len(self._items) >= self._bound:
            await self._room()
        self._items += items
        if self._getters:
            _wake(self._getters, one=True)

    async def _room(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._putters.append(waiter)
        await waiter

    async def get_all(self) -> list[Any]:
        while not self._items:
            if self._open == 0:
                return []
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            await waiter
        items, self._items = self._items, []
        if self._putters:
            _wake(self._putters)
        if self._getters and self._open == 0:
            _wake(self._getters)
        return items

    def close(self) -> None:
        self._open -= 1
        if self._open == 0:
            while self._getters:
                _wake(self._getters)


def _wake(waiters: deque[asyncio.Future[None]], *, one: bool = False) -> None:
    """Wake every waiter (or `one`): each looks again (the putters at the room, a getter at the items)."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            if one:
                return


async def batch_merge(n: int, branches: int) -> int:
    """B2's merge with batch channels: source -> `branches` x + 1 tasks -> one summing sink."""
    heads = [BatchChannel() for _ in range(branches)]
    merged = SharedChannel(branches)

    async def produce() -> None:
        for i in range(n):
            for head in heads:
                await head.put(i)
        for head in heads:
            head.close()

    async def stage(inbox: BatchChannel) -> None:
        while batch := await inbox.get_all():
            await merged.put_many([await _add_one(x) for x in batch])
        merged.close()

    async with asyncio.TaskGroup() as group:
        group.create_task(produce())
        for head in heads:
            group.create_task(stage(head))
        result = group.create_task(_total(merged))
    return result.result()


async def batch_workers(n: int, workers: int) -> int:
    """B2's `workers=4` with batch channels: source -> `workers` x + 1 tasks sharing one input -> sink."""
    inbox = SharedChannel(1)
    outbox = SharedChannel(workers)

    async def produce() -> None:
        for i in range(n):
            await inbox.put(i)
        inbox.close()

    async def stage() -> None:
        while batch := await inbox.get_all():
            await outbox.put_many([await _add_one(x) for x in batch])
        outbox.close()

    async with asyncio.TaskGroup() as group:
        group.create_task(produce())
        for _ in range(workers):
            group.create_task(stage())
        result = group.create_task(_total(outbox))
    return result.result()


async def batch_diamond(n: int) -> int:
    """B3's diamond with batch channels: (seq, x) to x + 1 and 2x, their results paired again by
    sequence number in a dict; returns the number of right pairs."""
    left, right, joined = BatchChannel(), BatchChannel(), SharedChannel(2)

    async def produce() -> None:
        for seq in range(n):
            await left.put((seq, seq))
            await right.put((seq, seq))
        left.close()
        right.close()

    async def branch(inbox: BatchChannel, side: int, fn: Callable[[int], Awaitable[int]]) -> None:
        while batch := await inbox.get_all():
            await joined.put_many([(seq, side, await fn(x)) for seq, x in batch])
        joined.close()

    async def join() -> int:
        waiting: dict[int, int] = {}
        right_pairs = 0
        while batch := await joined.get_all():
            for seq, side, value in batch:
                other = waiting.pop(seq, None)
                if other is None:
                    waiting[seq] = value
                    continue
                plus, twice = (value, other) if side == 0 else (other, value)
                right_pairs += 2 * (plus - 1) == twice
        return right_pairs

    async with asyncio.TaskGroup() as group:
        group.create_task(produce())
        group.create_task(branch(left, 0, _add_one))
        group.create_task(branch(right, 1, _double))
        result = group.create_task(join())
    return result.result()


async def _double(x: int) -> int:
    return 2 * x


async def _total(last: BatchChannel) -> int:
    result = 0
    while batch := await last.get_all():
        result += sum(batch)
    return result


async def list_chain(n: int, stages: int) -> int:
    """source -> `stages` tasks -> a summing sink, passing lists of up to BOUND items through Queue(1)."""
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(1) for _ in range(stages + 1)]

    async def produce() -> None:
        for start in range(0, n, BOUND):
            await queues[0].put(list(range(start, min(n, start + BOUND))))
        await queues[0].put(_END)

    async def stage(inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any]) -> None:
        while (batch := await inbox.get()) is not _END:
            await outbox.put([await _add_one(x) for x in batch])
        await outbox.put(_END)

    async def total() -> int:
        result = 0
        while (batch := await queues[-1].get()) is not _END:
            result += sum(batch)
        return result

    async with asyncio.TaskGroup() as group:
        group.create_task(produce())
        for inbox, outbox in pairwise(queues):
            group.create_task(stage(inbox, outbox))
        result = group.create_task(total())
    return result.result()


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

    async with asyncio.TaskGroup() as group:
        group.create_task(produce())
        for inbox, outbox in pairwise(queues):
            group.create_task(stage(inbox, outbox))
        result = group.create_task(total())
    return result.result()


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


SHAPES = {
    "merge": ("B2's merge of 4: pipelines", "B2's merge of 4: batch channels"),
    "workers": ("B2's workers=4: pipelines", "B2's workers=4: batch channels"),
    "diamond": ("B3's diamond join: pipelines", "B3's diamond join: batch channels (seq dict)"),
}
STAGE_COUNTS = (3, 30)
B14_TITLE = "strong baselines: B1's chain (3 and 30 stages), B2's and B3's shapes against hand-written batching code"
B14_LABELS = (
    *(label for stages in STAGE_COUNTS for label in _labels(stages).values()),
    *(label for pair in SHAPES.values() for label in pair),
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


def _shape_trials(n: int) -> dict[str, tuple[Trial, Trial]]:
    """B2's and B3's graphs (pipelines, as in those cases) and the same with batch channels."""
    plain_sum = n * (n - 1) // 2 + n
    return {
        "merge": (
            timed(pipeline(partial(fan_out, n, 4, 1)), 4 * plain_sum),
            timed(partial(batch_merge, n, 4), 4 * plain_sum),
        ),
        "workers": (
            timed(pipeline(partial(chain, n, 1, properties={"workers": 4})), plain_sum),
            timed(partial(batch_workers, n, 4), plain_sum),
        ),
        "diamond": (timed(pipeline(partial(diamond, n)), n), timed(partial(batch_diamond, n), n)),
    }


def _run_b14(config: Config) -> list[Row]:
    rows: list[Row] = []
    for stages, full in zip(STAGE_COUNTS, (200_000, 50_000), strict=True):
        n = config.size(full, 1_000)
        trials, references = _trials(n, stages)
        rows += throughput_rows("B14", n, alternate(trials, config.rounds), references)
    n = config.size(100_000, 1_000)
    for key, (ours, theirs) in _shape_trials(n).items():
        label, batch = SHAPES[key]
        results = alternate({label: ours, batch: theirs}, config.rounds)
        rows += throughput_rows("B14", n, results, {label: batch, batch: None})
    return rows


B14 = Case("B14", B14_TITLE, B14_LABELS, _run_b14)
