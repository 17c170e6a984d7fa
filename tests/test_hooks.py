"""Hooks: what a hook hears of each item and of the run, and how its answers steer the run."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import Failure, PipelineStateError, Plumber, Processor, RunResult, route

from .backends import BACKENDS, run_on, started, trio_twins
from .helpers import collector, source_of, until, yield_now

Event = tuple[Any, ...]
"""(node, method, *arguments), an exception shown as its repr."""


class NodeLog:
    """The node methods of a `Recorder` for one node: each call appended to the shared log."""

    def __init__(self, recorder: Recorder, node: str) -> None:
        self._recorder = recorder
        self._node = node

    def _note(self, *event: Any) -> None:
        self._recorder.log.append((*self._recorder.tag, self._node, *event))

    def admits(self, key: Any) -> bool:
        self._note("admits", key)
        return self._recorder.admit(self._node, key)

    def sent(self, key: Any, value: Any, copies: int) -> None:
        self._note("sent", key, value, copies)

    def held(self, key: Any) -> None:
        self._note("held", key)

    def released(self, key: Any) -> None:
        self._note("released", key)

    def settled(self, key: Any, outcome: str, value: Any, copies: int) -> None:
        self._note("settled", key, outcome, repr(value) if isinstance(value, BaseException) else value, copies)

    def result(self, key: Any, value: Any) -> None:
        self._note("result", key, value)

    def finished(self, keys: list[Any]) -> None:
        self._note("finished", tuple(keys))


class Recorder:
    """A hook recording every run method and node method call, in the order they happen."""

    def __init__(self, tag: str | None = None, log: list[Event] | None = None, refuse: Any = None) -> None:
        self.tag: tuple[str, ...] = () if tag is None else (tag,)
        self.log: list[Event] = [] if log is None else log
        self.runs: list[tuple[Any, ...]] = []
        self._refuse = refuse

    def admit(self, node: str, key: Any) -> bool:
        return self._refuse is None or not self._refuse(node, key)

    def run_started(self, plumber: Plumber) -> None:
        self.runs.append(("run_started", plumber))
        self.log.append((*self.tag, "run_started"))

    def run_ended(self, plumber: Plumber, state: str) -> None:
        self.runs.append(("run_ended", plumber, state))
        self.log.append((*self.tag, "run_ended", state))

    def node_hooks(self, node: Processor) -> NodeLog:
        return NodeLog(self, node.name)

    def at(self, node: str) -> list[Event]:
        """The events of `node`, without the node's name, in the order they happened."""
        return [event[1:] for event in self.log if event[0] == node]

    def finished_keys(self, node: str) -> list[Any]:
        return [key for event in self.at(node) if event[0] == "finished" for key in event[1]]


def key(position: int) -> tuple[str, int]:
    return ("src", position)


# -- what a hook hears --------------------------------------------------------------------------


def drop_fail_diamond_graph() -> dict[str, Any]:
    """src -> m (drops x % 4 == 3) -> f (fails x % 5 == 2, routed to 'errors') -> a, b -> j (join) -> out."""

    async def m(processor: Processor, q_elt: tuple[int]) -> int | None:
        return None if q_elt[0] % 4 == 3 else q_elt[0]

    async def f(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] % 5 == 2:
            raise ValueError(f"bad {q_elt[0]}")
        return q_elt[0]

    async def a(processor: Processor, q_elt: tuple[int]) -> tuple[str, int]:
        return ("a", q_elt[0])

    async def b(processor: Processor, q_elt: tuple[int]) -> tuple[str, int]:
        await anyio.lowlevel.checkpoint()
        return ("b", q_elt[0])

    async def j(processor: Processor, q_elt: tuple[Any, Any]) -> Any:
        return q_elt

    async def out(processor: Processor, q_elt: tuple[Any]) -> Any:
        return q_elt[0]

    async def errors(processor: Processor, q_elt: tuple[Failure]) -> Any:
        return (q_elt[0].node, q_elt[0].item)

    return {
        "nodes": {
            "src": {"coro": source_of(list(range(20)))},
            "m": {"coro": m},
            "f": {"coro": f, "properties": {"on_error": "errors"}},
            "a": {"coro": a},
            "b": {"coro": b, "properties": {"workers": 2}},
            "j": {"coro": j},
            "out": {"coro": out},
            "errors": {"coro": errors},
        },
        "graph": {
            "src": ["m"],
            "m": ["f"],
            "f": ["a", "b"],
            "a": ["j"],
            "b": ["j"],
            "j": ["out"],
            "out": None,
            "errors": None,
        },
    }


