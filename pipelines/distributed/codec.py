"""How an envelope travels in a stream entry: msgpack, with tuples, tombstones and failures kept.

An envelope ``(key, value, producer)`` becomes one msgpack array. msgpack alone would turn a tuple
into a list; here a tuple is an extension type, so a node receives exactly the types its
predecessor returned: None, bool, int, float, str, bytes, list, tuple and dict, nested. Anything
else (a set, a datetime, an object) cannot be sent and raises `SerializationError`. A tombstone
(`DROPPED`) and a `Failure` routed to an error node have extension types of their own; the
exception of a Failure arrives as a `RemoteError` carrying the original type's name and message.
Nothing is ever unpickled: an entry can only produce plain data.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..failure import Failure
from ..lineage import DROPPED
from .errors import RemoteError, SerializationError

__all__ = ["decode", "encode"]

_TUPLE, _DROPPED, _FAILURE = 1, 2, 3


def _default(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return msgpack.ExtType(_TUPLE, _packb(list(obj)))
    if obj is DROPPED:
        return msgpack.ExtType(_DROPPED, b"")
    if isinstance(obj, Failure):
        exc = obj.exception
        name = exc.type_name if isinstance(exc, RemoteError) else type(exc).__name__
        message = exc.message if isinstance(exc, RemoteError) else str(exc)
        try:
            item = _packb(obj.item)
        except SerializationError:
            item = _packb(repr(obj.item))  # the error node still learns what failed
        return msgpack.ExtType(_FAILURE, _packb([obj.node, msgpack.ExtType(0, item), name, message]))
    raise SerializationError(f"cannot serialize {type(obj).__name__} {_shown(obj)}")


def _ext(code: int, data: bytes) -> Any:
    if code == _TUPLE:
        return tuple(_unpackb(data))
    if code == _DROPPED:
        return DROPPED
    if code == _FAILURE:
        node, item, name, message = _unpackb(data)
        return Failure(node, _unpackb(item.data), RemoteError(name, message))
    return msgpack.ExtType(code, data)


def _packb(value: Any) -> bytes:
    try:
        return msgpack.packb(value, default=_default, strict_types=True, use_bin_type=True)  # type: ignore[no-any-return]
    except SerializationError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:  # an int beyond 64 bits, a recursive structure
        raise SerializationError(f"cannot serialize {_shown(value)}: {exc}") from None


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext, raw=False, strict_map_key=False)


def encode(envelope: tuple[Any, Any, int]) -> bytes:
    """The bytes of an envelope; raises SerializationError when its value (or key) is not plain data."""
    key, value, producer = envelope
    return _packb([list(key), value, producer])


def decode(data: bytes) -> tuple[Any, Any, int]:
    """The envelope `encode()` made; raises ValueError for bytes it did not make."""
    try:
        key, value, producer = _unpackb(data)
    except Exception as exc:
        raise ValueError(f"not an envelope of pipelines: {exc}") from None
    return tuple(key), value, producer


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
