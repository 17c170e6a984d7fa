"""B4 I/O-bound: each item awaits asyncio.sleep(LATENCY) in a node with 100 workers.

The ideal is `workers / LATENCY` items per second; a figure is the share of it achieved. Each
contender runs on asyncio and on uvloop: asyncio's selector rounds every timer up to the next
millisecond, so a 10 ms sleep lasts about 11 ms there whatever runs it (the floor shows it).
"""

from __future__ import annotations

from functools import partial

from . import handwritten
from .graphs import LATENCY, chain, pipeline, sleepy
from .harness import Case, Config, Unavailable, alternate, timed
from .report import Row, count, per_second, unavailable_row

__all__ = ["B4"]

WORKERS = 100

POOL = "workers=100: pipelines"
POOL_HAND = "100 worker tasks: hand-written"
WAVES = "floor: waves of 100 gathered sleeps"
LOOPS = ("asyncio", "uvloop")


def _on(loop: str, label: str) -> str:
    return f"{label} ({loop})"


B4_TITLE = "I/O-bound: source -> sleep(0.01) (100 workers) -> sink; throughput over workers / latency"
B4_LABELS = tuple(_on(loop, label) for loop in LOOPS for label in (POOL, POOL_HAND, WAVES))


def _run_b4(config: Config) -> list[Row]:
    n = config.size(5_000, 200)
    want = n * (n - 1) // 2
    trials = {}
    for loop in LOOPS:
        pool = pipeline(partial(chain, n, 1, stage=sleepy, properties={"workers": WORKERS}))
        trials[_on(loop, POOL)] = timed(pool, want, loop)
        trials[_on(loop, POOL_HAND)] = timed(partial(handwritten.workers, n, WORKERS, io=True), want, loop)
        trials[_on(loop, WAVES)] = timed(partial(handwritten.sleep_waves, n, WORKERS), want, loop)
    results = alternate(trials, config.rounds)
    ideal_seconds = n * LATENCY / WORKERS
    rows = []
    for label, result in results.items():
        if isinstance(result, Unavailable):
            rows.append(unavailable_row("B4", label, count(n), result))
            continue
        share = ideal_seconds / result.median
        ideal = f"ideal: {WORKERS} / {LATENCY} s = {WORKERS / LATENCY:,.0f} items/s"
        rows.append(Row("B4", label, count(n), per_second(n, result), f"{share:.2f} of ideal", ideal))
    return rows


B4 = Case("B4", B4_TITLE, B4_LABELS, _run_b4)
