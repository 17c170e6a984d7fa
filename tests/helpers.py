"""Small coroutines and graph builders shared by the tests."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel

from pipelines import Processor


def chain(*names: str, coros: dict[str, Any], props: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A graph dict for the linear chain names[0] -> names[1] -> ..."""
    props = props or {}
    nodes = {n: {"coro": coros[n], **({"properties": props[n]} if n in props else {})} for n in names}
    graph = {n: [names[i + 1]] if i + 1 < len(names) else None for i, n in enumerate(names)}
    return {"nodes": nodes, "graph": graph}


def source_of(items: list[Any]) -> Any:
    """A source coroutine in the original style putting `items` in order."""

    async def source(processor: Processor, output_q: Any) -> None:
        for item in items:
            await output_q.put(item)

    return source


def collector() -> tuple[list[Any], Any]:
    """A sink coroutine in the original style appending each q_elt to the returned list."""
    seen: list[Any] = []

    async def sink(processor: Processor, q_elt: tuple[Any, ...]) -> None:
        seen.append(q_elt)

    return seen, sink


async def add_one(processor: Processor, q_elt: tuple[Any, ...]) -> Any:
    return q_elt[0] + 1


async def yield_now(times: int) -> None:
    for _ in range(times):
        await anyio.lowlevel.checkpoint()


async def until(condition: Any, limit: int = 1000) -> None:
    """Yield to the loop until `condition()` holds: explicit synchronisation, never a timed sleep."""
    for _ in range(limit):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never became true")
