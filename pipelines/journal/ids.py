"""Item ids and graph identity: what the journal needs to recognise an item, and the graph, again.

An item's id is its lineage key: ``(source, position, *output indices)``. `position` counts the
items that source put, from 0; each async generator node on the way appends the index of the
output. A source that yields the same items in the same order every time it runs gives each item
the same id in every run: that is what lets a run resume.

A *root* is one item a source put: ``(source, position)``. The journal counts what is alive of
each root and records a root as done once nothing of it is left (in a linear graph, `is_linear`,
there is one envelope per root: nothing to count). The sources meeting in a zip
join (several independent sources whose n-th items are paired) share their roots: the n-th items
of all of them make one root, named after the first of those sources in name order, because a
group can only be redone if every one of its members is sent again.

The graph hash covers what decides the ids and what a sink receives: each node's name, coroutine,
args, successors, error route, style and join setting, the function that makes a stateful
node's state (its snapshots are of that state), where a node routes its outputs (its routing
function and its descriptors: which successors get which items) and a lossy input's policy
(which items are dropped). Each of the last three is hashed only when a node uses it, so the hash
of a graph that does not stays what it was. It leaves out what only changes how fast
the run goes (workers, queue sizes, retries, timeouts, executors). An argument that is not plain
data (a connection, a file object) is represented by its type only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import networkx as nx

from ..graph import GraphSpec

__all__ = ["Root", "graph_hash", "root_function", "root_names"]

Root = tuple[str, int]


def root_names(spec: GraphSpec) -> dict[str, str]:
    """For each source, the name its roots are journaled under (itself, or its zip group's first source)."""
    sources = sorted(name for name, node in spec.nodes.items() if node.is_source)
    group = {name: {name} for name in sources}
    for name, node in spec.nodes.items():
        if node.join_mode != "zip":
            continue
        members = sorted(a for a in nx.ancestors(spec.digraph, name) if a in group)
        merged = set().union(*(group[m] for m in members))
        for member in merged:
            group[member] = merged
    return {name: min(group[name]) for name in sources}


def root_function(names: dict[str, str]) -> Callable[[tuple[Any, ...]], Root]:
    """The function giving the root of an item id."""
    if all(source == name for source, name in names.items()):

        def root(key: tuple[Any, ...]) -> Root:
            return key[:2]  # the whole key, not a copy, for a source's item

        return root

    def shared_root(key: tuple[Any, ...]) -> Root:
        return (names[key[0]], key[1])

    return shared_root


def graph_hash(spec: GraphSpec) -> str:
    """A short hex digest of the graph's shape and code, stable from one process to the next."""
    described = []
    for name in sorted(spec.nodes):
        node = spec.nodes[name]
        described.append(
            {
                "name": name,
                "coro": _qualified(node.coro),
                "args": node.args,
                "successors": list(node.successors),
                "on_error": node.properties.on_error,
                "aggregate_inputs": node.properties.aggregate_inputs,
                "style": node.style,
            }
        )
        # Each only when used: the hash of a graph without them stays what it was (its journals stay valid).
        if node.state is not None:
            described[-1]["state"] = _qualified(node.state.factory)
        if node.route is not None:
            described[-1]["route"] = _qualified(node.route)
        if node.routes:
            described[-1]["routes"] = {
                str(descriptor): list(names) for descriptor, names in sorted(node.routes.items())
            }
        if node.properties.input != "block":
            described[-1]["input"] = node.properties.input
    text = json.dumps(described, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _qualified(fn: Any) -> str:
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}:{name}"


def _plain(value: Any) -> str:
    """How the hash sees an argument JSON cannot show: by its type, never by an address."""
    if isinstance(value, (set, frozenset)):
        return json.dumps(sorted(map(repr, value)))
    return f"<{type(value).__module__}.{type(value).__qualname__}>"
