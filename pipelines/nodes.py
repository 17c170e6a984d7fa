"""The `node` decorator: mark a plain `async def f(item)` as a node, with default properties."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, overload

__all__ = ["node", "node_defaults"]

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__pipelines_node__"


@overload
def node(fn: F, /) -> F: ...
@overload
def node(fn: None = None, /, **properties: Any) -> Callable[[F], F]: ...
def node(fn: F | None = None, /, **properties: Any) -> F | Callable[[F], F]:
    """Mark `fn` as a plain node: it is called as ``fn(item, **args)``, without processor or tuple.

    `fn` is an ``async def`` function returning the output (None emits nothing) or an async
    generator yielding any number of outputs. A source is an async generator taking only its
    ``args``. Keyword arguments are default node properties (``workers=4``, ``retry={...}``);
    the graph's ``'properties'`` override them. The decorator returns `fn` itself, unchanged
    apart from the mark, so it can still be called directly::

        @node(workers=4)
        async def fetch(url):
            ...
    """

    def mark(f: F) -> F:
        setattr(f, _MARK, {"style": "item", **properties})
        return f

    return mark(fn) if fn is not None else mark


def node_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The properties given to `fn` by the `node` decorator, or {} when it is not decorated.

    A bound method or a ``functools.partial`` of a decorated function keeps its properties.
    """
    func: Any = fn
    while isinstance(func, functools.partial):
        func = func.func
    func = getattr(func, "__func__", func)
    return dict(getattr(func, _MARK, {}))