async def test_a_hook_hears_where_every_item_ends_at_every_node() -> None:
    recorder = Recorder()
    plumber = Plumber(drop_fail_diamond_graph(), hooks=[recorder])
    result = await plumber.run()

    dropped = [x for x in range(20) if x % 4 == 3]
    routed = [x for x in range(20) if x % 4 != 3 and x % 5 == 2]
    passing = [x for x in range(20) if x not in dropped and x not in routed]
    gone = sorted(dropped + routed)
    assert (dropped, routed) == ([3, 7, 11, 15, 19], [2, 12, 17])
    pair = {x: (("a", x), ("b", x)) for x in passing}

    def events(node: str) -> list[Event]:
        return sorted((e for e in recorder.at(node) if e[0] != "finished"), key=repr)

    def expect(*groups: list[Event]) -> list[Event]:
        return sorted((e for group in groups for e in group), key=repr)

    assert events("src") == expect([("admits", key(x)) for x in range(20)])
    assert events("m") == expect(
        [("settled", key(x), "dropped", None, 1) for x in dropped],
        [("sent", key(x), x, 1) for x in range(20) if x not in dropped],
    )
    assert events("f") == expect(
        [("settled", key(x), "passed", None, 2) for x in dropped],
        [("settled", key(x), "routed", f"ValueError('bad {x}')", 3) for x in routed],
        [("sent", key(x), x, 2) for x in passing],  # one envelope per successor
    )
    for branch in ("a", "b"):
        assert events(branch) == expect(
            [("settled", key(x), "passed", None, 1) for x in gone],
            [("sent", key(x), (branch, x), 1) for x in passing],
        )
    assert events("j") == expect(
        [("held", key(x)) for x in range(20) for _ in ("a", "b")],
        [("released", key(x)) for x in range(20)],
        [("settled", key(x), "dropped", None, 0) for x in gone],  # 'out' is no join: no tombstone
        [("sent", key(x), pair[x], 1) for x in passing],
    )
    assert events("out") == expect(
        [("admits", key(x)) for x in passing], [("result", key(x), pair[x]) for x in passing]
    )
    assert events("errors") == expect(
        [("admits", key(x)) for x in routed], [("result", key(x), ("f", (x,))) for x in routed]
    )

    # every sink item finished exactly once, after its result
    for sink, keys in (("out", passing), ("errors", routed)):
        finished = recorder.finished_keys(sink)
        assert sorted(finished) == [key(x) for x in keys]
        order = recorder.at(sink)
        for x in keys:
            at_result = order.index(("result", key(x), pair[x] if sink == "out" else ("f", (x,))))
            at_finish = next(i for i, e in enumerate(order) if e[0] == "finished" and key(x) in e[1])
            assert at_result < at_finish

    # every item the source put ends exactly once on its way: at the sink, dropped by 'm', or routed by 'f'
    ends: dict[Any, list[tuple[str, str]]] = defaultdict(list)
    for node in ("m", "f", "a", "b", "out"):
        for event in recorder.at(node):
            if event[0] == "result" or (event[0] == "settled" and event[2] != "passed"):
                ends[event[1]].append((node, event[0] if event[0] == "result" else event[2]))
    assert dict(ends) == {
        key(x): [("m", "dropped")] if x in dropped else [("f", "routed")] if x in routed else [("out", "result")]
        for x in range(20)
    }
    assert unbalanced(recorder.log, plumber) == {}

    assert recorder.runs == [("run_started", plumber), ("run_ended", plumber, "completed")]
    assert result.state == "completed"
    assert (result["j"].items_in, result["j"].dropped, result["j"].completed) == (20, 8, 12)


def unbalanced(log: list[Event], plumber: Plumber) -> dict[Any, int]:
    """Per key, envelopes handed on minus envelopes taken, where they differ: {} when every one is accounted for.

    A source's admitted item is one envelope per successor; a node takes an envelope with the one event that
    ends it there (a join: with 'held'), and hands on the copies that event reports.
    """
    balance: Counter[Any] = Counter()
    specs = plumber.spec.nodes
    for node, method, *args in (e for e in log if len(e) > 2):
        spec = specs[node]
        joins = spec.join_mode is not None
        if method == "admits":
            if spec.is_source:
                balance[args[0]] += len(spec.successors)
            continue
        if method == "held":
            balance[args[0]] -= 1
        elif method == "sent":  # a generator's outputs: its input ends with settled 'expanded'
            balance[args[0]] += args[2] - (0 if joins or spec.is_generator else 1)
        elif method == "settled":
            balance[args[0]] += args[3] - (0 if joins else 1)
        elif method == "finished" and not joins:
            for k in args[0]:
                balance[k] -= 1
    return {k: v for k, v in balance.items() if v}


async def test_two_hooks_both_hear_everything_in_installation_order() -> None:
    log: list[Event] = []
    first, second = Recorder("first", log), Recorder("second", log)
    plumber = Plumber(drop_fail_diamond_graph(), hooks=[first])
    plumber.add_hook(second)
    assert plumber.hooks == (first, second)
    await plumber.run()
    assert len(log) > 100
    assert log[0::2] == [("first", *event[1:]) for event in log[1::2]]
    assert log[1::2] == [("second", *event[1:]) for event in log[0::2]]
    assert log[:2] == [("first", "run_started"), ("second", "run_started")]
    assert log[-2:] == [("first", "run_ended", "completed"), ("second", "run_ended", "completed")]


async def test_an_item_is_sent_only_when_every_hook_admits_it() -> None:
    seen, sink = collector()
    graph = {
        "nodes": {"src": {"coro": source_of(list(range(20)))}, "out": {"coro": sink}},
        "graph": {"src": ["out"], "out": None},
    }
    evens = Recorder(refuse=lambda node, k: node == "src" and k[1] % 2 == 0)
    threes = Recorder(refuse=lambda node, k: node == "src" and k[1] % 3 == 0)
    result = await Plumber(graph, hooks=[evens, threes]).run()
    admitted = [x for x in range(20) if x % 2 and x % 3]
    assert seen == [(x,) for x in admitted]
    assert result["src"].items_out == len(admitted) == 7
    assert (result["out"].items_in, result["out"].completed) == (7, 7)
    # each hook heard every position, including those the other refused
    for hook in (evens, threes):
        assert hook.at("src") == [("admits", key(x)) for x in range(20)]


async def test_only_odd_positions_leave_a_source_whose_hook_refuses_even_ones() -> None:
    seen, sink = collector()
    graph = {
        "nodes": {"src": {"coro": source_of(list(range(10)))}, "out": {"coro": sink}},
        "graph": {"src": ["out"], "out": None},
    }
    hooks = [Recorder(refuse=lambda node, k: node == "src" and k[1] % 2 == 0), Recorder()]
    result = await Plumber(graph, hooks=hooks).run()
    assert seen == [(1,), (3,), (5,), (7,), (9,)]
    assert result["src"].items_out == 5
    # the keys keep the source's positions: the refused ones still took theirs
    assert hooks[1].finished_keys("out") == [key(x) for x in (1, 3, 5, 7, 9)]


