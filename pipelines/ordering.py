"""Order gate: lets the workers of an `ordered` node hand their outputs on in input order.

Every piece of work a worker takes has a `Turn`, in the order the pieces were taken from the
node's input. When another worker takes over the rest of a piece (pipelines.pool), the rest gets
a turn of its own right after the piece it came from. A worker hands its outputs on when the
turns before its own are done.
"""

from __future__ import annotations

from . import runtime

__all__ = ["OrderGate", "Turn"]


class Turn:
    """One piece of work's place in the output order."""

    __slots__ = ("next", "waiter")

    def __init__(self) -> None:
        self.next: Turn | None = None
        self.waiter: runtime.Future[None] | None = None


class OrderGate:
    """Turns in input order; a worker hands on its outputs when the gate reaches its turn.

    A worker holds at most one piece, so at most one finished piece per worker waits for its
    turn: the reorder buffer is bounded by the node's workers, never by the number of items.
    """

    __slots__ = ("_head", "_tail")

    def __init__(self) -> None:
        self._head: Turn | None = None
        self._tail: Turn | None = None

    def ticket(self) -> Turn:
        """A turn after every turn given so far. Take it right after taking the work, with no await in between."""
        turn = Turn()
        if self._tail is None:
            self._head = turn
        else:
            self._tail.next = turn
        self._tail = turn
        return turn

    def split(self, turn: Turn) -> Turn:
        """A turn right after `turn`, for the rest of its piece that another worker takes over."""
        after = Turn()
        after.next = turn.next
        turn.next = after
        if self._tail is turn:
            self._tail = after
        return after

    async def wait_turn(self, turn: Turn) -> None:
        """Wait until the work of every turn before `turn` was handed on."""
        if self._head is turn:
            return
        turn.waiter = runtime.new_future()
        try:
            await turn.waiter
        finally:
            turn.waiter = None

    def done(self, turn: Turn) -> None:
        """Mark `turn` handed on and pass the gate to the next turn."""
        assert self._head is turn, "done() out of turn"
        following = turn.next
        self._head = following
        if following is None:
            self._tail = None
        elif following.waiter is not None and not following.waiter.done():
            following.waiter.set_result(None)
