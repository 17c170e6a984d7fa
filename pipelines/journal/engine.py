"""The journal's hooks in the engine: counting what is alive of each root, and the sinks' records.

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
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from ..ports import SourcePort
from ..processor import InputProcessor
from .ids import Root, graph_hash, root_function, root_names
from .journal import Journal
from .store import JournalError, RunRecord, read_journal_file
from .writer import Batch, Writer

if TYPE_CHECKING:
    from ..channels import Channel
    from ..graph import GraphSpec
    from ..processor import Processor, RunControl
    from ..valve import Valve

__all__ = ["NodeTally", "RunJournal", "open_run"]

logger = logging.getLogger(__name__)

FLUSH_DONE = 4096  # done roots kept on the loop's side before they are handed to the writer unasked


def open_run(journal: Journal | str | Any, spec: GraphSpec, processors: dict[str, Processor]) -> RunJournal:
    """Check the journal file against the graph and hook the run into it (JournalError if unusable)."""
    if not isinstance(journal, Journal):
        journal = Journal(journal)
    run = RunJournal(journal, spec)
    run.attach(processors)
    return run


class RunJournal:
    """One run's journal: the counts per root, the hooks of every node, and the writer."""

    def __init__(self, journal: Journal, spec: GraphSpec) -> None:
        journal._claim()
        self.journal = journal
        path = journal.path
        names = root_names(spec)
        self._hash = graph_hash(spec)
        stored = read_journal_file(path, with_items=True)
        if stored is not None and stored.graph_hash != self._hash:
            raise JournalError(
                f"{path}: journal of another graph (graph {stored.graph_hash}, this graph is {self._hash}); "
                "give another journal file"
            )
        last = stored.runs[-1] if stored is not None and stored.runs else None
        resume: RunRecord | None = None
        if last is not None and not journal.new_run:
            if last.state == "completed":
                journal._set_status(last.id, resumed=False, completed=True, done=last.done)
            else:
                resume = last
                journal._set_status(last.id, resumed=True, completed=False, done=last.done)
        self._resume = resume
        self.idle = journal.already_completed
        self.root = root_function(names)
        self.counts: dict[Root, int] = {}
        self._recorded: set[Root] = set()
        self._done: list[Root] = []
        self._purge: list[Root] = []
        self._names = names
        self._spec = spec
        self._processors: dict[str, Processor] = {}
        self._writer: Writer | None = None

    def attach(self, processors: dict[str, Processor]) -> None:
        self._processors = processors
        if self.idle:
            return
        finished = self._resume.finished if self._resume is not None else {}
        for name, processor in processors.items():
            processor._attach_journal(NodeTally(self, processor, finished.get(name, set())))

    # -- run lifecycle (called by the Plumber) ----------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, control: RunControl) -> None:
        """The run starts: a completed run starts no source; any other writes its start (or raises JournalError)."""
        if self.idle:
            for processor in self._processors.values():
                if isinstance(processor, InputProcessor):
                    processor._request_stop()
            return
        sinks = {name for name, node in self._spec.nodes.items() if node.is_sink and not node.is_source}
        writer = Writer(
            self.journal.path,
            graph_hash=self._hash,
            node_names=list(self._spec.nodes),
            root_names=sorted(set(self._names.values())),
            resume=self._resume,
            sync=self.journal.sync,
            sinks=sinks,
            snapshot=self._snapshot,
        )
        writer.open(loop, control.fail)
        self._writer = writer
        self.journal.run_id = writer.run_id

    def close(self, state: str, callback: Callable[[BaseException | None], None]) -> None:
        """The run ended in `state`: write the rest and the state, then call `callback(error or None)`."""
        writer = self._writer
        if writer is None:
            asyncio.get_running_loop().call_soon(callback, None)
            return
        if self.counts and state == "completed":
            logger.warning("journal: %d items were still counted alive at the end of the run", len(self.counts))
        self._hand_over(None)
        writer.close(state, callback)

    # -- counting ----------------------------------------------------------------------------------

    def root_done(self, root: Root) -> None:
        self._done.append(root)
        if root in self._recorded:
            self._recorded.discard(root)
            self._purge.append(root)
        if len(self._done) >= FLUSH_DONE:
            self._hand_over(None)

    def finish(self, sink: str, keys: list[Any]) -> asyncio.Future[None]:
        """A sink finished these items: record them; the future resolves once that is committed."""
        counts = self.counts
        root_of = self.root
        recorded = self._recorded
        done = self._done
        records = []
        for key in keys:
            root = root_of(key)
            left = counts[root] - 1
            if left:
                counts[root] = left
                records.append((key, root))
                recorded.add(root)
            else:
                del counts[root]
                done.append(root)  # root_done(), inline: the common case
                if recorded and root in recorded:
                    recorded.discard(root)
                    self._purge.append(root)
        future = self._hand_over(Batch(sink, records, len(keys)))
        assert future is not None
        return future

    def _hand_over(self, batch: Batch | None) -> asyncio.Future[None] | None:
        assert self._writer is not None
        done, self._done = self._done, []
        purge, self._purge = self._purge, []
        return self._writer.hand_over(batch, done, purge)

    def _snapshot(self) -> dict[str, int]:
        """Items each node finished in this attempt (read from the writer's thread: plain ints)."""
        counts = {}
        for name, processor in self._processors.items():
            if processor.input_queue is None:
                counts[name] = processor.items_out
            else:
                counts[name] = processor.items_in - processor.in_flight
        return counts


