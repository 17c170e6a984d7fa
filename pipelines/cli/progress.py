"""What the `pipelines run` command shows: live progress while the run goes, a summary at the end."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import IO, Any

from ..graph import GraphSpec
from ..stats import NodeStats

__all__ = [
    "format_progress_line",
    "format_summary",
    "queue_cell",
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
NOT_APPLICABLE = "-"
# A source takes no input: it has no 'in', and its function does not finish items, it produces them.
SOURCE_BLANKS = ("items_in", "completed")
LEGEND = (
    f"in: items taken from the node's inputs; out: items handed on; {NOT_APPLICABLE}: a source takes no input, "
    "it makes its out",
    "done: items its function handled; dropped: those that gave nothing to hand on; "
    "in = done + dropped + failed + skipped once all ended (a failed run cuts some short)",
    "blocked s: seconds spent waiting on a full output (backpressure); items/s: in per second (out for a source)",
)


def sink_total(stats: Mapping[str, NodeStats], sinks: list[str]) -> int:
    """Items the sinks have finished."""
    return sum(stats[s].completed for s in sinks)


def queue_cell(s: NodeStats) -> str:
    """What waits for a node: its input edges' fill against their bound, then the items its workers
    have taken from them and not started (these are not in the edges, so not under the bound)."""
    held = f"{s.queue_depth - s.taken}/{s.queue_bound}"
    return f"{held} +{s.taken} taken" if s.taken else held


def format_progress_line(stats: Mapping[str, NodeStats], sinks: list[str], elapsed: float) -> str:
    """One plain line of progress, for a log or a pipe: sinks' total and rate, then each node with inputs."""
    done = sink_total(stats, sinks)
    rate = done / elapsed if elapsed > 0 else 0.0
    parts = [f"{elapsed:7.1f}s  sinks {done} items ({rate:,.0f}/s)"]
    for s in stats.values():
        if s.queue_bound:
            parts.append(f"{s.name}: {s.in_flight} in flight, queue {queue_cell(s)}")
    return " | ".join(parts)


def format_summary(
    stats: Mapping[str, NodeStats], graph: GraphSpec | None = None, fused: tuple[tuple[str, ...], ...] = ()
) -> str:
    """The per-node summary as an aligned plain-text table.

    Given the `graph`, a source's 'in' and 'done' show as '-', and lines below the table say what
    the columns count and how each join or merge counts its 'in'; then the `fused` segments, if any."""
    sources = {name for name, spec in graph.nodes.items() if spec.is_source} if graph is not None else set()
    rows = [[title for title, _ in SUMMARY_COLUMNS]]
    for s in stats.values():
        rows.append(
            [
                NOT_APPLICABLE if s.name in sources and field in SOURCE_BLANKS else _cell(getattr(s, field))
                for _, field in SUMMARY_COLUMNS
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(SUMMARY_COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if graph is not None:
        lines.extend(LEGEND)
        lines.extend(_input_notes(graph))
        lines.extend(_lossy_notes(stats, graph))
    for segment in fused:
        lines.append(f"fused: {' -> '.join(segment)} (each item through all of them in one task)")
    return "\n".join(lines)


def _lossy_notes(stats: Mapping[str, NodeStats], graph: GraphSpec) -> list[str]:
    """What each lossy input dropped: items its node never took, so counted in none of its columns."""
    notes = []
    for name, spec in graph.nodes.items():
        policy = spec.properties.input
        if policy != "block" and name in stats:
            kept = "keeps only the latest item" if policy == "latest" else f"keeps the newest {spec.queue_size} items"
            notes.append(
                f"{name}'s input {kept} ('{policy}'): it dropped {stats[name].dropped_at_input} items before "
                f"{name} took them"
            )
    return notes


def _input_notes(graph: GraphSpec) -> list[str]:
    """How a node with several inputs counts its 'in'."""
    notes = []
    for spec in graph.nodes.values():
        if spec.join_mode is not None:
            groups = "pairs" if len(spec.inputs) == 2 else "groups"
            notes.append(
                f"{spec.name} joins {_listed(spec.inputs)}: its in counts {groups} (one item from each), "
                f"and dropped the {groups} an input dropped"
            )
        elif len(spec.inputs) + len(spec.error_sources) >= 2:
            notes.append(
                f"{spec.name} merges {_listed((*spec.inputs, *spec.error_sources))}: its in counts the items of each"
            )
    return notes


def _listed(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def rich_progress_table(stats: Mapping[str, NodeStats], sinks: list[str], elapsed: float) -> Any:
    """The live display on a terminal: a rich Table, one row per node."""
    from rich.table import Table

    done = sink_total(stats, sinks)
    rate = done / elapsed if elapsed > 0 else 0.0
    table = Table(title=f"{done} items through the sinks, {rate:,.0f}/s, {elapsed:.1f}s", title_justify="left")
    for title in ("node", "in", "out", "in flight", "queue", "taken", "failed", "items/s"):
        table.add_column(title, justify="left" if title == "node" else "right")
    for s in stats.values():
        held = s.queue_depth - s.taken
        fill = f"{held}/{s.queue_bound} {_bar(held, s.queue_bound)}" if s.queue_bound else ""
        table.add_row(
            s.name,
            str(s.items_in) if s.queue_bound else NOT_APPLICABLE,
            str(s.items_out),
            str(s.in_flight),
            fill,
            str(s.taken) if s.queue_bound else "",
            str(s.failed),
            f"{s.rate:,.0f}",
        )
    return table


def _bar(depth: int, bound: int, width: int = 10) -> str:
    filled = min(width, round(width * depth / bound)) if bound else 0
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