async def test_a_sink_passes_over_the_items_a_hook_does_not_admit() -> None:
    seen, sink = collector()
    graph = {
        "nodes": {"src": {"coro": source_of(list(range(6)))}, "out": {"coro": sink}},
        "graph": {"src": ["out"], "out": None},
    }
    hook = Recorder(refuse=lambda node, k: node == "out" and k[1] < 4)
    result = await Plumber(graph, hooks=[hook]).run()
    assert seen == [(4,), (5,)]
    assert result["src"].items_out == 6
    # an item passed over is no item of the sink's
    assert (result["out"].items_in, result["out"].completed, result["out"].in_flight) == (2, 2, 0)
    assert hook.finished_keys("out") == [key(4), key(5)]


# -- hooks that hold the run back ---------------------------------------------------------------


class Holding(Recorder):
    """A recorder whose `finished` returns the awaitable given for each call, in turn (None when there is none)."""

    def __init__(self, waits: list[Any]) -> None:
        super().__init__()
        self.waits = waits
        self.calls: list[list[Any]] = []

    def node_hooks(self, node: Processor) -> Any:
        holding = self

        class SinkLog(NodeLog):
            def finished(self, keys: list[Any]) -> Any:
                holding.calls.append(list(keys))
                return holding.waits.pop(0) if holding.waits else None

        return SinkLog(self, node.name)


def gated_source(go: anyio.Event, put: anyio.Event) -> Any:
    async def source(processor: Processor, output_q: Any) -> None:
        await output_q.put(0)
        await go.wait()
        for i in (1, 2, 3):
            await output_q.put(i)
        put.set()

    return source


async def test_an_awaitable_from_finished_holds_the_sink_until_it_resolves(make_plumber: Any) -> None:
    go, put = anyio.Event(), anyio.Event()
    seen, sink = collector()
    commit = anyio.Event()
    hook = Holding([commit.wait()])
    graph = {
        "nodes": {"src": {"coro": gated_source(go, put)}, "out": {"coro": sink}},
        "graph": {"src": ["out"], "out": None},
    }
    plumber = make_plumber(graph, hooks=[hook])
    running = started(plumber.run)
    await until(lambda: hook.calls == [[key(0)]])
    go.set()
    await put.wait()
    await anyio.wait_all_tasks_blocked()
    # three items wait in the sink's input; its worker waits for the commit of the first batch
    assert seen == [(0,)]
    assert (plumber.stats()["out"].queue_depth, plumber.stats()["out"].items_in) == (3, 1)
    commit.set()
    result = await running
    assert seen == [(0,), (1,), (2,), (3,)]
    assert hook.calls == [[key(0)], [key(1), key(2), key(3)]]
    assert result["out"].completed == 4


async def test_the_sink_waits_for_the_finished_awaitable_of_every_hook(make_plumber: Any) -> None:
    go, put = anyio.Event(), anyio.Event()
    seen, sink = collector()
    first_commit, second_commit = anyio.Event(), anyio.Event()
    first, second = Holding([first_commit.wait()]), Holding([second_commit.wait()])
    graph = {
        "nodes": {"src": {"coro": gated_source(go, put)}, "out": {"coro": sink}},
        "graph": {"src": ["out"], "out": None},
    }
    running = started(make_plumber(graph, hooks=[first, second]).run)
    await until(lambda: second.calls == [[key(0)]])
    go.set()
    await put.wait()
    second_commit.set()
    await anyio.wait_all_tasks_blocked()
    assert seen == [(0,)]  # the first hook's commit is still pending
    first_commit.set()
    await running
    assert seen == [(0,), (1,), (2,), (3,)]
    assert first.calls == second.calls == [[key(0)], [key(1), key(2), key(3)]]


async def test_run_returns_only_once_the_awaitable_of_run_ended_resolves(make_plumber: Any) -> None:
    closing = anyio.Event()
    ended: list[str] = []

    class Closing:
        def run_ended(self, plumber: Plumber, state: str) -> Any:
            ended.append(state)
            return closing.wait()

    seen, sink = collector()
    plumber = make_plumber(
        {"nodes": {"src": {"coro": source_of([1, 2])}, "out": {"coro": sink}}, "graph": {"src": ["out"], "out": None}},
        hooks=[Closing()],
    )
    running = started(plumber.run)
    await until(lambda: ended == ["completed"])
    await anyio.wait_all_tasks_blocked()
    assert not running.done()
    assert seen == [(1,), (2,)]
    closing.set()
    result = await running
    assert result.state == "completed"


async def test_an_exception_from_the_run_ended_awaitable_fails_the_run() -> None:
    broken = OSError("the last write failed")

    class Closing:
        def run_ended(self, plumber: Plumber, state: str) -> Any:
            async def close() -> None:
                raise broken

            return close()

    seen, sink = collector()
    plumber = Plumber(
        {"nodes": {"src": {"coro": source_of([1])}, "out": {"coro": sink}}, "graph": {"src": ["out"], "out": None}},
        hooks=[Closing()],
    )
    with pytest.raises(OSError, match=r"^the last write failed$") as info:
        await plumber.run()
    assert info.value is broken
    assert plumber.state == "failed"
    assert seen == [(1,)]


async def test_run_ended_raising_fails_the_run_and_the_other_hooks_still_hear_the_end() -> None:
    broken = OSError("cannot close")

    class Raising:
        def run_ended(self, plumber: Plumber, state: str) -> None:
            raise broken

    later = Recorder()
    seen, sink = collector()
    plumber = Plumber(
        {"nodes": {"src": {"coro": source_of([1])}, "out": {"coro": sink}}, "graph": {"src": ["out"], "out": None}},
        hooks=[Raising(), later],
    )
    with pytest.raises(OSError, match=r"^cannot close$") as info:
        await plumber.run()
    assert info.value is broken
    assert plumber.state == "failed"
    assert later.runs == [("run_started", plumber), ("run_ended", plumber, "completed")]
    assert seen == [(1,)]


