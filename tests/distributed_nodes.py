"""Node functions for the distributed tests' graph files (imported as tests.distributed_nodes by workers)."""

from __future__ import annotations

import asyncio
import os
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
async def inc(x: int) -> int:
    return x + 1


@node
async def show(x: Any) -> None:
    print(x, flush=True)


@node
async def as_set(x: int) -> Any:
    return {x} if x == 3 else x


@node
async def hold_if_told(x: int) -> int:
    """In a worker started with PIPELINES_TEST_HOLD=1: say so on stdout and never finish."""
    if os.environ.get("PIPELINES_TEST_HOLD") == "1":
        print(f"holding {x}", flush=True)
        await asyncio.Event().wait()
    return x
