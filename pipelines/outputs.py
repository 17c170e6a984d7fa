"""Outputs: the edges a node hands its outputs to, and how a batch of outputs is handed on.

A node's outputs go to the input edge of each successor, in the order of its successors, and its
failures to its error node's edge, if it routes them to one. A worker hands on a whole piece's
outputs at once: `emit` puts the batch into each edge (waiting for room: backpressure, counted in
the node's `blocked_seconds`); `put_now` does the same without a coroutine when every edge is a
plain in-memory one with room for all of it; `emit_reporting` tells the `sent` hooks first;
`emit_routed` gives each output to the successors its route names (pipelines.routing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .edges import MemoryEdge
from .hooks import unfiltered
from .lineage import DROPPED

if TYPE_CHECKING:
    from .edges import Edge
    from .ledger import Ledger
    from .routing import Router
    from .types import Envelope

__all__ = ["Outputs"]


class Outputs:
    """The output edges of one node (set by `wire`), and the ways of handing a batch to them."""

    __slots__ = ("_is_generator", "_ledger", "_memory", "_router", "edges", "error_edge")

    def __init__(self, ledger: Ledger, router: Router | None, *, is_generator: bool) -> None:
        self.edges: list[Edge] = []
        """The input edges of the node's successors, in the order of its successors."""
        self.error_edge: Edge | None = None
        """The input edge of the node's error node, if it routes failures to one."""
        self._memory: list[MemoryEdge] = []
        """The edges when every one is a plain MemoryEdge (else empty): see `put_now`."""
        self._ledger = ledger
        self._router = router
        self._is_generator = is_generator

    def wire(self, edges: list[Edge], error_edge: Edge | None) -> None:
        """Connect the outputs (by the Plumber, through `Processor.wire`)."""
        self.edges = edges
        self.error_edge = error_edge
        # Edges whose put_many is MemoryEdge's own (not a lossy edge, nor one that counts its puts).
        plain = all(isinstance(edge, MemoryEdge) and type(edge).put_many is MemoryEdge.put_many for edge in edges)
        self._memory = cast("list[MemoryEdge]", edges) if plain else []

    def close(self) -> None:
        """End-of-stream to every successor and to the error node."""
        for edge in self.edges:
            edge.close()
        if self.error_edge is not None:
            self.error_edge.close()

    @property
    def in_memory(self) -> bool:
        """Whether `put_now` can hand outputs on: the node has outputs, all plain MemoryEdges."""
        return bool(self._memory)

    @property
    def put_now(self) -> Callable[[list[Envelope]], bool]:
        """How to hand a batch of outputs to every successor at once, without waiting, when each has
        room for all of it now (as `emit` does then, without a coroutine): a function of the batch
        that returns whether it was handed on (False: nothing was, and the caller awaits `emit`). It
        leaves the batch as it was: the caller empties it. Only where `in_memory`.

        With one successor, it is that edge's own ``put_many_nowait``: no call of ours in between.
        """
        edges = self._memory
        return edges[0].put_many_nowait if len(edges) == 1 else self._put_all_now

    def _put_all_now(self, out: list[Envelope]) -> bool:
        """`put_now` for several successors: all of them have room for `out`, or none gets it."""
        edges = self._memory
        count = len(out)
        if not all(edge.room_for(count) for edge in edges):
            return False
        for edge in edges:
            edge.put_many_nowait(out)
        return True

    async def emit(self, out: list[Envelope], errors: list[Any]) -> None:
        """Hand `out` to every successor and `errors` to the error node, then empty both lists."""
        ledger = self._ledger
        if out:
            for edge in self.edges:
                waited = await edge.put_many(out)
                if waited:
                    ledger.blocked_seconds += waited
            out.clear()
        if errors:
            assert self.error_edge is not None
            waited = await self.error_edge.put_many(errors)
            if waited:
                ledger.blocked_seconds += waited
            errors.clear()

    async def emit_reporting(self, out: list[Envelope], errors: list[Any]) -> None:
        """`emit`, telling the `sent` hooks of each output first (a node that returns its outputs)."""
        sent = self._ledger.hooks.sent
        assert sent is not None
        fan = len(self.edges)
        told, positions = unfiltered(sent)
        if positions is None:
            for key, value, _ in out:
                if value is not DROPPED:
                    told(key, value, fan)
        elif positions:  # a hook that hears only some items: the test without a call for the others
            for key, value, _ in out:
                if value is not DROPPED and key[1] in positions:
                    told(key, value, fan)
        await self.emit(out, errors)

    async def emit_routed(self, out: list[Envelope], errors: list[Any]) -> None:
        """`emit` for a node that routes: each output to the successors its plan names, a tombstone to
        the others a join waits behind; tells the `sent` hooks, unless the node is an async generator
        (it tells them of each output as it yields it)."""
        router = self._router
        assert router is not None
        if out:
            ledger = self._ledger
            edges = self.edges
            lanes: list[list[Envelope]] = [[] for _ in edges]
            router.split(out, lanes, None if self._is_generator else ledger.hooks.sent)
            out.clear()
            for edge, lane in zip(edges, lanes, strict=True):
                if lane:
                    waited = await edge.put_many(lane)
                    if waited:
                        ledger.blocked_seconds += waited
        if errors:
            await self.emit([], errors)
