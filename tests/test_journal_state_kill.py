"""Stateful sinks through real crashes: runs killed with SIGKILL three times, then resumed, write what
an uninterrupted run writes, byte for byte."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

from tests.test_cli import PIPELINES, ROOT, run_cli, write

REQUESTS = 3000  # the log lines of demos/weblog/access.log that are requests


def killed_when(command: list[str], reached: re.Pattern[str], stream: str, count: int) -> str:
    """Run `command` and SIGKILL it once `stream` ('stdout' or 'stderr') shows `count` progress marks.

    A mark is a line matching `reached`; a group in it gives a running count (the CLI's progress
    line: items through the sinks so far), else each line counts one. Returns the process's stderr.
    """
    # A session of its own: the kill takes the run's process-pool workers too, as an out-of-memory
    # kill of the job or a power loss would (left alone, they would hold its pipes open).
    proc = subprocess.Popen(
        [*PIPELINES, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
        start_new_session=True,
    )
    watched = proc.stdout if stream == "stdout" else proc.stderr
    assert watched is not None
    seen = 0
    head = []
    while seen < count:
        line = watched.readline()
        assert line, f"the run ended before it was killed, at {seen}: {proc.communicate()}"
        match = reached.search(line)
        if match is None:
            head.append(line)
            continue
        seen = int(match[1]) if match.groups() else seen + 1
    os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return "".join(head) + (err if stream == "stdout" else "")


def resumed_done(stderr: str) -> int:
    """How many source items the journal had done when this start resumed (0 for a first start)."""
    match = re.search(r"resuming run 1: (\d+) source items were done", stderr)
    return int(match[1]) if match else 0


def test_the_weblog_demo_killed_three_times_writes_the_report_of_an_uninterrupted_run(tmp_path: Path) -> None:
    whole, resumed, journal = tmp_path / "whole.txt", tmp_path / "resumed.txt", tmp_path / "run.db"
    done = run_cli("run", "demos/weblog/weblog.yaml", "--set", f"report.path={whole}")
    assert done.returncode == 0, done.stderr
    assert whole.read_text().startswith(f"requests: {REQUESTS}\n")

    command = ["run", "demos/weblog/weblog.yaml", "--set", f"report.path={resumed}", "--journal", str(journal)]
    progress = re.compile(r"^pipelines: +\d+\.\ds  sinks (\d+) items")
    done_at_start = []
    # Early, in the middle, late: each start is killed once its own sink has taken so many more items.
    for more in (REQUESTS // 10, REQUESTS * 4 // 10, REQUESTS * 4 // 10):
        stderr = killed_when([*command, "--interval", "0.05"], progress, "stderr", more)
        done_at_start.append(resumed_done(stderr))
        assert not resumed.exists()  # killed: its teardown never ran
    last = run_cli(*command, "--interval", "0.05")
    assert last.returncode == 0, last.stderr
    done_at_start.append(resumed_done(last.stderr))
    # Each start found more done than the one before (the first found nothing), and never all.
    assert done_at_start[0] == 0
    assert done_at_start == sorted(set(done_at_start))
    assert done_at_start[-1] < REQUESTS + 6  # 3006 log lines: 6 are not requests
    assert resumed.read_bytes() == whole.read_bytes()

    again = run_cli(*command)  # the run completed: nothing runs, and the same report is written again
    assert again.returncode == 0, again.stderr
    assert resumed.read_bytes() == whole.read_bytes()


WINDOWS = """
nodes:
  source: {coro: "tests.cli_nodes:count", args: {n: ITEMS}}
  square: {coro: "tests.journal_nodes:square", properties: {workers: 3}}
  windows:
    coro: "tests.journal_nodes:count_windows"
    args: {size: 100, out: "OUT"}
    properties:
      state: "tests.journal_nodes:new_windows"
      teardown: "tests.journal_nodes:write_windows"
      queue_size: 16
flow: "source -> square -> windows"
"""


def test_a_windowing_sink_killed_three_times_counts_each_item_once(tmp_path: Path) -> None:
    items = 5000
    whole, resumed = tmp_path / "whole.json", tmp_path / "resumed.json"
    reference = write(tmp_path, "whole.yaml", WINDOWS.replace("ITEMS", str(items)).replace("OUT", str(whole)))
    done = run_cli("run", reference, "--journal", str(tmp_path / "whole.db"))
    assert done.returncode == 0, done.stderr
    expected = {
        "items": items,
        "windows": {str(w): [100, sum(i * i for i in range(100 * w, 100 * w + 100))] for w in range(items // 100)},
    }
    assert json.loads(whole.read_text()) == expected

    graph = write(tmp_path, "killed.yaml", WINDOWS.replace("ITEMS", str(items)).replace("OUT", str(resumed)))
    journal = tmp_path / "run.db"
    done_at_start = []
    for more in (items // 10, items // 5, items // 5):  # room for what goes on between the mark and the kill
        stderr = killed_when(["run", graph, "--journal", str(journal)], re.compile(r"^\+$"), "stdout", more)
        done_at_start.append(resumed_done(stderr))
    last = run_cli("run", graph, "--journal", str(journal))
    assert last.returncode == 0, last.stderr
    done_at_start.append(resumed_done(last.stderr))
    assert done_at_start[0] == 0
    assert done_at_start == sorted(set(done_at_start))
    assert resumed.read_bytes() == whole.read_bytes()


HITS = """
nodes:
  source: {coro: "tests.cli_nodes:count", args: {n: ITEMS}}
  square: {coro: "tests.journal_nodes:square", properties: {workers: 3}}
  hits:
    coro: "tests.journal_nodes:write_hit"
    properties: {state: "tests.journal_nodes:hits_output", queue_size: 16}
flow: "source -> square -> hits"
"""


def test_an_sqlite_output_killed_three_times_writes_one_row_per_item(tmp_path: Path) -> None:
    items = 5000
    graph = write(tmp_path, "hits.yaml", HITS.replace("ITEMS", str(items)))
    journal = tmp_path / "run.db"
    done_at_start = []
    for more in (items // 10, items // 5, items // 5):  # room for what goes on between the mark and the kill
        stderr = killed_when(["run", graph, "--journal", str(journal)], re.compile(r"^\+$"), "stdout", more)
        done_at_start.append(resumed_done(stderr))
    last = run_cli("run", graph, "--journal", str(journal))
    assert last.returncode == 0, last.stderr
    done_at_start.append(resumed_done(last.stderr))
    assert done_at_start[0] == 0
    assert done_at_start == sorted(set(done_at_start))

    with sqlite3.connect(journal) as connection:
        rows = connection.execute("SELECT item, value FROM hits").fetchall()
    connection.close()
    # Each item's row is there once, with its value (a second row would have broken the primary key).
    assert len(rows) == items
    assert sorted((json.loads(item)[1], value) for item, value in rows) == [(i, i * i) for i in range(items)]
