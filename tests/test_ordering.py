"""pipelines.ordering: the OrderGate that lets workers finishing out of order emit in ticket order."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Sequence
from typing import Any

import pytest

from pipelines.ordering import OrderGate, Turn


def completes_at_once(coro: Coroutine[Any, Any, None]) -> bool:
    """Whether `coro` returns without suspending (it is closed if it would suspend)."""
    try:
        coro.send(None)
    except StopIteration:
        return True
    coro.close()
    return False


async def emit_in_turn(finish_order: Sequence[int]) -> list[int]:
    """Workers holding tickets 0..n-1 finish in `finish_order`; check after each what was emitted.
    Returns the tickets in the order they emitted."""
    gate = OrderGate()
    workers = len(finish_order)
    finish = [asyncio.Event() for _ in range(workers)]
    reached = [asyncio.Event() for _ in range(workers)]
    emitted: list[int] = []

    async def worker(ticket: int, turn: Turn) -> None:
        await finish[ticket].wait()  # stands for the work on the batch
        reached[ticket].set()
        await gate.wait_turn(turn)
        emitted.append(ticket)
        gate.done(turn)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(worker(i, gate.ticket())) for i in range(workers)]
        finished: set[int] = set()
        for ticket in finish_order:
            finish[ticket].set()
            finished.add(ticket)
            # the worker set `reached` and went into wait_turn in one step: it now waits or has emitted
            await reached[ticket].wait()
            turn = min(set(range(workers + 1)) - finished)
            await asyncio.gather(*tasks[:turn])
            assert emitted == list(range(turn))
            assert [task.done() for task in tasks] == [t < turn for t in range(workers)]
    return emitted


async def test_turns_come_in_the_order_the_tickets_were_taken() -> None:
    gate = OrderGate()
    turns = [gate.ticket() for _ in range(4)]
    for i, turn in enumerate(turns):
        assert completes_at_once(gate.wait_turn(turn))
        assert all(not completes_at_once(gate.wait_turn(later)) for later in turns[i + 1 :])
        gate.done(turn)


async def test_a_split_turn_comes_right_after_its_piece_and_before_later_tickets() -> None:
    gate = OrderGate()
    first, second = gate.ticket(), gate.ticket()
    after_first = gate.split(first)
    after_after = gate.split(after_first)
    after_second = gate.split(second)  # the last turn: a ticket taken now comes after it
    last = gate.ticket()
    order = [first, after_first, after_after, second, after_second, last]
    for i, turn in enumerate(order):
        assert completes_at_once(gate.wait_turn(turn))
        assert all(not completes_at_once(gate.wait_turn(later)) for later in order[i + 1 :])
        gate.done(turn)


def test_done_out_of_turn_is_a_bug_that_says_so() -> None:
    gate = OrderGate()
    gate.ticket()
    second = gate.ticket()
    with pytest.raises(AssertionError, match=r"^done\(\) out of turn"):
        gate.done(second)


async def test_workers_finishing_out_of_order_emit_in_ticket_order() -> None:
    assert await emit_in_turn([3, 1, 0, 2]) == [0, 1, 2, 3]


@pytest.mark.parametrize("finish_order", list(itertools.permutations(range(4))))
async def test_every_finishing_order_emits_in_ticket_order(finish_order: tuple[int, ...]) -> None:
    assert await emit_in_turn(finish_order) == [0, 1, 2, 3]


async def test_the_holder_of_the_turn_does_not_wait() -> None:
    gate = OrderGate()
    first, second, third = gate.ticket(), gate.ticket(), gate.ticket()
    assert completes_at_once(gate.wait_turn(first))
    assert not completes_at_once(gate.wait_turn(second))
    gate.done(first)
    # the turn passed while no one waited for it: the next ticket finds it
    assert completes_at_once(gate.wait_turn(second))
    assert not completes_at_once(gate.wait_turn(third))


async def test_a_cancelled_wait_turn_leaves_the_gate_usable() -> None:
    gate = OrderGate()
    first, second, third = gate.ticket(), gate.ticket(), gate.ticket()
    entered = asyncio.Event()

    async def wait_second() -> None:
        entered.set()
        await gate.wait_turn(second)

    waiting = asyncio.ensure_future(wait_second())
    await entered.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()

    # the holder of `second` waits again, the holder of `third` waits behind it
    order: list[Turn] = []
    blocked = {second: asyncio.Event(), third: asyncio.Event()}

    async def take_turn(ticket: Turn) -> None:
        blocked[ticket].set()
        await gate.wait_turn(ticket)
        order.append(ticket)
        gate.done(ticket)

    async with asyncio.TaskGroup() as group:
        group.create_task(take_turn(third))
        group.create_task(take_turn(second))
        await blocked[second].wait()
        await blocked[third].wait()
        assert order == []
        order.append(first)
        gate.done(first)
    assert order == [first, second, third]


async def test_a_wait_cancelled_when_no_turn_came_lets_the_turn_pass_later() -> None:
    gate = OrderGate()
    first, second = gate.ticket(), gate.ticket()
    entered = asyncio.Event()

    async def wait_second() -> None:
        entered.set()
        await gate.wait_turn(second)

    waiting = asyncio.ensure_future(wait_second())
    await entered.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.done(first)  # no one waits for `second` any more: nothing to wake
    assert completes_at_once(gate.wait_turn(second))
    gate.done(second)
    assert completes_at_once(gate.wait_turn(gate.ticket()))


async def test_a_wait_cancelled_after_its_turn_came_keeps_the_turn_for_its_ticket() -> None:
    gate = OrderGate()
    first, second = gate.ticket(), gate.ticket()
    entered = asyncio.Event()

    async def wait_second() -> None:
        entered.set()
        await gate.wait_turn(second)

    waiting = asyncio.ensure_future(wait_second())
    await entered.wait()
    gate.done(first)  # wakes the waiter, which is cancelled before it runs again
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert completes_at_once(gate.wait_turn(second))
