"""run_forever: the first SIGINT or SIGTERM drains the run, the second cancels it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = Path(__file__).parent / "programs" / "endless.py"


def start(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", str(PROGRAM), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


FUSE = pytest.mark.parametrize("fuse", [(), ("--fuse",)], ids=["not fused", "fused"])
"""Fused, nothing in the run awaits: the segment must still let the loop turn for the signal."""


@FUSE
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_stops_the_sources_and_drains(signum: int, fuse: tuple[str, ...]) -> None:
    proc = start(*fuse)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    state, put, seen, complete, fused = out.strip().split(maxsplit=4)
    assert fused == ("fused=(('src', 'out'),)" if fuse else "fused=()")
    assert state == "stopped"
    assert put.removeprefix("put=") == seen.removeprefix("seen=")
    assert complete == "all=yes"
    name = signal.Signals(signum).name
    assert f"{name}: stopping the sources and draining; send it again to cancel" in err
    assert "Traceback" not in err


@FUSE
def test_second_signal_cancels(fuse: tuple[str, ...]) -> None:
    proc = start("--stuck", *fuse)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    assert proc.stderr.readline() == "SIGINT: stopping the sources and draining; send it again to cancel\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    assert out.startswith("cancelled: the run was cancelled with ")
    assert "SIGINT: cancelling the run" in err
    assert "Task was destroyed" not in err
    assert "never retrieved" not in err
