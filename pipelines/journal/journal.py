"""`Journal`: the file that makes a run durable, and what the run learned when it opened it."""

from __future__ import annotations

import os
from typing import Any

from ..errors import PipelineStateError

__all__ = ["Journal"]

SYNC_MODES = ("normal", "full")


class Journal:
    """An SQLite journal file for `Plumber(..., journal=...)`; a path works as well as this object.

    With a journal, the run records which items each sink finished and which source items are
    done. Running the same graph again with the same file resumes the last run if it did not
    complete: the sources run again, items already done are skipped, the rest is processed. If the
    last run completed, nothing runs: `already_completed` says so. `new_run=True` starts a new run
    of the graph whatever the state of the last one.

    Items that did not succeed at a node in the last run (they failed, were skipped, or were
    routed to an error node) are rerun or kept as finished when it resumes, per node and outcome
    (pipelines.journal.recovery): by default only the failures that failed the run are rerun;
    `rerun_failed=True` reruns the others too (a completed run with such items is then resumed),
    except where a node's `recovery` property says otherwise. Items that succeeded are never redone.

    `sync='normal'` survives the process being killed; `sync='full'` also survives a power loss
    (an fsync per group commit, much slower on most disks).

    One run writes a journal at a time: from the moment the Plumber is built until its run has
    ended, the file is locked (pipelines.journal.lock), and another Plumber on it, in this process
    or another, is refused with a JournalError; a process that dies, however, leaves no lock.

    A Journal serves one Plumber. After the Plumber is built: `run_id` (None until a new run is
    first written), `resumed`, `already_completed`, `done_before` (source items done before this
    start), `skipped_at_sources` (items the sources were not let send, because they were done),
    `rerun` (the ids of the items that did not succeed in the last run and are rerun, sorted).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, new_run: bool = False, sync: str = "normal", rerun_failed: bool = False
    ) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"Journal sync must be 'normal' or 'full', got {sync!r}")
        self.path = os.fspath(path)
        self.new_run = new_run
        self.rerun_failed = rerun_failed
        self.sync = sync
        self.run_id: int | None = None
        self.resumed = False
        self.already_completed = False
        self.done_before = 0
        self.skipped_at_sources = 0
        self.rerun: list[tuple[Any, ...]] = []
        self._claimed = False

    def __repr__(self) -> str:
        return f"<Journal {self.path!r} run={self.run_id} resumed={self.resumed}>"

    def claim(self) -> None:
        """Take this Journal for one Plumber (the run's journal engine calls it when the Plumber is
        built); a second claim raises PipelineStateError: a Journal serves one Plumber."""
        if self._claimed:
            raise PipelineStateError(f"journal {self.path}: this Journal already serves a Plumber; make a new one")
        self._claimed = True

    def release(self) -> None:
        """Give the Journal back when the Plumber it was claimed for could not be built (the file was
        locked by another run, or unusable): it may serve another Plumber, and what the failed open
        found is forgotten."""
        self._claimed = False
        self.run_id = None
        self.resumed = self.already_completed = False
        self.done_before = self.skipped_at_sources = 0
        self.rerun = []

    def opened(
        self, run_id: int, *, resumed: bool, completed: bool, done: int, rerun: list[tuple[Any, ...]] | None = None
    ) -> None:
        """Record what the run learned when it opened the file (the journal engine calls it): the run
        it writes, whether it resumes it or it had completed, the source items done before, the
        items it reruns."""
        self.run_id = run_id
        self.resumed = resumed
        self.already_completed = completed
        self.done_before = done
        self.rerun = rerun or []
