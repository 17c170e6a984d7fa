"""Valve: what pauses and resumes the sources of a run, and one node of it.

A paused valve holds every source at its next put; items already in the graph keep flowing to the
sinks. Nothing is dropped: a put waiting at a closed valve sends its item once the valve opens (or
not at all, if the run is stopped meanwhile, as any put cancelled by a stop).

Each node has a valve of its own too (`Processor.valve`): closed, it holds that node alone. A
source's valve follows the run's: it is closed while either is, so that pausing the run and
pausing the source are two independent reasons for the source to wait. The first node of a
fused segment (pipelines.fusion) follows the valves of the nodes fused after it as well: pausing any
of them holds the segment.
"""

from __future__ import annotations

from . import runtime

__all__ = ["Valve"]


class Valve:
    """Open (the default) or closed; `wait_open()` returns at once while open.

    With a `leader`, the valve is also closed while its leader is: `closed` is true while either
    holds, and `shut` tells whether this valve itself was closed. `follow` adds more leaders.
    """

    __slots__ = ("_followers", "_leaders", "_opened", "closed", "shut")

    def __init__(self, leader: Valve | None = None) -> None:
        self.shut = False
        """Closed by its own `close()` (whatever its leader does)."""
        self._leaders: list[Valve] = []
        self._followers: list[Valve] = []
        self._opened: runtime.Event | None = None
        self.closed = False
        if leader is not None:
            self.follow(leader)

    def follow(self, leader: Valve) -> None:
        """Be closed while `leader` is, too (as well as while any earlier leader or this valve is)."""
        self._leaders.append(leader)
        leader._followers.append(self)
        self._update()

    def close(self) -> None:
        """Hold what waits at this valve (and at its followers) at its next pass."""
        self.shut = True
        self._update()

    def open(self) -> None:
        """Let what waits go on, unless a leader still holds it; wake every wait that may pass."""
        self.shut = False
        self._update()

    def _update(self) -> None:
        self.closed = self.shut or any(leader.closed for leader in self._leaders)
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
