"""Wiring: the edges of a graph, made by its run's transport, and each node connected to its own.

One edge per node with inputs, shared by its producers; a join of independent sources (a zip join)
gets one per input instead, so it can hold back the input that runs ahead. A node whose property
'input' drops items gets the transport's lossy edges. Also here: which nodes must refuse items put
into their `input_queue` from outside the run, and why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import networkx as nx

from .errors import GraphError

if TYPE_CHECKING:
    from .driver import Processor
    from .edges import Edge
    from .graph import GraphSpec
    from .transport import Transport

__all__ = ["refuse_outside_items", "wire"]


def refuse_outside_items(graph: GraphSpec, processors: dict[str, Processor]) -> None:
    """Make the `input_queue` of each node that cannot take items from outside the run refuse them."""
    zips = _zips_downstream(graph)
    for name in graph.nodes:
        reason = _outside_items_refused(graph, name, zips[name])
        if reason is not None:
            processors[name].refuse_input(reason)


def _zips_downstream(graph: GraphSpec) -> dict[str, str | None]:
    """For each node, a zip join its items reach (a join of independent sources), or None.

    One pass from the sinks up (the graph has no cycle), so that a graph of thousands of nodes is
    not walked once per node.
    """
    reached: dict[str, str | None] = {}
    for name in reversed(list(nx.topological_sort(graph.digraph))):
        reached[name] = None
        for later in graph.digraph.successors(name):
            if graph.nodes[later].join_mode == "zip":
                reached[name] = later
                break
            if reached[later] is not None:
                reached[name] = reached[later]
                break
    return reached


def _outside_items_refused(graph: GraphSpec, name: str, zip_downstream: str | None) -> str | None:
    """Why node `name`'s input_queue cannot take items from outside the run, or None when it can."""
    node = graph.nodes[name]
    if node.join_mode is not None:
        return "it joins its inputs by lineage, and an item from outside has no partner; put into a source"
    if zip_downstream is not None:
        return f"its items reach node {zip_downstream!r}, a join of independent sources that pairs items by position"
    return None


def _edge_maker(transport: Transport, node: str, policy: str) -> Callable[[str, str, tuple[str, ...], int], Edge]:
    """How `transport` makes the input edges of `node`, whose property 'input' is `policy`."""
    if policy == "block":
        return transport.edge
    lossy = getattr(transport, "lossy_edge", None)  # optional in the Transport protocol
    if lossy is None:
        raise GraphError(
            f"node {node!r}: property 'input' {policy!r} needs edges that can drop items, and this run's "
            f"transport ({type(transport).__name__}) has none; use 'block' (producers wait)"
        )

    def make(name: str, consumer: str, producers: tuple[str, ...], maxsize: int) -> Edge:
        edge: Edge = lossy(name, consumer, producers, maxsize, policy)
        return edge

    return make


def wire(graph: GraphSpec, processors: dict[str, Processor], transport: Transport) -> None:
    """Ask `transport` for every edge of the graph and connect each processor to its edges."""
    specs = graph.nodes
    # One edge per node with inputs, shared by its producers; a join of independent
    # sources (zip) gets one per input instead, so it can hold back the input that runs ahead.
    shared: dict[str, Edge] = {}
    per_input: dict[tuple[str, str], Edge] = {}
    for name, node in specs.items():
        make = _edge_maker(transport, name, node.properties.input)
        if node.join_mode == "zip":
            for pred in node.inputs:
                per_input[pred, name] = make(f"{name}<-{pred}", name, (pred,), node.queue_size)
        elif not node.is_source:
            shared[name] = make(name, name, node.inputs + node.error_sources, node.queue_size)

    def edge(pred: str, succ: str) -> Edge:
        found = per_input.get((pred, succ))
        return found if found is not None else shared[succ]

    for name, processor in processors.items():
        node = specs[name]
        ports = {specs[pred].index: position for position, pred in enumerate(node.inputs)}
        if node.join_mode == "zip":
            inputs = [per_input[pred, name] for pred in node.inputs]
        else:
            inputs = [shared[name]] if name in shared else []
        processor.wire(
            inputs,
            [edge(name, succ) for succ in node.successors],
            shared.get(node.properties.on_error),
            ports,
        )
