"""Node functions for the command-line tests' graph files (imported as tests.cli_nodes)."""

from __future__ import annotations

import asyncio
from typing import Any

from pipelines import node


@node
async def count(n: int) -> Any:
    for i in range(n):
        yield i


@node
async def endless() -> Any:
    i = 0
    while True:
        yield i
        i += 1
        await asyncio.sleep(0.001)


@node
async def double(x: int) -> int:
    return 2 * x


@node
async def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


@node
async def show(x: Any) -> None:
    print(x, flush=True)


@node
async def stuck_after(x: int, limit: int = 50) -> None:
    if x >= limit:
        await asyncio.Event().wait()


@node
async def drop(x: Any) -> None:
    pass


def block(x: int) -> int:
    """A blocking call that outlasts any test: a cancelled run must not wait for it."""
    import time

    time.sleep(120)
    return x


@node
async def exits(x: int) -> None:
    raise SystemExit(3)


# Written for @node, given without it: the graph expects f(processor, q_elt, **args).
async def triple_unmarked(x: int) -> int:
    return 3 * x


def halve_unmarked(x: int) -> float:
    return x / 2


async def count_unmarked(n: int) -> Any:
    for i in range(n):
        yield i


@node
async def keep_even(x: int) -> int | None:
    return x if x % 2 == 0 else None


@node
async def show_pair(pair: tuple[int, int]) -> None:
    print(pair[0] + pair[1], flush=True)
