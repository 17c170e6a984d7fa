"""The journal's writer: group commits on the event loop, and the waits for the disk in a thread.

A sink worker hands over the ids it finished and awaits a future. The first hand-over schedules a
commit for the loop's next turn; every worker that finishes before then joins it; the commit
writes all of it in one transaction and resolves their futures together.

The file is in WAL mode, where a commit with ``synchronous=NORMAL`` appends the changed pages to
the log and waits for no disk: it survives the process being killed. What does wait for the disk
(the checkpoints that fold the log into the file, the fsync each of them makes, the last one when
the run ends) runs in a background thread with its own connection, so the loop never waits on
it. ``sync='full'`` makes each commit survive a power loss too: it then waits for an fsync, and
that wait is on the loop. (Measured on CPython: handing every commit to a thread costs more than
the commit itself, because each hand-over passes the GIL back and forth; see wiki/Durability.md.)

Any error of SQLite (a full disk, a read-only file) stops journaling and fails the run through
`on_failure` with a JournalError naming the file: a run never goes on without its journal.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..state import STATE_FORMAT
from .ids import Root
from .store import APPLICATION_ID, FAILURES_SCHEMA, STATE_SCHEMA, JournalError, RunRecord, create_schema

__all__ = ["Batch", "Failure", "Writer"]

SNAPSHOT_INTERVAL = 1.0  # seconds between two writes of every node's count
CHECKPOINT_COMMITS = 500  # fold the log into the file after this many commits
_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""The encoder of the progress each commit writes (made once: json.dumps with separators makes one a call)."""


@dataclass(slots=True)
class Batch:
    """What one sink worker hands the writer."""

    sink: str
    records: list[tuple[tuple[Any, ...], Root]]
    """(item id, its root) for the items the sink finished whose root is not done."""
    finished: int
    """How many items the sink finished (recorded, or with their root done)."""
    state: str | None = None
    """A stateful sink: its state with these items folded in (JSON text), written in the same transaction."""
    writes: list[tuple[str, Any]] | None = None
    """A sink with an SQLiteOutput: its writes (sql, parameters) for these items, run in the same transaction."""


Failure = tuple[str, str, tuple[Any, ...], Root]
"""(node, outcome, item id, its root): an item that ended at a node without succeeding there."""


