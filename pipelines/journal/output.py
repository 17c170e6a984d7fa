"""`SQLiteOutput`: a sink's rows written in the journal's own transaction, so each lands exactly once.

A sink declares an `SQLiteOutput` as its state (pipelines.state) and calls `execute()` for each
write. In a journaled run the writes wait with the items they came from, and the journal commits
them in the transaction that records those items as finished (pipelines.journal.engine): after a
crash, an item whose write was committed is passed over, and any other item is handled again and
its write made then. Without a journal each write is committed at once, through a connection of
its own.

The tables live in the journal file itself. SQLite can attach another database to the journal's
connection, but with the journal in WAL mode a transaction over several files is atomic in each
file, not across them: a crash between the two commits would keep the rows without the record of
their items (written again) or the reverse (lost). One file, one commit.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import PipelineStateError
from .store import JournalError

__all__ = ["SQLiteOutput"]

Write = tuple[str, Sequence[Any] | Mapping[str, Any]]

JOURNAL_TABLES = ("finished", "meta", "nodes", "runs", "states")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SQLiteOutput:
    """The state of a sink whose effect is rows in SQLite: written exactly once across crashes.

    `tables` maps each table's name to its column definitions (``{"hits": "item TEXT PRIMARY KEY,
    value INTEGER"}``); each is made with ``CREATE TABLE IF NOT EXISTS`` when the run starts, in
    the journal's file. `path` is the database to write to when the run has no journal (None: the
    run must have one).

    `execute(sql, parameters)` queues one write; `writes` counts those committed (with the journal,
    as of its last snapshot). Read the rows with any SQLite client, from the journal file, once the
    run has ended or while it runs (`sqlite3 run.db "SELECT ..."`).
    """

    def __init__(self, tables: Mapping[str, str], *, path: str | os.PathLike[str] | None = None) -> None:
        for name in tables:
            if not _NAME.fullmatch(name) or name.lower() in JOURNAL_TABLES or name.lower().startswith("sqlite_"):
                raise ValueError(
                    f"SQLiteOutput: table name {name!r} must be a plain identifier and none of the journal's "
                    f"own tables ({', '.join(JOURNAL_TABLES)})"
                )
        self.tables = dict(tables)
        self.path = os.fspath(path) if path is not None else None
        self.writes = 0
        """Writes committed: in a journaled run, as of the last snapshot (what a resumed run starts from)."""
        self._queued: list[Write] = []
        self._journaled = False
        self._connection: sqlite3.Connection | None = None

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> None:
        """Write with `sql`: committed with the item being handled (journal), or at once (no journal)."""
        if self._journaled:
            self._queued.append((sql, parameters))
            return
        connection = self._connection or self._open()
        with connection:
            connection.execute(sql, parameters)
        self.writes += 1

    def schema(self) -> list[str]:
        """The statements that make the tables."""
        return [f"CREATE TABLE IF NOT EXISTS {name} ({columns})" for name, columns in self.tables.items()]

    def journaled(self) -> None:
        """A journal commits the writes from now on (pipelines.journal.engine calls this as the run starts)."""
        self._journaled = True

    def take(self) -> list[Write]:
        """The writes queued since the last call: the journal commits them with the snapshot."""
        queued, self._queued = self._queued, []
        self.writes += len(queued)
        return queued

    def dump(self) -> dict[str, int]:
        return {"writes": self.writes}

    def load(self, data: Any) -> None:
        if not (isinstance(data, dict) and isinstance(data.get("writes"), int)):
            raise TypeError(f"a snapshot of an SQLiteOutput is {{'writes': count}}, got {data!r}")
        self.writes = data["writes"]
        self._queued.clear()

    def close(self) -> None:
        """Close the connection of a run without a journal (one is opened again if needed)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _open(self) -> sqlite3.Connection:
        if self.path is None:
            raise PipelineStateError(
                "SQLiteOutput(path=None) writes into the run's journal, and this run has none; "
                "give the run a journal, or the output a path"
            )
        connection = sqlite3.connect(self.path)
        try:
            with connection:
                for statement in self.schema():
                    connection.execute(statement)
        except sqlite3.Error as exc:
            connection.close()
            raise JournalError(f"SQLiteOutput {self.path}: cannot make its tables: {exc}") from None
        self._connection = connection
        return connection
