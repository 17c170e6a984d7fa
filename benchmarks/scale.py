"""B6 scale: graphs of about 1,000 nodes. How long a Plumber takes to build (and so to validate)
them, and how fast items flow through them, against the same graphs written by hand."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pipelines import Plumber

from . import handwritten
from .graphs import Total, chain, fan_out, pipeline
from .harness import Case, Config, Trial, Unavailable, alternate, timed
from .report import Row, count, seconds, throughput_rows, unavailable_row

__all__ = ["B6"]

CHAIN_STAGES = 1_000
BRANCHES = 100
DEPTH = 10
BUILD_BUDGET = 1.0  # seconds

CHAIN = f"chain of {CHAIN_STAGES:,}"
FAN = f"fan-out {BRANCHES} x {DEPTH}"


def _labels(shape: str) -> tuple[str, str, str]:
    return f"{shape}: build Plumber", f"{shape}: pipelines", f"{shape}: hand-written"


def _build_trial(graph: Callable[[], dict[str, Any]]) -> Trial:
    def trial() -> float:
        spec = graph()
        start = time.perf_counter()
        Plumber(spec)
        return time.perf_counter() - start

    return trial


B6_TITLE = (
    f"scale: source -> {CHAIN_STAGES:,} x (x + 1) -> sink; source -> {BRANCHES} branches of {DEPTH} -> merge sink"
)
B6_LABELS = (*_labels(CHAIN), *_labels(FAN))


def _run_b6(config: Config) -> list[Row]:
    n = config.size(2_000, 20)
    plain_sum = n * (n - 1) // 2
    shapes = {
        CHAIN: (
            partial(chain, n, CHAIN_STAGES),
            partial(handwritten.chain, n, CHAIN_STAGES),
            plain_sum + CHAIN_STAGES * n,
        ),
        FAN: (
            partial(fan_out, n, BRANCHES, DEPTH),
            partial(handwritten.fan_out, n, BRANCHES, DEPTH),
            BRANCHES * (plain_sum + DEPTH * n),
        ),
    }
    rows: list[Row] = []
    for shape, (build, by_hand, want) in shapes.items():
        built, piped, hand = _labels(shape)
        nodes = CHAIN_STAGES + 2 if shape == CHAIN else BRANCHES * DEPTH + 2
        results = alternate(
            {
                built: _build_trial(partial(build, Total())),
                piped: timed(pipeline(build), want),
                hand: timed(by_hand, want),
            },
            config.rounds,
        )
        build_time = results.pop(built)
        if isinstance(build_time, Unavailable):
            rows.append(unavailable_row("B6", built, f"{nodes:,} nodes", build_time))
        else:
            share = f"{build_time.median / BUILD_BUDGET:.2f} of budget"
            rows.append(Row("B6", built, f"{count(nodes)} nodes", seconds(build_time.median), share, "target < 1 s"))
        rows += throughput_rows("B6", n, results, {piped: hand, hand: None})
    return rows


B6 = Case("B6", B6_TITLE, B6_LABELS, _run_b6)
