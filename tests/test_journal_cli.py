"""The journal through the command line: a run killed with SIGKILL three times, and bad journal files."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import resource
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import PIPELINES, ROOT, run_cli, write

ITEMS = 10_000
WORKERS, QUEUE = 2, 16
BOUND = WORKERS * QUEUE  # what one crash can give the sink a second time

KILLED = """
nodes:
  source: {coro: "tests.cli_nodes:count", args: {n: ITEMS}}
  square: {coro: "tests.journal_nodes:square", properties: {workers: 3}}
  sink:
    coro: "tests.journal_nodes:append_line"
    args: {path: "OUT"}
    properties: {workers: WORKERS, queue_size: QUEUE}
flow: "source -> square -> sink"
"""


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def run_until_killed(graph: str, journal: Path, out: Path, kill_at: int) -> None:
    """Start the run and SIGKILL it once the sink's file holds `kill_at` lines (the child's own report)."""
    written = len(lines(out))
    proc = subprocess.Popen(
        [*PIPELINES, "run", graph, "--journal", str(journal)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert proc.stdout is not None
    while written < kill_at:
        line = proc.stdout.readline()
        assert line == "+\n", f"the run ended before it was killed: {line!r} {proc.communicate()}"
        written += 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_a_run_killed_three_times_loses_nothing_and_repeats_little(tmp_path: Path) -> None:
    out, journal = tmp_path / "out.txt", tmp_path / "run.db"
    text = KILLED.replace("ITEMS", str(ITEMS)).replace("OUT", str(out))
    graph = write(tmp_path, "killed.yaml", text.replace("WORKERS", str(WORKERS)).replace("QUEUE", str(QUEUE)))
    seen_at_kill: list[Counter[str]] = []
    for moment in (ITEMS // 20, ITEMS // 2, ITEMS * 9 // 10):  # early, middle, late
        run_until_killed(graph, journal, out, moment)
        seen_at_kill.append(Counter(line.split()[0] for line in lines(out)))
        shown = run_cli("journal", str(journal))
        assert shown.returncode == 0, shown.stderr
        assert re.search(r"^run 1: running \(\d starts?\)", shown.stdout, re.M), shown.stdout
    done = run_cli("run", graph, "--journal", str(journal))
    assert done.returncode == 0, done.stderr
    assert re.search(r"^pipelines: .*run\.db: resuming run 1: \d+ source items were done$", done.stderr, re.M)
    assert re.search(r"^completed in \d+\.\d\ds$", done.stdout, re.M)

    final = lines(out)
    values = {}
    for line in final:
        item, value = line.split()
        assert values.setdefault(item, value) == value
    # Nothing lost: every item reached the sink with its value.
    assert values == {f"source/{i}": str(i * i) for i in range(ITEMS)}
    # Each resume gave the sink again only what it held when it was killed.
    kills = [*seen_at_kill, Counter(line.split()[0] for line in final)]
    for before, after in itertools.pairwise(kills):
        again = sum(after[item] - before[item] for item in before if after[item] > before[item])
        assert again <= BOUND
    assert len(final) - ITEMS <= 3 * BOUND
    # Each kill found work done that was not redone: the resumes together wrote little more than the items.
    assert len(final) < ITEMS + 3 * BOUND + 1

    shown = run_cli("journal", str(journal))
    assert shown.returncode == 0, shown.stderr
    report = shown.stdout.splitlines()
    assert report[0] == f"{journal}: journal of graph {report[0].split()[-3].rstrip(',')}, 1 run"
    assert report[1].startswith("run 1: completed (4 starts); started ")
    assert report[2] == f"  source items done: {ITEMS}"
    assert report[3].split() == ["node", "finished"]
    assert [line.split()[0] for line in report[4:7]] == ["source", "square", "sink"]
    assert all(line.split()[1].isdigit() for line in report[4:6])  # counted once a second, redone work included
    assert report[6].split() == ["sink", str(ITEMS)]  # exact: each item once
    assert len(report) == 7

    again = run_cli("run", graph, "--journal", str(journal))
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout == f"{journal}: run 1 already completed; nothing to do (--new-run starts another)\n"
    assert lines(out) == final


CHAIN = """
nodes:
  source: {coro: "tests.cli_nodes:count", args: {n: 50}}
  sink: {coro: "tests.journal_nodes:ignore"}
