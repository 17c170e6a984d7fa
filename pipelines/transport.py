"""Transport: what makes a run's edges and runs its node tasks.

The Plumber knows nodes and edges only through this protocol. `MemoryTransport` (the default) keeps
every edge in this process as a `MemoryEdge` and runs every node here; pipelines.distributed's
transport keeps edges in Redis Streams and runs each node in the processes that were given it::

    plumber = Plumber(graph, transport=MyTransport())

A transport is asked for each edge while the Plumber is built, and for each node's task when the
run starts. What a transport may need from a node is public on `Processor`: `run()` (the node's
task), `fail_item()` (an item that failed outside the node's function), `outputs` and `stats()`.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from .edges import Edge, MemoryEdge
from .lossy import LossyEdge

if TYPE_CHECKING:
    from .driver import Processor

__all__ = ["MemoryTransport", "Transport"]


class Transport(Protocol):
    """Makes the edges of a run and runs its nodes."""

    def edge(self, name: str, node: str, producers: tuple[str, ...], maxsize: int) -> Edge:
        """The input edge `name` of `node`, fed by the nodes `producers`, holding at most `maxsize` items.

        A node has one input edge shared by its producers; a zip join has one per input, named
        ``'{node}<-{producer}'``.
        """
        ...

    def node_task(self, node: Processor) -> Coroutine[Any, Any, None]:
        """What runs as `node`'s task: ``node.run()`` to run it here, or a coroutine that ends when
        the node has ended wherever it runs."""
        ...

    # Optional: ``lossy_edge(name, node, producers, maxsize, policy)``: as `edge`, for a node whose
    # property 'input' is 'drop_oldest' or 'latest': an edge whose puts never wait, which drops its
    # oldest items beyond `maxsize` (pipelines.lossy.LossyEdge, with its `on_drop`). A transport
    # without it refuses such a graph when the Plumber is built (GraphError).


class MemoryTransport:
    """Every edge a `MemoryEdge` in this process; every node runs here."""

    def edge(self, name: str, node: str, producers: tuple[str, ...], maxsize: int) -> MemoryEdge:
        return MemoryEdge(name, maxsize, producers=len(producers))

    def lossy_edge(self, name: str, node: str, producers: tuple[str, ...], maxsize: int, policy: str) -> LossyEdge:
        return LossyEdge(name, maxsize, producers=len(producers), policy=policy)

    def node_task(self, node: Processor) -> Coroutine[Any, Any, None]:
        return node.run()
