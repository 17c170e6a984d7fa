"""Node functions for the metrics tests' graph files (imported as tests.metrics_nodes by subprocesses)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from pipelines import node


@node
async def count(n: int) -> Any:
    for i in range(n):
        yield i


@node
async def fails_on_sevens(x: int) -> int:
    if x % 10 == 7:
        raise ValueError(f"{x} ends in 7")
    return x


@node
async def double(x: int) -> int:
    return 2 * x


@node
async def keep(x: Any) -> None:
    pass


_opened: asyncio.Future[Any] | None = None


@node
async def gate(x: Any) -> None:
    """Holds every item until a line arrives on stdin: the test reads the other processes meanwhile."""
    global _opened
    if _opened is None:
        _opened = asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.shield(_opened)
