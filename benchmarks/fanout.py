"""B2 fan-out / fan-in: four branches merged into one sink, and one node with four workers."""

from __future__ import annotations

from functools import partial

from . import handwritten
from .graphs import chain, fan_out, pipeline
from .harness import Case, Config, alternate, timed
from .report import Row, throughput_rows

__all__ = ["B2"]

BRANCHES = 4
WORKERS = 4

MERGE = "4 branches -> merge: pipelines"
MERGE_HAND = "4 branches -> merge: hand-written"
POOL = "workers=4: pipelines"
POOL_HAND = "workers=4: hand-written"


B2_TITLE = "fan-out / fan-in: source -> 4 x (x + 1) -> merge sink; source -> x + 1 (workers=4) -> sink"
B2_LABELS = (MERGE, MERGE_HAND, POOL, POOL_HAND)


def _run_b2(config: Config) -> list[Row]:
    n = config.size(100_000, 2_000)
    plain_sum = n * (n - 1) // 2 + n
    merged = alternate(
        {
            MERGE: timed(pipeline(partial(fan_out, n, BRANCHES, 1)), BRANCHES * plain_sum),
            MERGE_HAND: timed(partial(handwritten.fan_out, n, BRANCHES, 1), BRANCHES * plain_sum),
        },
        config.rounds,
    )
    pooled = alternate(
        {
            POOL: timed(pipeline(partial(chain, n, 1, properties={"workers": WORKERS})), plain_sum),
            POOL_HAND: timed(partial(handwritten.workers, n, WORKERS), plain_sum),
        },
        config.rounds,
    )
    return [
        *throughput_rows("B2", n, merged, {MERGE: MERGE_HAND, MERGE_HAND: None}),
        *throughput_rows("B2", n, pooled, {POOL: POOL_HAND, POOL_HAND: None}),
    ]


B2 = Case("B2", B2_TITLE, B2_LABELS, _run_b2)
