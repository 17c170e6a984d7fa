"""B14's hand-written references for B2's merge of 4, B2's workers=4 and B3's diamond join."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .batch_channels import BOUND, BatchChannel, SharedChannel
from .harness import in_tasks

__all__ = [
    "batch_diamond",
    "batch_merge",
    "batch_workers",
    "draining_diamond",
    "draining_merge",
    "draining_workers",
    "floor_diamond",
    "floor_merge",
    "floor_workers",
    "list_diamond",
    "list_merge",
    "list_workers",
]

_END = object()


async def _add_one(x: int) -> int:
    return x + 1


async def _double(x: int) -> int:
    return 2 * x


# -- B2's merge: source -> `branches` x + 1 tasks -> one summing sink -------------------------


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

    return await in_tasks(_total(merged), produce(), *(stage(head) for head in heads))


async def list_merge(n: int, branches: int) -> int:
    """B2's merge with lists of up to BOUND items through Queue(1): the source hands each list to
    every branch, and the sink counts one end per branch."""
    heads: list[asyncio.Queue[Any]] = [asyncio.Queue(1) for _ in range(branches)]
    merged: asyncio.Queue[Any] = asyncio.Queue(1)

    async def produce() -> None:
        async for batch in _lists(n):  # read only: the branches share each
            for head in heads:
                await head.put(batch)
        for head in heads:
            await head.put(_END)

    return await in_tasks(_list_total(merged, branches), produce(), *(_list_stage(head, merged) for head in heads))


async def draining_merge(n: int, branches: int) -> int:
    """B2's merge over Queue(BOUND)s drained with get_nowait and fed with put_nowait while there is
    room; the sink counts one end per branch."""
    heads: list[asyncio.Queue[Any]] = [asyncio.Queue(BOUND) for _ in range(branches)]
    merged: asyncio.Queue[Any] = asyncio.Queue(BOUND)

    async def produce() -> None:
        for i in range(n):
            for head in heads:
                if head.full():
                    await head.put(i)
                else:
                    head.put_nowait(i)
        for head in heads:
            await head.put(_END)

    return await in_tasks(
        _draining_total(merged, branches), produce(), *(_draining_stage(head, merged) for head in heads)
    )


async def floor_merge(n: int, branches: int) -> int:
    """The merge's floor: no queue and no task, one loop awaiting the `branches` x + 1 coroutines per
    item and adding their results."""
    result = 0
    for i in range(n):
        for _ in range(branches):
            result += await _add_one(i)
    return result


# -- B2's workers=4: source -> one x + 1 stage run by `workers` tasks sharing its input -> sink -


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

    return await in_tasks(_total(outbox), produce(), *(stage() for _ in range(workers)))


async def list_workers(n: int, workers: int) -> int:
    """B2's `workers=4` with lists of up to BOUND items: the workers share one input Queue(1), each
    taking a list at a time, and one output Queue(1); one end per worker each way."""
    inbox: asyncio.Queue[Any] = asyncio.Queue(1)
    outbox: asyncio.Queue[Any] = asyncio.Queue(1)

    async def produce() -> None:
        async for batch in _lists(n):
            await inbox.put(batch)
        for _ in range(workers):
            await inbox.put(_END)

    return await in_tasks(
        _list_total(outbox, workers), produce(), *(_list_stage(inbox, outbox) for _ in range(workers))
    )


async def draining_workers(n: int, workers: int) -> int:
    """B2's `workers=4` over Queue(BOUND)s drained with get_nowait and fed with put_nowait: the
    workers share one input and one output; one end per worker each way."""
    inbox: asyncio.Queue[Any] = asyncio.Queue(BOUND)
    outbox: asyncio.Queue[Any] = asyncio.Queue(BOUND)

    async def produce() -> None:
        for i in range(n):
            if inbox.full():
                await inbox.put(i)
            else:
                inbox.put_nowait(i)
        for _ in range(workers):
            await inbox.put(_END)

    return await in_tasks(
        _draining_total(outbox, workers), produce(), *(_draining_stage(inbox, outbox) for _ in range(workers))
    )


async def floor_workers(n: int) -> int:
    """The floor of `workers=4`: one loop awaiting the x + 1 coroutine per item. A node that never
    waits has no concurrency for workers to use, so the floor has none either."""
    result = 0
    for i in range(n):
        result += await _add_one(i)
    return result


# -- B3's diamond: (seq, x) to x + 1 and 2x, paired again by sequence number in a dict --------


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
            right_pairs += _pair_up(batch, waiting)
        return right_pairs

    return await in_tasks(join(), produce(), branch(left, 0, _add_one), branch(right, 1, _double))


async def list_diamond(n: int) -> int:
    """B3's diamond with lists of up to BOUND (seq, x) through Queue(1): each list to both branches,
    their lists of (seq, side, result) paired by sequence number in a dict; the number of right pairs."""
    left: asyncio.Queue[Any] = asyncio.Queue(1)
    right: asyncio.Queue[Any] = asyncio.Queue(1)
    joined: asyncio.Queue[Any] = asyncio.Queue(1)

    async def produce() -> None:
        batch: list[tuple[int, int]] = []
        for seq in range(n):  # item by item, as in _lists
            batch.append((seq, seq))
            if len(batch) == BOUND:
                await left.put(batch)  # read only: the branches share it
                await right.put(batch)
                batch = []
        if batch:
            await left.put(batch)
            await right.put(batch)
        await left.put(_END)
        await right.put(_END)

    async def branch(inbox: asyncio.Queue[Any], side: int, fn: Callable[[int], Awaitable[int]]) -> None:
        while (batch := await inbox.get()) is not _END:
            await joined.put([(seq, side, await fn(x)) for seq, x in batch])
        await joined.put(_END)

    async def join() -> int:
        waiting: dict[int, int] = {}
        right_pairs = 0
        ends = 2
        while ends:
            batch = await joined.get()
            if batch is _END:
                ends -= 1
            else:
                right_pairs += _pair_up(batch, waiting)
        return right_pairs

    return await in_tasks(join(), produce(), branch(left, 0, _add_one), branch(right, 1, _double))


async def draining_diamond(n: int) -> int:
    """B3's diamond over Queue(BOUND)s drained with get_nowait and fed with put_nowait: (seq, x) to
    both branches, (seq, side, result) paired by sequence number in a dict; the number of right pairs."""
    left: asyncio.Queue[Any] = asyncio.Queue(BOUND)
    right: asyncio.Queue[Any] = asyncio.Queue(BOUND)
    joined: asyncio.Queue[Any] = asyncio.Queue(BOUND)

    async def produce() -> None:
        for seq in range(n):
            item = (seq, seq)  # read only: shared by the branches
            for outbox in (left, right):
                if outbox.full():
                    await outbox.put(item)
                else:
                    outbox.put_nowait(item)
        await left.put(_END)
        await right.put(_END)

    async def branch(inbox: asyncio.Queue[Any], side: int, fn: Callable[[int], Awaitable[int]]) -> None:
        while True:
            item = await inbox.get()
            while item is not _END:
                seq, x = item
                out = (seq, side, await fn(x))
                if joined.full():
                    await joined.put(out)
                else:
                    joined.put_nowait(out)
                if inbox.empty():
                    break
                item = inbox.get_nowait()
            else:
                await joined.put(_END)
                return

    async def join() -> int:
        waiting: dict[int, int] = {}
        right_pairs = 0
        ends = 2
        while ends:
            item = await joined.get()
            while True:
                if item is _END:
                    ends -= 1
                else:
                    seq, side, value = item
                    other = waiting.pop(seq, None)
                    if other is None:
                        waiting[seq] = value
                    else:
                        plus, twice = (value, other) if side == 0 else (other, value)
                        right_pairs += 2 * (plus - 1) == twice
                if joined.empty():
                    break
                item = joined.get_nowait()
        return right_pairs

    return await in_tasks(join(), produce(), branch(left, 0, _add_one), branch(right, 1, _double))


async def floor_diamond(n: int) -> int:
    """The diamond's floor: no queue, no task and no dict, one loop awaiting x + 1 and 2x per item
    and checking the pair; the number of right pairs."""
    right_pairs = 0
    for x in range(n):
        plus = await _add_one(x)
        twice = await _double(x)
        right_pairs += 2 * (plus - 1) == twice
    return right_pairs


# -- shared by the references above ----------------------------------------------------------


async def _lists(n: int) -> AsyncIterator[list[int]]:
    """range(n) in lists of up to BOUND built item by item (as every other contender's source gives
    its items one at a time), each list a new one."""
    batch: list[int] = []
    for i in range(n):
        batch.append(i)
        if len(batch) == BOUND:
            yield batch
            batch = []
    if batch:
        yield batch


async def _total(last: BatchChannel) -> int:
    result = 0
    while batch := await last.get_all():
        result += sum(batch)
    return result


async def _list_stage(inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any]) -> None:
    """Map each list from `inbox` with x + 1 onto `outbox` until an end, then hand one end on."""
    while (batch := await inbox.get()) is not _END:
        await outbox.put([await _add_one(x) for x in batch])
    await outbox.put(_END)


async def _list_total(inbox: asyncio.Queue[Any], ends: int) -> int:
    """The sum of the lists from `inbox`, once `ends` ends have come."""
    result = 0
    while ends:
        batch = await inbox.get()
        if batch is _END:
            ends -= 1
        else:
            result += sum(batch)
    return result


async def _draining_stage(inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any]) -> None:
    """x + 1 each item waiting in `inbox` onto `outbox` (put_nowait while there is room), then wait
    for more; at an end, hand one end on and stop."""
    while True:
        x = await inbox.get()
        while x is not _END:
            out = await _add_one(x)
            if outbox.full():
                await outbox.put(out)
            else:
                outbox.put_nowait(out)
            if inbox.empty():
                break
            x = inbox.get_nowait()
        else:
            await outbox.put(_END)
            return


async def _draining_total(inbox: asyncio.Queue[Any], ends: int) -> int:
    """The sum of the items from `inbox`, drained with get_nowait, once `ends` ends have come."""
    result = 0
    while ends:
        x = await inbox.get()
        while True:
            if x is _END:
                ends -= 1
            else:
                result += x
            if inbox.empty():
                break
            x = inbox.get_nowait()
    return result


def _pair_up(items: list[tuple[int, int, int]], waiting: dict[int, int]) -> int:
    """Pair each (seq, side, value) with the other side's value waiting under seq, or leave it
    waiting there; the number of right pairs made (side 0's x + 1 and side 1's 2x of one x)."""
    right_pairs = 0
    for seq, side, value in items:
        other = waiting.pop(seq, None)
        if other is None:
            waiting[seq] = value
            continue
        plus, twice = (value, other) if side == 0 else (other, value)
        right_pairs += 2 * (plus - 1) == twice
    return right_pairs
