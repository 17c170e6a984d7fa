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
  at the end (work redone after a crash included);
* ``states``: per stateful sink (pipelines.state), the last snapshot of its state: the snapshot's
  format and its JSON text, written in the transaction that records the items folded into it.
  A snapshot of a format newer than this version reads is refused like a newer file;
* ``failures``: the items that ended at a node without succeeding there (their outcome 'failed',
  'skipped' or 'routed', pipelines.journal.recovery), so that a resume can rerun them or keep them
  as finished. A root with such a row keeps its sinks' ``finished`` rows, whatever its state: a
  rerun passes over what its sinks finished.

Checking a file reads its header bytes and then opens it read-only: a file that is not a journal,
a journal of another graph or of a newer format is refused with a `JournalError` and left as it was.
The format is ``PRAGMA user_version``; the file is recognised by ``PRAGMA application_id``.

Every value read back is checked for the type and shape the writer gives it (SQLite keeps any
type in any column, and a bad disk, a bad copy or a hand edit can leave anything): a damaged
journal is refused the same way, with one line naming the file, the value and what was expected,
before anything runs.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
import sqlite3
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..errors import JournalError
from ..properties import RECOVERY_OUTCOMES
from ..state import STATE_FORMAT
from ..types import Marker

__all__ = [
    "APPLICATION_ID",
    "FAILURES_SCHEMA",
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

RUN_STATES = ("running", "completed", "stopped", "failed", "cancelled")
MAX_COUNT = 2**62  # far beyond any run, and a count plus what one run adds still fits SQLite's integers
MAX_TIME = 1e11  # seconds since 1970: the year 5138
ROOT_SHAPE = "[upto, [[lo, hi], ...]]"
PROGRESS = f'{{"roots": {{source: {ROOT_SHAPE}}}, "sinks": {{sink: count}}}}'
ITEM = "an item id: a JSON array [source, position, output index, ...]"
NODE_NAMES = "a JSON array of the graph's node names"
_MISSING: Any = Marker("missing")  # how a key absent from the JSON is shown

# The snapshots of stateful nodes (pipelines.state): added to a journal of format 1 when it is
# first opened by a run, so that files made before it stay readable; an older version of
# pipelines cannot run a graph with state at all, so it never meets this table.
STATE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS states ("
    "run INTEGER NOT NULL, node TEXT NOT NULL, format INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run, node))",
)

# The items that did not succeed at a node (pipelines.journal.recovery): added like `states`.
FAILURES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS failures ("
    "run INTEGER NOT NULL, node TEXT NOT NULL, outcome TEXT NOT NULL, source TEXT NOT NULL, seq INTEGER NOT NULL, "
    "item TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS failures_by_root ON failures (run, source, seq)",
)

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
""" + "\n".join(f"{statement};" for statement in (*STATE_SCHEMA, *FAILURES_SCHEMA))


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
    sinks: dict[str, int] = field(default_factory=dict)
    """Per sink: items finished (as in `nodes`)."""
    states: dict[str, Any] = field(default_factory=dict)
    """Per node with state: the last snapshot of it (the JSON data), written with the items folded into it."""
    failures: list[tuple[str, str, tuple[Any, ...]]] = field(default_factory=list)
    """(node, outcome, item id) of each item that ended at a node without succeeding, oldest first."""

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
    connection.text_factory = _decoded
    check = _Check(name)
    meta = {key: value for key, value in connection.execute("SELECT key, value FROM meta") if isinstance(key, str)}
    if "graph_hash" not in meta:
        raise JournalError(f"{name}: not a pipelines journal (it names no graph)")
    graph_hash = meta["graph_hash"]
    if not isinstance(graph_hash, str) or not re.fullmatch(r"[0-9a-f]{16}", graph_hash):
        raise check.damaged("the graph hash", graph_hash, "the hash of the journal's graph (16 hex digits)")
    node_names = check.json(meta.get("nodes", "[]"), "the list of node names", NODE_NAMES)
    if not isinstance(node_names, list) or not all(isinstance(node, str) for node in node_names):
        raise check.damaged("the list of node names", node_names, NODE_NAMES)
    runs = []
    for row in connection.execute("SELECT id, state, started, updated, attempts, progress FROM runs ORDER BY id"):
        runs.append(check.run(*row))
    by_id = {run.id: run for run in runs}
    for run_id, node, finished in connection.execute("SELECT run, node, finished FROM nodes"):
        run = by_id[check.run_id(run_id, "nodes", by_id)]
        if not isinstance(node, str):
            raise check.damaged(f"a node's name in run {run.id}", node, "a node's name (text)")
        run.nodes[node] = check.count(finished, f"run {run.id}'s count of node {node!r}")
    for run in runs:
        run.nodes.update(run.sinks)
    last = runs[-1] if runs else None
    for run_id, sink, source, seq, item in connection.execute("SELECT run, sink, source, seq, item FROM finished"):
        key = check.finished(check.run_id(run_id, "finished", by_id), sink, source, seq, item)
        if with_items and last is not None and run_id == last.id:
            last.finished.setdefault(sink, set()).add(key)
    has_states = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'states'").fetchone()
    if has_states:
        for run_id, node, version, data in connection.execute("SELECT run, node, format, data FROM states"):
            run = by_id[check.run_id(run_id, "states", by_id)]
            run.states[check.node(node, f"a node's name in run {run.id}'s states")] = check.state(
                run.id, node, version, data
            )
    has_failures = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'failures'"
    ).fetchone()
    if has_failures:
        for run_id, node, outcome, source, seq, item in connection.execute(
            "SELECT run, node, outcome, source, seq, item FROM failures ORDER BY rowid"
        ):
            run = by_id[check.run_id(run_id, "failures", by_id)]
            run.failures.append(check.failure(run.id, node, outcome, source, seq, item, node_names))
    return StoredJournal(name, graph_hash, node_names, runs)


class _NotUTF8(bytes):
    """A text value of the file whose bytes are not UTF-8: damaged, and shown as such."""


def _decoded(raw: bytes) -> str | _NotUTF8:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return _NotUTF8(raw)


_shown_value = reprlib.Repr()
_shown_value.maxstring = _shown_value.maxother = 60
_shown_value.maxlevel = 3


def _shown(value: object) -> str:
    """A stored value as an error message quotes it: one line, cut short."""
    if isinstance(value, _NotUTF8):
        return f"text that is not UTF-8 ({len(value)} byte{'s' if len(value) != 1 else ''})"
    if isinstance(value, bytes):
        return f"a blob of {len(value)} byte{'s' if len(value) != 1 else ''}"
    return _shown_value.repr(value)


class _Check:
    """Checks of what is read from one file: each returns the value, or raises JournalError saying what is wrong.

    A journal that was damaged (by a bad disk, a bad copy, a hand edit) is refused with one line
    naming the file, the value and what was expected, before anything runs; nothing is written.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def damaged(self, where: str, value: object, expected: str, *, shown: str | None = None) -> JournalError:
        found = shown if shown is not None else _shown(value)
        return JournalError(f"{self.name}: damaged journal: {where} is {found}; expected {expected}")

    def json(self, text: object, where: str, expected: str) -> Any:
        if not isinstance(text, str):
            raise self.damaged(where, text, expected)
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            raise self.damaged(where, text, expected, shown=f"not JSON: {_shown(text)}") from None

    def count(self, value: object, where: str, least: int = 0) -> int:
        if not _is_count(value, least):
            raise self.damaged(where, value, f"a whole number from {least} to 2**62")
        assert isinstance(value, int)
        return value

    def run(
        self, run_id: object, state: object, started: object, updated: object, attempts: object, progress: object
    ) -> RunRecord:
        if not isinstance(run_id, int):  # an INTEGER PRIMARY KEY: SQLite keeps anything else out
            raise self.damaged("a run's id", run_id, "a whole number")
        where = f"run {run_id}'s"
        if state not in RUN_STATES:
            raise self.damaged(f"{where} state", state, "one of " + ", ".join(map(repr, RUN_STATES)))
        assert isinstance(state, str)
        for column, value in (("started", started), ("updated", updated)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_TIME:
                raise self.damaged(f"{where} {column}", value, "a Unix time (a number from 0 to 1e11)")
        assert isinstance(started, (int, float))
        assert isinstance(updated, (int, float))
        run = RunRecord(run_id, state, started, updated, self.count(attempts, f"{where} attempts", least=1))
        figures = self.json(progress, f"{where} progress", PROGRESS)
        if not isinstance(figures, dict):
            raise self.damaged(f"{where} progress", figures, PROGRESS)
        roots = figures.get("roots", _MISSING)
        if not isinstance(roots, dict):
            raise self.damaged(f"{where} progress['roots']", roots, f"an object {{source: {ROOT_SHAPE}}}")
        for source, done in roots.items():
            run.roots[source] = self.root(done, f"{where} progress['roots'][{source!r}]")
        sinks = figures.get("sinks", _MISSING)
        if not isinstance(sinks, dict):
            raise self.damaged(f"{where} progress['sinks']", sinks, "an object {sink: count}")
        for sink, finished in sinks.items():
            run.sinks[sink] = self.count(finished, f"{where} progress['sinks'][{sink!r}]")
        return run

    def root(self, done: object, where: str) -> tuple[int, list[tuple[int, int]]]:
        """``[upto, [[lo, hi], ...]]``: every position below upto is done, and the ranges, in order, above it."""
        expected = f"{ROOT_SHAPE}, whole numbers with upto <= lo < hi, the ranges in order"
        if not (isinstance(done, list) and len(done) == 2 and _is_count(done[0]) and isinstance(done[1], list)):
            raise self.damaged(where, done, expected)
        upto, ranges = done
        above: list[tuple[int, int]] = []
        last = upto
        for pair in ranges:
            if not (isinstance(pair, list) and len(pair) == 2 and all(_is_count(x) for x in pair)):
                raise self.damaged(where, done, expected)
            lo, hi = pair
            if not last <= lo < hi:
                raise self.damaged(where, done, expected)
            above.append((lo, hi))
            last = hi
        return upto, above

    def run_id(self, run_id: object, table: str, runs: dict[int, RunRecord]) -> int:
        """The run a row of `table` belongs to: one the journal holds (a new run could take the id of another)."""
        if not isinstance(run_id, int) or run_id not in runs:
            expected = f"the id of one of the journal's runs ({', '.join(map(str, runs)) or 'none'})"
            raise self.damaged(f"a run id in the {table} rows", run_id, expected)
        return run_id

    def node(self, node: object, where: str) -> str:
        if not isinstance(node, str):
            raise self.damaged(where, node, "a node's name (text)")
        return node

    def state(self, run_id: int, node: str, version: object, data: object) -> Any:
        """One row of ``states``: a node's snapshot, in a format this version reads."""
        where = f"run {run_id}'s state of node {node!r}"
        version = self.count(version, f"the format of {where}", least=1)
        if version > STATE_FORMAT:
            raise JournalError(
                f"{self.name}: {where} is a snapshot of format {version}, newer than this version of pipelines "
                f"reads (format {STATE_FORMAT}); upgrade pipelines to resume it"
            )
        return self.json(data, where, "JSON text (what the node's state dumped)")

    def failure(
        self, run_id: int, node: object, outcome: object, source: object, seq: object, item: object, nodes: list[str]
    ) -> tuple[str, str, tuple[Any, ...]]:
        """One row of ``failures``: an item that ended at `node` (one of `nodes`) with `outcome`."""
        where = f"run {run_id}'s failures"
        name = self.node(node, f"a node's name in {where}")
        if name not in nodes:
            raise self.damaged(f"a node's name in {where}", name, f"one of the graph's nodes ({', '.join(nodes)})")
        if outcome not in RECOVERY_OUTCOMES:
            raise self.damaged(f"an outcome in {where}", outcome, "one of " + ", ".join(map(repr, RECOVERY_OUTCOMES)))
        assert isinstance(outcome, str)
        return name, outcome, self.finished(run_id, "", source, seq, item, where)

    def finished(
        self, run_id: int, sink: object, source: object, seq: object, item: object, where: str = ""
    ) -> tuple[Any, ...]:
        """One row of ``finished``: the item id a sink finished, whose root (source, seq) is not done."""
        where = where or f"run {run_id}'s finished rows"
        if not isinstance(sink, str):
            raise self.damaged(f"a sink's name in {where}", sink, "a node's name (text)")
        if not isinstance(source, str):
            raise self.damaged(f"a source's name in {where}", source, "a source's name (text)")
        self.count(seq, f"a position in {where}")
        key = self.json(item, f"an item in {where}", ITEM)
        if not (
            isinstance(key, list)
            and len(key) >= 2
            and isinstance(key[0], str)
            and all(_is_count(index) for index in key[1:])
        ):
            raise self.damaged(f"an item in {where}", key, ITEM)
        return tuple(key)


def _is_count(value: object, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= MAX_COUNT


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
