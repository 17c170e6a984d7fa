"""B9 journal: B1 with the SQLite journal on, against the same chain with it off; memory with it on.

Also B1 with a stateful sink (pipelines.state: it folds every item into its declared state, which
the journal snapshots with the items), journal on, against the plain sink with the journal on; and
the memory figures again with a stateful slow sink.

The journaled runs write a fresh journal file in a temporary directory (made before the timed
span, removed after). Memory is measured as in B5: a fresh subprocess per figure (``python -m
benchmarks.journal N``), peak RSS growth above the baseline taken after the imports, for N and
10N items through the chain with a slow sink.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from pipelines import Plumber

from .graphs import Total, chain, processor_chain, run_total, slow_chain, slow_stateful_chain, stateful_chain
from .harness import Case, Config, Samples, Trial, Unavailable, alternate, timed
from .linear import STAGES, expected
from .memory import _peak, _reset_peak
from .report import Row, count, megabytes, throughput_rows, unavailable_row

__all__ = ["B9"]

ITEM_OFF = "@node f(item), journal off"
ITEM_ON = "@node f(item), journal on"
PROCESSOR_OFF = "f(processor, q_elt), journal off"
PROCESSOR_ON = "f(processor, q_elt), journal on"
STATEFUL_ON = "@node f(item), stateful sink, journal on"
MEMORY_N = "journal on, slow sink, N"
MEMORY_10N = "journal on, slow sink, 10N"
STATEFUL_N = "journal on, slow stateful sink, N"
STATEFUL_10N = "journal on, slow stateful sink, 10N"


def journaled(build: Callable[[Total], dict[str, Any]]) -> Callable[[], Awaitable[int]]:
    """As graphs.pipeline, with a journal in a new temporary directory for each run."""

    def make() -> Awaitable[int]:
        folder = tempfile.TemporaryDirectory(prefix="pipelines-bench-")
        total = Total()
        plumber = Plumber(build(total), journal=os.path.join(folder.name, "run.db"))

        async def run() -> int:
            try:
                return await run_total(plumber, total)
            finally:
                folder.cleanup()

        return run()

    return make


def plain(build: Callable[[Total], dict[str, Any]]) -> Callable[[], Awaitable[int]]:
    def make() -> Awaitable[int]:
        total = Total()
        return run_total(Plumber(build(total)), total)

    return make


# -- memory, in a child process --------------------------------------------------------------------


def measure_here(n: int, stateful: bool = False) -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix="pipelines-bench-") as folder:
        run = journaled(partial(slow_stateful_chain if stateful else slow_chain, n, STAGES))
        gc.collect()
        baseline = _reset_peak()
        got = asyncio.run(_await(run()))
        growth = _peak() - baseline
        del folder
    if got != expected(n):
        raise AssertionError(f"journal memory run: wrong sum {got}, expected {expected(n)}")
    return {"baseline": baseline, "growth": growth}


async def _await(work: Awaitable[int]) -> int:
    return await work


def _in_subprocess(n: int, baselines: list[int], stateful: bool = False) -> Trial:
    def trial() -> float:
        command = [sys.executable, *(f"-W{option}" for option in sys.warnoptions), "-m", "benchmarks.journal", str(n)]
        if stateful:
            command.append("stateful")
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=Path(__file__).parent.parent, check=False, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"journal memory child {n} failed:\n{done.stderr}")
        figures = json.loads(done.stdout)
        baselines.append(figures["baseline"])
        return float(figures["growth"])

    return trial


B9_TITLE = (
    "journal: B1 with the SQLite journal on vs off, and with a stateful sink; peak RSS growth with it on "
    "for N and 10N items"
)
B9_LABELS = (
    ITEM_OFF,
    ITEM_ON,
    STATEFUL_ON,
    PROCESSOR_OFF,
    PROCESSOR_ON,
    MEMORY_N,
    MEMORY_10N,
    STATEFUL_N,
    STATEFUL_10N,
)


def _run_b9(config: Config) -> list[Row]:
    n = config.size(200_000, 2_000)
    want = expected(n)
    trials = {
        ITEM_OFF: timed(plain(partial(chain, n, STAGES)), want),
        ITEM_ON: timed(journaled(partial(chain, n, STAGES)), want),
        STATEFUL_ON: timed(journaled(partial(stateful_chain, n, STAGES)), want),
        PROCESSOR_OFF: timed(plain(partial(processor_chain, n, STAGES)), want),
        PROCESSOR_ON: timed(journaled(partial(processor_chain, n, STAGES)), want),
    }
    results = alternate(trials, config.rounds)
    rows = throughput_rows(
        "B9",
        n,
        results,
        {ITEM_OFF: None, ITEM_ON: ITEM_OFF, STATEFUL_ON: ITEM_ON, PROCESSOR_OFF: None, PROCESSOR_ON: PROCESSOR_OFF},
    )
    baselines: list[int] = []
    sizes = {MEMORY_N: n, MEMORY_10N: 10 * n, STATEFUL_N: n, STATEFUL_10N: 10 * n}
    memory = alternate(
        {
            label: _in_subprocess(items, baselines, label in (STATEFUL_N, STATEFUL_10N))
            for label, items in sizes.items()
        },
        config.rounds,
    )
    baseline = megabytes(sorted(baselines)[len(baselines) // 2]).lstrip("+") if baselines else "?"
    for small_label, large_label in ((MEMORY_N, MEMORY_10N), (STATEFUL_N, STATEFUL_10N)):
        small, large = memory[small_label], memory[large_label]
        for label, result in ((small_label, small), (large_label, large)):
            if isinstance(result, Unavailable):
                rows.append(unavailable_row("B9", label, count(sizes[label]), result))
            elif label == small_label:
                rows.append(Row("B9", label, count(n), megabytes(result.median), "", f"baseline {baseline} RSS"))
            else:
                growth = megabytes(result.median - small.median) if isinstance(small, Samples) else "n/a"
                rows.append(Row("B9", label, count(10 * n), megabytes(result.median), growth, small_label))
    return rows


B9 = Case("B9", B9_TITLE, B9_LABELS, _run_b9)


def main(argv: list[str]) -> None:
    n, *stateful = argv
    print(json.dumps(measure_here(int(n), stateful == ["stateful"])))


if __name__ == "__main__":
    main(sys.argv[1:])
