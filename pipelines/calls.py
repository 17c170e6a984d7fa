"""Calling the user's function on one item: binding, retries, timeouts, async generator expansion.

`invoker()` binds a node's function once (its style, its args, the executor pool of a node that
runs a plain blocking function); `with_retries()` wraps it in the node's retry policy and timeout
when it has them, so a node without either calls its function directly; `Expansion` runs an async
generator node on one item and hands its outputs on in chunks as they come.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import reprlib
import types
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from . import runtime
from .ledger import guarded
from .policies import RetryPolicy
from .routing import Delivery
from .types import Envelope, Key, Marker

if TYPE_CHECKING:
    from .driver import Processor
    from .ledger import Ledger
    from .ordering import OrderGate, Turn
    from .routing import Router
    from .signals import Signals

__all__ = ["HANDLED", "PASSED_OVER", "Expansion", "invoker", "with_retries"]

logger = logging.getLogger(__name__)

Invoke = Callable[[Any], Any]
Emit = Callable[[list[Envelope], list[Any]], Awaitable[None]]


HANDLED: Any = Marker("HANDLED")
"""What a step returns for an item it has seen to the end (an expansion): nothing is left to do."""

PASSED_OVER: Any = Marker("PASSED_OVER")
"""What a step returns for an item a hook passed over (finished before a crash): not an item here."""


def invoker(node: Processor, pool: Callable[[], Executor | None]) -> Invoke:
    """The node's function bound once: ``invoke(arg)`` returns what to await (or an async generator)."""
    spec = node.spec
    fn, args = spec.coro, spec.args
    if spec.state is not None:
        args = {**args, "state": spec.state.value}  # the one object it folds items into (pipelines.state)
    if spec.properties.executor is not None:

        def in_pool(item: Any) -> runtime.Future[Any]:
            executor = pool()
            assert executor is not None
            call = functools.partial(fn, item, **args) if args else functools.partial(fn, item)
            return runtime.run_in_executor(executor, call)

        return in_pool
    if spec.style == "item":
        call: Invoke = _bound(fn, (), args) if args else fn
    else:
        # The processor bound as a method's self: a call costs about a fifth less than through a partial.
        call = _bound(fn, (node,), args) if args else types.MethodType(fn, node)
    if spec.call_kind in ("async", "async generator"):
        return call  # known from the function itself: nothing to check per call
    return _checked(call, spec.name, spec.is_source)


def _bound(fn: Callable[..., Any], lead: tuple[Any, ...], args: dict[str, Any]) -> Invoke:
    """``fn(*lead, arg, **args)`` as a function of `arg`: where `fn` takes the args right after `arg`,
    a copy of it with them as its defaults (`_with_defaults`), else a lambda passing them by
    position (a call with keywords costs about 1.5x one by position); otherwise a ``functools.partial``."""
    values = _in_order(fn, len(lead) + 1, args)
    if values is None:
        return functools.partial(fn, *lead, **args)
    given = _with_defaults(fn, len(lead) + 1, args)
    if given is not None:
        return types.MethodType(given, lead[0]) if lead else given  # lead: the processor, or nothing
    if not lead and len(values) == 1:
        (only,) = values
        return lambda arg: fn(arg, only)
    if not lead and len(values) == 2:
        first, second = values
        return lambda arg: fn(arg, first, second)
    if len(lead) == 1 and len(values) == 1:
        (node,), (only,) = lead, values
        return lambda arg: fn(node, arg, only)
    return lambda arg: fn(*lead, arg, *values)


def _with_defaults(fn: Callable[..., Any], skip: int, args: dict[str, Any]) -> Callable[..., Any] | None:
    """A copy of `fn` (its code, globals and closure) whose parameters after its first `skip` default
    to `args`: called with `skip` arguments, it runs as ``fn(*those, **args)``, with no frame of
    ours in between (a lambda around the call costs about a fifth of a coroutine call). None unless
    `fn` is a plain Python function whose code takes `args` by position right after those, and has
    defaults of its own for the positional parameters after them."""
    if type(fn) is not types.FunctionType:
        return None
    code = fn.__code__
    names = code.co_varnames[skip : skip + len(args)]
    after = code.co_argcount - skip - len(args)  # positional parameters after the bound ones
    own = fn.__defaults__ or ()
    if after < 0 or len(own) < after or sorted(names) != sorted(args):
        return None
    defaults = tuple(args[name] for name in names) + (own[len(own) - after :] if after else ())
    given = types.FunctionType(code, fn.__globals__, fn.__name__, defaults, fn.__closure__)
    given.__kwdefaults__ = fn.__kwdefaults__
    return functools.update_wrapper(given, fn)  # its name, qualname, module, doc, attributes