class Writer:
    """Owns the journal's connection and the done-root ranges of the run."""

    def __init__(
        self,
        path: str,
        *,
        graph_hash: str,
        node_names: list[str],
        root_names: list[str],
        resume: RunRecord | None,
        sync: str,
        sinks: set[str],
        snapshot: Callable[[], dict[str, int]],
        schema: list[str] | None = None,
        rerun: list[Root] | None = None,
    ) -> None:
        self._path = path
        self._graph_hash = graph_hash
        self._node_names = node_names
        self._sync = sync
        self._sinks = sinks
        self._snapshot = snapshot
        self._schema = schema or []
        self._resume = resume
        self._rerun = rerun or []
        self._upto: dict[str, int] = dict.fromkeys(root_names, 0)
        self._above: dict[str, list[list[int]]] = {name: [] for name in root_names}
        self._base: dict[str, int] = {}
        if resume is not None:
            for name, (upto, above) in resume.roots.items():
                self._upto[name] = upto
                self._above[name] = [[lo, hi] for lo, hi in above]
            self._base = dict(resume.nodes)
        self._totals: dict[str, int] = {sink: self._base.get(sink, 0) for sink in sinks}
        self._quoted = {name: _COMPACT.encode(name) for name in [*self._upto, *self._totals]}
        """Each source's and sink's name as JSON text, for the progress each commit writes."""
        self._changed = False
        self.run_id = resume.id if resume is not None else 0
        self._last_snapshot = 0.0
        self._connection: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_failure: Callable[[BaseException], None] | None = None
        # The commit the loop runs on its next turn, and what it carries.
        self._scheduled = False
        self._batches: list[Batch] = []
        self._done: list[Root] = []
        self._purge: list[Root] = []
        self._failures: list[Failure] = []
        self._futures: list[asyncio.Future[None]] = []
        self._failed = False
        self._commits = 0
        self._checkpointer: _Checkpointer | None = None

    # -- on the loop -----------------------------------------------------------------------------

    def open(self, loop: asyncio.AbstractEventLoop, on_failure: Callable[[BaseException], None]) -> None:
        """Make or reopen the file and write the run's start; raises JournalError when it cannot."""
        self._loop = loop
        self._on_failure = on_failure
        try:
            self._open()
        except sqlite3.Error as exc:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            raise self._error(exc) from exc
        self._checkpointer = _Checkpointer(self._path, loop, self._report)

    def hand_over(
        self, batch: Batch | None, done: list[Root], purge: list[Root], failures: list[Failure] | None = None
    ) -> asyncio.Future[None] | None:
        """Add to the next commit; with a batch, the future resolves once it is committed."""
        if batch is not None:
            self._batches.append(batch)
        self._done.extend(done)
        self._purge.extend(purge)
        if failures:
            self._failures.extend(failures)
        future = None
        if batch is not None:
            assert self._loop is not None
            future = self._loop.create_future()
            self._futures.append(future)
        if not self._scheduled and not self._failed:
            self._scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._commit)
        return future

    def close(self, state: str, callback: Callable[[BaseException | None], None]) -> None:
        """Write the rest and the run's final state; the file is folded back into one in the thread.

        `callback(error or None)` is called on the loop once the file is closed.
        """
        assert self._loop is not None
        error: BaseException | None = None
        if not self._failed:
            try:
                self._write(state)
            except sqlite3.Error as exc:
                error = self._error(exc)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        checkpointer = self._checkpointer
        if checkpointer is None:
            self._loop.call_soon(callback, error)
            return
        checkpointer.finish(fold=error is None and not self._failed, callback=lambda late: callback(error or late))

    def _commit(self) -> None:
        self._scheduled = False
        if self._failed or self._connection is None:
            return  # the run is failing (its tasks are cancelled), or it ended and close() wrote it all
        futures, self._futures = self._futures, []
        try:
            self._write(None)
        except sqlite3.Error as exc:
            self._report(self._error(exc))
            return
        for future in futures:
            if not future.done():
                future.set_result(None)

    def _report(self, error: BaseException) -> None:
        if not self._failed:
            self._failed = True
            assert self._on_failure is not None
            self._on_failure(error)

    def _error(self, exc: BaseException) -> JournalError:
        return JournalError(f"journal {self._path}: cannot write: {exc}")

    # -- writing ---------------------------------------------------------------------------------

    def _open(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._connection = connection
        if connection.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            # A new file: the schema is written before WAL mode, so that the header bytes that
            # say what the file is are in the file itself, never only in its log.
            connection.execute("BEGIN IMMEDIATE")
            create_schema(connection, self._graph_hash, self._node_names)
            connection.execute("COMMIT")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"cannot use write-ahead logging (journal mode stays {mode!r})")
        connection.execute(f"PRAGMA synchronous = {'FULL' if self._sync == 'full' else 'NORMAL'}")
        connection.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer thread does it
        now = time.time()
        connection.execute("BEGIN IMMEDIATE")
        for statement in [*STATE_SCHEMA, *FAILURES_SCHEMA, *self._schema]:
            connection.execute(statement)
        if self._resume is not None:
            connection.execute(
                "UPDATE runs SET state = 'running', attempts = attempts + 1, updated = ? WHERE id = ?",
                (now, self.run_id),
            )
            if self._rerun:
                # The items to rerun are not done any more, and their failures are forgotten: the
                # rerun records them again if they fail again. Their sinks' rows stay, to pass over.
                connection.executemany(
                    "DELETE FROM failures WHERE run = ? AND source = ? AND seq = ?",
                    [(self.run_id, *root) for root in self._rerun],
                )
                connection.execute("UPDATE runs SET progress = ? WHERE id = ?", (self._progress(), self.run_id))
        else:
            cursor = connection.execute(
                "INSERT INTO runs (state, started, updated, attempts, progress) VALUES ('running', ?, ?, 1, ?)",
                (now, now, self._progress()),
            )
            assert cursor.lastrowid is not None
            self.run_id = cursor.lastrowid
            connection.executemany(
                "INSERT INTO nodes (run, node, finished) VALUES (?, ?, 0)",
                [(self.run_id, name) for name in self._node_names],
            )
        connection.execute("COMMIT")

    def _write(self, final_state: str | None) -> None:
        """One transaction: what was handed over, and with `final_state`, the end of the run."""
        connection = self._connection
        assert connection is not None
        statements = self._item_statements()
        statements += self._run_statements(final_state)
        if not statements:
            return
        if len(statements) == 1 and len(statements[0][1]) == 1:
            connection.execute(statements[0][0], statements[0][1][0])  # one statement: its own transaction
        else:
            connection.execute("BEGIN")
            try:
                for sql, parameters in statements:
                    connection.executemany(sql, parameters)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        self._commits += 1
        if self._commits >= CHECKPOINT_COMMITS and self._checkpointer is not None:
            self._commits = 0
            self._checkpointer.request()

    def _item_statements(self) -> list[tuple[str, Any]]:
        """The statements that record what was handed over since the last write (each with its list
        of parameters, for one executemany): the sinks' own writes, finished items, failures, states."""
        run = self.run_id
        batches, self._batches = self._batches, []
        done, self._done = self._done, []
        purge, self._purge = self._purge, []
        failures, self._failures = self._failures, []
        rows: list[tuple[Any, ...]] = []
        states: dict[str, str] = {}
        statements: list[tuple[str, Any]] = []
        for batch in batches:
            for sql, parameters in batch.writes or ():
                if statements and statements[-1][0] == sql:
                    statements[-1][1].append(parameters)  # one executemany for a run of the same statement
                else:
                    statements.append((sql, [parameters]))
            self._totals[batch.sink] += batch.finished
            self._changed = True
            sink = batch.sink
            if batch.records:
                rows.extend((run, sink, root[0], root[1], json.dumps(key)) for key, root in batch.records)
            if batch.state is not None:
                states[sink] = batch.state  # the last one holds every batch before it
        self._mark_all_done(done)
        if rows:
            statements.append(("INSERT INTO finished (run, sink, source, seq, item) VALUES (?, ?, ?, ?, ?)", rows))
        if failures:
            statements.append(
                (
                    "INSERT INTO failures (run, node, outcome, source, seq, item) VALUES (?, ?, ?, ?, ?, ?)",
                    [(run, node, outcome, *root, json.dumps(key)) for node, outcome, key, root in failures],
                )
            )
        if states:
            statements.append(
                (
                    "INSERT OR REPLACE INTO states (run, node, format, data) VALUES (?, ?, ?, ?)",
                    [(run, node, STATE_FORMAT, data) for node, data in states.items()],
                )
            )
        if purge:
            statements.append(
                ("DELETE FROM finished WHERE run = ? AND source = ? AND seq = ?", [(run, *root) for root in purge])
            )
        if self._changed:
            self._changed = False
            statements.append(("UPDATE runs SET progress = ? WHERE id = ?", [(self._progress(), run)]))
        return statements

    def _run_statements(self, final_state: str | None) -> list[tuple[str, Any]]:
        """The statements that record the run's progress: its counts every SNAPSHOT_INTERVAL seconds,
        and with `final_state`, its end."""
        run = self.run_id
        statements: list[tuple[str, Any]] = []
        now = time.monotonic()
        if final_state is not None or now - self._last_snapshot >= SNAPSHOT_INTERVAL:
            self._last_snapshot = now
            counts = {
                node: self._base.get(node, 0) + handled
                for node, handled in self._snapshot().items()
                if node not in self._totals
            }
            statements.append(
                (
                    "UPDATE nodes SET finished = ? WHERE run = ? AND node = ?",
                    [(count, run, node) for node, count in counts.items()],
                )
            )
            statements.append(("UPDATE runs SET updated = ? WHERE id = ?", [(time.time(), run)]))
        if final_state is not None:
            statements.append(("UPDATE runs SET state = ? WHERE id = ?", [(final_state, run)]))
            if final_state == "completed":
                # What the sinks finished is needed no more, except for the items that did not
                # succeed somewhere: a later resume may rerun them and pass over what they finished.
                statements.append(
                    (
                        "DELETE FROM finished WHERE run = ? AND NOT EXISTS (SELECT 1 FROM failures AS f "
                        "WHERE f.run = finished.run AND f.source = finished.source AND f.seq = finished.seq)",
                        [(run,)],
                    )
                )
        return statements

    def _progress(self) -> str:
        """The run's progress as compact JSON: ``{"roots": {source: [upto, [[lo, hi], ...]]}, "sinks":
        {sink: finished}}``, put together from its parts (every commit writes it; the names are
        encoded once, the counts are ints)."""
        quoted, above = self._quoted, self._above
        roots = ",".join(
            [
                f"{quoted[name]}:[{upto},{_COMPACT.encode(above[name]) if above[name] else '[]'}]"
                for name, upto in self._upto.items()
            ]
        )
        sinks = ",".join([f"{quoted[sink]}:{count}" for sink, count in self._totals.items()])
        return f'{{"roots":{{{roots}}},"sinks":{{{sinks}}}}}'

    def _mark_all_done(self, done: list[Root]) -> None:
        """`_mark_done` for each, with the common case (the next position of a source) inline."""
        upto_of = self._upto
        name: str | None = None
        upto = 0
        above: list[list[int]] = []
        for root in done:
            if root[0] != name:
                if name is not None:
                    upto_of[name] = upto
                name = root[0]
                upto = upto_of[name]
                above = self._above[name]
                self._changed = True
            if root[1] == upto and not above:
                upto += 1
                continue
            upto_of[name] = upto
            self._mark_done(root)
            upto = upto_of[name]
        if name is not None:
            upto_of[name] = upto

    def _mark_done(self, root: Root) -> None:
        """Add a done root to its source's ranges: everything below `upto`, and `above`."""
        name, seq = root
        upto = self._upto[name]
        if seq < upto:
            return
        self._changed = True
        above = self._above[name]
        if seq == upto:
            upto += 1
            while above and above[0][0] <= upto:
                upto = max(upto, above.pop(0)[1])
            self._upto[name] = upto
            return
        if above and above[-1][1] == seq:
            above[-1][1] = seq + 1  # the common case: right after the last range
            return
        if not above or above[-1][1] < seq:
            above.append([seq, seq + 1])
            return
        i = bisect.bisect_right(above, [seq, seq + 1])
        left = above[i - 1] if i > 0 else None
        if left is not None and left[0] <= seq < left[1]:
            return
        right = above[i] if i < len(above) else None
        if left is not None and left[1] == seq:
            left[1] = seq + 1
            if right is not None and right[0] == seq + 1:
                left[1] = right[1]
                del above[i]
        elif right is not None and right[0] <= seq + 1:
            right[0] = min(right[0], seq)
        else:
            above.insert(i, [seq, seq + 1])