class NodeTally:
    """One node's hooks: called by its workers, only when the run has a journal."""

    __slots__ = ("_counts", "_held", "_key_length", "_match", "_root", "_run", "name", "passed_over")

    def __init__(self, run: RunJournal, processor: Processor, finished_before: set[tuple[Any, ...]]) -> None:
        spec = processor._spec
        self._run = run
        self._counts = run.counts
        self._root = run.root
        self.name = spec.name
        self.passed_over = finished_before
        """The items this sink finished in an earlier attempt of the run: it passes them over."""
        self._held: dict[tuple[Any, ...], int] = {}
        self._key_length = spec.key_length
        self._match: Callable[[tuple[Any, ...]], tuple[Any, ...]] = (
            _without_source if spec.join_mode == "zip" else _same
        )

    def settle(self, key: tuple[Any, ...], copies: int) -> None:
        """The envelope `key` is finished here, and `copies` envelopes of its root were (or will be) sent on."""
        root = self._root(key)
        counts = self._counts
        left = counts[root] + copies - 1
        if left:
            counts[root] = left
        else:
            del counts[root]
            self._run.root_done(root)

    def sent(self, key: tuple[Any, ...], copies: int) -> None:
        """`copies` more envelopes of the root of `key` are about to be sent on."""
        root = self._root(key)
        self._counts[root] = self._counts.get(root, 0) + copies

    def hold(self, key: tuple[Any, ...]) -> None:
        """A join keeps this member until the rest of its group arrives."""
        match = self._match(key)
        if len(match) != self._key_length:
            self.settle(key, 0)  # a tombstone no group can ever wait for: the join ignores it
            return
        self._held[match] = self._held.get(match, 0) + 1

    def release(self, key: tuple[Any, ...]) -> None:
        """A join's group is complete: the members it held are let go; the last one is handled as usual."""
        held = self._held.pop(self._match(key), 0)
        if held:
            self._counts[self._root(key)] -= held  # still >= 1: the last member is counted too

    def discard(self, key: tuple[Any, ...], copies: int) -> None:
        """A join's group never completed: its members are let go, `copies` tombstones go on."""
        root = self._root(key)
        counts = self._counts
        left = counts.get(root, 0) + copies - self._held.pop(self._match(key), 0)
        if left:
            counts[root] = left
        else:
            counts.pop(root, None)
            self._run.root_done(root)

    def finish(self, keys: list[Any]) -> asyncio.Future[None]:
        return self._run.finish(self.name, keys)

    def source_port(self, processor: Processor, channels: list[Channel], valve: Valve) -> SourcePort:
        return JournaledSourcePort(processor, channels, valve, self._run, self._run._names[self.name])


class _Nothing:
    """An awaitable that is already done, and can be awaited any number of times."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_NOTHING = _Nothing()


def _same(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return key


def _without_source(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return key[1:]


class JournaledSourcePort(SourcePort):
    """A source's `output_q` in a journaled run: counts each item it sends, skips the done ones."""

    __slots__ = ("_above", "_counts", "_fan", "_root_name", "_run", "_shared", "_upto")

    def __init__(
        self, processor: Processor, channels: list[Channel], valve: Valve, run: RunJournal, root_name: str
    ) -> None:
        super().__init__(processor, channels, valve)
        self._run = run
        self._counts = run.counts
        self._fan = len(channels)
        self._root_name = root_name
        # Several sources add to a root of a zip group; a source with no successor is done at once.
        self._shared = list(run._names.values()).count(root_name) > 1 or not channels
        upto, above = 0, list[tuple[int, int]]()
        resume = run._resume
        if resume is not None:
            upto, above = resume.roots.get(root_name, (0, []))
        self._upto = upto
        self._above = [lo for lo, _ in above], [hi for _, hi in above]

    def _done(self, seq: int) -> bool:
        if seq < self._upto:
            return True
        los, his = self._above
        i = bisect.bisect_right(los, seq) - 1
        return i >= 0 and seq < his[i]

    def _count(self, seq: int) -> bool:
        """Count the item at `seq` as sent; False when it is done and must not be sent."""
        if self._done(seq):
            self._seq = seq + 1
            self._run.journal.skipped_at_sources += 1
            return False
        root = (self._root_name, seq)
        if self._fan:
            counts = self._run.counts
            counts[root] = counts.get(root, 0) + self._fan
        else:
            self._run.root_done(root)  # a source with no successor: nothing of it will be alive
        return True

    def put(self, item: Any) -> Awaitable[None]:  # type: ignore[override]  # an awaitable, as the base's
        """As SourcePort.put; an item that is done is not sent (its position still counts)."""
        if self._valve.closed:
            return self._put_when_open(item)  # the position is taken once the run goes on
        seq = self._seq
        if seq < self._upto or (self._above[0] and self._done(seq)):
            self._seq = seq + 1
            self._run.journal.skipped_at_sources += 1
            return _NOTHING
        if self._shared:
            self._count(seq)
        else:
            self._counts[(self._root_name, seq)] = self._fan
        return SourcePort.put(self, item)

    async def _put_when_open(self, item: Any) -> None:
        while self._valve.closed:
            await self._valve.wait_open()
        await self.put(item)

    def put_nowait(self, item: Any) -> None:
        if self._valve.closed:
            raise asyncio.QueueFull
        seq = self._seq
        if not self._count(seq):
            return
        try:
            super().put_nowait(item)
        except asyncio.QueueFull:
            self._run.counts[(self._root_name, seq)] -= self._fan
            if not self._run.counts[(self._root_name, seq)]:
                del self._run.counts[(self._root_name, seq)]
            raise
