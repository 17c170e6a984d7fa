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


def test_the_dashboard_demo_serves_its_pipeline_and_drains_on_ctrl_c() -> None:
    import json
    import re
    import signal
    import urllib.request

    proc = subprocess.Popen(
        [sys.executable, "-W", "error", str(ROOT / "demos" / "dashboard.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"dashboard: (http://127\.0\.0\.1:\d+)/\n", line)
        assert match, line
        with urllib.request.urlopen(f"{match[1]}/", timeout=30) as page:
            assert b"<title>" in page.read()
        stats: dict = {"nodes": {"store": {"completed": 0}}}
        while stats["nodes"]["store"]["completed"] < 5:  # each call is a round trip: the run moves on meanwhile
            with urllib.request.urlopen(f"{match[1]}/api/stats", timeout=30) as response:
                stats = json.loads(response.read())
        assert stats["state"] == "running"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")
