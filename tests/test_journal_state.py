"""Node state (pipelines.state) with the journal: a resumed run folds every item exactly once.

A crash is made here by a node that raises on chosen items ('fail' ends the run where it is);
tests/test_journal_state_kill.py kills real processes with SIGKILL.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import GraphError, PipelineStateError, Plumber, node
from pipelines.failure import Failure
from pipelines.journal import JournalError, SQLiteOutput, engine
from pipelines.journal.store import read_journal_file

N = 200


class Crash(Exception):
    """What a node raises to end a run half-way."""


crash_on: set[int] = set()
"""The values on which `tally` (and `halve`) raise Crash; a test sets it, the runs read it."""
folds: list[int] = []
"""Every value `tally` folded, over all the runs of a test: each must be there once."""
seen_at_end: list[dict[str, Any]] = []
"""What each run's teardown found in the state."""


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    # A snapshot at the end of every batch: these runs last less than the journal's interval
    # between two snapshots. (The subprocess tests run with the interval as it is.)
    monkeypatch.setattr(engine, "STATE_INTERVAL", 0.0)
    monkeypatch.setattr(engine, "STATE_SHARE", 0)
    crash_on.clear()
    folds.clear()
    seen_at_end.clear()


@node
async def numbers(n: int) -> Any:
    for i in range(n):
        yield i


@node
async def ticking(n: int) -> Any:
    for i in range(n):
        await asyncio.sleep(0)  # a source that lets the loop turn between two items
        yield i


@node
async def double(x: int) -> int:
    return 2 * x


@node
async def plus_one(x: int) -> int:
    return x + 1


@node
async def halve(x: int) -> int:
    if x % 7 == 3:
        raise ValueError(f"{x} is not wanted")
    return x // 2


def new_tally() -> dict[str, Any]:
    return {"items": 0, "sum": 0, "windows": {}}


