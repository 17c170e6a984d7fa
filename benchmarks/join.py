"""B3 join: a diamond whose two branches meet again in a join that pairs them by lineage."""

from __future__ import annotations

from functools import partial

from . import handwritten
from .graphs import diamond, pipeline
from .harness import Case, Config, alternate, timed
from .report import Row, throughput_rows

__all__ = ["B3"]

JOIN = "diamond join: pipelines"
JOIN_HAND = "diamond join: hand-written (seq dict)"


B3_TITLE = "join: source -> (x + 1, 2x) -> join (aggregate_inputs True)"
B3_LABELS = (JOIN, JOIN_HAND)


def _run_b3(config: Config) -> list[Row]:
    n = config.size(100_000, 2_000)
    results = alternate(
        {
            JOIN: timed(pipeline(partial(diamond, n)), n),  # n right pairs
            JOIN_HAND: timed(partial(handwritten.diamond, n), n),
        },
        config.rounds,
    )
    return throughput_rows("B3", n, results, {JOIN: JOIN_HAND, JOIN_HAND: None})


B3 = Case("B3", B3_TITLE, B3_LABELS, _run_b3)
