"""The `output_q` a source's coroutine puts its items into.

It keeps the asyncio.Queue calls that code written for the original library uses (`await put(x)`,
`put_nowait(x)`, `qsize()`, `maxsize`, `full()`, `empty()`), and behind them gives each item its
lineage key and hands it to the input channel of every successor.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .errors import PipelineError

if TYPE_CHECKING:
    from .channels import Channel
    from .processor import Processor
    from .valve import Valve

__all__ = ["NodeOutput", "SourcePort"]


class SourcePort:
    """The output queue of a source. `put()` waits while a successor's input is full."""

    __slots__ = ("_channels", "_index", "_name", "_processor", "_seq", "_single", "_valve")

    def __init__(self, processor: Processor, channels: list[Channel], valve: Valve) -> None:
        self._processor = processor
        self._valve = valve
        self._channels = channels
        self._name = processor.name
        self._index = processor._index
        self._seq = 0
        self._single = channels[0] if len(channels) == 1 else None

    def __repr__(self) -> str:
        return f"<SourcePort of {self._name!r} {self.qsize()}/{self.maxsize}>"

    @property
    def maxsize(self) -> int:
        """The smallest bound among the successors' inputs (0 when the source has no successor)."""
        return min((ch.maxsize for ch in self._channels), default=0)

    def qsize(self) -> int:
        """Items waiting in the fullest successor's input."""
        return max((ch.qsize() for ch in self._channels), default=0)

    def full(self) -> bool:
        return any(ch.full() for ch in self._channels)

    def empty(self) -> bool:
        return all(ch.empty() for ch in self._channels)

    @property
    def next_key(self) -> tuple[str, int]:
        """The lineage key the next put will give its item: (source name, position)."""
        return (self._name, self._seq)

    async def put(self, item: Any) -> None:
        """Send `item` to every successor, waiting while one of their inputs is full.

        Cancelling a blocked put is safe: successors that had room got the item, and it is
        counted; when none had, the item was not sent at all. Several puts may wait at once
        (a source that puts from several tasks): each item keeps its own position. While the run
        is paused, put waits before the item takes its position.
        """
        if self._valve.closed:
            await self._valve.wait_open()
        # Take the position before any await, so concurrent puts never share a key.
        envelope = ((self._name, self._seq), item, self._index)
        self._seq += 1
        processor = self._processor
        if self._single is not None and self._single.put_nowait(envelope):
            processor.items_out += 1  # the common case: one successor, with room
            return
        sent = not self._channels
        try:
            for channel in self._channels:
                if not channel.put_nowait(envelope):
                    waited = await channel.put_many([envelope])
                    processor.blocked_seconds += waited
                sent = True
        finally:
            if sent:
                processor.items_out += 1

    def put_nowait(self, item: Any) -> None:
        """Send `item` to every successor now, or raise asyncio.QueueFull and send it to none.

        While the run is paused, every put_nowait raises asyncio.QueueFull.
        """
        if self._valve.closed or not all(channel.accepts_now() for channel in self._channels):
            raise asyncio.QueueFull
        envelope = ((self._name, self._seq), item, self._index)
        for channel in self._channels:
            channel.put_nowait(envelope)
        self._seq += 1
        self._processor.items_out += 1


class NodeOutput:
    """The `output_queue` of a node that is not a source: outputs are return values, not puts."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def _refuse(self, *_: Any) -> None:
        raise PipelineError(
            f"node {self._name!r}: only a source puts into its output queue; return the output, "
            "or yield several from an async generator"
        )

    put = put_nowait = _refuse
