"""The journal as a hook (pipelines.hooks): counting what is alive of each root, and the sinks' records.

The run keeps, per root (one item a source put), how many envelopes of it are alive: in a
channel, in a worker's hands, or held by a join waiting for the rest of its group. A source's put
to k successors adds k; a node handing on one input as c envelopes adds c - 1 (a dropped item
with no tombstone: -1); an async generator adds one per output per successor as it yields them,
and -1 once the input is finished; a join holds each member until its group resolves. A sink
finishing an item takes 1 off. When a root's count reaches 0 nothing of it is left: the root is
done, and the writer records it, after the sinks' records of it. Increments always happen before
the envelopes they count are handed on, so a count never reaches 0 while something is alive.

A resumed run skips done roots at the source (their positions still count), and a sink passes
over an item it finished in an earlier attempt. Those are the only two places where a resumed run
differs from a fresh one.

An item that ends at a node without succeeding (settled 'failed', 'skipped' or 'routed') is
recorded with its outcome and counted out like any other: its root can be done. A resume reruns
it or keeps it as finished (pipelines.journal.recovery); to rerun it, its root is made not done
again, so the sinks' records of such a root are kept even once it is done.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from .. import runtime
from ..lineage import is_linear
from ..properties import RECOVERY_OUTCOMES
from ..sources import InputProcessor
from .ids import Root, graph_hash, root_function, root_names
from .journal import Journal
from .lock import JournalLock
from .output import SQLiteOutput
from .recovery import items_to_rerun, undone
from .store import JournalError, RunRecord, read_journal_file
from .writer import Batch, Failure, Writer

if TYPE_CHECKING:
    from ..driver import Processor
    from ..graph import GraphSpec
    from ..plumber import Plumber
    from ..types import Key, Outcome

__all__ = ["NodeTally", "RunJournal", "open_run"]

logger = logging.getLogger(__name__)

FLUSH_DONE = 4096  # done roots kept on the loop's side before they are handed to the writer unasked
STATE_INTERVAL = 0.05  # seconds: a stateful sink snapshots its state at most this often (see NodeTally)
STATE_PENDING = 1000  # ...or once it has folded this many items since its last snapshot
STATE_SHARE = 10  # ...but never sooner than this many times the last snapshot took: at most a tenth of its time


def open_run(journal: Journal | str | Any, spec: GraphSpec) -> RunJournal:
    """Check the journal file against the graph (JournalError if unusable); the hook of one run."""
    if not isinstance(journal, Journal):
        journal = Journal(journal)
    return RunJournal(journal, spec)


class RunJournal:
    """One run's journal, installed as a hook: the counts per root, each node's tally, the writer."""

    def __init__(self, journal: Journal, spec: GraphSpec) -> None:
        journal.claim()
        self.journal = journal
        names = root_names(spec)
        self._hash = graph_hash(spec)
        self._spec = spec
        self.root = root_function(names)
        self._snapshots: RunRecord | None = None
        self._rerun: list[Root] = []
        try:
            # The file is this run's from now until it has ended: nobody else writes what is read here.
            self._lock = JournalLock.acquire(journal.path)
        except BaseException:
            journal.release()  # no Plumber was built: the Journal may serve the next one
            raise
        try:
            self.resume = self._read(names)
            self._restore_states(spec)
        except BaseException:
            self._lock.release()
            journal.release()
            raise
        self.idle = journal.already_completed
        self.names = names
        self.counts: dict[Root, int] = {}
        """How many envelopes of each root are alive (or will be), while the run has shapes that make
        more than one: not kept for a linear graph (see `pipelines.lineage.is_linear`)."""
        self.linear = is_linear(spec)
        self._keys_are_roots = self.linear and all(source == name for source, name in names.items())
        """Each item a sink finishes has its root as its key: one envelope per item, from a source
        journaled under its own name (no zip group)."""
        self._recorded: set[Root] = set()
        self._done: list[Root] = []
        self._purge: list[Root] = []
        self._failures: list[Failure] = []
        self._failed_roots: set[Root] = set()
        """The roots with an item that did not succeed somewhere: their sinks' records are kept."""
        self._processors: list[Processor] = []
        self._writer: Writer | None = None
        self._stateful: list[NodeTally] = []

    def _read(self, names: dict[str, str]) -> RunRecord | None:
        """Check the file against the graph; the run to resume, if any (JournalError if unusable)."""
        journal = self.journal
        path = journal.path
        stored = read_journal_file(path, with_items=True)
        if stored is not None and stored.graph_hash != self._hash:
            raise JournalError(
                f"{path}: journal of another graph (graph {stored.graph_hash}, this graph is {self._hash}); "
                "give another journal file"
            )
        last = stored.runs[-1] if stored is not None and stored.runs else None
        if last is None or journal.new_run:
            return None
        self._snapshots = last  # a completed run's states too: its teardowns see what the run folded
        root = self.root
        rerun, roots = items_to_rerun(self._spec, last, root, journal.rerun_failed)
        if last.state == "completed" and not rerun:
            journal.opened(last.id, resumed=False, completed=True, done=last.done)
            return None
        _check_roots(path, last, sorted(set(names.values())))
        by_source: dict[str, list[int]] = {}
        for name, seq in roots:
            by_source.setdefault(name, []).append(seq)
        for name, seqs in by_source.items():
            upto, above = last.roots[name]
            last.roots[name] = undone(upto, above, seqs)
        kept = {root(key) for _, _, key in last.failures} - set(roots)
        last.failures = [failure for failure in last.failures if root(failure[2]) in kept]
        self._rerun = roots
        journal.opened(last.id, resumed=True, completed=False, done=last.done, rerun=rerun)
        return last

    def _restore_states(self, spec: GraphSpec) -> None:
        """Put each stateful node's last snapshot into its state, in place (JournalError if it does not fit)."""
        run = self._snapshots
        if run is None:
            return
        path = self.journal.path
        stateful = sorted(name for name, node in spec.nodes.items() if node.state is not None)
        for name, data in run.states.items():
            state = spec.nodes[name].state if name in spec.nodes else None
            if state is None:
                raise JournalError(
                    f"{path}: damaged journal: run {run.id}'s states hold node {name!r}; expected only the nodes "
                    f"with state ({', '.join(stateful) or 'none'})"
                )
            try:
                state.load(data)
            except Exception as exc:
                raise JournalError(
                    f"{path}: run {run.id}'s snapshot of node {name!r}'s state cannot be loaded into "
                    f"{_named(state.factory)}: {exc!r}"
                ) from None

    # -- the hook ---------------------------------------------------------------------------------

    def run_started(self, plumber: Plumber) -> None:
        """A completed run starts no source; any other writes its start (or raises JournalError)."""
        self._processors = plumber.nodes
        if self.idle:
            for processor in self._processors:
                if isinstance(processor, InputProcessor):
                    processor.stop()
            return
        sinks = {name for name, node in self._spec.nodes.items() if node.is_sink and not node.is_source}
        writer = Writer(
            self.journal.path,
            graph_hash=self._hash,
            node_names=list(self._spec.nodes),
            root_names=sorted(set(self.names.values())),
            resume=self.resume,
            sync=self.journal.sync,
            sinks=sinks,
            snapshot=self._snapshot,
            schema=[statement for output in self._outputs() for statement in output.schema()],
            rerun=self._rerun,
        )
        try:
            runtime.require_asyncio(
                "the journal", "run this graph under asyncio (`asyncio.run(plumber.run())`) to make it durable"
            )
            writer.open(asyncio.get_running_loop(), plumber.fail)
        except BaseException:
            self._lock.release()
            raise
        self._writer = writer
        self.journal.run_id = writer.run_id
        for output in self._outputs():
            output.journaled()

    def _outputs(self) -> list[SQLiteOutput]:
        """The states that are an SQLiteOutput: their writes are committed by this journal."""
        states = [node.state.value for node in self._spec.nodes.values() if node.state is not None]
        return [state for state in states if isinstance(state, SQLiteOutput)]

    def node_hooks(self, node: Processor) -> SimpleNamespace | None:
        """The tally of `node`, with only the methods its kind of node needs."""
        if self.idle:
            return None
        spec = node.spec
        finished = self.resume.finished.get(spec.name, set()) if self.resume is not None else set()
        tally = NodeTally(self, node, finished)
        methods: dict[str, Callable[..., Any]] = {}
        if spec.is_source:
            admission = SourceAdmission(self, node)
            if admission.needed:  # else it would admit every item and count nothing
                methods["admits"] = admission.admits
            return SimpleNamespace(**methods)
        methods["settled"] = tally.settled
        if not spec.successors:
            if tally.passed_over:  # a resumed run: the items this sink finished before are passed over
                methods["admits"] = tally.admits
            methods["finished"] = tally.finished if spec.state is None else tally.finished_with_state
            if spec.state is not None:
                self._stateful.append(tally)
        if spec.is_generator:
            methods["sent"] = tally.sent_output
        elif spec.successors and len(node.outputs) != 1:
            methods["sent"] = tally.sent  # with one successor, handing on changes no count
        if spec.join_mode is not None:
            methods["held"] = tally.held
            methods["released"] = tally.released
        return SimpleNamespace(**methods)

    def run_ended(self, plumber: Plumber, state: str) -> asyncio.Future[None]:
        """Write the rest and the state; the future resolves (or fails) once the file is closed."""
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def written(error: BaseException | None) -> None:
            self._lock.release()  # the file is closed: the next run may have it
            if not ended.done():
                if error is None:
                    ended.set_result(None)
                else:
                    ended.set_exception(error)

        writer = self._writer
        if writer is None:
            written(None)
            return ended
        failure: BaseException | None = None
        if state in ("completed", "stopped"):
            # Every batch of every node ended: each state holds exactly the items not yet snapshotted.
            # (After a failure or a cancel, a sink may have stopped part-way through a batch, its
            # state holding items it never finished: the last snapshot stays, and they are redone.)
            try:
                for tally in self._stateful:
                    tally.snapshot()
            except Exception as exc:  # a state that cannot be snapshotted: the run is not complete
                failure, state = exc, "failed"
        if self.counts and state == "completed":
            logger.warning("journal: %d items were still counted alive at the end of the run", len(self.counts))
        self._hand_over(None)
        writer.close(state, written if failure is None else lambda error: written(error or failure))
        return ended

    # -- counting ----------------------------------------------------------------------------------

    def failed(self, node: str, outcome: str, key: Key) -> None:
        """The item `key` ended at `node` without succeeding: record it, with the next commit."""
        root = self.root(key)
        self._failures.append((node, outcome, key, root))
        self._failed_roots.add(root)

    def root_done(self, root: Root) -> None:
        self._done.append(root)
        if root in self._recorded and root not in self._failed_roots:
            self._recorded.discard(root)
            self._purge.append(root)
        if len(self._done) >= FLUSH_DONE:
            self._hand_over(None)

    def finish(
        self, sink: str, keys: list[Any], state: str | None = None, writes: list[tuple[str, Any]] | None = None
    ) -> asyncio.Future[None]:
        """A sink finished these items: record them (with its `state`, in which they are folded);
        the future resolves once that is committed."""
        recorded = self._recorded
        if self._keys_are_roots and not recorded and not self._failed_roots:
            # The common case of a linear graph: each item's root is done, and none is kept.
            self._done += keys
            return self._hand_over_batch(Batch(sink, [], len(keys), state, writes))
        counts = self.counts
        root_of = self.root
        done = self._done
        records = []
        counted = not self.linear
        for key in keys:
            root = root_of(key)
            left = counts[root] - 1 if counted else 0
            if left:
                counts[root] = left
                records.append((key, root))
                recorded.add(root)
            else:
                if counted:
                    del counts[root]
                done.append(root)  # root_done(), inline: the common case
                if self._failed_roots and root in self._failed_roots:
                    records.append((key, root))  # kept with the root's failures: a rerun passes over it
                elif recorded and root in recorded:
                    recorded.discard(root)
                    self._purge.append(root)
        return self._hand_over_batch(Batch(sink, records, len(keys), state, writes))

    def _hand_over_batch(self, batch: Batch) -> asyncio.Future[None]:
        future = self._hand_over(batch)
        assert future is not None
        return future

    def _hand_over(self, batch: Batch | None) -> asyncio.Future[None] | None:
        assert self._writer is not None
        done, self._done = self._done, []
        purge, self._purge = self._purge, []
        failures, self._failures = self._failures, []
        return self._writer.hand_over(batch, done, purge, failures)

    def _snapshot(self) -> dict[str, int]:
        """Items each node finished in this attempt (read from the writer's thread: plain ints)."""
        counts = {}
        for processor in self._processors:
            if processor.input_queue is None:
                counts[processor.name] = processor.items_out
            else:
                counts[processor.name] = processor.items_in - processor.in_flight
        return counts