async def test_run_started_raising_starts_nothing() -> None:
    called: list[str] = []
    refused = RuntimeError("cannot start")

    class Refusing:
        def run_started(self, plumber: Plumber) -> None:
            raise refused

    async def source(processor: Processor, output_q: Any) -> None:
        called.append("src")
        await output_q.put(1)

    async def sink(processor: Processor, q_elt: tuple[int]) -> None:
        called.append("out")

    later = Recorder()
    plumber = Plumber(
        {"nodes": {"src": {"coro": source}, "out": {"coro": sink}}, "graph": {"src": ["out"], "out": None}},
        hooks=[Refusing(), later],
    )
    with pytest.raises(RuntimeError, match=r"^cannot start$") as info:
        await plumber.run()
    assert info.value is refused
    await yield_now(20)
    assert called == []
    assert later.log == []  # a later hook heard nothing of a run that never started


async def test_add_hook_after_the_run_started_is_an_error() -> None:
    _, sink = collector()
    plumber = Plumber(
        {"nodes": {"src": {"coro": source_of([1])}, "out": {"coro": sink}}, "graph": {"src": ["out"], "out": None}}
    )
    plumber.create_pipeline()
    with pytest.raises(PipelineStateError, match=r"^add_hook\(\) after the run started \(state 'running'\)$"):
        plumber.add_hook(Recorder())
    await plumber.join()
    with pytest.raises(PipelineStateError, match=r"^add_hook\(\) after the run started \(state 'completed'\)$"):
        plumber.add_hook(Recorder())
    assert plumber.hooks == ()


async def test_a_hook_hears_nothing_of_a_node_it_gives_no_methods_for() -> None:
    class OnlyF(Recorder):
        def node_hooks(self, node: Processor) -> NodeLog | None:
            return NodeLog(self, node.name) if node.name == "f" else None

    hook = OnlyF()
    await Plumber(drop_fail_diamond_graph(), hooks=[hook]).run()
    assert {event[0] for event in hook.log if len(event) > 2} == {"f"}
    assert Counter(event[0] for event in hook.at("f")) == {"sent": 12, "settled": 8}


# -- a hook that raises -------------------------------------------------------------------------


class HookBroke(Exception):
    pass


def every_kind_of_node_graph() -> dict[str, Any]:
    """src -> g (async generator; yields nothing for 0) -> m (drops 2) -> l, r, gs; l, r -> j (join) -> out.

    l skips 3 after an error; r routes 1 to 'errors'; gs is an async generator sink. Every node that handles
    items has on_error 'skip' (r: its error node), so that a hook's exception cannot pass for an item's.
    """

    async def g(processor: Processor, q_elt: tuple[int]) -> Any:
        if q_elt[0]:
            yield q_elt[0]

    async def m(processor: Processor, q_elt: tuple[int]) -> int | None:
        return None if q_elt[0] == 2 else q_elt[0]

    async def left(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] == 3:
            raise ValueError("three")
        return q_elt[0]

    async def right(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] == 1:
            raise ValueError("one")
        return q_elt[0]

    async def j(processor: Processor, q_elt: tuple[int, int]) -> int:
        return q_elt[0] + q_elt[1]

    async def out(processor: Processor, q_elt: tuple[int]) -> int:
        return q_elt[0]

    async def gs(processor: Processor, q_elt: tuple[int]) -> Any:
        yield q_elt[0]

    async def errors(processor: Processor, q_elt: tuple[Failure]) -> str:
        return q_elt[0].node

    skip = {"on_error": "skip"}
    return {
        "nodes": {
            "src": {"coro": source_of([0, 1, 2, 3, 4, 5])},
            "g": {"coro": g, "properties": skip},
            "m": {"coro": m, "properties": skip},
            "l": {"coro": left, "properties": skip},
            "r": {"coro": right, "properties": {"on_error": "errors"}},
            "j": {"coro": j, "properties": skip},
            "out": {"coro": out, "properties": skip},
            "gs": {"coro": gs, "properties": skip},
            "errors": {"coro": errors, "properties": skip},
        },
        "graph": {
            "src": ["g"],
            "g": ["m"],
            "m": ["l", "r", "gs"],
            "l": ["j"],
            "r": ["j"],
            "j": ["out"],
            "out": None,
            "gs": None,
            "errors": None,
        },
    }


class Breaking(Recorder):
    """Raises `error` from the first call of `method` at `node` (with `outcome`, for settled)."""

    def __init__(self, node: str, method: str, outcome: str | None) -> None:
        super().__init__()
        self.error = HookBroke(f"{node}.{method}")
        self.where = (node, method, outcome)
        self.raised = False

    def node_hooks(self, node: Processor) -> Any:
        breaking = self

        class BreakingLog(NodeLog):
            def _note(self, *event: Any) -> None:
                super()._note(*event)
                node, method, outcome = breaking.where
                matches = method == event[0] and (outcome is None or event[2] == outcome)
                if self._node == node and matches and not breaking.raised:
                    breaking.raised = True
                    raise breaking.error

        return BreakingLog(self, node.name)


async def test_every_kind_of_node_graph_runs_to_its_end_with_a_quiet_hook() -> None:
    hook = Recorder()
    plumber = Plumber(every_kind_of_node_graph(), hooks=[hook], collect_outputs=True)
    result = await plumber.run()
    # g: 0 yields nothing; m drops 2; l skips 3; r routes 1: only 4 and 5 pair at j
    assert result.outputs == {"out": [8, 10], "gs": [1, 3, 4, 5], "errors": ["r"]}
    assert unbalanced(hook.log, plumber) == {}


