"""Hub: the runs a server shows and controls, each with its graph, its stats and its recent failures.

The control API and the dashboard read runs from a Hub; `attach()` adds the app's pipeline to
one, the socket.io server adds every run a client starts. Ended runs are kept (the newest
`keep_ended` of them) so their final counts stay visible.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from typing import TYPE_CHECKING, Any

import networkx as nx

if TYPE_CHECKING:
    from ..plumber import Plumber
    from ..signals import Signal

__all__ = ["Hub", "RunEntry"]

LIVE_STATES = ("built", "running", "stopping")
FAILURES_KEPT = 50


@dataclasses.dataclass(eq=False)
class RunEntry:
    """One run in the hub: `id` ('r1', 'r2', ...), a `label`, its plumber and recent failures."""

    id: str
    label: str
    plumber: Plumber
    owner: str | None = None
    failures: collections.deque[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=FAILURES_KEPT)
    )

    @property
    def live(self) -> bool:
        return self.plumber.state in LIVE_STATES

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
        started = plumber.started_at
        elapsed = 0.0 if started is None else (plumber.ended_at or time.monotonic()) - started
        return {
            "run": self.id,
            "state": plumber.state,
            "paused": plumber.paused,
            "elapsed": elapsed,
            "nodes": nodes,
            "failures": list(self.failures),
        }


class Hub:
    """The runs a server knows, by id, in the order they were added."""

    def __init__(self, *, keep_ended: int = 20) -> None:
        self.keep_ended = keep_ended
        self._runs: dict[str, RunEntry] = {}
        self._ids = itertools.count(1)
        self.version = 0
        """Grows whenever a run is added, removed or changes state (the dashboard polls it)."""

    def add(self, plumber: Plumber, label: str, *, owner: str | None = None) -> RunEntry:
        """Show and control `plumber` as `label`; returns its entry (with its new id)."""
        entry = RunEntry(f"r{next(self._ids)}", label, plumber, owner)
        self._runs[entry.id] = entry

        def failed(signal: Signal) -> None:
            entry.failures.appendleft(
                {
                    "node": signal.node,
                    "item": _short(signal.item),
                    "error": _short(signal.exception),
                    "at": time.time(),
                }
            )

        def changed(signal: Signal) -> None:
            self.version += 1

        plumber.signals.connect("item_failed", failed)
        for event in ("run_started", "run_ended", "paused", "resumed", "stop_requested"):
            plumber.signals.connect(event, changed)
        self._forget_ended()
        self.version += 1
        return entry

    def remove(self, run_id: str) -> None:
        if self._runs.pop(run_id, None) is not None:
            self.version += 1

    def runs(self) -> list[RunEntry]:
        return list(self._runs.values())

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
            del self._runs[entry.id]


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
