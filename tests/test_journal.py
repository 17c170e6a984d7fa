"""The journal (pipelines.journal): ids, the graph check, resuming fan-outs, joins and expansions.

A crash is made here by a sink that raises on one item ('fail' stops the run at once, as a kill
would, except that the journal records the state); the subprocess test in test_journal_kill.py
kills the process for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipelines import Plumber, Processor, node
from pipelines.graph import parse_graph
from pipelines.journal import Journal, JournalError
from pipelines.journal.engine import RunJournal
from pipelines.journal.ids import graph_hash, root_names
from pipelines.journal.store import read_journal_file
from pipelines.lineage import is_linear
from tests.helpers import until

N = 300


def alive(plumber: Plumber) -> dict[Any, int]:
    """What the run's journal still counts alive, per root."""
    (journal,) = [hook for hook in plumber.hooks if isinstance(hook, RunJournal)]
    return journal.counts


class Crash(Exception):
    """What a sink raises to stop the first run half-way."""


@node
async def numbers(n: int) -> Any:
    for i in range(n):
        yield i


@node
async def letters(n: int) -> Any:
    for i in range(n):
        yield chr(ord("a") + i % 26)


@node
async def double(x: int) -> int:
    return 2 * x


@node
async def plus_one(x: int) -> int:
    return x + 1


@node
async def odd_only(x: int) -> int | None:
    return x if x % 2 else None


@node
async def three_of(x: int) -> Any:
    for i in range(3):
        yield 10 * x + i


class Recorder:
    """A sink in the original style: records (item id, value); raises Crash on the item `crash_on`."""

    def __init__(self, crash_on: Any = None) -> None:
        self.seen: list[tuple[Any, Any]] = []
        self.crash_on = crash_on

    async def record(self, processor: Processor, q_elt: tuple[Any, ...]) -> None:
        value = q_elt[0] if len(q_elt) == 1 else q_elt  # a join's group is the tuple of its inputs' items
        if value == self.crash_on:
            raise Crash(value)
        self.seen.append((processor.item_id, value))


async def run(graph: dict[str, Any], journal: Any) -> Plumber:
    plumber = Plumber(graph, journal=journal)
    with contextlib.suppress(Crash):
        await plumber.run()
    if plumber.state == "completed":
        assert alive(plumber) == {}  # every item was counted out, none twice
    return plumber


def sink_node(recorder: Recorder, **properties: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"coro": recorder.record}
    if properties:
        spec["properties"] = properties
    return spec


def check_story(seen: list[tuple[Any, Any]], expected: dict[Any, Any], bound: int) -> None:
    """Every expected (id, value) reached the sink; no other; at most `bound` of them twice."""
    counts = Counter(seen)
    assert {item_id: value for item_id, value in counts} == expected
    assert set(counts) == set(expected.items())
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= bound


# -- ids -------------------------------------------------------------------------------------------


async def test_item_ids_are_the_lineage_keys(tmp_path: Path) -> None:
    sink = Recorder()
    graph = {
        "nodes": {"src": {"coro": numbers, "args": {"n": 3}}, "fan": {"coro": three_of}, "out": sink_node(sink)},
        "graph": {"src": ["fan"], "fan": ["out"], "out": None},
    }
    await run(graph, tmp_path / "j.db")
    assert sorted(sink.seen) == [(("src", i, j), 10 * i + j) for i in range(3) for j in range(3)]


