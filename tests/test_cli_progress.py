"""What the command shows, from given stats: the progress line, the live table, the summary."""

from __future__ import annotations

import io
import re
from typing import Any

from rich.console import Console

from pipelines import Plumber
from pipelines.cli.progress import LEGEND, format_progress_line, format_summary, queue_cell, rich_progress_table
from pipelines.stats import NodeStats

from .helpers import add_one, collector, source_of


def stats(name: str, **counts: Any) -> NodeStats:
    zero: dict[str, Any] = {
        "items_in": 0,
        "items_out": 0,
        "completed": 0,
        "failed": 0,
        "retried": 0,
        "skipped": 0,
        "dropped": 0,
        "in_flight": 0,
        "queue_depth": 0,
        "queue_bound": 0,
        "blocked_seconds": 0.0,
        "rate": 0.0,
        "latency": 0.0,
    }
    return NodeStats(name=name, **{**zero, **counts})


def test_items_taken_by_workers_are_shown_apart_from_the_queue_and_its_bound() -> None:
    # 145 waiting: 100 in the edge, full, and 45 that workers took and have not started.
    busy = stats("locate", items_in=300, in_flight=64, queue_depth=145, queue_bound=100, taken=45)
    idle = stats("parse", items_in=10, queue_depth=3, queue_bound=100)
    source = stats("read", items_out=310)
    assert (queue_cell(busy), queue_cell(idle)) == ("100/100 +45 taken", "3/100")
    line = format_progress_line({"read": source, "parse": idle, "locate": busy}, ["locate"], 2.0)
    assert line == (
        "    2.0s  sinks 0 items (0/s) | parse: 0 in flight, queue 3/100 "
        "| locate: 64 in flight, queue 100/100 +45 taken"
    )


def test_the_live_table_keeps_the_queue_within_its_bound() -> None:
    busy = stats("locate", items_in=300, in_flight=64, queue_depth=145, queue_bound=100, taken=45)
    source = stats("read", items_out=310)
    shown = io.StringIO()
    console = Console(file=shown, width=100, color_system=None)
    console.print(rich_progress_table({"read": source, "locate": busy}, ["locate"], 2.0))
    rows = [[cell.strip() for cell in re.split("[│┃]", line)[1:-1]] for line in shown.getvalue().splitlines()]
    assert ["node", "in", "out", "in flight", "queue", "taken", "failed", "items/s"] in rows
    assert ["read", "-", "310", "0", "", "", "0", "0"] in rows
    assert ["locate", "300", "0", "64", "100/100 ##########", "45", "0", "0"] in rows


def test_the_summary_without_the_graph_is_the_bare_table() -> None:
    text = format_summary({"a": stats("a", items_out=3), "b": stats("b", items_in=3, completed=3, rate=1234.5)})
    assert text.splitlines() == [
        "node  in  out  done  failed  retried  skipped  dropped  blocked s  items/s",
        "----  --  ---  ----  ------  -------  -------  -------  ---------  -------",
        "a      0    3     0       0        0        0        0       0.00     0.00",
        "b      3    0     3       0        0        0        0       0.00    1,234",
    ]


def test_the_summary_with_the_graph_marks_sources_and_explains_merges() -> None:
    _, sink = collector()
    graph = {
        "nodes": {
            "one": {"coro": source_of([1])},
            "two": {"coro": source_of([2])},
            "inc": {"coro": add_one, "properties": {"aggregate_inputs": False}},
            "out": {"coro": sink},
        },
        "graph": {"one": ["inc"], "two": ["inc"], "inc": ["out"], "out": None},
    }
    plumber = Plumber(graph)
    counts = {
        "one": stats("one", items_out=1),
        "two": stats("two", items_out=1),
        "inc": stats("inc", items_in=2, items_out=2, completed=2),
        "out": stats("out", items_in=2, completed=2),
    }
    assert format_summary(counts, plumber.spec).splitlines() == [
        "node  in  out  done  failed  retried  skipped  dropped  blocked s  items/s",
        "----  --  ---  ----  ------  -------  -------  -------  ---------  -------",
        "one    -    1     -       0        0        0        0       0.00     0.00",
        "two    -    1     -       0        0        0        0       0.00     0.00",
        "inc    2    2     2       0        0        0        0       0.00     0.00",
        "out    2    0     2       0        0        0        0       0.00     0.00",
        *LEGEND,
        "inc merges one and two: its in counts the items of each",
    ]


def test_the_summary_says_what_each_lossy_input_dropped() -> None:
    _, sink = collector()
    graph = {
        "nodes": {
            "cam": {"coro": source_of([1])},
            "detect": {"coro": add_one, "properties": {"input": "latest"}},
            "out": {"coro": sink, "properties": {"input": "drop_oldest", "queue_size": 5}},
        },
        "graph": {"cam": ["detect"], "detect": ["out"], "out": None},
    }
    plumber = Plumber(graph)
    counts = {
        "cam": stats("cam", items_out=50),
        "detect": stats("detect", items_in=6, items_out=6, completed=6, dropped_at_input=44),
        "out": stats("out", items_in=6, completed=6),
    }
    assert format_summary(counts, plumber.spec).splitlines()[-2:] == [
        "detect's input keeps only the latest item ('latest'): it dropped 44 items before detect took them",
        "out's input keeps the newest 5 items ('drop_oldest'): it dropped 0 items before out took them",
    ]
