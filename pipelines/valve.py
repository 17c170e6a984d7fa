"""Valve: what pauses and resumes the sources of a run, and one node of it.

A paused valve holds every source at its next put; items already in the graph keep flowing to the
sinks. Nothing is dropped: a put waiting at a closed valve sends its item once the valve opens (or
not at all, if the run is stopped meanwhile, as any put cancelled by a stop).

Each node has a valve of its own too (`Processor.valve`): closed, it holds that node alone. A
source's valve follows the run's: it is closed while either is, so that pausing the run and
pausing the source are two independent reasons for the source to wait.
"""

from __future__ import annotations

from . import runtime

__all__ = ["Valve"]


class Valve:
    """Open (the default) or closed; `wait_open()` returns at once while open.

    With a `leader`, the valve is also closed while its leader is: `closed` is true while either
    holds, and `shut` tells whether this valve itself was closed.
    """

    __slots__ = ("_followers", "_leader", "_opened", "closed", "shut")

    def __init__(self, leader: Valve | None = None) -> None:
        self.shut = False
        """Closed by its own `close()` (whatever its leader does)."""
        self._leader = leader
        self._followers: list[Valve] = []
        self._opened: runtime.Event | None = None
        self.closed: bool = leader is not None and leader.closed
        if leader is not None:
            leader._followers.append(self)

    def close(self) -> None:
        """Hold what waits at this valve (and at its followers) at its next pass."""
        self.shut = True
        self._update()

    def open(self) -> None:
        """Let what waits go on, unless a leader still holds it; wake every wait that may pass."""
        self.shut = False
        self._update()

    def _update(self) -> None:
        leader = self._leader
        self.closed = self.shut or (leader is not None and leader.closed)
        if not self.closed and self._opened is not None:
            self._opened.set()
            self._opened = None
        for follower in self._followers:
            follower._update()

    async def wait_open(self) -> None:
        """Wait until the valve is open (cancellable: a cancelled wait sends nothing)."""
        while self.closed:
            if self._opened is None:
                self._opened = runtime.new_event()
            await self._opened.wait()