class _Checkpointer:
    """A thread with its own connection that folds the log into the file when asked, and at the end."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop, report: Callable[[BaseException], None]) -> None:
        self._path = path
        self._loop = loop
        self._report = report
        self._wake = threading.Condition()
        self._requested = False
        self._final: tuple[bool, Callable[[BaseException | None], None]] | None = None
        self._thread = threading.Thread(target=self._main, name="pipelines-journal-checkpoint", daemon=True)
        self._thread.start()

    def request(self) -> None:
        with self._wake:
            self._requested = True
            self._wake.notify()

    def finish(self, *, fold: bool, callback: Callable[[BaseException | None], None]) -> None:
        """Fold the log into the file (when `fold`), close, and call `callback` on the loop."""
        with self._wake:
            self._final = (fold, callback)
            self._wake.notify()

    def _main(self) -> None:
        connection: sqlite3.Connection | None = None
        final: tuple[bool, Callable[[BaseException | None], None]] | None = None
        error: BaseException | None = None
        try:
            connection = sqlite3.connect(self._path, isolation_level=None)
            while True:
                with self._wake:
                    while not self._requested and self._final is None:
                        self._wake.wait()
                    requested, self._requested = self._requested, False
                    final = self._final
                if final is not None:
                    if final[0]:
                        # The only connection left: back to a single file, the log folded in and removed.
                        connection.execute("PRAGMA journal_mode = DELETE")
                    break
                if requested:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            error = JournalError(f"journal {self._path}: cannot write: {exc}")
            if final is None:
                self._post(self._report, error)  # fails the run now
                error = None
        finally:
            if connection is not None:
                connection.close()
        with self._wake:
            while self._final is None:
                self._wake.wait()
            callback = self._final[1]
        self._post(callback, error)

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            self._loop.call_soon_threadsafe(callback, *args)
