"""The demos run and end by themselves."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_demo_prints_its_20_pairs_and_exits() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "demos" / "readme_demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert len(lines) == 20
    originals = set()
    for line in lines:
        assert line.startswith("output~>  ")
        original, reversed_ = ast.literal_eval(line.removeprefix("output~>  "))
        assert reversed_ == original[::-1]  # each string met its own reversal
        originals.add(original)
    assert len(originals) == 20
