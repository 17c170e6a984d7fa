"""Registry: the explicit resolver that turns the `coro` names of a graph file into functions.

Nothing is ever looked up in arbitrary globals. A name resolves when it was registered, or is an
attribute path under a registered name (``'ProcessFunc.coro1'`` under a registered class), or,
only when the registry allows imports, a ``'package.module:function'`` reference (``:Class.method``
works too) imported with importlib, from the allowed modules only when prefixes are given.

A path walks through classes only, never into another module (``'nodes.asyncio.create_subprocess_shell'``
does not resolve), never to a private name, and the function it reaches must be defined in the
module it was looked up in: what a module merely imported is not part of what it offers::

    registry = Registry({"parse": parse})                 # exactly these names
    registry = Registry(imports=["demos.weblog"])         # 'demos.weblog.nodes:parse_line'
    plumber = Plumber(graph, registry)                    # a Registry is a coro_map
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["Registry"]

F = TypeVar("F", bound=Callable[..., Any])


class Registry:
    """Resolves `coro` values: registered names, attributes of registered objects, allowed imports."""

    def __init__(self, entries: Mapping[str, Any] | None = None, *, imports: bool | Iterable[str] = False) -> None:
        """Raise ValueError for a name that no `coro` could name (not a non-empty string, or holding
        '.' or ':', which a lookup reads as an attribute path or an import) or an import prefix that
        is not a module name."""
        entries = dict(entries or {})
        for name in entries:
            _check_name(name)
        self._entries: dict[str, Any] = entries
        if isinstance(imports, str):
            imports = (imports,)
        if not isinstance(imports, bool):
            imports = tuple(imports)
            for prefix in imports:
                if not isinstance(prefix, str) or not prefix or ":" in prefix:
                    raise ValueError(f"Registry: imports must be True, False or module names, got {prefix!r}")
        self._imports: bool | tuple[str, ...] = imports

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator registering a function (or a class of coroutines) under `name` or its own name."""

        def add(fn: F) -> F:
            self.add(fn.__name__ if name is None else name, fn)
            return fn

        return add

    def add(self, name: str, obj: Any) -> None:
        """Register `obj` under `name` (checked as in the constructor)."""
        _check_name(name)
        self._entries[name] = obj

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __call__(self, value: Any) -> Any:
        """Resolve a `coro` value; raise LookupError saying why it does not resolve."""
        if callable(value):
            return value  # a function given directly in a dict graph
        if not isinstance(value, str) or not value:
            raise LookupError(f"a coro name must be a non-empty string, got {value!r}")
        if ":" in value:
            return self._import(value)
        head, _, rest = value.partition(".")
        if head not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            hint = "" if self._imports is False else "; or use a 'package.module:function' reference"
            raise LookupError(f"{value!r} is not registered (registered names: {known}){hint}")
        return _attribute(self._entries[head], rest, value)

    def _import(self, reference: str) -> Any:
        module_name, _, path = reference.partition(":")
        allowed = self._imports
        if allowed is False:
            raise LookupError(f"{reference!r}: this registry resolves registered names only, not imports")
        if allowed is not True and not any(module_name == p or module_name.startswith(p + ".") for p in allowed):
            raise LookupError(f"{reference!r}: module {module_name!r} is not among the allowed {', '.join(allowed)}")
        if not module_name or not path:
            raise LookupError(f"{reference!r}: expected 'package.module:function'")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise LookupError(f"{reference!r}: cannot import {module_name!r} ({exc})") from None
        return _attribute(module, path, reference)


def _check_name(name: object) -> None:
    # A name that is not a string used to surface much later, as a TypeError from sorting the names
    # for a LookupError's message; a '.' or ':' in it can never be looked up.
    if not isinstance(name, str) or not name or "." in name or ":" in name:
        raise ValueError(f"Registry: a name must be a non-empty string without '.' or ':', got {name!r}")


def _attribute(base: Any, path: str, reference: str) -> Any:
    """Walk `path` from `base` through classes only; the result must belong to `base`'s module."""
    home = base.__name__ if inspect.ismodule(base) else getattr(base, "__module__", None)
    obj = base
    for part in path.split(".") if path else ():
        if part.startswith("_"):
            raise LookupError(f"{reference!r}: {part!r} is private")
        if obj is not base and not inspect.isclass(obj):
            raise LookupError(f"{reference!r}: {part!r} is looked up in {obj!r}, which is not a class")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LookupError(f"{reference!r}: no attribute {part!r}") from None
        if inspect.ismodule(obj):
            raise LookupError(f"{reference!r}: {part!r} is a module; name a function defined in a module")
    if obj is not base and getattr(inspect.unwrap(obj), "__module__", None) != home:
        raise LookupError(f"{reference!r}: {path!r} is not defined in {home!r} (only imported there)")
    return obj
