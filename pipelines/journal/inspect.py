"""What `pipelines journal PATH` prints: the runs a journal holds, their state, per node the items finished,
and the items that did not succeed (pipelines.journal.recovery)."""

from __future__ import annotations

import time
from collections import Counter

from .store import StoredJournal, done_count

__all__ = ["format_journal"]


def format_journal(stored: StoredJournal) -> str:
    """A plain-text account of a journal file, one block per run, oldest first."""
    count = len(stored.runs)
    lines = [f"{stored.path}: journal of graph {stored.graph_hash}, {count} run{'s' if count != 1 else ''}"]
    for run in stored.runs:
        starts = f"{run.attempts} start{'s' if run.attempts != 1 else ''}"
        lines.append(
            f"run {run.id}: {run.state} ({starts}); started {_when(run.started)}, last written {_when(run.updated)}"
        )
        sources = ", ".join(f"{name} {done_count(upto, above)}" for name, (upto, above) in run.roots.items())
        lines.append(f"  source items done: {run.done}" + (f" ({sources})" if len(run.roots) > 1 else ""))
        names = stored.node_names or sorted(run.nodes)
        width = max([len("node"), *(len(name) for name in names)])
        figures = [str(run.nodes.get(name, 0)) for name in names]
        column = max([len("finished"), *(len(figure) for figure in figures)])
        lines.append(f"  {'node'.ljust(width)}  {'finished'.rjust(column)}")
        for name, figure in zip(names, figures, strict=True):
            lines.append(f"  {name.ljust(width)}  {figure.rjust(column)}")
        if run.failures:
            outcomes = Counter((node, outcome) for node, outcome, _ in run.failures)
            shown = ", ".join(f"{node} {outcome} {count}" for (node, outcome), count in sorted(outcomes.items()))
            lines.append(f"  items that did not succeed: {shown} (rerun or kept on resume: see --rerun-failed)")
    return "\n".join(lines)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