flow: "source -> sink"
"""


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("not a journal\n" * 20), "{file}: not a pipelines journal (not an SQLite database)"),
        (
            lambda p: sqlite3.connect(p).execute("CREATE TABLE t (x)").connection.close(),
            "{file}: not a pipelines journal (an SQLite database of something else)",
        ),
    ],
)
def test_a_bad_journal_file_is_one_line_and_exit_2(tmp_path: Path, make: object, message: str) -> None:
    journal = tmp_path / "bad.db"
    make(journal)  # type: ignore[operator]
    content = journal.read_bytes()
    graph = write(tmp_path, "chain.yaml", CHAIN)
    for args in (["run", graph, "--journal", str(journal)], ["journal", str(journal)]):
        proc = run_cli(*args)
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"pipelines: {message.format(file=journal)}\n")
        assert journal.read_bytes() == content


def test_a_journal_of_another_graph_or_a_newer_format_is_one_line_and_exit_2(tmp_path: Path) -> None:
    journal = tmp_path / "run.db"
    graph = write(tmp_path, "chain.yaml", CHAIN)
    assert run_cli("run", graph, "--journal", str(journal)).returncode == 0
    content = journal.read_bytes()
    other = write(tmp_path, "other.yaml", CHAIN.replace("n: 50", "n: 60"))
    proc = run_cli("run", other, "--journal", str(journal))
    assert proc.returncode == 2
    assert re.fullmatch(
        rf"pipelines: {re.escape(str(journal))}: journal of another graph \(graph [0-9a-f]{{16}}, this graph is "
        r"[0-9a-f]{16}\); give another journal file\n",
        proc.stderr,
    )
    assert journal.read_bytes() == content
    connection = sqlite3.connect(journal)
    connection.execute("PRAGMA user_version = 2")
    connection.commit()
    connection.close()
    content = journal.read_bytes()
    proc = run_cli("run", graph, "--journal", str(journal))
    assert (proc.returncode, proc.stderr) == (
        2,
        f"pipelines: {journal}: journal format 2 is newer than this version of pipelines reads (format 1); "
        "upgrade pipelines to resume it\n",
    )
    assert journal.read_bytes() == content


def test_inspecting_a_missing_journal(tmp_path: Path) -> None:
    proc = run_cli("journal", str(tmp_path / "none.db"))
    assert (proc.returncode, proc.stderr) == (
        2,
        f"pipelines: {tmp_path / 'none.db'}: no such journal (the file does not exist, or is empty)\n",
    )


def test_a_read_only_journal_fails_the_run(tmp_path: Path) -> None:
    graph = write(tmp_path, "chain.yaml", CHAIN)
    journal = tmp_path / "run.db"
    assert run_cli("run", graph, "--journal", str(journal)).returncode == 0
    content = journal.read_bytes()
    with read_only(journal):
        proc = run_cli("run", graph, "--journal", str(journal), "--new-run")
    assert proc.returncode == 1
    assert proc.stderr == (
        f"pipelines: run failed: JournalError: journal {journal}: cannot write: attempt to write a readonly database\n"
    )
    assert journal.read_bytes() == content


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` read-only for this user: by its mode, or for root (whom modes do not stop) by chattr +i."""
    path.chmod(0o444)
    immutable = os.geteuid() == 0
    if immutable:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"the tests run as root: a read-only file needs chattr +i: {done.stderr}"
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o644)


def test_a_full_disk_fails_the_run(tmp_path: Path) -> None:
    journal = tmp_path / "run.db"
    graph = write(tmp_path, "chain.yaml", CHAIN.replace("n: 50", "n: 200000"))

    def small_files() -> None:
        # Files may grow to 200 kB: the journal's log fills it as a full disk would (SIGXFSZ is ignored).
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    proc = subprocess.run(
        [*PIPELINES, "run", graph, "--journal", str(journal), "--queue-size", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
        preexec_fn=small_files,
    )
    assert proc.returncode == 1, proc.stderr
    assert re.fullmatch(
        rf"pipelines: run failed: JournalError: journal {re.escape(str(journal))}: cannot write: "
        r"(disk I/O error|database or disk is full)\n",
        proc.stderr,
    ), proc.stderr


DAMAGED = """
nodes:
  source: {coro: "tests.cli_nodes:count", args: {n: 50}}
  sink: {coro: "tests.journal_nodes:append_line", args: {path: "OUT"}}
flow: "source -> sink"
"""


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            "UPDATE runs SET state = 'failed', progress = 'garbage'",
            "run 1's progress is not JSON: 'garbage'; expected "
            '{"roots": {source: [upto, [[lo, hi], ...]]}, "sinks": {sink: count}}',
        ),
        (
            "INSERT INTO finished VALUES (1, 'sink', 'source', 3, '[\"source\", 3')",
            "an item in run 1's finished rows is not JSON: '[\"source\", 3'; expected an item id: "
            "a JSON array [source, position, output index, ...]",
        ),
    ],
)
def test_a_damaged_journal_is_one_line_and_exit_2(tmp_path: Path, statement: str, message: str) -> None:
    journal, out = tmp_path / "run.db", tmp_path / "out.txt"
    graph = write(tmp_path, "damaged.yaml", DAMAGED.replace("OUT", str(out)))
    assert run_cli("run", graph, "--journal", str(journal)).returncode == 0
    connection = sqlite3.connect(journal)
    connection.execute(statement)
    connection.commit()
    connection.close()
    written = lines(out)
    before = (journal.read_bytes(), journal.stat().st_mtime_ns, sorted(tmp_path.iterdir()))
    for args in (["run", graph, "--journal", str(journal)], ["journal", str(journal)]):
        proc = run_cli(*args)
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            2,
            "",
            f"pipelines: {journal}: damaged journal: {message}\n",
        )
        assert (journal.read_bytes(), journal.stat().st_mtime_ns, sorted(tmp_path.iterdir())) == before
    assert lines(out) == written  # the sink was not given anything
