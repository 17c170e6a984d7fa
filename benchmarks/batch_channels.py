"""Batch channels for B14's references: a bounded list of items, handed whole to the consumer in one swap."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

__all__ = ["BOUND", "BatchChannel", "SharedChannel"]

BOUND = 100


class BatchChannel:
    """A bounded channel that hands everything waiting to its consumer in one swap.

    One producer and one consumer, so one waiter per side. A put that finds room does not
    suspend; a producer waits only while `bound` items are waiting.
    """

    __slots__ = ("_bound", "_closed", "_getter", "_items", "_putter")

    def __init__(self, bound: int = BOUND) -> None:
        self._items: list[Any] = []
        self._bound = bound
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None
        self._closed = False

    async def put(self, item: Any) -> None:
        while len(self._items) >= self._bound:
            await self._wait_for_room()
        self._items.append(item)
        self._wake_getter()

    async def put_many(self, items: list[Any]) -> None:
        while len(self._items) >= self._bound:
            await self._wait_for_room()
        self._items += items
        self._wake_getter()

    async def get_all(self) -> list[Any]:
        """Everything waiting, at least one item; [] once closed and empty."""
        while not self._items:
            if self._closed:
                return []
            self._getter = asyncio.get_running_loop().create_future()
            await self._getter
        items, self._items = self._items, []
        putter, self._putter = self._putter, None
        if putter is not None and not putter.done():
            putter.set_result(None)
        return items

    def close(self) -> None:
        self._closed = True
        self._wake_getter()

    async def _wait_for_room(self) -> None:
        self._putter = asyncio.get_running_loop().create_future()
        await self._putter

    def _wake_getter(self) -> None:
        getter, self._getter = self._getter, None
        if getter is not None and not getter.done():
            getter.set_result(None)


class SharedChannel(BatchChannel):
    """A BatchChannel several tasks put into and take from: a queue of waiters on each side, and
    closed once each of its `producers` has closed it. A take still takes everything waiting."""

    __slots__ = ("_getters", "_open", "_putters")

    def __init__(self, producers: int, bound: int = BOUND) -> None:
        super().__init__(bound)
        self._open = producers
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()

    async def put(self, item: Any) -> None:
        while len(self._items) >= self._bound:
            await self._room()
        self._items.append(item)
        if self._getters:
            _wake(self._getters, one=True)

    async def put_many(self, items: list[Any]) -> None:
        while len(self._items) >= self._bound:
            await self._room()
        self._items += items
        if self._getters:
            _wake(self._getters, one=True)

    async def _room(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._putters.append(waiter)
        await waiter

    async def get_all(self) -> list[Any]:
        while not self._items:
            if self._open == 0:
                return []
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            await waiter
        items, self._items = self._items, []
        if self._putters:
            _wake(self._putters)
        if self._getters and self._open == 0:
            _wake(self._getters)
        return items

    def close(self) -> None:
        self._open -= 1
        if self._open == 0:
            while self._getters:
                _wake(self._getters)


def _wake(waiters: deque[asyncio.Future[None]], *, one: bool = False) -> None:
    """Wake every waiter (or `one`): each looks again (the putters at the room, a getter at the items)."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            if one:
                return