class NodeTally:
    """One node's counting: its methods are the node hooks the journal installs."""

    __slots__ = (
        "_counts",
        "_held",
        "_key_length",
        "_last_snapshot",
        "_linear",
        "_match",
        "_not_before",
        "_pending",
        "_root",
        "_run",
        "_state",
        "name",
        "passed_over",
    )

    def __init__(self, run: RunJournal, processor: Processor, finished_before: set[tuple[Any, ...]]) -> None:
        spec = processor.spec
        self._run = run
        self._counts = run.counts
        self._linear = run.linear
        self._root = run.root
        self.name = spec.name
        self.passed_over = finished_before
        """The items this sink finished in an earlier attempt of the run: it passes them over."""
        self._held: dict[tuple[Any, ...], int] = {}
        self._key_length = spec.key_length
        self._match: Callable[[tuple[Any, ...]], tuple[Any, ...]] = (
            _without_source if spec.join_mode == "zip" else _same
        )
        self._state = spec.state
        self._pending: list[Key] = []
        self._last_snapshot = -math.inf  # the first batch is snapshotted at once
        self._not_before = 0.0

    def pass_on(self, key: Key, copies: int) -> None:
        """The envelope `key` is finished here, and `copies` envelopes of its root were (or will be) sent on."""
        if self._linear:  # one envelope per root: it ends here unless it was sent on
            if not copies:
                self._run.root_done(self._root(key))
            return
        root = self._root(key)
        counts = self._counts
        left = counts[root] + copies - 1
        if left:
            counts[root] = left
        else:
            del counts[root]
            self._run.root_done(root)

    def settled(self, key: Key, outcome: Outcome, value: Any, copies: int) -> None:
        if outcome in RECOVERY_OUTCOMES:  # recorded before its root can be done: a resume reruns or keeps it
            self._run.failed(self.name, outcome, key)
        self.pass_on(key, copies)

    def sent(self, key: Key, value: Any, copies: int) -> None:
        """A node that returns its output handed it on as `copies` envelopes."""
        self.pass_on(key, copies)

    def sent_output(self, key: Key, value: Any, copies: int) -> None:
        """A generator yielded an output: `copies` more envelopes of its root are about to go on."""
        root = self._root(key)
        self._counts[root] = self._counts.get(root, 0) + copies

    def held(self, key: Key) -> None:
        """A join keeps this member until its group resolves."""
        match = self._match(key)
        if len(match) != self._key_length:
            self.pass_on(key, 0)  # a tombstone no group can ever wait for: the join ignores it
            return
        self._held[match] = self._held.get(match, 0) + 1

    def released(self, key: Key) -> None:
        """The join's group resolved: the members it held become the one item the join hands on or drops."""
        held = self._held.pop(self._match(key), 0)
        if held > 1:
            self._counts[self._root(key)] -= held - 1

    def admits(self, key: Key) -> bool:
        """A sink passes over an item it finished before a crash."""
        if key in self.passed_over:
            self.pass_on(key, 0)
            return False
        return True

    def finished(self, keys: list[Key]) -> asyncio.Future[None]:
        return self._run.finish(self.name, keys)

    def finished_with_state(self, keys: list[Key]) -> asyncio.Future[None] | None:
        """A stateful sink ended a batch: its items are folded into its state.

        They are recorded as finished only with a snapshot of the state, in one transaction, so the
        file never says an item was finished unless its fold is in the snapshot, nor the reverse.
        The snapshot is taken here, between two batches of the node's one worker. To bound what it
        costs, it is taken every STATE_INTERVAL seconds or STATE_PENDING items, and never sooner
        than STATE_SHARE times as long as the last one took after it (a large state is dumped less
        often): until then the items wait here, unrecorded, and a crash redoes them from the last
        snapshot.
        """
        pending = self._pending
        pending.extend(keys)
        since = time.monotonic() - self._last_snapshot
        if since < self._not_before or (len(pending) < STATE_PENDING and since < STATE_INTERVAL):
            return None
        return self.snapshot()

    def snapshot(self) -> asyncio.Future[None] | None:
        """Record the items folded since the last snapshot, with the state (nothing if none were)."""
        if not self._pending:
            return None
        keys, self._pending = self._pending, []
        state = self._state
        assert state is not None
        started = time.monotonic()
        writes = state.value.take() if isinstance(state.value, SQLiteOutput) else None  # before dump(): it counts them
        text = state.dump()
        self._last_snapshot = now = time.monotonic()
        self._not_before = STATE_SHARE * (now - started)
        return self._run.finish(self.name, keys, text, writes)


