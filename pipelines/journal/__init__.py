"""Durable runs: an SQLite journal, so that a run killed half-way resumes without losing work.

``Plumber(graph, journal="run.db")`` (or a `Journal`) records, as the run goes, which items each
sink finished and which source items are done. Running the same graph with the same file after a
crash resumes the run: the sources run again from the start, the items already done are not
sent, every other item is processed, and a sink is given an item a second time only if the crash
came while one of its workers held it (at most ``workers * queue_size`` items per sink per crash).

The sources must be deterministic: each run puts the same items in the same order, since an
item's id is its position (pipelines.journal.ids). One run writes a journal at a time
(pipelines.journal.lock). A sink's declared state (pipelines.state) is snapshotted with the items
folded into it; `SQLiteOutput` makes a sink's SQLite writes part of the same commit. See
wiki/Durability.md.
"""

from __future__ import annotations

from .journal import Journal
from .output import SQLiteOutput
from .store import JournalError

__all__ = ["Journal", "JournalError", "SQLiteOutput"]
