"""Hub: the runs a server shows and controls, each with its graph, its stats and its recent failures.

The control API and the dashboard read runs from a Hub; `attach()` adds the app's pipeline to
one, the socket.io server adds every run a client starts. Ended runs are kept (the newest
`keep_ended` of them) so their final counts stay visible.

Each run also has a History: its per-node figures over time, one sample each time `Hub.sample()`
is called (the dashboard calls it every `sample_every` seconds while its app runs) and a last one
when the run ends, in a ring of `samples_kept` samples (five minutes at one a second). A run the
hub forgets takes its history with it, so a hub's memory is bounded by its runs times that ring.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import networkx as nx

from .history import History

if TYPE_CHECKING:
    from ..plumber import Plumber
    from ..signals import Signal

__all__ = ["Hub", "RunEntry"]

LIVE_STATES = ("built", "running", "stopping")
FAILURES_KEPT = 50
SAMPLES_KEPT = 300
SAMPLE_EVERY = 1.0


@dataclasses.dataclass(eq=False)
class RunEntry:
    """One run in the hub: `id` ('r1', 'r2', ...), a `label`, its plumber, recent failures and
    the history of its figures."""

    id: str
    label: str
    plumber: Plumber
    owner: str | None = None
    failures: collections.deque[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=FAILURES_KEPT)
    )
    history: History = dataclasses.field(init=False)
    samples_kept: dataclasses.InitVar[int] = SAMPLES_KEPT

    def __post_init__(self, samples_kept: int) -> None:
        graph = self.plumber.graph
        sinks = [name for name in graph if not any(kind.get("kind") == "data" for kind in graph.adj[name].values())]
        self.history = History(graph.nodes, sinks, kept=samples_kept)

    @property
    def live(self) -> bool:
        return self.plumber.state in LIVE_STATES

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (0 before), up to its end once it has ended."""
        started = self.plumber.started_at
        return 0.0 if started is None else (self.plumber.ended_at or time.monotonic()) - started

    def sample(self) -> None:
        """Add a sample of the run's figures now to its history."""
        self.history.record(self.elapsed, self.plumber.stats())

    def summary(self) -> dict[str, Any]:
        """What a list of runs shows: id, label, state, paused."""
        return {"id": self.id, "label": self.label, "state": self.plumber.state, "paused": self.plumber.paused}

    def graph(self) -> dict[str, Any]:
        """The graph as JSON: nodes with their role and layer (for drawing), and the edges."""
        graph = self.plumber.graph
        nodes = []
        for layer, names in enumerate(nx.topological_generations(graph)):
            for row, name in enumerate(sorted(names, key=list(graph.nodes).index)):
                role = "source" if graph.in_degree(name) == 0 else "sink" if graph.out_degree(name) == 0 else "node"
                nodes.append({"name": name, "role": role, "layer": layer, "row": row})
        edges = [{"from": u, "to": v, "kind": attrs["kind"]} for u, v, attrs in graph.edges(data=True)]
        return {"run": self.id, "label": self.label, "nodes": nodes, "edges": edges}

    def stats(self) -> dict[str, Any]:
        """The run's state and each node's counters; `backpressure` is true while a node's output is full."""
        plumber = self.plumber
        stats = plumber.stats()
        graph = plumber.graph
        nodes: dict[str, Any] = {}
        for name, node in stats.items():
            row = dataclasses.asdict(node)
            row.pop("name")
            successors = [s for s, kind in graph.adj[name].items() if kind.get("kind") == "data"]
            row["backpressure"] = any(
                stats[s].queue_bound > 0 and stats[s].queue_depth >= stats[s].queue_bound for s in successors
            )
            nodes[name] = row
        return {
            "run": self.id,
            "state": plumber.state,
            "paused": plumber.paused,
            "paused_nodes": list(plumber.paused_nodes),
            "elapsed": self.elapsed,
            "nodes": nodes,
            "failures": list(self.failures),
        }