def _in_order(fn: Callable[..., Any], skip: int, args: dict[str, Any]) -> tuple[Any, ...] | None:
    """The values of `args` in the order `fn` takes them by position after its first `skip`
    parameters, when they are exactly the next ones; None otherwise (or when `fn` has no signature)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    following = parameters[skip : skip + len(args)]
    if len(following) != len(args):
        return None
    either = inspect.Parameter.POSITIONAL_OR_KEYWORD
    if any(p.kind is not either or p.name not in args for p in following):
        return None
    if any(p.kind not in (inspect.Parameter.POSITIONAL_ONLY, either) for p in parameters[:skip]):
        return None
    return tuple(args[p.name] for p in following)


def _checked(call: Invoke, name: str, is_source: bool) -> Invoke:
    """`call`, raising a clear TypeError when what it returns cannot be awaited.

    For a callable whose result is not known from the function (a lambda, a function annotated as
    returning an awaitable): awaiting anything else would fail with Python's terse "object int
    can't be used in 'await' expression". A source may also return an async generator.
    """

    def checked(arg: Any) -> Any:
        result = call(arg)
        if inspect.isawaitable(result) or (is_source and inspect.isasyncgen(result)):
            return result
        raise TypeError(f"node {name!r}: coro returned {_shown(result)}, expected an awaitable: {_expected(result)}")

    return checked


_REPR = reprlib.Repr()
_REPR.maxother = 100  # long enough for <async_generator object f at 0x...>


def _shown(value: Any) -> str:
    return f"{_REPR.repr(value)} ({type(value).__name__})"


def _expected(value: Any) -> str:
    if inspect.isasyncgen(value):
        return (
            "a node that yields its outputs must be known as one when the graph is built: give an async generator "
            "function (or a functools.partial of one) rather than a lambda"
        )
    return (
        "a node's function must return a coroutine (or another awaitable) each time it is called; "
        "a plain blocking function needs the property 'executor': 'thread'"
    )


def with_retries(
    invoke: Invoke, node: str, policy: RetryPolicy | None, timeout: float | None, ledger: Ledger, signals: Signals
) -> Invoke:
    """`invoke` under the node's retry policy, each attempt bounded by `timeout`; `invoke` itself
    when the node has neither."""
    if policy is None and timeout is None:
        return invoke

    async def call(arg: Any) -> Any:
        attempt = 1
        while True:
            try:
                if timeout is None:
                    return await invoke(arg)
                async with runtime.timeout(timeout):
                    return await invoke(arg)
            except Exception as exc:
                await before_retry(node, policy, attempt, exc, arg, ledger, signals)
                attempt += 1

    return call


async def before_retry(
    node: str, policy: RetryPolicy | None, attempt: int, exc: Exception, arg: Any, ledger: Ledger, signals: Signals
) -> None:
    """Re-raise `exc` if the item is out of attempts; otherwise count the retry and back off.

    It always yields to the loop, also with no backoff: a function that fails without awaiting
    would otherwise hold the loop for all its attempts.
    """
    if policy is None or attempt >= policy.max_attempts or not isinstance(exc, policy.retry_on):
        raise exc
    ledger.retried += 1
    signals.emit("item_retried", node=node, item=arg, exception=exc, attempt=attempt)
    delay = policy.delay(attempt)
    logger.info("node %r: attempt %d failed (%r); retrying in %.3fs", node, attempt, exc, delay)
    await runtime.sleep(delay)


class Expansion:
    """An async generator node run on one item: each yielded value is an output.

    Outputs are handed on in chunks (no larger than the smallest successor's bound) while the
    generator runs, so a generator yielding many items is held back by the bounded edges like
    any producer. `timeout` bounds the wait for each output. A retry starts the generator again
    and skips the outputs an earlier attempt already sent, so the generator must yield the same
    sequence each time. In a sink, each value is a result.
    """

    __slots__ = (
        "_chunk",
        "_emit",
        "_fan",
        "_finished",
        "_gate",
        "_index",
        "_invoke",
        "_ledger",
        "_name",
        "_on_value",
        "_policy",
        "_report",
        "_router",
        "_settled",
        "_signals",
        "_timeout",
    )

    def __init__(
        self,
        node: Processor,
        invoke: Invoke,
        emit: Emit,
        gate: OrderGate | None,
        on_value: Callable[[Key, Any], None] | None,
        finished: list[Key] | None,
    ) -> None:
        spec = node.spec
        self._name = spec.name
        self._index = spec.index
        self._invoke = invoke
        self._emit = emit
        self._gate = gate
        self._policy = spec.properties.retry
        self._timeout = spec.properties.timeout
        self._ledger = node.ledger
        self._signals = node.signals
        self._fan = len(node.outputs)
        self._chunk = min((edge.maxsize for edge in node.outputs), default=1)
        self._finished = finished
        self._router = node.router
        hooks = node.ledger.hooks
        fail_run = node.fail_run
        # Hooks called inside the generator's retry loop must not pass for the generator's failure.
        self._settled = guarded(hooks.settled, fail_run) if hooks.settled is not None else None
        self._report = guarded(hooks.sent, fail_run) if hooks.sent is not None else None
        self._on_value = guarded(on_value, fail_run) if on_value is not None else None

    async def __call__(self, key: Key, arg: Any, out: list[Envelope], errors: list[Any], turn: Turn | None) -> Any:
        """Expand one item; HANDLED, or None when a node with successors yielded nothing (a drop)."""
        sent = await self._expand(key, arg, out, errors, turn)
        if not self._fan:  # a sink: the item is finished whatever it yielded
            if self._finished is not None:
                self._finished.append(key)
            return HANDLED
        if not sent:
            return None
        if self._settled is not None:
            self._settled(key, "expanded", None, 0)
        return HANDLED

    async def _expand(self, key: Key, arg: Any, out: list[Envelope], errors: list[Any], turn: Turn | None) -> int:
        timeout = self._timeout
        gate = self._gate
        index = self._index
        fan = self._fan
        ledger = self._ledger
        on_value = self._on_value
        report = self._report
        router = self._router
        attempt = 1
        sent = 0
        while True:
            produced = 0
            try:
                async with contextlib.aclosing(self._invoke(arg)) as agen:
                    while True:
                        try:
                            if timeout is None:
                                value = await anext(agen)
                            else:
                                async with runtime.timeout(timeout):
                                    value = await anext(agen)
                        except StopAsyncIteration:
                            return sent
                        produced += 1
                        if produced <= sent:
                            continue  # an earlier attempt sent this one
                        if router is not None:
                            # Before the output counts as sent: a bad route fails it, and a retry
                            # comes back to it.
                            delivery = self._delivery(router, value)
                        sent += 1
                        if not fan:
                            if on_value is not None:
                                on_value(key, value)
                            continue
                        output_key = (*key, sent - 1)
                        if router is None:
                            if report is not None:
                                report(output_key, value, fan)
                            out.append((output_key, value, index))
                            ledger.items_out += 1
                        else:
                            plan = delivery.plan
                            if report is not None:
                                report(output_key, delivery.value, plan.copies)
                            if plan.values:
                                ledger.items_out += 1
                            if plan.copies:
                                out.append((output_key, delivery, index))
                        if len(out) >= self._chunk:
                            if gate is not None and turn is not None:
                                await gate.wait_turn(turn)
                            await self._emit(out, errors)
            except Exception as exc:
                await before_retry(self._name, self._policy, attempt, exc, arg, ledger, self._signals)
                attempt += 1

    @staticmethod
    def _delivery(router: Router, value: Any) -> Delivery:
        """Where a yielded output goes; one routed nowhere (or None) leaves only its tombstones.
        A bad route raises RouteError, failing the item like an error of the generator."""
        delivery = router.deliver(value)
        if delivery is None:
            return Delivery(None, router.nowhere)
        if type(delivery) is not Delivery:
            return Delivery(delivery, router.everywhere)
        return delivery