async def tally(processor: Any, q_elt: tuple[Any, ...], state: dict[str, Any]) -> None:
    """Folds each value: a count, a sum, a count per window of 10 values. Raises Crash on `crash_on`."""
    value = q_elt[0] if len(q_elt) == 1 else sum(q_elt)
    if value in crash_on:
        raise Crash(value)
    await asyncio.sleep(0)  # a node that suspends: a batch is not one step
    state["items"] += 1
    state["sum"] += value
    window = str(value // 10)
    state["windows"][window] = state["windows"].get(window, 0) + 1
    folds.append(value)


async def keep_at_end(processor: Any, state: dict[str, Any]) -> None:
    seen_at_end.append({"items": state["items"], "sum": state["sum"], "windows": dict(state["windows"])})


def expected(values: list[int]) -> dict[str, Any]:
    windows: dict[str, int] = {}
    for value in values:
        windows[str(value // 10)] = windows.get(str(value // 10), 0) + 1
    return {"items": len(values), "sum": sum(values), "windows": windows}


SINK = {"coro": tally, "properties": {"state": new_tally, "teardown": keep_at_end, "queue_size": 8}}


def chain(n: int = N) -> dict[str, Any]:
    return {
        "nodes": {"numbers": {"coro": numbers, "args": {"n": n}}, "double": {"coro": double}, "sink": SINK},
        "graph": {"numbers": ["double"], "double": ["sink"], "sink": None},
    }


def run(graph: dict[str, Any], journal: Path | None = None) -> str:
    """Run the graph to its end; its state, or the name of the exception that ended it."""
    try:
        result = asyncio.run(Plumber(graph, journal=journal).run())
    except Crash:
        return "crashed"
    return result.state


# -- without a journal ---------------------------------------------------------------------------


def test_without_a_journal_the_state_lives_in_memory_for_the_run() -> None:
    assert run(chain()) == "completed"
    assert seen_at_end == [expected([2 * i for i in range(N)])]


def test_the_function_setup_and_teardown_get_the_same_state_object() -> None:
    given: list[int] = []

    async def setup(processor: Any, state: dict[str, Any]) -> None:
        given.append(id(state))

    async def sink(x: int, state: dict[str, Any]) -> None:
        given.append(id(state))

    async def teardown(processor: Any, state: dict[str, Any]) -> None:
        given.append(id(state))

    graph = {
        "nodes": {
            "numbers": {"coro": numbers, "args": {"n": 3}},
            "sink": {
                "coro": sink,
                "properties": {"style": "item", "state": dict, "setup": setup, "teardown": teardown},
            },
        },
        "graph": {"numbers": ["sink"], "sink": None},
    }
    plumber = Plumber(graph)
    asyncio.run(plumber.run())
    state = plumber.nodes[1].spec.state
    assert state is not None
    assert given == [id(state.value)] * 5


def test_a_stateful_function_in_a_thread_pool_folds_one_item_at_a_time(tmp_path: Path) -> None:
    def fold(x: int, state: dict[str, Any]) -> None:  # blocking: run in a thread
        state["items"] = state.get("items", 0) + 1
        state["sum"] = state.get("sum", 0) + x

    async def keep(processor: Any, state: dict[str, Any]) -> None:
        seen_at_end.append(dict(state))

    graph = {
        "nodes": {
            "numbers": {"coro": numbers, "args": {"n": N}},
            "sink": {"coro": fold, "properties": {"executor": "thread", "state": dict, "teardown": keep}},
        },
        "graph": {"numbers": ["sink"], "sink": None},
    }
    plumber = Plumber(graph, journal=tmp_path / "j.db")
    assert (plumber.nodes[1].spec.properties.workers, plumber.nodes[1].spec.properties.max_workers) == (1, 1)
    asyncio.run(plumber.run())
    assert seen_at_end == [{"items": N, "sum": sum(range(N))}]


# -- a crash, and the resume ---------------------------------------------------------------------


def test_a_resumed_run_folds_each_item_once(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    crash_on.update({2 * 120})
    assert run(chain(), journal) == "crashed"
    crash_on.clear()
    assert run(chain(), journal) == "completed"
    values = [2 * i for i in range(N)]
    assert seen_at_end[-1] == expected(values)
    assert set(folds) == set(values)  # some were folded twice: before the crash, unsnapshotted, and after...
    stored = read_journal_file(journal)
    assert stored is not None
    assert stored.runs[-1].states == {"sink": expected(values)}  # ...and the snapshot holds each once


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, N - 1), min_size=1, max_size=4, unique=True))
def test_any_number_of_crashes_still_folds_each_item_once(tmp_path_factory: Any, crashes: list[int]) -> None:
    journal = tmp_path_factory.mktemp("j") / "j.db"
    folds.clear()
    seen_at_end.clear()
    for value in crashes:  # each run crashes on the next one, after the earlier ones are let through
        crash_on.clear()
        crash_on.add(2 * value)
        outcome = run(chain(), journal)
        assert outcome in ("crashed", "completed")  # a crash item done before an earlier crash is not redone
    crash_on.clear()
    run(chain(), journal)
    assert seen_at_end[-1] == expected([2 * i for i in range(N)])


def test_a_completed_run_gives_its_teardown_the_final_state(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    crash_on.add(2 * 50)
    assert run(chain(), journal) == "crashed"
    crash_on.clear()
    assert run(chain(), journal) == "completed"
    plumber = Plumber(chain(), journal=journal)
    asyncio.run(plumber.run())
    assert plumber.journal is not None
    assert plumber.journal.already_completed
    final = expected([2 * i for i in range(N)])
    assert seen_at_end[-2:] == [final, final]  # a report written again is the same report


def test_a_join_upstream_of_a_stateful_sink(tmp_path: Path) -> None:
    graph = {
        "nodes": {
            "numbers": {"coro": numbers, "args": {"n": N}},
            "double": {"coro": double},
            "plus_one": {"coro": plus_one},
            "sink": SINK,
        },
        "graph": {"numbers": ["double", "plus_one"], "double": ["sink"], "plus_one": ["sink"], "sink": None},
    }
    journal = tmp_path / "j.db"
    crash_on.add(3 * 77 + 1)  # the pair (154, 78) of item 77
    assert run(graph, journal) == "crashed"
    crash_on.clear()
    assert run(graph, journal) == "completed"
    assert seen_at_end[-1] == expected([3 * i + 1 for i in range(N)])


def test_error_routes_a_stateful_error_node_and_a_stateful_sink(tmp_path: Path) -> None:
    errors_seen: list[dict[str, Any]] = []

    async def count_failures(failure: Failure, state: dict[str, int]) -> None:
        state[str(failure.item)] = state.get(str(failure.item), 0) + 1

    async def keep_errors(processor: Any, state: dict[str, int]) -> None:
        errors_seen.append(dict(state))

    graph = {
        "nodes": {
            "numbers": {"coro": numbers, "args": {"n": N}},
            "halve": {"coro": halve, "properties": {"on_error": "errors"}},
            "sink": SINK,
            "errors": {
                "coro": count_failures,
                "properties": {"style": "item", "state": dict, "teardown": keep_errors},
            },
        },
        "graph": {"numbers": ["halve"], "halve": ["sink"], "sink": None, "errors": None},
    }
    journal = tmp_path / "j.db"
    crash_on.add(150 // 2)  # the sink crashes on the output of 150
    assert run(graph, journal) == "crashed"
    crash_on.clear()
    crash_on.add(1000)  # nothing: the second run goes to its end
    assert run(graph, journal) == "completed"
    kept = [i for i in range(N) if i % 7 != 3]
    assert seen_at_end[-1] == expected([i // 2 for i in kept])
    assert errors_seen[-1] == {str(i): 1 for i in range(N) if i % 7 == 3}


def test_stop_then_resume_folds_each_item_once(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    reached = asyncio.Event()

    async def sink(x: int, state: dict[str, Any]) -> None:
        state["items"] = state.get("items", 0) + 1
        state["sum"] = state.get("sum", 0) + x
        if state["items"] == 60:
            reached.set()
        await asyncio.sleep(0)

    async def teardown(processor: Any, state: dict[str, Any]) -> None:
        seen_at_end.append(dict(state))

    graph = {
        "nodes": {
            "numbers": {"coro": ticking, "args": {"n": N}},
            "sink": {
                "coro": sink,
                "properties": {"style": "item", "state": dict, "teardown": teardown, "queue_size": 8},
            },
        },
        "graph": {"numbers": ["sink"], "sink": None},
    }

    async def stopped() -> str:
        plumber = Plumber(graph, journal=journal)
        running = asyncio.ensure_future(plumber.run())
        await reached.wait()
        await plumber.stop()
        return (await running).state

    assert asyncio.run(stopped()) == "stopped"
    assert 60 <= seen_at_end[0]["items"] < N
    assert run(graph, journal) == "completed"
    assert seen_at_end[-1] == {"items": N, "sum": sum(range(N))}


# -- states that cannot be kept --------------------------------------------------------------------


def sink_with(state: Any, **properties: Any) -> dict[str, Any]:
    return {
        "nodes": {
            "numbers": {"coro": numbers, "args": {"n": 3}},
            "sink": {"coro": tally, "properties": {"state": state, **properties}},
        },
        "graph": {"numbers": ["sink"], "sink": None},
    }


class Opaque:
    pass


class Dumps:
    def __init__(self) -> None:
        self.seen: set[int] = set()

    def dump(self) -> Any:
        return self.seen  # a set: not JSON

    def load(self, data: Any) -> None:
        self.seen = set(data)


def plain_sink(processor: Any, q_elt: Any, state: dict[str, Any]) -> None:
    state["n"] = state.get("n", 0) + 1


def broken() -> dict[str, Any]:
    raise RuntimeError("no state today")


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (lambda: 0, r"node 'sink': state <function <lambda> .*> gave int 0, expected a dict or a list"),
        (
            Opaque,
            r"node 'sink': state <class '.*Opaque'> gave Opaque <.*>, expected a dict or a list \(folded into in ",
        ),
        (
            lambda: {1: 0},
            r"node 'sink': its state cannot be snapshotted: it would not load back equal \(keys that are not",
        ),
        (lambda: {"a": (1, 2)}, r"node 'sink': its state cannot be snapshotted: it would not load back equal"),
        (Dumps, r"node 'sink': its state cannot be snapshotted: Object of type set is not JSON serializable"),
        (lambda: {"x": float("nan")}, r"node 'sink': its state cannot be snapshotted: Out of range float values"),
        (broken, r"node 'sink': state <function broken .*> raised RuntimeError\('no state today'\) when called"),
        (42, r"node 'sink': property 'state' must be a function giving the initial state .*, got 42"),
    ],
)
def test_a_state_that_cannot_be_snapshotted_is_refused_before_the_run(state: Any, message: str) -> None:
    with pytest.raises(GraphError, match=f"^{message}"):
        Plumber(sink_with(state), coro_map=lambda value: value)


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (
            sink_with(dict, workers=2),
            "node 'sink': a node with state runs one worker (its snapshots fall between two of its batches), "
            "got workers=2",
        ),
        (
            {
                "nodes": {
                    "numbers": {"coro": numbers, "args": {"n": 3}},
                    "mid": {"coro": tally, "properties": {"state": dict}},
                    "end": {"coro": tally},
                },
                "graph": {"numbers": ["mid"], "mid": ["end"], "end": None},
            },
            "node 'mid': only a sink (a node without successors) can have state, and it sends to end",
        ),
        (
            {
                "nodes": {
                    "numbers": {"coro": numbers, "args": {"n": 3}, "properties": {"state": dict}},
                    "end": {"coro": tally, "properties": {"state": dict}},
                },
                "graph": {"numbers": ["end"], "end": None},
            },
            "node 'numbers': only a sink (a node without successors) can have state, and it sends to end",
        ),
        (
            {
                "nodes": {
                    "numbers": {"coro": numbers, "args": {"n": 3}},
                    "end": {"coro": double, "properties": {"state": dict}},
                },
                "graph": {"numbers": ["end"], "end": None},
            },
            "node 'end': a node with state gives it to its coro as the keyword argument 'state', "
            "and double(x: 'int') -> 'int' has no parameter 'state'",
        ),
        (
            {
                "nodes": {
                    "numbers": {"coro": numbers, "args": {"n": 3}},
                    "end": {"coro": plain_sink, "properties": {"state": dict, "executor": "process"}},
                },
                "graph": {"numbers": ["end"], "end": None},
            },
            "node 'end': a node with state cannot run in a process pool (the state lives in this process); "
            "use 'executor': 'thread'",
        ),
    ],
)
def test_a_stateful_node_the_journal_could_not_keep_exact_is_refused(graph: dict[str, Any], message: str) -> None:
    with pytest.raises(GraphError) as caught:
        Plumber(graph)
    assert str(caught.value) == message


def test_a_state_that_stops_being_json_fails_the_run_naming_the_node(tmp_path: Path) -> None:
    async def sink(x: int, state: dict[Any, int]) -> None:
        state[x] = 1  # an int key: it would come back as text

    graph = {
        "nodes": {
            "numbers": {"coro": numbers, "args": {"n": 3}},
            "sink": {"coro": sink, "properties": {"style": "item", "state": dict}},
        },
        "graph": {"numbers": ["sink"], "sink": None},
    }
    with pytest.raises(TypeError, match=r"^node 'sink': its state cannot be snapshotted: it would not load back equal"):
        asyncio.run(Plumber(graph, journal=tmp_path / "j.db").run())
    stored = read_journal_file(tmp_path / "j.db")
    assert stored is not None
    assert (stored.runs[0].state, stored.runs[0].states) == ("failed", {})


# -- snapshots the journal cannot use --------------------------------------------------------------


def crashed_journal(tmp_path: Path) -> Path:
    journal = tmp_path / "j.db"
    crash_on.add(2 * 150)
    assert run(chain(), journal) == "crashed"
    crash_on.clear()
    return journal


def test_a_snapshot_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    journal = crashed_journal(tmp_path)
    with sqlite3.connect(journal) as connection:
        connection.execute("UPDATE states SET format = 2")
    connection.close()
    before = journal.read_bytes()
    with pytest.raises(JournalError) as caught:
        Plumber(chain(), journal=journal)
    assert str(caught.value) == (
        f"{journal}: run 1's state of node 'sink' is a snapshot of format 2, newer than this version of pipelines "
        "reads (format 1); upgrade pipelines to resume it"
    )
    assert journal.read_bytes() == before


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            "UPDATE states SET data = '{\"items\": '",
            "damaged journal: run 1's state of node 'sink' is not JSON: '{\"items\": '; "
            "expected JSON text (what the node's state dumped)",
        ),
        (
            "UPDATE states SET node = 'double'",
            "damaged journal: run 1's states hold node 'double'; expected only the nodes with state (sink)",
        ),
        (
            "UPDATE states SET run = 9",
            "damaged journal: a run id in the states rows is 9; expected the id of one of the journal's runs (1)",
        ),
        (
            "UPDATE states SET data = '[1]'",
            "run 1's snapshot of node 'sink''s state cannot be loaded into new_tally: "
            "TypeError('a snapshot of a dict state must be an object, got list [1]')",
        ),
    ],
)
def test_a_damaged_snapshot_is_refused_before_anything_runs(tmp_path: Path, statement: str, message: str) -> None:
    journal = crashed_journal(tmp_path)
    with sqlite3.connect(journal) as connection:
        connection.execute(statement)
    connection.close()
    with pytest.raises(JournalError) as caught:
        Plumber(chain(), journal=journal)
    assert str(caught.value) == f"{journal}: {message}"
    assert run(chain(), journal=None) == "completed"  # the graph itself is fine


