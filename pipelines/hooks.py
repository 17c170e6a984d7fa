"""Hooks: how the journal, the web layer, metrics or a user's own code hear what happens to items.

A hook is any object; every method is optional, and the core calls only those it defines (in
the spirit of trio's ``Instrument``). Install hooks with ``Plumber(..., hooks=[...])`` or
``plumber.add_hook(hook)`` before the run starts. Several can be installed at once; each is told
in the order it was added.

Run methods, on the hook itself::

    run_started(plumber)              the run starts; raising here starts nothing and is raised by
                                      create_pipeline() / run()
    run_ended(plumber, state)         every node has ended; may return an awaitable, and the run ends
                                      once it resolves (an exception from it fails the run)
    node_hooks(node)                  the object whose methods hear node `node` (a Processor), or
                                      None to hear nothing of it

Node methods, on the object ``node_hooks`` returned; every call happens on the node's worker task,
before the envelopes it reports are handed on (one exception: an item a node's lossy input drops,
pipelines.lossy, is settled 'dropped' on the task of the producer whose put pushed it out)::

    admits(key) -> bool               a source is about to send item `key` (the item *entered* the graph),
                                      or a sink is about to handle it; False passes it over (the
                                      journal: it was finished before a crash). The position still counts.
    sent(key, value, copies)          a node hands `value` on as `copies` envelopes (one per successor;
                                      a node that routes: one per successor it is routed to, and one
                                      tombstone per other successor that leads to a join,
                                      pipelines.routing).
                                      A node that returns its output: `key` is the input's key, and its
                                      path at this node ends here. An async generator node: once per
                                      yielded output, `key` being the output's key; the input's end is
                                      then settled(key, 'expanded', None, 0).
    held(key)                         a join keeps this member until the rest of its group arrives
    released(key)                     the join's group of `key` is complete (or discarded)
    settled(key, outcome, value, copies)
                                      the item's path at this node ended otherwise; `copies` envelopes
                                      went on in its place (tombstones for a join downstream, the
                                      failure routed to an error node). Outcomes: 'dropped' (None
                                      returned, routed to no successor, its join group discarded, or
                                      pushed out of the node's lossy input by a newer item),
                                      'skipped', 'routed' (to the
                                      error node; value is the exception), 'failed' (on_error 'fail':
                                      the run fails, unless a hook claimed the failure: see `claims`),
                                      'passed' (a tombstone went through), 'expanded'
    claims(key, exception) -> bool    the item failed after its retries at a node whose on_error is
                                      'fail'. True takes the failure as the item's own outcome (the
                                      hook answers for it, as an Inbox answers the request that sent
                                      the item): the item is counted failed, tombstones go on to a
                                      join downstream, settled(key, 'failed', exception, copies) is
                                      heard, and the run goes on. False (every hook): the run fails.
    result(key, value)                a sink returned `value` (None included), or its generator yielded it
    finished(keys) -> awaitable|None  a sink finished these items (each once, after its results). A
                                      returned awaitable holds the sink's worker back until it resolves:
                                      the journal's commit, so that a crash redoes at most one batch.

Hearing only some items: the object ``node_hooks`` returned may have a ``positions`` attribute, a
container (a set, a dict, anything ``in`` works on) of source positions. Then the node methods of
that object are called only for an item whose key's position (``key[1]``: the position at its
source of the item it comes from, whatever node made it since) is in the container; any other
item is admitted, not claimed, and left out of the keys ``finished`` hears (it is not called when
none is left). A position says nothing of the source: an object that hears items of several
sources may be called for another source's item at the same position, and tells them apart by
``key[0]``. The core reads the container at each item, so the hook may add and remove positions
as the run goes (Tracing adds the position of each item it samples). On an item's usual path
(``admits`` at a source, ``sent``, ``result``, and ``settled`` for a drop or a tombstone) the core
makes the test itself, so an item the object does not hear costs it an ``in`` test, not a call;
while the container is empty, a node handing on a batch of outputs tests it once for the batch. ``positions`` None, or
no such attribute: every item is heard. With several hooks, the positions of one filter only
that hook's methods.

Following only some items: a hook whose node objects all declare ``positions`` may also say, with
an attribute ``needs_all_keys = False`` on the hook itself, that only the items at the positions its
sources' objects hear (``admits``) need their lineage keys: Tracing does. When every hook installed
says so, and nothing else needs keys (`Plumber.keys_needed`), the run is keyless but for those items,
the *followed* ones, which keep their keys (pipelines.lineage.Keyed) from the source on; every node
method then hears only followed items, and every other item costs the run what it costs with no hook.

A run with no hook makes no call and no test for them per item: the worker loop of each node is
put together once, when the run starts, with only the steps its installed hooks need. An
exception raised by a node method fails the run, as a bug in the pipeline would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from .types import Key, Outcome, RunState

if TYPE_CHECKING:
    from .driver import Processor
    from .plumber import Plumber

__all__ = [
    "NO_HOOKS",
    "Filtered",
    "Hook",
    "NodeHooks",
    "bind_node_hooks",
    "needs_all_keys",
    "run_methods",
    "unfiltered",
]

Admits = Callable[[Key], bool]
Sent = Callable[[Key, Any, int], None]
Held = Callable[[Key], None]
Settled = Callable[[Key, Outcome, Any, int], None]
Result = Callable[[Key, Any], None]
Finished = Callable[[list[Key]], Awaitable[None] | None]
Claims = Callable[[Key, BaseException], bool]


Positions = Container[int]
"""The source positions of the items a node-hooks object hears of (its ``positions``)."""


class Hook(Protocol):
    """The run methods of a hook (each optional; see the module docstring for the node methods)."""

    def run_started(self, plumber: Plumber) -> None: ...
    def run_ended(self, plumber: Plumber, state: RunState) -> Awaitable[None] | None: ...
    def node_hooks(self, node: Processor) -> object | None: ...


@dataclass(frozen=True, slots=True)
class NodeHooks:
    """The node methods installed for one node, each None when no hook defines it.

    Each may be called for any item: a method of an object that declared ``positions`` comes as a
    `Filtered` (or, for `finished`, a function) that tests the item's position first.
    """

    admits: Admits | None = None
    sent: Sent | None = None
    held: Held | None = None
    released: Held | None = None
    settled: Settled | None = None
    result: Result | None = None
    finished: Finished | None = None
    claims: Claims | None = None


NO_HOOKS = NodeHooks()

_NAMES = tuple(f.name for f in fields(NodeHooks))


class Filtered:
    """A node method of an object that declared ``positions``: calling it calls `method` only for
    an item whose position (``key[1]``) is in `positions`, and otherwise returns `otherwise` (True
    for ``admits``: the item passes; False for ``claims``: not claimed; None for the others).

    A caller on an item's usual path may take the two apart (`unfiltered`) and make the test
    itself, so that an item the hook does not hear costs no call.
    """

    __slots__ = ("method", "otherwise", "positions")

    def __init__(self, method: Callable[..., Any], positions: Positions, otherwise: bool | None = None) -> None:
        self.method = method
        self.positions = positions
        self.otherwise = otherwise

    def __call__(self, key: Key, *args: Any) -> Any:
        if key[1] in self.positions:
            return self.method(key, *args)
        return self.otherwise

    def __repr__(self) -> str:
        return f"Filtered({self.method!r})"


def unfiltered(method: Callable[..., Any]) -> tuple[Callable[..., Any], Positions | None]:
    """A node method as its hook defined it, and the positions it hears (None: every item).

    For a caller that tests ``key[1] in positions`` itself before calling the method.
    """
    if type(method) is Filtered:
        return method.method, method.positions
    return method, None


def needs_all_keys(hook: object) -> bool:
    """Whether `hook` needs every item to carry its key: unless it says otherwise (``needs_all_keys =
    False``: it follows only the items at its sources' positions), it does."""
    return getattr(hook, "needs_all_keys", True) is not False


def bind_node_hooks(node: Processor, hooks: Sequence[object]) -> NodeHooks:
    """Ask each hook for its node methods for `node`; combine those several hooks define.

    The methods of an object with ``positions`` are filtered by them (see the module docstring).
    """
    found: dict[str, list[Callable[..., Any]]] = {name: [] for name in _NAMES}
    for hook in hooks:
        make = getattr(hook, "node_hooks", None)
        per_node = make(node) if make is not None else None
        if per_node is None:
            continue
        positions = getattr(per_node, "positions", None)
        for name in _NAMES:
            method = getattr(per_node, name, None)
            if method is not None:
                found[name].append(method if positions is None else _filtered(name, method, positions))
    if not any(found.values()):
        return NO_HOOKS
    return NodeHooks(**{name: _combine(name, methods) for name, methods in found.items()})


def _filtered(name: str, method: Callable[..., Any], positions: Positions) -> Callable[..., Any]:
    """`method`, called only for the items whose position is in `positions`."""
    if name == "finished":

        def finished(keys: list[Key]) -> Awaitable[None] | None:
            heard = [key for key in keys if key[1] in positions]
            return method(heard) if heard else None

        return finished
    return Filtered(method, positions, True if name == "admits" else False if name == "claims" else None)


def _combine(name: str, methods: list[Callable[..., Any]]) -> Callable[..., Any] | None:
    if not methods:
        return None
    if len(methods) == 1:
        return methods[0]
    if name == "admits":

        def admits(key: Key) -> bool:
            verdicts = [method(key) for method in methods]  # every hook hears it
            return all(verdicts)

        return admits
    if name == "claims":

        def claims(key: Key, exception: BaseException) -> bool:
            verdicts = [method(key, exception) for method in methods]  # every hook hears it
            return any(verdicts)

        return claims
    if name == "finished":

        def finished(keys: list[Key]) -> Awaitable[None] | None:
            waits = [w for w in (method(keys) for method in methods) if w is not None]
            return _all_of(waits) if waits else None

        return finished

    if any(type(method) is Filtered for method in methods):
        told = [unfiltered(method) for method in methods]

        def each_heard(key: Key, *args: Any) -> None:
            position = key[1]
            for method, positions in told:
                if positions is None or position in positions:
                    method(key, *args)

        return each_heard

    def each(*args: Any) -> None:
        for method in methods:
            method(*args)

    return each


async def _all_of(waits: list[Awaitable[None]]) -> None:
    for wait in waits:
        await wait


def run_methods(hooks: Sequence[object], name: str) -> list[Callable[..., Any]]:
    """The run method `name` of each hook that defines it, in order."""
    return [method for method in (getattr(hook, name, None) for hook in hooks) if method is not None]