class Overlapping:
    """A sink whose calls suspend half-way: several workers are in the middle of items at once."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, Any, int]] = []
        self.most = 0
        self._now = 0

    async def record(self, processor: Processor, q_elt: tuple[Any, ...]) -> None:
        before = processor.item_id
        self._now += 1
        self.most = max(self.most, self._now)
        await asyncio.sleep(0)  # lets the other workers start their items
        self._now -= 1
        self.seen.append((before, processor.item_id, q_elt[0]))


@pytest.mark.parametrize("workers", [{"workers": 4}, {}])
async def test_each_worker_of_a_sink_knows_the_id_of_its_own_item(tmp_path: Path, workers: dict[str, int]) -> None:
    sink = Overlapping()
    graph = {
        "nodes": {"src": {"coro": numbers, "args": {"n": N}}, "out": {"coro": sink.record, "properties": workers}},
        "graph": {"src": ["out"], "out": None},
    }
    plumber = await run(graph, tmp_path / "j.db")
    assert plumber.state == "completed"
    assert sink.most > 1  # the ids were read while other workers were in the middle of theirs
    assert sorted(sink.seen) == [(("src", i), ("src", i), i) for i in range(N)]


async def test_item_id_is_none_without_a_journal() -> None:
    sink = Recorder()
    graph = {
        "nodes": {"src": {"coro": numbers, "args": {"n": 2}}, "out": sink_node(sink)},
        "graph": {"src": ["out"], "out": None},
    }
    await Plumber(graph).run()
    assert sink.seen == [(None, 0), (None, 1)]


def test_zip_joined_sources_share_their_roots() -> None:
    graph = {
        "nodes": {
            "a": {"coro": numbers, "args": {"n": 1}},
            "b": {"coro": letters, "args": {"n": 1}},
            "c": {"coro": numbers, "args": {"n": 1}},
            "pair": {"coro": Recorder().record},
            "alone": {"coro": Recorder().record},
        },
        "graph": {"a": ["pair"], "b": ["pair"], "c": ["alone"], "pair": None, "alone": None},
    }
    assert root_names(parse_graph(graph, lambda x: x)) == {"a": "a", "b": "a", "c": "c"}


def test_only_a_graph_where_every_item_stays_one_envelope_is_linear() -> None:
    """The journal keeps no count of what is alive of each item in a linear graph: there is one envelope."""
    sink = Recorder()
    kinds = {"src": numbers, "other": numbers, "a": double, "gen": three_of}

    def linear(graph: dict[str, Any], **props: dict[str, Any]) -> bool:
        nodes = {
            name: {"coro": kinds.get(name, sink.record), "properties": props.get(name, {})}
            | ({"args": {"n": 1}} if kinds.get(name) is numbers else {})
            for name in graph
        }
        return is_linear(parse_graph({"nodes": nodes, "graph": graph}, lambda x: x))

    assert linear({"src": ["a"], "a": ["b"], "b": None})
    assert linear({"src": ["a"], "other": ["a"], "a": ["b"], "b": None}, a={"aggregate_inputs": False})  # a merge
    assert not linear({"src": ["a", "b"], "a": ["c"], "b": None, "c": None})  # a fan-out
    assert not linear({"src": ["a"], "a": ["b", "c"], "b": None, "c": None})
    assert not linear({"src": ["gen"], "gen": ["b"], "b": None})  # a generator
    assert not linear({"src": ["a"], "other": ["a"], "a": ["b"], "b": None})  # a join
    assert not linear({"src": ["a"], "a": ["b"], "b": None, "e": None}, a={"on_error": "e"})  # an error node
    assert not linear({"src": ["a"], "a": ["b", "c"], "b": None, "c": None}, a={"routes": {2: "b"}})


def test_the_graph_hash_sees_code_args_and_wiring_not_speed() -> None:
    sink = Recorder()

    def graph(n: int = 5, stage: Any = double, props: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "nodes": {
                "src": {"coro": numbers, "args": {"n": n}},
                "stage": {"coro": stage, "properties": props or {}},
                "out": {"coro": sink.record},
            },
            "graph": {"src": ["stage"], "stage": ["out"], "out": None},
        }

    def digest(g: dict[str, Any]) -> str:
        return graph_hash(parse_graph(g, lambda x: x))

    base = digest(graph())
    assert digest(graph()) == base
    assert digest(graph(props={"workers": 4, "queue_size": 7, "retry": 3})) == base
    assert digest(graph(n=6)) != base
    assert digest(graph(stage=plus_one)) != base
    assert digest(graph(props={"on_error": "skip"})) != base


def test_the_graph_hash_sees_routes_and_lossy_inputs_only_where_they_are_used() -> None:
    sink = Recorder()

    def graph(props: dict[str, Any] | None = None, route_to: str = "out") -> dict[str, Any]:
        return {
            "nodes": {
                "src": {"coro": numbers, "args": {"n": 5}},
                "stage": {"coro": double, "properties": props or {}},
                "out": {"coro": sink.record},
                "other": {"coro": sink.record},
            },
            "graph": {"src": ["stage"], "stage": ["out", "other"], "out": None, "other": None},
        }

    def digest(g: dict[str, Any]) -> str:
        return graph_hash(parse_graph(g, lambda x: x))

    base = digest(graph())
    # A graph that uses none of them hashes as before they existed: the journals written then stay valid.
    assert base == "4d7476dfe14cd1c7"
    assert digest(graph({"input": "block"})) == base
    by_descriptor = digest(graph({"routes": {2: "out"}}))
    assert (
        len({base, by_descriptor, digest(graph({"routes": {2: "other"}})), digest(graph({"routes": {3: "out"}}))}) == 4
    )
    assert digest(graph({"routes": {"2": "out"}})) == by_descriptor  # the same routes, as JSON writes them
    by_function = digest(graph({"route": first_successor}))
    assert by_function not in (base, by_descriptor)
    assert digest(graph({"route": other_successor})) != by_function
    lossy = {digest(graph({"input": "drop_oldest"})), digest(graph({"input": "latest"}))}
    assert len(lossy | {base}) == 3


def first_successor(value: Any) -> str:
    return "out"


def other_successor(value: Any) -> str:
    return "other"


# -- resuming ------------------------------------------------------------------------------------


def chain_graph(sink: Recorder, n: int = N, **sink_properties: Any) -> dict[str, Any]:
    return {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": n}},
            "double": {"coro": double},
            "out": sink_node(sink, **sink_properties),
        },
        "graph": {"src": ["double"], "double": ["out"], "out": None},
    }


async def test_a_failed_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    sink = Recorder(crash_on=2 * 200)
    path = tmp_path / "j.db"
    first = await run(chain_graph(sink, queue_size=10), path)
    assert first.state == "failed"
    before = len(sink.seen)
    assert before >= 190  # everything before the crash's batch of at most 10 was committed
    sink.crash_on = None
    second = await run(chain_graph(sink, queue_size=10), path)
    assert second.state == "completed"
    journal = second.journal
    assert journal is not None
    assert (journal.run_id, journal.resumed, journal.already_completed) == (1, True, False)
    assert journal.skipped_at_sources == journal.done_before >= 190
    check_story(sink.seen, {("src", i): 2 * i for i in range(N)}, bound=10)
    stats = second.stats()["out"]
    assert stats.items_in == stats.completed == len(sink.seen) - before
    assert stats.in_flight == 0
    stored = read_journal_file(path)
    assert stored is not None
    assert [(r.id, r.state, r.attempts, r.done) for r in stored.runs] == [(1, "completed", 2, N)]
    assert stored.runs[0].nodes["out"] == N


async def test_a_stopped_run_resumes_without_repeating_anything(tmp_path: Path) -> None:
    sink = Recorder()
    path = tmp_path / "j.db"
    plumber = Plumber(chain_graph(sink), journal=path)
    plumber.create_pipeline()
    await until(lambda: len(sink.seen) >= 100)
    await plumber.stop()
    assert (await plumber.join()).state == "stopped"
    stopped_at = len(sink.seen)
    assert stopped_at < N
    second = await run(chain_graph(sink), path)
    assert second.journal is not None
    assert (second.journal.resumed, second.journal.done_before) == (True, stopped_at)
    check_story(sink.seen, {("src", i): 2 * i for i in range(N)}, bound=0)  # a stop drains: nothing is redone


async def test_a_paused_run_holds_its_journaled_sources(tmp_path: Path) -> None:
    sink = Recorder()
    plumber = Plumber(chain_graph(sink), journal=tmp_path / "j.db")
    plumber.create_pipeline()
    await until(lambda: len(sink.seen) >= 50)
    plumber.pause()
    for _ in range(20):  # a put that had its position before the pause still finishes
        await asyncio.sleep(0)
    await until(lambda: len(sink.seen) == plumber.stats()["src"].items_out)  # what was sent reached the sink
    sent = len(sink.seen)
    for _ in range(20):
        await asyncio.sleep(0)
    assert plumber.stats()["src"].items_out == len(sink.seen) == sent < N
    plumber.resume()
    result = await plumber.join()
    assert result.state == "completed"
    assert alive(plumber) == {}
    check_story(sink.seen, {("src", i): 2 * i for i in range(N)}, bound=0)


async def test_a_completed_run_is_not_run_again(tmp_path: Path) -> None:
    sink = Recorder()
    path = tmp_path / "j.db"
    await run(chain_graph(sink), path)
    content = path.read_bytes()
    again = await run(chain_graph(sink), path)
    assert again.journal is not None
    assert (again.journal.already_completed, again.journal.run_id) == (True, 1)
    assert again.stats()["src"].items_out == 0
    assert len(sink.seen) == N
    assert path.read_bytes() == content
    fresh = await run(chain_graph(sink), Journal(path, new_run=True))
    assert fresh.journal is not None
    assert (fresh.journal.run_id, fresh.journal.resumed) == (2, False)
    assert len(sink.seen) == 2 * N


async def test_fan_out_resumes_each_sink_with_what_it_missed(tmp_path: Path) -> None:
    left, right = Recorder(), Recorder(crash_on=150)
    graph = {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": N}},
            "double": {"coro": double},
            "left": sink_node(left, queue_size=8),
            "right": sink_node(right, queue_size=8),
        },
        "graph": {"src": ["double", "right"], "double": ["left"], "left": None, "right": None},
    }
    path = tmp_path / "j.db"
    await run(graph, path)
    right.crash_on = None
    second = await run(graph, path)
    assert second.state == "completed"
    check_story(left.seen, {("src", i): 2 * i for i in range(N)}, bound=8)
    check_story(right.seen, {("src", i): i for i in range(N)}, bound=8)
    stored = read_journal_file(path, with_items=True)
    assert stored is not None
    assert stored.runs[0].finished == {}  # done roots leave no rows behind


async def test_a_diamond_join_resumes(tmp_path: Path) -> None:
    sink = Recorder(crash_on=(2 * 120, 121))
    graph = {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": N}},
            "double": {"coro": double, "properties": {"workers": 3}},
            "plus": {"coro": plus_one},
            "pair": sink_node(sink, queue_size=5),
        },
        "graph": {"src": ["double", "plus"], "double": ["pair"], "plus": ["pair"], "pair": None},
    }
    path = tmp_path / "j.db"
    await run(graph, path)
    sink.crash_on = None
    await run(graph, path)
    check_story(sink.seen, {("src", i): (2 * i, i + 1) for i in range(N)}, bound=5)


async def test_a_join_after_a_filter_resumes(tmp_path: Path) -> None:
    sink = Recorder(crash_on=(101, 2 * 101))
    graph = {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": N}},
            "odd": {"coro": odd_only},
            "double": {"coro": double},
            "pair": sink_node(sink, queue_size=5),
        },
        "graph": {"src": ["odd", "double"], "odd": ["pair"], "double": ["pair"], "pair": None},
    }
    path = tmp_path / "j.db"
    first = await run(graph, path)
    assert first.stats()["pair"].dropped > 0
    sink.crash_on = None
    second = await run(graph, path)
    check_story(sink.seen, {("src", i): (i, 2 * i) for i in range(1, N, 2)}, bound=5)
    stored = read_journal_file(path)
    assert stored is not None
    assert stored.runs[0].done == N
    assert second.journal is not None
    assert second.journal.done_before > 0


async def test_a_zip_join_of_two_sources_resumes(tmp_path: Path) -> None:
    sink = Recorder(crash_on=(77, "z"))
    graph = {
        "nodes": {
            "num": {"coro": numbers, "args": {"n": N}},
            "let": {"coro": letters, "args": {"n": N - 40}},
            "pair": sink_node(sink, queue_size=6),
        },
        "graph": {"num": ["pair"], "let": ["pair"], "pair": None},
    }
    path = tmp_path / "j.db"
    await run(graph, path)
    sink.crash_on = None
    second = await run(graph, path)
    assert second.state == "completed"
    check_story(sink.seen, {("num", i): (i, chr(ord("a") + i % 26)) for i in range(N - 40)}, bound=6)
    stored = read_journal_file(path)
    assert stored is not None
    assert list(stored.runs[0].roots) == ["let"]  # the first of the zip group in name order
    assert stored.runs[0].done == N


async def test_expanded_items_resume_one_by_one(tmp_path: Path) -> None:
    sink = Recorder(crash_on=10 * 200 + 1)
    graph = {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": N}},
            "fan": {"coro": three_of},
            "out": sink_node(sink, queue_size=4, workers=2),
        },
        "graph": {"src": ["fan"], "fan": ["out"], "out": None},
    }
    path = tmp_path / "j.db"
    await run(graph, path)
    sink.crash_on = None
    second = await run(graph, path)
    check_story(sink.seen, {("src", i, j): 10 * i + j for i in range(N) for j in range(3)}, bound=2 * 4)
    # Items of a source item whose other outputs were not all finished are passed over, not redone.
    stats = second.stats()["out"]
    assert stats.items_in == stats.completed


async def test_an_error_node_and_skips_under_resume(tmp_path: Path) -> None:
    failures: list[Any] = []

    @node
    async def picky(x: int) -> int:
        if x % 7 == 0:
            raise ValueError(x)
        if x % 11 == 0:
            raise KeyError(x)
        return x

    @node
    async def errors(failure: Any) -> None:
        failures.append(failure.item)

    sink = Recorder(crash_on=250)
    graph = {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": N}},
            "picky": {"coro": picky, "properties": {"on_error": "errors"}},
            "errors": {"coro": errors},
            "out": sink_node(sink, queue_size=5),
        },
        "graph": {"src": ["picky"], "picky": ["out"], "errors": None, "out": None},
    }
    path = tmp_path / "j.db"
    await run(graph, path)
    sink.crash_on = None
    await run(graph, path)
    kept = [i for i in range(N) if i % 7 and i % 11]
    check_story(sink.seen, {("src", i): i for i in kept}, bound=5)
    assert set(failures) == {i for i in range(N) if not (i % 7 and i % 11)}
    stored = read_journal_file(path)
    assert stored is not None
    assert stored.runs[0].done == N


# -- bad input -----------------------------------------------------------------------------------


def simple_graph() -> dict[str, Any]:
    return chain_graph(Recorder(), n=5)


def test_a_file_that_is_not_a_journal_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("shopping list: eggs, milk\n" * 10)
    with pytest.raises(JournalError, match=r"^.*notes\.db: not a pipelines journal \(not an SQLite database\)$"):
        Plumber(simple_graph(), journal=path)
    assert path.read_text() == "shopping list: eggs, milk\n" * 10


def test_another_sqlite_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (x)")
    connection.close()
    content = path.read_bytes()
    with pytest.raises(JournalError, match=r"other\.db: not a pipelines journal \(an SQLite database of something el"):
        Plumber(simple_graph(), journal=path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


async def test_a_journal_of_another_graph_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await run(simple_graph(), path)
    content = path.read_bytes()
    other = chain_graph(Recorder(), n=6)
    message = (
        r"j\.db: journal of another graph \(graph [0-9a-f]{16}, this graph is [0-9a-f]{16}\); give another journal"
    )
    with pytest.raises(JournalError, match=message):
        Plumber(other, journal=path)
    assert path.read_bytes() == content


async def test_a_journal_of_a_newer_format_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await run(simple_graph(), path)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 7")
    connection.close()
    content = path.read_bytes()
    message = r"j\.db: journal format 7 is newer than this version of pipelines reads \(format 1\); upgrade pipelines"
    with pytest.raises(JournalError, match=message):
        Plumber(simple_graph(), journal=path)
    assert path.read_bytes() == content


async def test_a_journal_refused_by_a_plumber_serves_the_next_one(tmp_path: Path) -> None:
    """A Plumber that could not open the file (another run holds it; another graph's journal) was
    never built: the same Journal, once the file is usable, serves the next Plumber."""
    path = tmp_path / "j.db"
    journal = Journal(path)
    holder = Plumber(simple_graph(), journal=path)  # holds the file until its run has ended
    with pytest.raises(JournalError, match="another Plumber of this process is running this journal"):
        Plumber(simple_graph(), journal=journal)
    await holder.run()
    other = {"nodes": {"numbers": {"coro": numbers, "args": {"n": 1}}}, "graph": {"numbers": None}}
    with pytest.raises(JournalError, match="journal of another graph"):
        Plumber(other, journal=journal)
    assert (journal.run_id, journal.resumed, journal.already_completed) == (None, False, False)
    retried = Plumber(simple_graph(), journal=journal)  # no "already serves a Plumber"
    assert retried.journal is journal
    assert (journal.run_id, journal.resumed, journal.already_completed) == (1, False, True)


def test_a_journal_serves_one_plumber(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    Plumber(simple_graph(), journal=journal)
    with pytest.raises(Exception, match="this Journal already serves a Plumber"):
        Plumber(simple_graph(), journal=journal)
    with pytest.raises(ValueError, match="Journal sync must be 'normal' or 'full', got 'often'"):
        Journal(tmp_path / "k.db", sync="often")