# -- SQLiteOutput: a sink's writes in the journal's transaction ------------------------------------


def hits_graph(output: Any) -> dict[str, Any]:
    async def write(processor: Any, q_elt: tuple[int], state: SQLiteOutput) -> None:
        (value,) = q_elt
        if value in crash_on:
            raise Crash(value)
        state.execute("INSERT INTO hits (value) VALUES (?)", (value,))

    return {
        "nodes": {
            "numbers": {"coro": numbers, "args": {"n": N}},
            "double": {"coro": double},
            "sink": {"coro": write, "properties": {"state": output, "queue_size": 8}},
        },
        "graph": {"numbers": ["double"], "double": ["sink"], "sink": None},
    }


def hits(path: Path) -> list[int]:
    with sqlite3.connect(path) as connection:
        values = [value for (value,) in connection.execute("SELECT value FROM hits ORDER BY value")]
    connection.close()
    return values


def test_an_sqlite_output_commits_its_rows_with_the_items_across_crashes(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    output = lambda: SQLiteOutput({"hits": "value INTEGER PRIMARY KEY"})  # noqa: E731
    for crash in (2 * 40, 2 * 90, 2 * 170):
        crash_on.clear()
        crash_on.add(crash)
        assert run(hits_graph(output), journal) == "crashed"
        assert hits(journal) == list(range(0, crash, 2))[: len(hits(journal))]  # no row past the crash
    crash_on.clear()
    assert run(hits_graph(output), journal) == "completed"
    assert hits(journal) == [2 * i for i in range(N)]
    stored = read_journal_file(journal)
    assert stored is not None
    assert stored.runs[-1].states == {"sink": {"writes": N}}


def test_an_sqlite_output_without_a_journal_writes_each_row_at_once(tmp_path: Path) -> None:
    assert run(hits_graph(lambda: SQLiteOutput({"hits": "value INTEGER"}, path=tmp_path / "out.db"))) == "completed"
    assert hits(tmp_path / "out.db") == [2 * i for i in range(N)]
    with pytest.raises(PipelineStateError, match=r"^SQLiteOutput\(path=None\) writes into the run's journal, and"):
        run(hits_graph(lambda: SQLiteOutput({"hits": "value INTEGER"})))


@pytest.mark.parametrize("name", ["nodes", "hits; DROP TABLE runs", "sqlite_x", "2x"])
def test_an_sqlite_output_table_needs_a_plain_name_of_its_own(name: str) -> None:
    with pytest.raises(ValueError, match=f"^SQLiteOutput: table name {re.escape(repr(name))} must be a plain"):
        SQLiteOutput({name: "value INTEGER"})