class SourceAdmission:
    """A source in a journaled run: counts each item it sends, and passes over the done ones."""

    __slots__ = ("_above", "_counted", "_counts", "_fan", "_root_name", "_run", "_shared", "_upto", "needed")

    def __init__(self, run: RunJournal, source: Processor) -> None:
        self._run = run
        self._counts = run.counts
        self._fan = fan = len(source.outputs)
        self._root_name = root_name = run.names[source.name]
        # Several sources add to a root of a zip group; a source with no successor is done at once.
        self._shared = list(run.names.values()).count(root_name) > 1 or not fan
        # A linear graph keeps no counts (a source without successors is done at once all the same).
        self._counted = not run.linear or not fan
        upto, above = 0, list[tuple[int, int]]()
        if run.resume is not None:
            upto, above = run.resume.roots.get(root_name, (0, []))
        self._upto = upto
        self._above = [lo for lo, _ in above], [hi for _, hi in above]
        self.needed = self._counted or bool(upto) or bool(above)
        """Whether the source has items to pass over (a resumed run) or to count."""

    def _done(self, seq: int) -> bool:
        if seq < self._upto:
            return True
        los, his = self._above
        i = bisect.bisect_right(los, seq) - 1
        return i >= 0 and seq < his[i]

    def admits(self, key: Key) -> bool:
        """Count the item at `key` as sent; False when it is done and must not be sent."""
        seq = key[1]
        if seq < self._upto or (self._above[0] and self._done(seq)):
            self._run.journal.skipped_at_sources += 1
            return False
        if not self._counted:
            return True
        root = (self._root_name, seq)
        if not self._shared:
            self._counts[root] = self._fan
        elif self._fan:
            self._counts[root] = self._counts.get(root, 0) + self._fan
        else:
            self._run.root_done(root)  # a source with no successor: nothing of it will be alive
        return True


def _check_roots(path: str, run: RunRecord, expected: list[str]) -> None:
    """The run to resume records what is done for exactly the roots of this graph, as the writer writes it."""
    if sorted(run.roots) != expected:
        raise JournalError(
            f"{path}: damaged journal: run {run.id}'s progress['roots'] is for {sorted(run.roots)}; "
            f"expected this graph's sources {expected}"
        )


def _named(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _same(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return key


def _without_source(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return key[1:]
