"""B12 streaming: B1's three x + 1 stages fed and read from application code, against the same graph run by a Plumber.

The reference is B1's `@node` row: the graph's own source puts the integers and its own sink adds
them up, under `Plumber.run()`. The streamed rows run the same three stages with the source left
for the stream to feed and the last stage as the sink whose results the caller adds up: what
`stream()` costs per item is the feed, the stream's count of each item, and one `async for` step
per result.
"""

from __future__ import annotations

import asyncio
from functools import partial
from itertools import pairwise
from typing import Any

from pipelines import open_stream, stream

from .graphs import add_one, chain, pipeline
from .harness import Case, Config, alternate, timed
from .linear import STAGES, expected
from .report import Row, throughput_rows

__all__ = ["B12"]

PLUMBER = "Plumber.run(): its own source and sink (B1 @node)"
STREAM = "stream(graph, range(n)), results read by async for"
PAIRS = "stream(..., pairs=True): (input, output) pairs"
SEND = "open_stream(): send() from a task, async for reading"

B12_TITLE = "streaming: B1's 3 x (x + 1) fed and read from application code, vs Plumber.run()"
B12_LABELS = (PLUMBER, STREAM, PAIRS, SEND)


def streamed_chain(stages: int) -> dict[str, Any]:
    """entry -> `stages` x (x + 1); the last stage is the sink whose results the stream yields."""
    names = ["numbers", *(f"stage{i}" for i in range(stages))]
    return {
        "nodes": {"numbers": {}} | {name: {"coro": add_one} for name in names[1:]},
        "graph": {name: [after] for name, after in pairwise(names)} | {names[-1]: None},
    }


async def sum_stream(n: int) -> int:
    total = 0
    async for y in stream(streamed_chain(STAGES), range(n)):
        total += y
    return total


async def sum_pairs(n: int) -> int:
    total = 0
    async for x, y in stream(streamed_chain(STAGES), range(n), pairs=True):
        if y != x + STAGES:  # uses the input, as a caller matching results would
            raise AssertionError(f"{y} paired with input {x}")
        total += y
    return total


async def sum_sent(n: int) -> int:
    total = 0
    async with open_stream(streamed_chain(STAGES)) as run:

        async def feed() -> None:
            for i in range(n):
                await run.send(i)
            run.close()

        feeding = asyncio.create_task(feed())
        async for y in run:
            total += y
        await feeding
    return total


def _run_b12(config: Config) -> list[Row]:
    n = config.size(200_000, 2_000)
    want = expected(n)
    results = alternate(
        {
            PLUMBER: timed(pipeline(partial(chain, n, STAGES)), want),
            STREAM: timed(partial(sum_stream, n), want),
            PAIRS: timed(partial(sum_pairs, n), want),
            SEND: timed(partial(sum_sent, n), want),
        },
        config.rounds,
    )
    return throughput_rows("B12", n, results, {PLUMBER: None, STREAM: PLUMBER, PAIRS: PLUMBER, SEND: PLUMBER})


B12 = Case("B12", B12_TITLE, B12_LABELS, _run_b12)