class Hub:
    """The runs a server knows, by id, in the order they were added."""

    def __init__(
        self, *, keep_ended: int = 20, samples_kept: int = SAMPLES_KEPT, sample_every: float = SAMPLE_EVERY
    ) -> None:
        if samples_kept < 1:
            raise ValueError(f"Hub: samples_kept must be at least 1; got {samples_kept!r}")
        if not sample_every > 0:
            raise ValueError(f"Hub: sample_every must be a positive number of seconds; got {sample_every!r}")
        self.keep_ended = keep_ended
        self.samples_kept = samples_kept
        self.sample_every = sample_every
        """Seconds between two samples, for whoever calls `sample()` on a schedule (the dashboard)."""
        self._runs: dict[str, RunEntry] = {}
        self._listeners: dict[str, list[tuple[str, Callable[[Signal], None]]]] = {}  # run id -> what it connected
        self._ids = itertools.count(1)
        self.version = 0
        """Grows whenever a run is added, removed or changes state (the dashboard polls it)."""

    def add(self, plumber: Plumber, label: str, *, owner: str | None = None) -> RunEntry:
        """Show and control `plumber` as `label`; returns its entry (with its new id)."""
        entry = RunEntry(f"r{next(self._ids)}", label, plumber, owner, samples_kept=self.samples_kept)
        self._runs[entry.id] = entry

        def failed(signal: Signal) -> None:
            entry.failures.appendleft(
                {
                    "node": signal.node,
                    "item": _short(signal.item),
                    "error": _short(signal.exception),
                    "at": time.time(),
                    "outcome": _outcome(plumber, signal.node),
                }
            )

        def changed(signal: Signal) -> None:
            self.version += 1

        def ended(signal: Signal) -> None:
            entry.sample()  # the final figures: the history adds up to the final stats

        listeners: list[tuple[str, Callable[[Signal], None]]] = [("item_failed", failed), ("run_ended", ended)]
        listeners += [
            (event, changed)
            for event in ("run_started", "run_ended", "paused", "resumed", "stop_requested", "source_stopped")
        ]
        for event, listener in listeners:
            plumber.signals.connect(event, listener)
        self._listeners[entry.id] = listeners
        if plumber.started_at is not None and not entry.live:
            entry.sample()  # it ended before it came here: its one sample is its final figures
        self._forget_ended()
        self.version += 1
        return entry

    def remove(self, run_id: str) -> None:
        """Forget the run `run_id` (an unknown id is ignored), its failures and its history."""
        if run_id in self._runs:
            self._drop(run_id)
            self.version += 1

    def runs(self) -> list[RunEntry]:
        return list(self._runs.values())

    def sample(self) -> None:
        """Add a sample to the history of every run that is running now (a run that has ended
        took its last one when it ended, and one not yet started has nothing to show)."""
        for entry in self._runs.values():
            if entry.live and entry.plumber.started_at is not None:
                entry.sample()

    def get(self, run_id: str | None = None) -> RunEntry:
        """The run `run_id`, or with None the newest live run (else the newest run).

        Raises LookupError with a one-line message when there is no such run.
        """
        if run_id is not None:
            try:
                return self._runs[run_id]
            except KeyError:
                known = ", ".join(self._runs) or "none"
                raise LookupError(f"unknown run {run_id!r} (known runs: {known})") from None
        entries = list(self._runs.values())
        if not entries:
            raise LookupError("no run yet")
        live = [e for e in entries if e.live]
        return (live or entries)[-1]

    def _forget_ended(self) -> None:
        ended = [e for e in self._runs.values() if not e.live]
        for entry in ended[: max(0, len(ended) - self.keep_ended)]:
            self._drop(entry.id)

    def _drop(self, run_id: str) -> None:
        # Disconnected too, so that a plumber its owner keeps does not keep the entry's history.
        entry = self._runs.pop(run_id)
        for event, listener in self._listeners.pop(run_id, []):
            entry.plumber.signals.disconnect(event, listener)


def _outcome(plumber: Plumber, node: str | None) -> str:
    """What the node's on_error did with an item that failed: 'skipped', 'routed' or 'failed'."""
    spec = plumber.spec.nodes.get(node) if node is not None else None
    on_error = spec.properties.on_error if spec is not None else "fail"
    return "skipped" if on_error == "skip" else "failed" if on_error == "fail" else "routed"


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
