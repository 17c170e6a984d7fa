"""The record an error node receives for each item that failed on the node routing to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Failure"]


@dataclass(frozen=True, slots=True)
class Failure:
    """An item that failed on `node` with `exception`, after its retries were spent.

    `item` is what the failing coroutine was called with: the `q_elt` tuple for a coroutine in the
    original `(processor, q_elt)` style, the item itself for a plain `f(item)` node.
    """

    node: str
    item: Any
    exception: BaseException
