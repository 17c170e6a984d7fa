"""Other asyncio stream libraries running the B1 chain: aiostream and pypeln (the `bench` extra).

They are imported only when their row runs; the library itself never imports them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["aiostream_chain", "pypeln_chain"]


async def _add_one(x: int) -> int:
    return x + 1


def aiostream_chain(stages: int, task_limit: int | None) -> Callable[[int], Awaitable[int]]:
    """`stream.iterate(range(n))` piped through `stages` `pipe.map(add_one)`, summed.

    task_limit=None is aiostream's default: a task per item, any number at once; 1 maps one item
    at a time, like a single consumer per stage.
    """
    from aiostream import pipe, stream

    async def run(n: int) -> int:
        mapper: Any = _add_one  # aiostream's overloads want a variadic callable
        xs = stream.iterate(range(n))
        for _ in range(stages):
            xs = xs | pipe.map(mapper, task_limit=task_limit)
        total = 0
        async with xs.stream() as items:
            async for x in items:
                total += x
        return total

    return run


def pypeln_chain(stages: int, maxsize: int) -> Callable[[int], Awaitable[int]]:
    """`stages` chained `pypeln.task.map(add_one, workers=1, maxsize=maxsize)`, summed."""
    import pypeln  # type: ignore[import-untyped]

    async def run(n: int) -> int:
        stage = pypeln.task.map(_add_one, range(n), workers=1, maxsize=maxsize)
        for _ in range(stages - 1):
            stage = pypeln.task.map(_add_one, stage, workers=1, maxsize=maxsize)
        total = 0
        async for x in stage:
            total += x
        return total

    return run
