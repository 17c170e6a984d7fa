"""One writer per journal (pipelines.journal.lock): a second run on a live journal is refused; a kill frees it.

The subprocess tests hold the first run half-way with tests.journal_nodes:gated_count: it says
'gate' on its stdout and waits for a line on its stdin, so the test knows the run is going (and
holds its journal) by reading a pipe, and lets it go on by writing one; nothing waits on a clock.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipelines import Plumber, node
from pipelines.journal import Journal, JournalError
from pipelines.journal.lock import JournalLock
from tests.test_cli import PIPELINES, ROOT, run_cli, write
from tests.test_journal_cli import lines

ITEMS = 2_000
QUEUE = 16

GATED = f"""
nodes:
  source: {{coro: "tests.journal_nodes:gated_count", args: {{n: {ITEMS}}}}}
  sink:
    coro: "tests.journal_nodes:append_line"
    args: {{path: "OUT"}}
    properties: {{queue_size: {QUEUE}}}
flow: "source -> sink"
"""


def start_held(graph: str, journal: Path) -> subprocess.Popen[str]:
    """Start `pipelines run` and return once it is half-way, holding its journal, waiting for a line on stdin."""
    proc = subprocess.Popen(
        [*PIPELINES, "run", graph, "--journal", str(journal)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
        env={**os.environ, "PIPELINES_TEST_GATE": "1"},
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # one '+' per item the sink handled, then 'gate'
        if line == "gate\n":
            return proc
        assert line == "+\n", line
    proc.kill()
    raise AssertionError(f"the run ended before it was half-way: {proc.communicate()}")


def refusal(journal: Path, pid: int) -> str:
    return (
        f"pipelines: {journal}: another process is running this journal (pid {pid}); "
        "wait for it to end, or give another journal file\n"
    )


def sink_lines(out: Path) -> Counter[str]:
    return Counter(lines(out))


def test_a_second_run_on_a_live_journal_is_refused_and_the_first_completes(tmp_path: Path) -> None:
    out, journal = tmp_path / "out.txt", tmp_path / "run.db"
    graph = write(tmp_path, "gated.yaml", GATED.replace("OUT", str(out)))
    first = start_held(graph, journal)
    try:
        second = run_cli("run", graph, "--journal", str(journal))
        assert (second.returncode, second.stdout, second.stderr) == (2, "", refusal(journal, first.pid))
        again = run_cli("run", graph, "--journal", str(journal), "--new-run")
        assert (again.returncode, again.stdout, again.stderr) == (2, "", refusal(journal, first.pid))
        shown = run_cli("journal", str(journal))  # reading it while it runs is fine
        assert shown.returncode == 0, shown.stderr
        assert "run 1: running (1 start)" in shown.stdout
        assert first.stdin is not None
        first.stdin.write("go on\n")
        first.stdin.flush()
        stdout, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, stderr
    assert stdout.splitlines()[-1].startswith("completed in ")
    # Every item once: the refused runs gave the sink nothing.
    assert sink_lines(out) == Counter(f"source/{i} {i}" for i in range(ITEMS))


def test_a_run_killed_holding_its_journal_leaves_no_lock_behind(tmp_path: Path) -> None:
    out, journal = tmp_path / "out.txt", tmp_path / "run.db"
    graph = write(tmp_path, "gated.yaml", GATED.replace("OUT", str(out)))
    first = start_held(graph, journal)
    try:
        refused = run_cli("run", graph, "--journal", str(journal))
        assert (refused.returncode, refused.stderr) == (2, refusal(journal, first.pid))
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    before = sink_lines(out)
    assert 0 < sum(before.values()) <= ITEMS // 2

    resumed = run_cli("run", graph, "--journal", str(journal))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{journal}: resuming run 1: " in resumed.stderr
    assert resumed.stdout.splitlines()[-1].startswith("completed in ")
    seen = sink_lines(out)
    assert set(seen) == {f"source/{i} {i}" for i in range(ITEMS)}  # nothing lost
    assert sum(seen.values()) - ITEMS <= QUEUE  # given again: at most what the sink's worker held at the kill
    shown = run_cli("journal", str(journal))
    assert "run 1: completed (2 starts)" in shown.stdout


# -- in one process ----------------------------------------------------------------------------------


@node
async def numbers(n: int) -> Any:
    for i in range(n):
        yield i


@node
async def ignore(x: Any) -> None:
    pass


def graph(n: int = 5) -> dict[str, Any]:
    return {
        "nodes": {"src": {"coro": numbers, "args": {"n": n}}, "out": {"coro": ignore}},
        "graph": {"src": ["out"], "out": None},
    }


async def test_two_plumbers_of_one_process_on_one_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    first = Plumber(graph(), journal=path)  # the file is locked from here until the run has ended
    message = f"{path}: another Plumber of this process is running this journal; wait for its run to end"
    with pytest.raises(JournalError) as refused:
        Plumber(graph(), journal=Journal(path, new_run=True))
    assert str(refused.value) == message
    assert (await first.run()).state == "completed"
    again = Plumber(graph(), journal=path)
    assert again.journal is not None
    assert again.journal.already_completed
    await again.run()
    assert (await Plumber(graph(), journal=Journal(path, new_run=True)).run()).state == "completed"


async def test_a_journal_is_let_go_when_its_plumber_is_refused_or_never_runs(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await Plumber(graph(), journal=path).run()
    Plumber(graph(), journal=Journal(path, new_run=True))  # never run: the lock goes with the Plumber
    gc.collect()
    JournalLock.acquire(str(path)).release()  # nobody held it
    with pytest.raises(JournalError, match="journal of another graph"):
        Plumber(graph(6), journal=path)
    JournalLock.acquire(str(path)).release()  # the refusal let go of it


def test_a_new_journal_file_is_made_when_the_plumber_is_built(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Plumber(graph(), journal=path)
    assert path.exists()
    assert path.stat().st_size == 0  # an empty file is a new journal
    missing = tmp_path / "missing" / "j.db"
    with pytest.raises(JournalError) as refused:
        Plumber(graph(), journal=missing)
    assert str(refused.value) == f"journal {missing}: cannot open it: No such file or directory"


FORKS = """
import os, sys
from pipelines.journal.lock import JournalLock

lock = JournalLock.acquire(sys.argv[1])
if os.fork() == 0:  # a process of the run's own (a node's worker): it outlives the run's process
    os.write(1, b"child\\n")
    sys.stdin.read()
    os._exit(0)
os.write(1, b"locked\\n")
sys.stdin.read()
"""


def test_a_forked_child_does_not_keep_the_journal_locked(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", "-c", FORKS, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        assert sorted([proc.stdout.readline(), proc.stdout.readline()]) == ["child\n", "locked\n"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # The child still runs (it waits on the same stdin), and holds no lock.
        JournalLock.acquire(path).release()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()  # the child reads the end of its input and leaves
        proc.stdout.close()
        proc.wait()
