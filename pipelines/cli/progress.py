"""What the `pipelines run` command shows: live progress while the run goes, a summary at the end."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import IO, Any

from ..stats import NodeStats

__all__ = [
    "format_progress_line",
    "format_summary",
    "rich_progress_table",
    "show",
    "sink_total",
    "stop_writing_stdout",
    "write_line",
]

SUMMARY_COLUMNS = (
    ("node", "name"),
    ("in", "items_in"),
    ("out", "items_out"),
    ("done", "completed"),
    ("failed", "failed"),
    ("retried", "retried"),
    ("skipped", "skipped"),
    ("dropped", "dropped"),
    ("blocked s", "blocked_seconds"),
    ("items/s", "rate"),
)


def sink_total(stats: Mapping[str, NodeStats], sinks: list[str]) -> int:
    """Items the sinks have finished."""
    return sum(stats[s].completed for s in sinks)


def format_progress_line(stats: Mapping[str, NodeStats], sinks: list[str], elapsed: float) -> str:
    """One plain line of progress, for a log or a pipe: sinks' total and rate, then each busy node."""
    done = sink_total(stats, sinks)
    rate = done / elapsed if elapsed > 0 else 0.0
    parts = [f"{elapsed:7.1f}s  sinks {done} items ({rate:,.0f}/s)"]
    for s in stats.values():
        if s.queue_bound:
            parts.append(f"{s.name}: {s.in_flight} in flight, queue {s.queue_depth}/{s.queue_bound}")
    return " | ".join(parts)


def format_summary(stats: Mapping[str, NodeStats]) -> str:
    """The per-node summary as an aligned plain-text table."""
    rows = [[title for title, _ in SUMMARY_COLUMNS]]
    for s in stats.values():
        rows.append([_cell(getattr(s, field)) for _, field in SUMMARY_COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(SUMMARY_COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def rich_progress_table(stats: Mapping[str, NodeStats], sinks: list[str], elapsed: float) -> Any:
    """The live display on a terminal: a rich Table, one row per node."""
    from rich.table import Table

    done = sink_total(stats, sinks)
    rate = done / elapsed if elapsed > 0 else 0.0
    table = Table(title=f"{done} items through the sinks, {rate:,.0f}/s, {elapsed:.1f}s", title_justify="left")
    for title in ("node", "in", "out", "in flight", "queue", "failed", "items/s"):
        table.add_column(title, justify="left" if title == "node" else "right")
    for s in stats.values():
        fill = f"{s.queue_depth}/{s.queue_bound} {_bar(s.queue_depth, s.queue_bound)}" if s.queue_bound else ""
        table.add_row(
            s.name, str(s.items_in), str(s.items_out), str(s.in_flight), fill, str(s.failed), f"{s.rate:,.0f}"
        )
    return table


def _bar(depth: int, bound: int, width: int = 10) -> str:
    filled = round(width * depth / bound) if bound else 0
    return "#" * filled + "." * (width - filled)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def write_line(stream: IO[str], text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def show(text: str) -> None:
    """Print `text` on stdout. Once stdout's reader has gone (``pipelines draw FILE | head -1``),
    print nothing more, quietly: the command ends as it would have, without a BrokenPipeError."""
    try:
        write_line(sys.stdout, text)
    except BrokenPipeError:
        stop_writing_stdout()


def stop_writing_stdout() -> None:
    """Send what is left of stdout (its buffer, later writes, the final flush) to the null device."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, sys.stdout.fileno())
    finally:
        os.close(null)
