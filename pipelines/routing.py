"""Routing: a node sends each output to the successors it chooses, not to all of them.

A node *routes* when it declares it, with either property (or both):

- ``'routes': {2: 'big', 3: ['small', 'audit']}``: outcome descriptors 2 to 9, each naming the
  successors reached only when an output is routed there (the flow syntax writes
  ``b (1 -> s, 2 -> big, 3 -> small)``). The other successors are the node's *default* ones,
  descriptor 1;
- ``'route': pick``: a plain function called with each output, returning where it goes: a successor
  name, a descriptor (an int), a list of them, or None for the default successors.

Such a node may also return (or yield) ``route(value, 'big')``, which names the targets itself;
the routing function is then not called. An unrouted output goes to the default successors; a node
whose successors are all routed-only fails an unrouted output, as it cannot know where it belongs.
An output routed to no successor (``route(value)``, an empty list) is dropped, as a None return is,
and None is never sent anywhere.

A node that does not route never looks at its outputs: `Router` is made only for a node that
routes, and its worker loop is chosen once, when the run starts.

An item routed away from a successor behind which a join waits for it still reaches that successor
as a tombstone, so that the join discards the group instead of waiting for it: the node hands an
output on as the value to its chosen successors and a tombstone to each other successor that needs
one, and the hooks hear ``sent(key, value, copies)`` with all of these envelopes counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .errors import RouteError
from .lineage import DROPPED

if TYPE_CHECKING:
    from .graph import NodeSpec

__all__ = ["Delivery", "Plan", "Routed", "Router", "route"]

Target = str | int
"""Where an output may be routed: a successor's name, or an outcome descriptor (1 to 9)."""


class Routed:
    """An output and the successors it goes to: what `route()` returns."""

    __slots__ = ("targets", "value")

    def __init__(self, value: Any, targets: tuple[Target, ...]) -> None:
        self.value = value
        self.targets = targets

    def __repr__(self) -> str:
        return f"route({self.value!r}{''.join(f', {t!r}' for t in self.targets)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Routed) and (self.value, self.targets) == (other.value, other.targets)

    __hash__ = None  # type: ignore[assignment]


def route(value: Any, *targets: Target) -> Routed:
    """`value`, to go only to `targets`: successor names, or outcome descriptors (``2`` for ``2 -> x``).

    Return it (or yield it) from a node that routes (one with a ``routes`` or ``route`` property).
    With no target, the output is dropped, as returning None drops it.
    """
    return Routed(value, targets)


class Plan:
    """Where one output goes: the positions of the successors that get the value, and of those
    that get a tombstone instead; `copies` envelopes in all."""

    __slots__ = ("copies", "drops", "values")

    def __init__(self, values: tuple[int, ...], drops: tuple[int, ...]) -> None:
        self.values = values
        self.drops = drops
        self.copies = len(values) + len(drops)


class Delivery:
    """An output in a routing node's hands, with its `Plan`: how it travels to the node's emit."""

    __slots__ = ("plan", "value")

    def __init__(self, value: Any, plan: Plan) -> None:
        self.value = value
        self.plan = plan


