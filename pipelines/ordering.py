"""Order gate: lets a node with several workers emit its batches in the order it took them."""

from __future__ import annotations

from . import runtime

__all__ = ["OrderGate"]


class OrderGate:
    """Tickets taken in input order; a worker emits when the turn reaches its ticket.

    A worker holds at most one batch, so at most `workers` finished batches wait for their turn:
    the reorder buffer is bounded by the node's workers, never by the number of items.
    """

    __slots__ = ("_next", "_turn", "_waiters")

    def __init__(self) -> None:
        self._next = 0
        self._turn = 0
        self._waiters: dict[int, runtime.Future[None]] = {}

    def ticket(self) -> int:
        """Take the next ticket. Call it right after taking a batch, with no await in between."""
        ticket = self._next
        self._next += 1
        return ticket

    async def wait_turn(self, ticket: int) -> None:
        """Wait until every batch taken before `ticket` was emitted."""
        if self._turn == ticket:
            return
        fut = runtime.new_future()
        self._waiters[ticket] = fut
        try:
            await fut
        finally:
            self._waiters.pop(ticket, None)

    def done(self, ticket: int) -> None:
        """Mark `ticket` emitted and pass the turn to the next one."""
        self._turn = ticket + 1
        fut = self._waiters.pop(self._turn, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
