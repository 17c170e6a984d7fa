"""History: a run's recent per-node figures, one sample per tick, in a ring of fixed length.

A sample holds, for every node, the items it sent on since the previous sample (``out``), its
input queue's depth (``queue``) and its workers (``workers``) at that moment. ``out`` counts what
a source put, what a node emitted, and what a sink completed (a sink emits nothing), so the
``out`` of all the samples a run ever took add up to that figure in its final stats, and a chart
of ``out / (t - previous t)`` shows items per second.

Memory is bounded: a History keeps its newest `kept` samples and forgets older ones. The hub keeps
one per run and drops it with the run.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ..stats import NodeStats

__all__ = ["History", "Sample"]


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One tick: its number `seq` (1, 2, ... for a run), the run's elapsed seconds `t`, and per node
    (in the order of `History.nodes`) items out since the previous sample, queue depth and workers."""

    seq: int
    t: float
    out: tuple[int, ...]
    queue: tuple[int, ...]
    workers: tuple[int, ...]


class History:
    """The newest `kept` samples of one run's nodes `nodes`; `sinks` names those whose `out` is
    what they completed rather than what they emitted."""

    def __init__(self, nodes: Iterable[str], sinks: Iterable[str], *, kept: int) -> None:
        if kept < 1:
            raise ValueError(f"a history keeps at least 1 sample; got kept={kept!r}")
        self.nodes = tuple(nodes)
        self.kept = kept
        self._sinks = frozenset(sinks)
        self._samples: collections.deque[Sample] = collections.deque(maxlen=kept)
        self._last_out = dict.fromkeys(self.nodes, 0)
        self._seq = 0

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def last_seq(self) -> int:
        """The number of the newest sample taken (0 before the first)."""
        return self._seq

    def record(self, t: float, stats: Mapping[str, NodeStats]) -> Sample:
        """Take a sample of `stats` at elapsed time `t`; the oldest sample goes when the ring is full."""
        out, queue, workers = [], [], []
        for name in self.nodes:
            node = stats.get(name)
            if node is None:  # a node this process does not run (a distributed run's): nothing to show
                out.append(0)
                queue.append(0)
                workers.append(0)
                continue
            total = node.completed if name in self._sinks else node.items_out
            out.append(total - self._last_out[name])
            self._last_out[name] = total
            queue.append(node.queue_depth - node.taken)  # what its input edges hold
            workers.append(node.workers)
        self._seq += 1
        sample = Sample(self._seq, t, tuple(out), tuple(queue), tuple(workers))
        self._samples.append(sample)
        return sample

    def samples(self, after: int = 0) -> list[Sample]:
        """The samples kept whose seq is above `after`, oldest first."""
        return [s for s in self._samples if s.seq > after]

    def as_json(self, after: int = 0) -> list[dict[str, Any]]:
        """`samples(after)` as JSON: ``{"seq", "t", "nodes": {name: {"out", "queue", "workers"}}}``."""
        return [
            {
                "seq": s.seq,
                "t": s.t,
                "nodes": {
                    name: {"out": s.out[i], "queue": s.queue[i], "workers": s.workers[i]}
                    for i, name in enumerate(self.nodes)
                },
            }
            for s in self.samples(after)
        ]
