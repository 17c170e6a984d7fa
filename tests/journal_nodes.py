"""Node functions for the journal's command-line tests (imported as tests.journal_nodes)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from pipelines import Processor, node
from pipelines.journal import SQLiteOutput

_files: dict[str, IO[str]] = {}


@node
async def square(x: int) -> int:
    return x * x


async def append_line(processor: Processor, q_elt: tuple[int], path: str) -> None:
    """The sink: appends 'source/position value' to `path`, flushed, then says so on stdout.

    The line is in the file before the run can record the item as finished, so the file shows
    every item a sink was given, including those given twice after a crash.
    """
    file = _files.get(path)
    if file is None:
        # Opened once for the whole run; an append to a local file does not wait for a disk.
        file = _files[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115, ASYNC230
    item_id = processor.item_id
    assert item_id is not None
    file.write(f"{item_id[0]}/{item_id[1]} {q_elt[0]}\n")
    file.flush()
    sys.stdout.write("+\n")
    sys.stdout.flush()


@node
async def ignore(x: Any) -> None:
    pass


@node
async def gated_count(n: int) -> Any:
    """Counts to `n`. With PIPELINES_TEST_GATE set, half-way, it says 'gate' on stdout and waits for a line on stdin.

    The test that started the process reads its stdout up to that line, knows the run is going and
    holds its journal, does what it wants meanwhile, then lets it go on by writing a line.
    """
    for i in range(n):
        if i == n // 2 and os.environ.get("PIPELINES_TEST_GATE"):
            sys.stdout.write("gate\n")
            sys.stdout.flush()
            await asyncio.to_thread(sys.stdin.readline)
        yield i


def new_windows() -> dict[str, Any]:
    """The state of `count_windows`: per window of positions, how many items and their sum."""
    return {"items": 0, "windows": {}}


async def count_windows(processor: Processor, q_elt: tuple[int], state: dict[str, Any], size: int, out: str) -> None:
    """A windowing sink: folds each value into the window of its position, then says '+' on stdout."""
    item_id = processor.item_id
    assert item_id is not None
    window = state["windows"].setdefault(str(item_id[1] // size), [0, 0])
    window[0] += 1
    window[1] += q_elt[0]
    state["items"] += 1
    sys.stdout.write("+\n")
    sys.stdout.flush()


async def write_windows(processor: Processor, state: dict[str, Any]) -> None:
    """The teardown of `count_windows`: the state as JSON, to the node's `out`."""
    text = json.dumps(state, sort_keys=True)
    await asyncio.to_thread(Path(processor.spec.args["out"]).write_text, text + "\n")


def hits_output() -> SQLiteOutput:
    """The state of `write_hit`: a table `hits` in the journal file, written exactly once per item."""
    return SQLiteOutput({"hits": "item TEXT PRIMARY KEY, value INTEGER NOT NULL"})


async def write_hit(processor: Processor, q_elt: tuple[int], state: SQLiteOutput) -> None:
    """An exactly-once sink: one row per item (a second row for an item would break the primary key)."""
    state.execute("INSERT INTO hits (item, value) VALUES (?, ?)", (json.dumps(processor.item_id), q_elt[0]))
    sys.stdout.write("+\n")
    sys.stdout.flush()


class ServiceDown(Exception):
    """What `call_service` raises for an item while its service is down."""


async def call_service(processor: Processor, q_elt: tuple[int], down: str) -> int:
    """Stands for a call to a service: fails for the items listed in the file `down` (one a line) while it exists."""
    (x,) = q_elt
    if str(x) in await asyncio.to_thread(_listed, down):
        raise ServiceDown(f"service down for item {x}")
    return 1000 + x


def _listed(path: str) -> list[str]:
    return Path(path).read_text().split() if os.path.exists(path) else []
