"""B5 memory: peak RSS above the interpreter's baseline, for N and 10N items, with a slow sink.

Each measurement runs in a fresh subprocess (``python -m benchmarks.memory VARIANT N``), so no run
inherits another's heap. The child resets the kernel's peak-RSS mark after its imports (Linux
/proc/self/clear_refs), runs the chain once, and prints how far the peak rose above that baseline.
With bounded edges the growth must not depend on N; the unbounded chain, queues as in the original
library, shows that the measure does see memory that grows with N.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import subprocess
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from . import handwritten
from .graphs import pipeline, slow_chain
from .harness import Case, Config, Samples, Trial, Unavailable, alternate
from .report import Row, count, megabytes, unavailable_row

__all__ = ["B5"]

STAGES = 3

VARIANTS: dict[str, str] = {
    "pipelines": "pipelines",
    "bounded": "hand-written Queue(100)",
    "unbounded": "hand-written Queue() unbounded",
}


def _runner(variant: str, n: int) -> Callable[[], Awaitable[int]]:
    if variant == "pipelines":
        return pipeline(partial(slow_chain, n, STAGES))
    size = 100 if variant == "bounded" else 0
    return partial(handwritten.chain, n, STAGES, queue_size=size, slow_sink=True)


# -- in the child ----------------------------------------------------------------------------


def _status_bytes(field: str) -> int | None:
    """A field of /proc/self/status in bytes (VmRSS, VmHWM), or None without /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> int:
    """Reset the peak-RSS mark where the kernel allows it; the baseline to measure from."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        pass
    return _peak()


def _peak() -> int:
    """The peak RSS of this process in bytes (since the last reset, where resets work)."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def measure_here(variant: str, n: int) -> dict[str, int]:
    """Run one variant in this process; the baseline and the peak growth above it, in bytes."""
    run = _runner(variant, n)
    gc.collect()
    baseline = _reset_peak()
    got = asyncio.run(_await(run()))
    growth = _peak() - baseline
    want = n * (n - 1) // 2 + STAGES * n
    if got != want:
        raise AssertionError(f"{variant}: wrong sum {got}, expected {want}")
    return {"baseline": baseline, "growth": growth}


async def _await(work: Awaitable[int]) -> int:
    return await work


# -- in the parent ---------------------------------------------------------------------------


def _in_subprocess(variant: str, n: int, baselines: list[int]) -> Trial:
    def trial() -> float:
        command = [sys.executable, *(f"-W{option}" for option in sys.warnoptions)]
        command += ["-m", "benchmarks.memory", variant, str(n)]
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=Path(__file__).parent.parent, check=False, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"memory child {variant} {n} failed:\n{done.stderr}")
        if done.stderr:
            sys.stderr.write(done.stderr)
        figures = json.loads(done.stdout)
        baselines.append(figures["baseline"])
        return float(figures["growth"])

    return trial


B5_TITLE = "memory: source -> 3 x (x + 1) -> slow sink; peak RSS growth for N and 10N items"
B5_LABELS = tuple(f"{label}, {size}" for label in VARIANTS.values() for size in ("N", "10N"))


def _run_b5(config: Config) -> list[Row]:
    n = config.size(200_000, 2_000)
    sizes = {"N": n, "10N": 10 * n}
    baselines: list[int] = []
    trials = {
        f"{label}, {size}": _in_subprocess(variant, items, baselines)
        for variant, label in VARIANTS.items()
        for size, items in sizes.items()
    }
    results = alternate(trials, config.rounds)
    baseline = megabytes(sorted(baselines)[len(baselines) // 2]).lstrip("+") if baselines else "?"
    rows = []
    for label in VARIANTS.values():
        small, large = results[f"{label}, N"], results[f"{label}, 10N"]
        for size, result in (("N", small), ("10N", large)):
            row_label = f"{label}, {size}"
            if isinstance(result, Unavailable):
                rows.append(unavailable_row("B5", row_label, count(sizes[size]), result))
            elif size == "N":
                rows.append(Row("B5", row_label, count(n), megabytes(result.median), "", f"baseline {baseline} RSS"))
            else:
                growth = megabytes(result.median - small.median) if isinstance(small, Samples) else "n/a"
                rows.append(Row("B5", row_label, count(10 * n), megabytes(result.median), growth, f"{label}, N"))
    return rows


B5 = Case("B5", B5_TITLE, B5_LABELS, _run_b5)


def main(argv: list[str]) -> None:
    variant, n = argv
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    print(json.dumps(measure_here(variant, int(n))))


if __name__ == "__main__":
    main(sys.argv[1:])
