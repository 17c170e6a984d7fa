"""The table: rows, number formats, and the machine line printed above it."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .harness import Result, Samples, Unavailable, default_loop

__all__ = [
    "Row",
    "count",
    "format_table",
    "machine_line",
    "megabytes",
    "per_second",
    "ratio",
    "seconds",
    "throughput_rows",
    "unavailable_row",
]

COLUMNS = ("case", "row", "items", "measured", "relative", "vs")


@dataclass(frozen=True)
class Row:
    """One line of the table. `relative` compares `measured` with the row named in `vs`."""

    case: str
    label: str
    items: str
    measured: str
    relative: str = ""
    vs: str = ""

    def cells(self) -> tuple[str, ...]:
        return (self.case, self.label, self.items, self.measured, self.relative, self.vs)


def unavailable_row(case: str, label: str, items: str, missing: Unavailable) -> Row:
    return Row(case, label, items, f"unavailable: {missing.reason}")


def format_table(rows: Iterable[Row]) -> str:
    """A markdown table, padded so that it reads as well in a terminal."""
    lines = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]

    def render(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([render(lines[0]), rule, *(render(cells) for cells in lines[1:])])


def machine_line(rounds: int) -> str:
    """Cores, CPU, OS, Python and the loops, plus the versions of the optional competitors."""
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    parts = [
        f"{cores} cores ({usable} usable), {_cpu_model()}",
        f"{platform.system()} {platform.machine()}",
        f"{platform.python_implementation()} {platform.python_version()}",
        f"pipelines {_version('aiopipelines')} at {_commit()}",
        f"loop: {default_loop()} (B4, B7: asyncio and uvloop {_version('uvloop')}; B5, B9 memory: asyncio)",
        f"aiostream {_version('aiostream')}, pypeln {_version('pypeln')}",
        f"median of {rounds} alternating rounds, a fresh event loop each",
    ]
    return "machine: " + "; ".join(parts)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    """The git commit of the work tree measured, marked when pipelines/ has uncommitted changes."""
    root = Path(__file__).parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "pipelines")
    except OSError:
        return "unknown commit"
    return f"{commit or 'unknown commit'}{' + uncommitted changes' if dirty else ''}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# -- number formats --------------------------------------------------------------------------


def count(n: int) -> str:
    return f"{n:,}"


def per_second(items: int, samples: Samples) -> str:
    rate = items / samples.median
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} M items/s"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f} k items/s"
    return f"{rate:.0f} items/s"


def ratio(value: float) -> str:
    return f"{value:.2f}x"


def seconds(value: float) -> str:
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def megabytes(value: float) -> str:
    return f"{value / 2**20:+.1f} MB"


def throughput_rows(
    case: str,
    items: int,
    results: dict[str, Result],
    references: dict[str, str | None],
) -> list[Row]:
    """Rows for timed contenders: items/s, and the speed-up over the row each one is compared to.

    `references` maps a label to the label it is compared with (None: it is a reference itself).
    """
    rows = []
    for label, result in results.items():
        if isinstance(result, Unavailable):
            rows.append(unavailable_row(case, label, count(items), result))
            continue
        measured = per_second(items, result)
        against = references.get(label)
        if against is None:
            rows.append(Row(case, label, count(items), measured, "1.00x", "(reference)"))
            continue
        reference = results.get(against)
        if isinstance(reference, Samples):
            rows.append(Row(case, label, count(items), measured, ratio(result.ratio_to(reference)), against))
        else:
            rows.append(Row(case, label, count(items), measured, "n/a", f"{against} (unavailable)"))
    return rows