@pytest.mark.parametrize(
    ("node", "method", "outcome"),
    [
        ("src", "admits", None),
        ("g", "sent", None),
        ("g", "settled", "expanded"),
        ("g", "settled", "dropped"),
        ("m", "sent", None),
        ("m", "settled", "dropped"),
        ("l", "settled", "passed"),
        ("l", "settled", "skipped"),
        ("r", "settled", "routed"),
        ("j", "held", None),
        ("j", "released", None),
        ("j", "settled", "dropped"),
        ("j", "sent", None),
        ("out", "admits", None),
        ("out", "result", None),
        ("out", "finished", None),
        ("gs", "admits", None),
        ("gs", "result", None),
        ("gs", "finished", None),
        ("errors", "result", None),
    ],
)
async def test_a_hook_method_that_raises_fails_the_run_with_its_exception(
    node: str, method: str, outcome: str | None
) -> None:
    hook = Breaking(node, method, outcome)
    plumber = Plumber(every_kind_of_node_graph(), hooks=[hook])
    with pytest.raises(HookBroke) as info:
        await plumber.run()
    assert info.value is hook.error
    assert plumber.state == "failed"
    assert hook.runs[-1] == ("run_ended", plumber, "failed")


# -- property: every item accounted for ---------------------------------------------------------


@st.composite
def chains_and_diamonds(draw: st.DrawFn) -> tuple[dict[str, Any], list[list[str]], int]:
    """A chain src -> p... -> out, or a diamond src -> p... -> (l..., r...) -> j -> out; maps drop random items."""
    count = draw(st.integers(0, 25))
    positions = st.sets(st.integers(0, 24), max_size=12)
    nodes: dict[str, Any] = {"src": {"coro": source_of(list(range(count)))}}
    succ: dict[str, list[str]] = {"src": []}

    def mapper(name: str) -> None:
        drops = draw(positions)

        async def fn(processor: Processor, q_elt: tuple[Any, ...], drops: set[int] = drops) -> Any:
            for _ in range(q_elt[0] % 3):
                await anyio.lowlevel.checkpoint()
            return None if q_elt[0] in drops else q_elt[0]

        workers = draw(st.integers(1, 3))
        nodes[name] = {"coro": fn, "properties": {"workers": workers, "queue_size": draw(st.integers(1, 4))}}
        succ[name] = []

    def line(prefix: str, length: int, start: str) -> list[str]:
        names = [f"{prefix}{i}" for i in range(length)]
        last = start
        for name in names:
            mapper(name)
            succ[last].append(name)
            last = name
        return names

    trunk = line("p", draw(st.integers(0, 2)), "src")
    head = trunk[-1] if trunk else "src"

    async def out(processor: Processor, q_elt: tuple[Any]) -> Any:
        return q_elt[0]

    nodes["out"] = {"coro": out, "properties": {"queue_size": draw(st.integers(1, 4))}}
    succ["out"] = []
    if draw(st.booleans()):
        left = line("l", draw(st.integers(1, 2)), head)
        right = line("r", draw(st.integers(1, 2)), head)
        drops = draw(positions)

        async def join(processor: Processor, q_elt: tuple[int, int], drops: set[int] = drops) -> Any:
            assert q_elt[0] == q_elt[1]
            return None if q_elt[0] in drops else q_elt[0]

        nodes["j"] = {"coro": join}
        succ["j"] = ["out"]
        succ[left[-1]].append("j")
        succ[right[-1]].append("j")
        paths = [["src", *trunk, *left, "j", "out"], ["src", *trunk, *right, "j", "out"]]
    else:
        succ[head].append("out")
        paths = [["src", *trunk, "out"]]
    graph = {"nodes": nodes, "graph": {name: succ[name] or None for name in nodes}}
    return graph, paths, count


def ends_along(path: list[str], item: Any, outcome_at: dict[tuple[str, Any], list[Event]]) -> list[str]:
    """Walk `item` along `path`: where its path ended. After its end, a node may only pass its tombstone on."""
    ended: list[str] = []
    for node in path[1:]:
        events = outcome_at.get((node, item), [])
        alive = not ended
        if not events and not alive:
            continue  # no tombstone goes this way
        assert len(events) == 1, (node, item, events)
        method, *args = events[0]
        if method == "sent":
            assert alive, (node, item, events)
        elif method == "result" or (method == "settled" and args[1] == "dropped"):
            if alive:
                ended.append(node)
            else:
                assert node == "j", (node, item, events)  # the join discards the group the tombstone came for
        else:
            assert (method, args[1], alive) == ("settled", "passed", False), (node, item, events)
    return ended


