"""The benchmark runner runs: `python -m benchmarks --smoke --rounds 1` prints a row for every case.

No test here asserts a time or a ratio: the figures belong to wiki/Performance.md, measured on a
quiet machine, not to a test on a shared one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cases import CASES

ROOT = Path(__file__).parent.parent
OPTIONAL = ("aiostream", "pypeln", "uvloop")
B14_GRAPHS = ("B2's merge of 4", "B2's workers=4", "B3's diamond join")
B14_WAYS = (
    "pipelines",
    "lists of 100 through Queue(1)",
    "Queue(100) drained with get_nowait",
    "floor, one loop awaiting per item",
)


def smoke_run(shadows: Path | None = None, *more: str) -> subprocess.CompletedProcess[str]:
    env = None
    if shadows is not None:
        env = {**os.environ, "PYTHONPATH": str(shadows)}
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "benchmarks", "--smoke", "--rounds", "1", *more],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
        env=env,
        check=False,
    )


def table_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """(case, row label) -> the other cells, for each row of the printed table."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| B"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0], cells[1]] = cells[2:]
    return rows


def check_run(proc: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], list[str]]:
    assert proc.returncode == 0, proc.stderr
    for trouble in ("Traceback", "Warning", "was never", "Task was destroyed"):
        assert trouble not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("machine: ")
    rows = table_rows(proc.stdout)
    expected = {(case.id, label) for case in CASES.values() for label in case.labels}
    assert expected <= set(rows), sorted(expected - set(rows))
    for cells in rows.values():
        assert cells[1], "every row shows a figure or why it has none"
    return rows


def test_smoke_run_prints_every_row() -> None:
    rows = check_run(smoke_run())
    for graph in B14_GRAPHS:  # B14: each of B2's and B3's graphs every way, against its own batch channels
        (batch,) = (label for case, label in rows if case == "B14" and label.startswith(f"{graph}: batch channels"))
        assert rows["B14", batch][3] == "(reference)"
        for way in B14_WAYS:
            assert rows["B14", f"{graph}: {way}"][3] == batch


def test_smoke_run_without_the_optional_packages(tmp_path: Path) -> None:
    """With aiostream, pypeln and uvloop missing, their rows say so and the rest is measured."""
    for name in OPTIONAL:
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('{name} hidden by the test')\n")
    rows = check_run(smoke_run(tmp_path))
    for (_, label), cells in rows.items():
        hidden = any(name in label for name in OPTIONAL)
        assert cells[1].startswith("unavailable") == hidden, (label, cells)


def test_the_loop_of_every_row_can_be_uvloop() -> None:
    proc = smoke_run(None, "--loop", "uvloop", "--only", "B1,B14")
    assert proc.returncode == 0, proc.stderr
    assert "; loop: uvloop (" in proc.stdout.splitlines()[0]
    rows = table_rows(proc.stdout)
    assert {case for case, _ in rows} == {"B1", "B14"}


@pytest.mark.parametrize("argv", [["--only", "B99"], ["--rounds", "0"], ["--loop", "curio"]])
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *argv], capture_output=True, text=True, timeout=50, cwd=ROOT, check=False
    )
    assert proc.returncode == 2
    assert "usage:" in proc.stderr
