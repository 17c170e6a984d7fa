"""Calling a node's function: retries and their waits, timeouts per attempt and per output, async generator
outputs and their keys, plain functions in a thread pool."""

from __future__ import annotations

import functools
import logging
import threading
import traceback
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from pipelines import Plumber, Processor, Signal
from pipelines.testing import VirtualClock, run_node

from .backends import trio_twins
from .helpers import chain, collector, source_of


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_each_failed_attempt_is_retried_after_its_backoff_and_counted(virtual_clock: VirtualClock) -> None:
    attempts: dict[int, list[float]] = {}

    async def flaky(processor: Processor, q_elt: tuple[int]) -> int:
        x = q_elt[0]
        attempts.setdefault(x, []).append(virtual_clock.elapsed)
        if len(attempts[x]) <= x:  # item x fails its first x attempts
            raise ConnectionError(f"try {x} again")
        return x

    seen, sink = collector()
    graph = chain(
        "src",
        "f",
        "out",
        coros={"src": source_of([0, 1, 2, 3]), "f": flaky, "out": sink},
        props={"f": {"retry": {"max_attempts": 4, "backoff_factor": 1.0, "max_backoff": 3.0}, "workers": 1}},
    )
    plumber = Plumber(graph)
    retries: list[tuple[Any, int | None, str]] = []
    plumber.signals.connect("item_retried", lambda s: retries.append((s.item, s.attempt, str(s.exception))))
    result = await plumber.run()
    assert seen == [(0,), (1,), (2,), (3,)]
    # waits of 1, 2, then 3 (the cap) before attempts 2, 3 and 4; the items take their turns in one worker
    assert attempts == {0: [0.0], 1: [0.0, 1.0], 2: [1.0, 2.0, 4.0], 3: [4.0, 5.0, 7.0, 10.0]}
    assert virtual_clock.elapsed == 10.0
    assert retries == [((x,), attempt, f"try {x} again") for x in (1, 2, 3) for attempt in range(1, x + 1)]
    f = result["f"]
    assert (f.items_in, f.completed, f.retried, f.failed, f.skipped) == (4, 4, 6, 0, 0)


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_a_timeout_ends_an_attempt_and_the_next_attempt_can_succeed(virtual_clock: VirtualClock) -> None:
    never = anyio.Event()
    attempts: list[float] = []

    async def hangs_once(processor: Processor, q_elt: tuple[int]) -> int:
        attempts.append(virtual_clock.elapsed)
        if len(attempts) == 1:
            await never.wait()
        return q_elt[0]

    seen, sink = collector()
    graph = chain(
        "src",
        "f",
        "out",
        coros={"src": source_of([7]), "f": hangs_once, "out": sink},
        props={"f": {"timeout": 2.0, "retry": {"max_attempts": 2, "backoff_factor": 0.5}}},
    )
    plumber = Plumber(graph)
    retried: list[Signal] = []
    plumber.signals.connect("item_retried", retried.append)
    result = await plumber.run()
    assert seen == [(7,)]
    assert attempts == [0.0, 2.5]  # the first attempt timed out at 2.0, then the backoff of 0.5
    assert virtual_clock.elapsed == 2.5
    assert [(type(s.exception), s.attempt) for s in retried] == [(TimeoutError, 1)]
    assert (result["f"].completed, result["f"].retried, result["f"].skipped) == (1, 1, 0)


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_a_timeout_on_a_generator_bounds_the_wait_for_each_output(
    virtual_clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def paced(processor: Processor, q_elt: tuple[float]) -> Any:
        for i, pause in enumerate(q_elt[0]):
            await anyio.sleep(pause)
            yield (i, virtual_clock.elapsed)

    seen, sink = collector()
    graph = chain(
        "src",
        "g",
        "out",
        # three outputs 1.5 s apart: 4.5 s in all, but no output waited 2 s; then one that waits 3 s for its second
        coros={"src": source_of([(1.5, 1.5, 1.5), (1.5, 3.0, 0.0)]), "g": paced, "out": sink},
        props={"g": {"timeout": 2.0, "on_error": "skip", "workers": 1}},
    )
    with caplog.at_level(logging.WARNING, logger="pipelines.ledger"):
        result = await Plumber(graph).run()
    assert seen == [((0, 1.5),), ((1, 3.0),), ((2, 4.5),), ((0, 6.0),)]
    assert virtual_clock.elapsed == 4.5 + 1.5 + 2.0
    assert (result["g"].items_in, result["g"].completed, result["g"].skipped, result["g"].items_out) == (2, 1, 1, 4)
    assert [r.getMessage() for r in caplog.records] == [
        "node 'g': skipped item ((1.5, 3.0, 0.0),) after TimeoutError()"
    ]


class Keys:
    """A hook noting, per node, what `sent`, `settled`, `result` and `finished` report, in order."""

    def __init__(self) -> None:
        self.heard: dict[str, list[tuple[Any, ...]]] = {}

    def node_hooks(self, node: Processor) -> Any:
        heard = self.heard.setdefault(node.name, [])

        class Heard:
            def sent(self, key: Any, value: Any, copies: int) -> None:
                heard.append(("sent", key, value, copies))

            def settled(self, key: Any, outcome: str, value: Any, copies: int) -> None:
                heard.append(("settled", key, outcome, copies))

            def result(self, key: Any, value: Any) -> None:
                heard.append(("result", key, value))

            def finished(self, keys: list[Any]) -> None:
                heard.append(("finished", *keys))

        return Heard()


async def test_the_outputs_of_a_generator_are_keyed_by_their_input_and_their_index() -> None:
    async def spread(processor: Processor, q_elt: tuple[int]) -> Any:
        for i in range(q_elt[0]):
            yield f"{q_elt[0]}.{i}"

    async def keep(processor: Processor, q_elt: tuple[str]) -> str:
        return q_elt[0]

    graph = {
        "nodes": {
            "src": {"coro": source_of([2, 0, 3])},
            "g": {"coro": spread},
            "a": {"coro": keep},
            "b": {"coro": keep},
        },
        "graph": {"src": ["g"], "g": ["a", "b"], "a": None, "b": None},
    }
    keys = Keys()
    result = await Plumber(graph, hooks=[keys], collect_outputs=True).run()
    assert keys.heard["g"] == [
        ("sent", ("src", 0, 0), "2.0", 2),  # one envelope for each of the two successors
        ("sent", ("src", 0, 1), "2.1", 2),
        ("settled", ("src", 0), "expanded", 0),
        ("settled", ("src", 1), "dropped", 0),  # yielded nothing, and has successors: a drop
        ("sent", ("src", 2, 0), "3.0", 2),
        ("sent", ("src", 2, 1), "3.1", 2),
        ("sent", ("src", 2, 2), "3.2", 2),
        ("settled", ("src", 2), "expanded", 0),
    ]
    outputs = [(("src", 0, 0), "2.0"), (("src", 0, 1), "2.1"), (("src", 2, 0), "3.0")]
    outputs += [(("src", 2, 1), "3.1"), (("src", 2, 2), "3.2")]
    for sink in ("a", "b"):
        heard = keys.heard[sink]
        assert [(e[1], e[2]) for e in heard if e[0] == "result"] == outputs
        assert [k for e in heard if e[0] == "finished" for k in e[1:]] == [k for k, _ in outputs]
        assert result.outputs[sink] == [v for _, v in outputs]
    g = result["g"]
    assert (g.items_in, g.completed, g.dropped, g.items_out) == (3, 2, 1, 5)


async def test_a_generator_sink_that_yields_nothing_has_still_finished_its_item() -> None:
    async def spread(processor: Processor, q_elt: tuple[int]) -> Any:
        for i in range(q_elt[0]):
            yield i

    graph = {
        "nodes": {"src": {"coro": source_of([2, 0, 1])}, "g": {"coro": spread}},
        "graph": {"src": ["g"], "g": None},
    }
    keys = Keys()
    result = await Plumber(graph, hooks=[keys], collect_outputs=True).run()
    assert result.outputs == {"g": [0, 1, 0]}
    # in a sink, every value is a result of the item it was yielded for
    assert [e for e in keys.heard["g"] if e[0] != "finished"] == [
        ("result", ("src", 0), 0),
        ("result", ("src", 0), 1),
        ("result", ("src", 2), 0),
    ]
    assert [k for e in keys.heard["g"] if e[0] == "finished" for k in e[1:]] == [("src", 0), ("src", 1), ("src", 2)]
    g = result["g"]
    assert (g.items_in, g.completed, g.dropped, g.items_out) == (3, 3, 0, 0)


_lock = threading.Lock()
_attempts: dict[int, int] = {}
_threads: set[str] = set()


def fragile_double(x: int) -> int:
    """A plain blocking function: 2 fails its first attempt, 4 fails every attempt."""
    with _lock:
        _attempts[x] = _attempts.get(x, 0) + 1
        _threads.add(threading.current_thread().name)
        if x == 4 or (x == 2 and _attempts[x] == 1):
            raise OSError(f"disk busy on {x}")
    return 2 * x


async def test_a_plain_function_in_a_thread_is_retried_and_skipped_like_a_coroutine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _attempts.clear()
    _threads.clear()

    async def keep(processor: Processor, q_elt: tuple[int]) -> int:
        return q_elt[0]

    graph = {
        "nodes": {
            "src": {"coro": source_of(list(range(6)))},
            "f": {
                "coro": fragile_double,
                "properties": {
                    "executor": "thread",
                    "max_workers": 2,
                    "retry": {"max_attempts": 2, "backoff_factor": 0},
                    "on_error": "skip",
                },
            },
            "out": {"coro": keep},
        },
        "graph": {"src": ["f"], "f": ["out"], "out": None},
    }
    with caplog.at_level(logging.WARNING, logger="pipelines.ledger"):
        result = await Plumber(graph, collect_outputs=True).run()
    assert _attempts == {0: 1, 1: 1, 2: 2, 3: 1, 4: 2, 5: 1}
    assert _threads
    assert all(name.startswith("pipelines:f_") for name in _threads)
    assert threading.current_thread().name not in _threads
    f = result["f"]
    assert (f.items_in, f.completed, f.retried, f.skipped, f.items_out) == (6, 5, 2, 1, 5)
    assert sorted(result.outputs["out"]) == [0, 2, 4, 6, 10]
    # a plain function is called with the item itself
    assert [r.getMessage() for r in caplog.records] == ["node 'f': skipped item 4 after OSError('disk busy on 4')"]


# -- binding a node's args: by position where the function takes them right after the item ------


async def _labelled(x: int, a: str, b: str, c: str = "c") -> str:
    return f"{x}{a}{b}{c}"


async def _keyword_only(x: int, *, a: str, b: str) -> str:
    return f"{x}{a}{b}"


async def _var_keyword(x: int, **kw: str) -> str:
    return f"{x}" + "".join(f"{k}={v}" for k, v in sorted(kw.items()))


async def _after_a_default(x: int, a: str = "A", b: str = "B") -> str:
    return f"{x}{a}{b}"


class _Callable:
    async def __call__(self, x: int, a: str) -> str:
        return f"{x}{a}!"


def _closing_over(suffix: str) -> Any:
    async def closure(x: int, a: str, b: str = "b") -> str:
        return f"{x}{a}{b}{suffix}"

    return closure


def _wrapped(fn: Any) -> Any:
    @functools.wraps(fn)  # its signature is fn's; its code takes (*args, **kwargs)
    async def wrapper(*args: Any, **kwargs: Any) -> str:
        return "w" + await fn(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    ("coro", "args", "expected"),
    [
        (_labelled, {"b": "B", "a": "A"}, ["0ABc", "1ABc"]),  # given out of order
        (_labelled, {"a": "A", "b": "B", "c": "C"}, ["0ABC", "1ABC"]),
        (_labelled, {"c": "C", "b": "B", "a": "A"}, ["0ABC", "1ABC"]),
        (_keyword_only, {"b": "B", "a": "A"}, ["0AB", "1AB"]),
        (_var_keyword, {"z": "1", "y": "2"}, ["0y=2z=1", "1y=2z=1"]),
        (_after_a_default, {"b": "b"}, ["0Ab", "1Ab"]),  # not right after the item: by keyword
        (_after_a_default, {"a": "a"}, ["0aB", "1aB"]),
        (_Callable(), {"a": "a"}, ["0a!", "1a!"]),
        (functools.partial(_labelled, c="p"), {"a": "A", "b": "B"}, ["0ABp", "1ABp"]),
        (_closing_over("!"), {"a": "A"}, ["0Ab!", "1Ab!"]),
        (_wrapped(_labelled), {"a": "A", "b": "B"}, ["w0ABc", "w1ABc"]),
    ],
)
async def test_a_nodes_args_reach_the_parameters_they_name(
    coro: Any, args: dict[str, str], expected: list[str]
) -> None:
    run = await run_node(coro, [0, 1], properties={"style": "item"}, **args)
    assert run.outputs == expected
    assert run.failures == []


async def test_nodes_sharing_a_function_get_each_their_own_args_and_leave_its_defaults_alone() -> None:
    """Args bound as the defaults of a copy of the function (no frame around each call): the function
    itself is untouched, and every node's copy has its own."""
    out, sink = collector()
    graph = {
        "nodes": {
            "feed": {"coro": source_of([0, 1])},
            "one": {"coro": _after_a_default, "args": {"a": "1"}, "properties": {"style": "item"}},
            "two": {"coro": _after_a_default, "args": {"a": "2", "b": "2"}, "properties": {"style": "item"}},
            "sink": {"coro": sink},
        },
        "graph": {"feed": ["one"], "one": ["two"], "two": ["sink"], "sink": None},
    }
    await Plumber(graph).run()
    # 'one' makes "01B"; 'two' takes that whole string as its item
    assert out == [("01B22",), ("11B22",)]
    assert _after_a_default.__defaults__ == ("A", "B")
    assert await _after_a_default(7) == "7AB"


async def test_a_failure_in_a_node_with_args_names_the_users_function() -> None:
    async def refuses(x: int, limit: int) -> int:
        if x > limit:
            raise ValueError(f"{x} is over {limit}")
        return x

    run = await run_node(refuses, [1, 5], properties={"style": "item"}, limit=3)
    assert run.outputs == [1]
    (failure,) = run.failures
    assert (failure.node, failure.item, str(failure.exception)) == ("refuses", 5, "5 is over 3")
    frames = traceback.extract_tb(failure.exception.__traceback__)
    assert frames[-1].name == "refuses"  # the user's own code, where it raised


async def _original(processor: Processor, q_elt: tuple[int], a: str, b: str = "b") -> str:
    return f"{processor.name}:{q_elt[0]}{a}{b}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [({"a": "A"}, ["node:0Ab", "node:1Ab"]), ({"b": "B", "a": "A"}, ["node:0AB", "node:1AB"])],
)
async def test_an_original_style_nodes_args_reach_the_parameters_they_name(
    args: dict[str, str], expected: list[str]
) -> None:
    out, sink = collector()
    graph = {
        "nodes": {
            "feed": {"coro": source_of([0, 1])},
            "node": {"coro": _original, "args": args},
            "sink": {"coro": sink},
        },
        "graph": {"feed": ["node"], "node": ["sink"], "sink": None},
    }
    await Plumber(graph).run()
    assert out == [(value,) for value in expected]


globals().update(trio_twins(globals()))