@pytest.mark.parametrize("loop", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(case=chains_and_diamonds())
def test_every_item_ends_once_on_each_path_and_the_hook_counts_match_the_stats(loop: str, case: Any) -> None:
    graph, paths, count = case
    hook = Recorder()
    plumber = Plumber(graph, hooks=[hook])

    async def main() -> RunResult:
        with anyio.fail_after(30):
            return await plumber.run()

    result = run_on(loop, main)

    outcome_at: dict[tuple[str, Any], list[Event]] = defaultdict(list)
    for node, method, *args in hook.log[1:-1]:
        if method in ("sent", "settled", "result"):
            outcome_at[node, args[0]].append((method, *args))
    for path in paths:
        for position in range(count):
            assert len(ends_along(path, key(position), outcome_at)) == 1
    assert unbalanced(hook.log, plumber) == {}

    for name, stats in result.stats.items():
        seen = Counter((e[1] if e[1] != "settled" else e[3]) for e in hook.log[1:-1] if e[0] == name)
        assert stats.in_flight == 0
        if name == "src":
            assert stats.items_out == seen["admits"] == count
        elif name == "out":
            assert stats.items_in == stats.completed == seen["result"] == len(hook.finished_keys("out"))
        else:
            assert (stats.completed, stats.items_out, stats.dropped) == (seen["sent"], seen["sent"], seen["dropped"])
            assert stats.items_in == seen["sent"] + seen["dropped"]
            assert seen["released"] == (stats.items_in if name == "j" else 0)
    assert hook.runs[-1] == ("run_ended", plumber, "completed")


# -- claims: a hook takes an item's failure as the item's own -----------------------------------


class Claims:
    """A hook whose `claims` takes the failures of the positions in `mine`; it notes what it hears."""

    def __init__(self, mine: set[int], heard: list[Event] | None = None, error: Exception | None = None) -> None:
        self.mine = mine
        self.heard: list[Event] = [] if heard is None else heard
        self.error = error

    def node_hooks(self, node: Processor) -> ClaimsAt:
        return ClaimsAt(self, node.name)


class ClaimsAt:
    def __init__(self, hook: Claims, node: str) -> None:
        self._hook = hook
        self._node = node

    def claims(self, key: Any, exception: BaseException) -> bool:
        self._hook.heard.append((self._node, "claims", key, repr(exception)))
        if self._hook.error is not None:
            raise self._hook.error
        return key[1] in self._hook.mine

    def settled(self, key: Any, outcome: str, value: Any, copies: int) -> None:
        if outcome == "failed":
            self._hook.heard.append((self._node, "settled", key, outcome, repr(value), copies))


def odd_refused_diamond(items: int) -> tuple[dict[str, Any], list[Any]]:
    """src -> (half, same) -> pair: half raises on odd numbers; pair's items are kept."""

    async def half(x: int) -> int:
        if x % 2:
            raise ValueError(f"odd {x}")
        return x // 2

    async def same(x: int) -> int:
        return x

    seen, pair = collector()
    item = {"style": "item"}
    graph = {
        "nodes": {
            "src": {"coro": source_of(list(range(items)))},
            "half": {"coro": half, "properties": {**item, "workers": 1}},
            "same": {"coro": same, "properties": item},
            "pair": {"coro": pair},
        },
        "graph": {"src": ["half", "same"], "half": ["pair"], "same": ["pair"], "pair": None},
    }
    return graph, seen


async def test_a_claimed_failure_fails_its_item_alone_and_the_run_goes_on() -> None:
    hook = Claims(mine={1, 3, 5, 7, 9})
    failed: list[Any] = []
    graph, seen = odd_refused_diamond(10)
    plumber = Plumber(graph, hooks=[hook])
    plumber.signals.connect("item_failed", lambda s: failed.append((s.node, s.item)))
    result = await plumber.run()
    assert result.state == "completed"
    assert sorted(seen) == [(x // 2, x) for x in range(0, 10, 2)]  # the join's q_elt
    odd = range(1, 10, 2)
    assert hook.heard == [
        event
        for x in odd
        for event in (
            ("half", "claims", ("src", x), f"ValueError('odd {x}')"),
            ("half", "settled", ("src", x), "failed", f"ValueError('odd {x}')", 1),  # its tombstone goes to pair
        )
    ]
    assert failed == [("half", x) for x in odd]
    stats = result.stats
    assert (stats["half"].items_in, stats["half"].completed, stats["half"].failed) == (10, 5, 5)
    assert (stats["pair"].items_in, stats["pair"].completed, stats["pair"].dropped) == (10, 5, 5)


async def test_a_failure_no_hook_claims_fails_the_run_and_every_hook_is_asked() -> None:
    heard: list[Event] = []
    graph, _ = odd_refused_diamond(10)
    plumber = Plumber(graph, hooks=[Claims({1}, heard), Claims({3}, heard)])
    with pytest.raises(ValueError, match=r"^odd 5\npipelines: node 'half' failed on item 5$"):
        await plumber.run()
    asked = [event[2][1] for event in heard if event[1] == "claims"]
    assert asked == [1, 1, 3, 3, 5, 5]  # both hooks, for each failure; one claim is enough
    settled = [(event[2][1], event[5]) for event in heard if event[1] == "settled"]
    assert settled == [(1, 1), (1, 1), (3, 1), (3, 1), (5, 0), (5, 0)]  # 5 failed the run: no tombstone
    assert plumber.stats()["half"].failed == 3


async def test_a_claims_method_that_raises_fails_the_run_with_its_exception() -> None:
    broke = RuntimeError("the claims hook broke")
    graph, _ = odd_refused_diamond(4)
    plumber = Plumber(graph, hooks=[Claims({1}, error=broke)])
    with pytest.raises(RuntimeError) as info:
        await plumber.run()
    assert info.value is broke


async def test_without_a_claims_hook_the_first_failure_fails_the_run() -> None:
    graph, _ = odd_refused_diamond(4)
    plumber = Plumber(graph, hooks=[Recorder()])
    with pytest.raises(ValueError, match=r"^odd 1\npipelines: node 'half' failed on item 1$"):
        await plumber.run()


# -- positions: a hook that hears only some items -----------------------------------------------


class Picky(Recorder):
    """A recorder whose node methods declare `positions`: it hears only the items at those positions."""

    def __init__(self, positions: Any, tag: str | None = None, log: list[Event] | None = None, refuse: Any = None):
        super().__init__(tag, log, refuse)
        self.positions = positions

    def node_hooks(self, node: Processor) -> NodeLog:
        log = NodeLog(self, node.name)
        log.positions = self.positions  # type: ignore[attr-defined]
        return log


def heard_at(events: list[Event], positions: Any) -> list[Event]:
    """`events` (node, method, *arguments) as a hook with `positions` hears them: the items at those
    positions only, `finished` with the keys left (not at all when none is)."""
    heard: list[Event] = []
    for event in events:
        if len(event) < 3:
            heard.append(event)  # a run method
        elif event[1] == "finished":
            keys = tuple(k for k in event[2] if k[1] in positions)
            if keys:
                heard.append((event[0], "finished", keys))
        elif event[2][1] in positions:
            heard.append(event)
    return heard


def per_item(events: list[Event]) -> Counter[Event]:
    """The node method calls about one item among `events`, counted (``finished`` is about a batch)."""
    return Counter(event for event in events if len(event) > 2 and event[1] != "finished")


def tagged(log: list[Event], tag: str) -> list[Event]:
    return [event[1:] for event in log if event[0] == tag]


@pytest.mark.parametrize("picky_first", [True, False])
async def test_a_hook_with_positions_hears_only_their_items_and_another_hook_still_hears_all(
    picky_first: bool,
) -> None:
    positions = {0, 2, 3, 7, 12, 19, 40}
    log: list[Event] = []
    picky, full = Picky(positions, "picky", log), Recorder("full", log)
    await Plumber(drop_fail_diamond_graph(), hooks=[picky, full] if picky_first else [full, picky]).run()
    alone = Recorder()
    await Plumber(drop_fail_diamond_graph(), hooks=[alone]).run()

    everything = tagged(log, "full")
    assert Counter(everything) == Counter(alone.log)  # the other hook is not filtered
    heard = tagged(log, "picky")
    assert heard == heard_at(everything, positions)  # the same calls, in the same order, for those items
    assert {event[2][1] for event in heard if len(event) > 2 and event[1] != "finished"} == positions - {40}
    methods = Counter(event[:2] for event in heard if len(event) > 2)
    # of those, m drops 3, 7 and 19, f routes 2 and 12 to 'errors': only 0 reaches 'out'; the join
    # holds the six (an item or its tombstone from each side) and releases each group once
    assert (methods[("j", "held")], methods[("j", "released")]) == (2 * 6, 6)
    assert [event[2] for event in heard if event[:2] == ("out", "result")] == [key(0)]
    assert sorted(k for event in heard if event[:2] == ("errors", "finished") for k in event[2]) == [key(2), key(12)]


def routing_diamond_graph() -> dict[str, Any]:
    """src -> (b, j); b routes odd items to 'odd' (into the join j) and even ones to the sink 'even'."""

    async def parity(x: int) -> Any:
        return route(x, "odd" if x % 2 else "even")

    async def tag(x: int) -> tuple[str, int]:
        return ("odd", x)

    async def keep(x: Any) -> Any:
        return x

    item = {"style": "item"}
    return {
        "nodes": {
            "src": {"coro": source_of(list(range(12)))},
            "b": {"coro": parity, "properties": {**item, "routes": {2: "odd", 3: "even"}}},
            "odd": {"coro": tag, "properties": item},
            "even": {"coro": keep, "properties": item},
            "j": {"coro": keep, "properties": item},
        },
        "graph": {"src": ["b", "j"], "b": ["odd", "even"], "odd": ["j"], "even": None, "j": None},
    }


async def test_a_hook_with_positions_hears_only_their_items_where_outputs_are_routed() -> None:
    positions = {0, 3, 4, 9}
    log: list[Event] = []
    await Plumber(routing_diamond_graph(), hooks=[Picky(positions, "picky", log), Recorder("full", log)]).run()
    everything = tagged(log, "full")
    assert tagged(log, "picky") == heard_at(everything, positions)
    alone = Picky(positions)
    await Plumber(routing_diamond_graph(), hooks=[alone]).run()
    assert per_item(alone.log) == per_item(heard_at(everything, positions))
    # 0 and 4 go to 'even', and a tombstone for each through 'odd' to the join; 3 and 9 through 'odd' to the join
    assert Counter(event[:2] for event in alone.log if len(event) > 2 and event[1] != "finished") == {
        ("src", "admits"): 4,
        ("b", "sent"): 4,
        ("odd", "sent"): 2,
        ("odd", "settled"): 2,
        ("even", "admits"): 2,
        ("even", "result"): 2,
        ("j", "held"): 8,
        ("j", "released"): 4,
        ("j", "settled"): 2,
        ("j", "admits"): 2,
        ("j", "result"): 2,
    }
    assert sorted(alone.finished_keys("even")) == [key(0), key(4)]
    assert sorted(alone.finished_keys("j")) == [key(3), key(9)]


async def test_a_hook_with_positions_installed_alone_hears_only_their_items() -> None:
    positions = {0, 2, 3, 7, 12, 19}
    alone = Picky(positions)
    await Plumber(drop_fail_diamond_graph(), hooks=[alone]).run()
    full = Recorder()
    await Plumber(drop_fail_diamond_graph(), hooks=[full]).run()
    assert per_item(alone.log) == per_item(heard_at(full.log, positions))
    assert sorted(alone.finished_keys("out")) == [key(0)]
    assert sorted(alone.finished_keys("errors")) == [key(2), key(12)]
    settled = Counter((event[0], event[3]) for event in alone.log if len(event) > 2 and event[1] == "settled")
    assert settled == {
        ("m", "dropped"): 3,
        ("f", "passed"): 3,
        ("f", "routed"): 2,
        ("a", "passed"): 5,
        ("b", "passed"): 5,
        ("j", "dropped"): 5,
    }


async def test_positions_the_hook_changes_during_the_run_are_heard_from_then_on() -> None:
    """The Tracing pattern: the source's methods hear every item and pick some; the other nodes hear those."""
    picked: set[int] = set()

    class Picking(Recorder):
        def node_hooks(self, node: Processor) -> NodeLog:
            log = NodeLog(self, node.name)
            if node.name != "src":
                log.positions = picked  # type: ignore[attr-defined]
            return log

        def admit(self, node: str, key: Any) -> bool:
            if key[1] % 3 == 0:
                picked.add(key[1])
            return True

    log: list[Event] = []
    hook, full = Picking("picking", log), Recorder("full", log)
    await Plumber(drop_fail_diamond_graph(), hooks=[hook, full]).run()
    assert picked == {0, 3, 6, 9, 12, 15, 18}
    everything = tagged(log, "full")
    heard = tagged(log, "picking")
    assert [e for e in heard if e[0] == "src"] == [e for e in everything if e[0] == "src"]
    others = [e for e in everything if len(e) < 3 or e[0] != "src"]
    assert [e for e in heard if len(e) < 3 or e[0] != "src"] == heard_at(others, picked)


async def test_an_item_a_hook_with_positions_does_not_hear_is_admitted() -> None:
    seen, sink = collector()
    graph = {
        "nodes": {"src": {"coro": source_of(list(range(8)))}, "out": {"coro": sink}},
        "graph": {"src": ["out"], "out": None},
    }
    refusing = Picky({1, 4, 6}, refuse=lambda node, k: node == "src")  # refuses every item it hears
    result = await Plumber(graph, hooks=[refusing]).run()
    assert seen == [(x,) for x in (0, 2, 3, 5, 7)]
    assert refusing.at("src") == [("admits", key(x)) for x in (1, 4, 6)]
    assert result["src"].items_out == 5


class PickyClaims(Claims):
    def __init__(self, mine: set[int], positions: set[int], heard: list[Event]) -> None:
        super().__init__(mine, heard)
        self.positions = positions

    def node_hooks(self, node: Processor) -> ClaimsAt:
        at = ClaimsAt(self, node.name)
        at.positions = self.positions  # type: ignore[attr-defined]
        return at


async def test_a_failure_at_a_position_a_claiming_hook_does_not_hear_is_not_claimed() -> None:
    heard: list[Event] = []
    graph, _ = odd_refused_diamond(10)
    # it would claim every failure, but hears only 1 and 3; the other hook claims none and hears all
    plumber = Plumber(graph, hooks=[PickyClaims({1, 3, 5}, {1, 3}, heard), Claims(set(), heard)])
    with pytest.raises(ValueError, match=r"^odd 5\npipelines: node 'half' failed on item 5$"):
        await plumber.run()
    assert [event[2][1] for event in heard if event[1] == "claims"] == [1, 1, 3, 3, 5]
    assert plumber.stats()["half"].failed == 3


async def test_positions_none_is_no_filter() -> None:
    log: list[Event] = []
    await Plumber(drop_fail_diamond_graph(), hooks=[Picky(None, "none", log), Recorder("full", log)]).run()
    assert Counter(tagged(log, "none")) == Counter(tagged(log, "full"))


@settings(max_examples=30, deadline=None)
@given(
    positions=st.sets(st.integers(0, 7), max_size=8),
    other=st.sets(st.integers(0, 7), max_size=8) | st.none(),
    order=st.permutations([0, 1, 2]),
)
def test_each_hook_hears_the_items_at_its_own_positions_on_every_kind_of_node(
    positions: set[int], other: set[int] | None, order: list[int]
) -> None:
    log: list[Event] = []
    hooks = [Picky(positions, "a", log), Picky(other, "b", log), Recorder("all", log)]
    plumber = Plumber(every_kind_of_node_graph(), hooks=[hooks[i] for i in order], collect_outputs=True)
    result = asyncio.run(plumber.run())
    assert result.outputs == {"out": [8, 10], "gs": [1, 3, 4, 5], "errors": ["r"]}
    everything = tagged(log, "all")
    assert unbalanced(everything, plumber) == {}
    assert tagged(log, "a") == heard_at(everything, positions)
    assert tagged(log, "b") == (everything if other is None else heard_at(everything, other))

    # installed alone, where the core tests the positions itself rather than the combined method
    alone = Picky(positions)
    result = asyncio.run(Plumber(every_kind_of_node_graph(), hooks=[alone], collect_outputs=True).run())
    assert result.outputs == {"out": [8, 10], "gs": [1, 3, 4, 5], "errors": ["r"]}
    expected = heard_at(everything, positions)
    assert per_item(alone.log) == per_item(expected)
    for sink in ("out", "gs", "errors"):  # the same keys, in batches that may differ from run to run
        assert sorted(alone.finished_keys(sink)) == sorted(
            k for e in expected if e[:2] == (sink, "finished") for k in e[2]
        )


globals().update(
    trio_twins(
        globals(),
        asyncio_only={
            "test_add_hook_after_the_run_started_is_an_error": "create_pipeline() is asyncio-only",
            "test_a_hook_with_positions_hears_only_their_items_and_another_hook_still_hears_all": "it compares "
            "two runs' logs event by event, the sinks' finished batches included: asyncio batches both runs "
            "alike, trio's scheduling order (random within a turn) batches them differently",
        },
    )
)


async def test_a_source_hook_with_positions_is_asked_only_at_them_and_may_move_them_as_items_leave() -> None:
    # As Tracing samples: the source hears only its next position, and each time names the next.
    asked: list[Any] = []

    class Next:
        def __init__(self) -> None:
            self.positions = {1}

        def admits(self, key: Any) -> bool:
            asked.append(key)
            self.positions.clear()  # the same container: the core reads it at each item
            self.positions.add(key[1] + 3)
            return key[1] != 4  # and refuses one of the items it hears

    class Hook:
        def node_hooks(self, node: Processor) -> Any:
            return Next() if node.name == "src" else None

    seen, sink = collector()
    graph = {
        "nodes": {"src": {"coro": source_of(list(range(12)))}, "out": {"coro": sink}},
        "graph": {"src": ["out"], "out": None},
    }
    result = await Plumber(graph, hooks=[Hook()]).run()
    assert asked == [key(1), key(4), key(7), key(10)]
    assert seen == [(x,) for x in range(12) if x != 4]
    assert result["src"].items_out == 11


async def test_a_sink_tells_a_result_hook_with_positions_only_of_theirs_and_not_of_a_failed_item() -> None:
    told: list[Any] = []

    class Results:
        positions = frozenset({1, 3, 5})

        def result(self, key: Any, value: Any) -> None:
            told.append((key, value))

    class Hook:
        def node_hooks(self, node: Processor) -> Any:
            return Results() if node.name == "out" else None

    async def tenfold(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] == 3:
            raise ValueError("three")
        return 10 * q_elt[0]

    graph = {
        "nodes": {
            "src": {"coro": source_of(list(range(8)))},
            "out": {"coro": tenfold, "properties": {"on_error": "skip"}},
        },
        "graph": {"src": ["out"], "out": None},
    }
    result = await Plumber(graph, hooks=[Hook()]).run()
    assert told == [(key(1), 10), (key(5), 50)]
    assert (result["out"].completed, result["out"].skipped) == (7, 1)
