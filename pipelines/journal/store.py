"""The journal file: an SQLite database, its schema and format version, reading it back.

The file belongs to one graph (its hash is stored when the file is made) and holds the runs of
that graph, one after the other. For each run it keeps:

* ``runs``: the run's state ('running', 'completed', 'stopped', 'failed', 'cancelled'), when it
  started, when it was last written, how many times it was started (the first time and each
  resume), and its ``progress``, one JSON object rewritten by every commit:
  ``{"roots": {source: [upto, [[lo, hi], ...]]}, "sinks": {sink: finished}}``: per source, the
  items that are done (nothing derived from them is left to handle): every position below
  ``upto`` and the ``[lo, hi)`` ranges; per sink, how many items it finished;
* ``finished``: which items each sink finished, for the items whose root is not done yet (a
  root that is done needs no such rows: they are deleted in the same transaction);
* ``nodes``: per node that is not a sink, how many items it handled, written once a second and
  at the end (work redone after a crash included).

Checking a file reads its header bytes and then opens it read-only: a file that is not a journal,
a journal of another graph or of a newer format is refused with a `JournalError` and left as it was.
The format is ``PRAGMA user_version``; the file is recognised by ``PRAGMA application_id``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..errors import JournalError

__all__ = [
    "APPLICATION_ID",
    "FORMAT",
    "JournalError",
    "RunRecord",
    "StoredJournal",
    "create_schema",
    "done_count",
    "read_journal_file",
]

FORMAT = 1
APPLICATION_ID = 0x706C4A31  # 'plJ1'
_HEADER = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    started REAL NOT NULL,
    updated REAL NOT NULL,
    attempts INTEGER NOT NULL,
    progress TEXT NOT NULL
);
CREATE TABLE finished (
    run INTEGER NOT NULL,
    sink TEXT NOT NULL,
    source TEXT NOT NULL,
    seq INTEGER NOT NULL,
    item TEXT NOT NULL
);
CREATE INDEX finished_by_root ON finished (run, source, seq);
CREATE TABLE nodes (
    run INTEGER NOT NULL,
    node TEXT NOT NULL,
    finished INTEGER NOT NULL,
    PRIMARY KEY (run, node)
);
"""


@dataclass
class RunRecord:
    """One run of a journal, as stored."""

    id: int
    state: str
    started: float
    updated: float
    attempts: int
    roots: dict[str, tuple[int, list[tuple[int, int]]]] = field(default_factory=dict)
    """Per source (or zip group): every position below ``upto`` is done, and the ``[lo, hi)`` ranges."""
    finished: dict[str, set[tuple[Any, ...]]] = field(default_factory=dict)
    """Per sink: the items it finished whose root is not done."""
    nodes: dict[str, int] = field(default_factory=dict)
    """Per node: items finished (a sink), or handled (any other node)."""

    @property
    def done(self) -> int:
        """Items of the sources that are done."""
        return sum(done_count(upto, above) for upto, above in self.roots.values())


@dataclass
class StoredJournal:
    """What a journal file holds: its graph's hash and node names, and its runs, oldest first."""

    path: str
    graph_hash: str
    node_names: list[str]
    runs: list[RunRecord]


def done_count(upto: int, above: list[tuple[int, int]]) -> int:
    return upto + sum(hi - lo for lo, hi in above)


def read_journal_file(path: str | os.PathLike[str], *, with_items: bool = False) -> StoredJournal | None:
    """Read a journal without changing it; None when there is no file yet (or an empty one).

    With `with_items`, the last run's ``finished`` rows are read too (what a resume needs).
    Raises JournalError when the file is not a journal this version can read.
    """
    name = os.fspath(path)
    if not _exists(name):
        return None
    _check_header(name)
    try:
        connection = sqlite3.connect(f"file:{quote(os.path.abspath(name))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise JournalError(f"journal {name}: cannot open it: {exc}") from None
    try:
        return _read(connection, name, with_items)
    except sqlite3.Error as exc:
        raise JournalError(f"journal {name}: cannot read it: {exc}") from None
    finally:
        connection.close()


def _exists(name: str) -> bool:
    try:
        size = os.path.getsize(name)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise JournalError(f"journal {name}: cannot read it: {exc.strerror or exc}") from None
    # An empty file is a new journal, unless a write-ahead log holds what a crash left.
    return size > 0 or os.path.exists(name + "-wal")


def _check_header(name: str) -> None:
    if os.path.isdir(name):
        raise JournalError(f"journal {name}: is a directory, not a journal file")
    try:
        with open(name, "rb") as file:
            header = file.read(100)
    except OSError as exc:
        raise JournalError(f"journal {name}: cannot read it: {exc.strerror or exc}") from None
    if not header.startswith(_HEADER) or len(header) < 100:
        raise JournalError(f"{name}: not a pipelines journal (not an SQLite database)")
    application_id = int.from_bytes(header[68:72], "big")
    version = int.from_bytes(header[60:64], "big")
    if application_id != APPLICATION_ID:
        raise JournalError(f"{name}: not a pipelines journal (an SQLite database of something else)")
    if version > FORMAT:
        raise JournalError(
            f"{name}: journal format {version} is newer than this version of pipelines reads (format {FORMAT}); "
            "upgrade pipelines to resume it"
        )
    if version < 1:
        raise JournalError(f"{name}: not a pipelines journal (no format version)")


def _read(connection: sqlite3.Connection, name: str, with_items: bool) -> StoredJournal:
    meta = dict(connection.execute("SELECT key, value FROM meta"))
    if "graph_hash" not in meta:
        raise JournalError(f"{name}: not a pipelines journal (it names no graph)")
    runs = []
    for run_id, state, started, updated, attempts, progress in connection.execute(
        "SELECT id, state, started, updated, attempts, progress FROM runs ORDER BY id"
    ):
        run = RunRecord(run_id, state, started, updated, attempts)
        figures = json.loads(progress)
        run.roots = {name: (upto, [(lo, hi) for lo, hi in above]) for name, (upto, above) in figures["roots"].items()}
        run.nodes = dict(connection.execute("SELECT node, finished FROM nodes WHERE run = ?", (run.id,)))
        run.nodes.update(figures["sinks"])
        runs.append(run)
    if with_items and runs:
        last = runs[-1]
        for sink, item in connection.execute("SELECT sink, item FROM finished WHERE run = ?", (last.id,)):
            last.finished.setdefault(sink, set()).add(tuple(json.loads(item)))
    return StoredJournal(name, meta["graph_hash"], json.loads(meta.get("nodes", "[]")), runs)


def create_schema(connection: sqlite3.Connection, graph_hash: str, node_names: list[str]) -> None:
    """Make an empty database a journal of the graph `graph_hash` (inside the caller's transaction)."""
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            connection.execute(statement)
    connection.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("graph_hash", graph_hash), ("nodes", json.dumps(node_names)), ("format", str(FORMAT))],
    )
    connection.execute(f"PRAGMA user_version = {FORMAT}")
