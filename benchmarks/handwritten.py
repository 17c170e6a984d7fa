"""The references: the same graphs written by hand with asyncio.Queue, a task per node.

Ends are signalled with a sentinel; a node fed by several producers counts their sentinels. Each
function returns the same checksum as the pipelines graph it stands beside.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from itertools import pairwise
from typing import Any

from .graphs import LATENCY
from .harness import in_tasks

__all__ = ["chain", "diamond", "fan_out", "floor", "sleep_waves", "workers"]

QUEUE_SIZE = 100
_END = object()


async def _add_one(x: int) -> int:
    return x + 1


async def _double(x: int) -> int:
    return 2 * x


async def _sleepy(x: int) -> int:
    await asyncio.sleep(LATENCY)
    return x


async def _produce(n: int, outboxes: list[asyncio.Queue[Any]], ends: int = 1) -> None:
    for i in range(n):
        for outbox in outboxes:
            await outbox.put(i)
    for outbox in outboxes:
        for _ in range(ends):
            await outbox.put(_END)


async def _stage(inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any], fn: Callable[[int], Awaitable[int]]) -> None:
    while (x := await inbox.get()) is not _END:
        await outbox.put(await fn(x))
    await outbox.put(_END)


async def _sum(inbox: asyncio.Queue[Any], producers: int = 1, *, slow: bool = False) -> int:
    total = 0
    ends = 0
    while ends < producers:
        x = await inbox.get()
        if x is _END:
            ends += 1
        else:
            if slow:
                await asyncio.sleep(0)
            total += x
    return total


async def chain(n: int, stages: int, *, queue_size: int = QUEUE_SIZE, slow_sink: bool = False) -> int:
    """source -> `stages` x + 1 tasks -> a summing sink, joined by asyncio.Queue(queue_size).

    `queue_size=0` makes every queue unbounded, as in the original library.
    """
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(queue_size) for _ in range(stages + 1)]
    return await in_tasks(
        _sum(queues[-1], slow=slow_sink),
        _produce(n, queues[:1]),
        *(_stage(inbox, outbox, _add_one) for inbox, outbox in pairwise(queues)),
    )


async def floor(n: int) -> int:
    """No queues and no tasks: a loop awaiting the three stage coroutines for each item."""
    total = 0
    for i in range(n):
        total += await _add_one(await _add_one(await _add_one(i)))
    return total


async def fan_out(n: int, branches: int, depth: int) -> int:
    """source -> `branches` chains of `depth` x + 1 tasks -> one sink merging them."""
    merged: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
    heads: list[asyncio.Queue[Any]] = []
    async with asyncio.TaskGroup() as group:
        for _ in range(branches):
            queues: list[asyncio.Queue[Any]] = [asyncio.Queue(QUEUE_SIZE) for _ in range(depth)]
            heads.append(queues[0])
            for inbox, outbox in zip(queues, [*queues[1:], merged], strict=True):
                group.create_task(_stage(inbox, outbox, _add_one))
        group.create_task(_produce(n, heads))
        total = group.create_task(_sum(merged, producers=branches))
    return total.result()


async def workers(n: int, count: int, *, io: bool = False) -> int:
    """source -> `count` worker tasks sharing one input queue -> a summing sink.

    The workers run x + 1, or with `io` await asyncio.sleep(LATENCY) and pass the item on.
    """
    inbox: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
    outbox: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
    fn = _sleepy if io else _add_one
    return await in_tasks(
        _sum(outbox, producers=count),
        _produce(n, [inbox], ends=count),
        *(_stage(inbox, outbox, fn) for _ in range(count)),
    )


async def sleep_waves(n: int, count: int) -> int:
    """No queues: the items in waves of `count` gathered sleeps, the best asyncio does with `count` at once."""
    total = 0
    for start in range(0, n, count):
        total += sum(await asyncio.gather(*(_sleepy(i) for i in range(start, min(n, start + count)))))
    return total


async def diamond(n: int) -> int:
    """source -> (x + 1, 2x) -> a join pairing the two results of each item by sequence number.

    Returns the number of right pairs, as the pipelines diamond does.
    """
    left: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
    right: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
    joined: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)

    async def produce() -> None:
        for seq in range(n):
            await left.put((seq, seq))
            await right.put((seq, seq))
        await left.put(_END)
        await right.put(_END)

    async def branch(inbox: asyncio.Queue[Any], side: int, fn: Callable[[int], Awaitable[int]]) -> None:
        while (message := await inbox.get()) is not _END:
            seq, x = message
            await joined.put((seq, side, await fn(x)))
        await joined.put(_END)

    async def join() -> int:
        waiting: dict[int, tuple[int, int]] = {}
        right_pairs = 0
        ends = 0
        while ends < 2:
            message = await joined.get()
            if message is _END:
                ends += 1
                continue
            seq, side, value = message
            other = waiting.pop(seq, None)
            if other is None:
                waiting[seq] = (side, value)
                continue
            plus, twice = (value, other[1]) if side == 0 else (other[1], value)
            right_pairs += 2 * (plus - 1) == twice
        return right_pairs

    return await in_tasks(join(), produce(), branch(left, 0, _add_one), branch(right, 1, _double))
