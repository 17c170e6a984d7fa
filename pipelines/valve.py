"""Valve: what pauses and resumes the sources of a run.

A paused valve holds every source at its next put; items already in the graph keep flowing to the
sinks. Nothing is dropped: a put waiting at a closed valve sends its item once the valve opens (or
not at all, if the run is stopped meanwhile, as any put cancelled by a stop).
"""

from __future__ import annotations

from . import runtime

__all__ = ["Valve"]


class Valve:
    """Open (the default) or closed; `wait_open()` returns at once while open."""

    __slots__ = ("_opened", "closed")

    def __init__(self) -> None:
        self.closed = False
        self._opened: runtime.Event | None = None

    def close(self) -> None:
        """Hold the sources at their next put."""
        self.closed = True

    def open(self) -> None:
        """Let the sources go on; wake every put held at the valve."""
        self.closed = False
        if self._opened is not None:
            self._opened.set()
            self._opened = None

    async def wait_open(self) -> None:
        """Wait until the valve is open (cancellable: a cancelled wait sends nothing)."""
        while self.closed:
            if self._opened is None:
                self._opened = runtime.Event()
            await self._opened.wait()
