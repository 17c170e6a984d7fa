"""Recovery: on resume, which items that did not succeed in the earlier run are rerun, and which are kept.

The journal records every item that ended at a node without succeeding there, with its outcome:

* ``failed``: it failed after its retries under on_error 'fail', and failed the run (or a hook
  answered for it, as an Inbox answers the request that sent it, and the run went on);
* ``skipped``: it failed under on_error 'skip';
* ``routed``: it failed and went to the node's error node.

Each of them counts as finished for the run (a run of 'skip' nodes completes). When the run is
resumed, each recorded item is either **kept** (finished, not sent again) or **rerun**: its source
item is sent again from the source, goes through the graph again, and a sink that finished
something of it in the earlier run passes over that part (what succeeded is never redone). The
choice is made per node and outcome:

================  ==================  =================
outcome           default             ``--rerun-failed``
================  ==================  =================
failed            rerun               rerun
skipped           keep                rerun
routed            keep                rerun
================  ==================  =================

A failure that failed the run is rerun by default (the run stopped on it: it is what a resume is
for); the others were given their outcome by the graph's own policy, and are kept unless the run
is resumed with ``rerun_failed`` (``--rerun-failed``). A node's ``recovery`` property overrides
both columns for its items: ``'rerun'`` or ``'keep'`` for every outcome, or a dict per outcome.

A source item is rerun as a whole: if any of its recorded outcomes is to be rerun, all of them are
forgotten and it goes through the graph again, recorded anew if it fails again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..properties import RECOVERY_OUTCOMES

if TYPE_CHECKING:
    from ..graph import GraphSpec
    from .ids import Root
    from .store import RunRecord

__all__ = ["DEFAULT_RECOVERY", "choice", "items_to_rerun", "undone"]

DEFAULT_RECOVERY = {"failed": "rerun", "skipped": "keep", "routed": "keep"}
assert set(DEFAULT_RECOVERY) == set(RECOVERY_OUTCOMES)


def choice(spec: GraphSpec, node: str, outcome: str, rerun_failed: bool) -> str:
    """'rerun' or 'keep': what a resume does with an item that ended at `node` with `outcome`."""
    chosen = dict(spec.nodes[node].properties.recovery).get(outcome) if node in spec.nodes else None
    if chosen is not None:
        return chosen
    return "rerun" if rerun_failed else DEFAULT_RECOVERY[outcome]


def items_to_rerun(
    spec: GraphSpec, run: RunRecord, root: Any, rerun_failed: bool
) -> tuple[list[tuple[Any, ...]], list[Root]]:
    """The recorded items of `run` to rerun (sorted) and their roots (sorted, each once)."""
    items = []
    roots: set[Root] = set()
    for node, outcome, key in run.failures:
        if choice(spec, node, outcome, rerun_failed) == "rerun":
            items.append(key)
            roots.add(root(key))
    return sorted(set(items)), sorted(roots)


def undone(upto: int, above: Iterable[tuple[int, int]], seqs: Iterable[int]) -> tuple[int, list[tuple[int, int]]]:
    """The done positions ``[0, upto)`` and `above` without `seqs`, in the same shape."""
    ranges = [(0, upto), *above] if upto else list(above)
    for seq in sorted(set(seqs)):
        kept: list[tuple[int, int]] = []
        for lo, hi in ranges:
            if lo <= seq < hi:
                kept.extend(r for r in ((lo, seq), (seq + 1, hi)) if r[0] < r[1])
            else:
                kept.append((lo, hi))
        ranges = kept
    if ranges and ranges[0][0] == 0:
        return ranges[0][1], ranges[1:]
    return 0, ranges