class Router:
    """The routes of one node: turns each output into what its emit hands on."""

    __slots__ = (
        "_default",
        "_fan",
        "_name",
        "_need",
        "_pick",
        "_plans",
        "_shown",
        "everywhere",
        "nowhere",
    )

    def __init__(self, spec: NodeSpec) -> None:
        successors = spec.successors
        self._name = spec.name
        self._fan = len(successors)
        position = {name: i for i, name in enumerate(successors)}
        self._need = frozenset(position[name] for name in spec.drop_targets)
        routed_only = {position[name] for names in spec.routes.values() for name in names}
        default = tuple(i for i in range(self._fan) if i not in routed_only)
        self._plans: dict[Any, Plan] = {}
        for name, i in position.items():
            self._plans[name] = self._plan((i,))
        if default:  # with no default successor, descriptor 1 names nothing
            self._plans[1] = self._plan(default)
        for descriptor, names in spec.routes.items():
            self._plans[descriptor] = self._plan(tuple(position[name] for name in names))
        self.nowhere = self._plan(())
        """The plan of an output routed to no successor: only tombstones, where joins wait."""
        self.everywhere = self._plan(tuple(range(self._fan)))
        """The plan of an output that goes to every successor."""
        # None: every successor is routed-only, an unrouted output is an error.
        self._default: Plan | None = self._plans.get(1)
        self._pick: Callable[[Any], Any] | None = spec.route
        descriptors = ", ".join(f"{d} -> {', '.join(names)}" for d, names in sorted(spec.routes.items()))
        self._shown = f"successors: {', '.join(successors)}" + (f"; routes: {descriptors}" if descriptors else "")

    def _plan(self, values: tuple[int, ...]) -> Plan:
        chosen = set(values)
        return Plan(values, tuple(i for i in range(self._fan) if i not in chosen and i in self._need))

    def deliver(self, output: Any) -> Any:
        """What a node hands on for `output`: a `Delivery`, the value itself when it goes to every
        successor, or None when nothing goes anywhere (None, or routed to no successor).

        Raises RouteError for a target that is not a successor or a descriptor of the node.
        """
        if type(output) is Routed:
            targets: Any = output.targets
            value = output.value
        elif self._pick is not None:
            value = output
            if value is None:
                return None
            targets = self._pick(value)
            if targets is None:
                return self._unrouted(value)
            if type(targets) is Routed:
                raise RouteError(
                    f"node {self._name!r}: its route function returned {targets!r}; return the targets only"
                )
            if isinstance(targets, (str, int)):
                targets = (targets,)
        else:
            return self._unrouted(output)
        if value is None:
            return None
        plan = self._plan_of(targets)
        if not plan.values:
            return None
        if not plan.drops and len(plan.values) == self._fan:
            return value
        return Delivery(value, plan)

    def _unrouted(self, value: Any) -> Any:
        if value is None:
            return None
        default = self._default
        if default is None:
            raise RouteError(
                f"node {self._name!r}: output {_short(value)} has no route, and every successor is reached only "
                f"through one ({self._shown}); return route(value, name)"
            )
        if not default.drops and len(default.values) == self._fan:
            return value
        return Delivery(value, default)

    def _plan_of(self, targets: Iterable[Any]) -> Plan:
        plans = self._plans
        if type(targets) is tuple and len(targets) == 1:
            plan = plans.get(targets[0]) if isinstance(targets[0], (str, int)) else None
            if plan is not None and type(targets[0]) is not bool:
                return plan
        if not isinstance(targets, (tuple, list, set, frozenset)):
            raise RouteError(
                f"node {self._name!r}: route targets must be a successor name, a descriptor, a list of them or None, "
                f"got {_short(targets)} ({self._shown})"
            )
        chosen: set[int] = set()
        for target in targets:
            plan = plans.get(target) if isinstance(target, (str, int)) and type(target) is not bool else None
            if plan is None:
                raise RouteError(
                    f"node {self._name!r}: route to {target!r}, which is not a successor or a descriptor of "
                    f"{self._name!r} ({self._shown})"
                )
            chosen.update(plan.values)
        key = frozenset(chosen)
        found = plans.get(key)
        if found is None:
            found = plans[key] = self._plan(tuple(sorted(chosen)))
        return found

    def split(self, out: list[Any], lanes: list[list[Any]], sent: Callable[[Any, Any, int], None] | None) -> None:
        """Sort the envelopes of `out` into one list per successor (`lanes`), telling `sent` of each output."""
        fan = self._fan
        for envelope in out:
            key, value, producer = envelope
            if type(value) is Delivery:
                plan = value.plan
                for i in plan.values:
                    lanes[i].append((key, value.value, producer))
                for i in plan.drops:
                    lanes[i].append((key, DROPPED, producer))
                if sent is not None:
                    sent(key, value.value, plan.copies)
                continue
            for lane in lanes:
                lane.append(envelope)
            if sent is not None and value is not DROPPED:
                sent(key, value, fan)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
