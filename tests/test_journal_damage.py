"""A damaged journal (pipelines.journal.store): one line naming the file, the file untouched, nothing run.

The journal files here are written by real runs: a first run that completes, and a second one
(``new_run``) that crashes half-way, so that the file holds two runs, done ranges above the first
position not done, and finished rows of items whose root is not done. The tests then damage one
value of one row, as a bad disk, a bad copy or a hand edit would.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st

from pipelines import Plumber, Processor, node
from pipelines.journal import Journal, JournalError
from pipelines.journal.store import read_journal_file

N = 40
calls: Counter[str] = Counter()  # node functions called, by node


class Crash(Exception):
    """What the sink raises to stop the second run half-way."""


@node
async def numbers(n: int) -> Any:
    calls["numbers"] += 1
    for i in range(n):
        yield i


@node
async def three_of(x: int) -> Any:
    calls["three_of"] += 1
    for i in range(3):
        yield 10 * x + i


class Sink:
    """Records (item id, value); raises Crash on the value `crash_on`."""

    def __init__(self, crash_on: int | None = None) -> None:
        self.seen: list[tuple[Any, int]] = []
        self.crash_on = crash_on

    async def record(self, processor: Processor, q_elt: tuple[int]) -> None:
        calls["out"] += 1
        if q_elt[0] == self.crash_on:
            raise Crash(q_elt[0])
        self.seen.append((processor.item_id, q_elt[0]))


def graph(sink: Sink) -> dict[str, Any]:
    return {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": N}},
            "three": {"coro": three_of, "properties": {"workers": 2}},
            # one item at a time, each committed before the next: the crash leaves its root half-finished
            "out": {"coro": sink.record, "properties": {"queue_size": 1, "workers": 2}},
        },
        "graph": {"src": ["three"], "three": ["out"], "out": None},
    }


@functools.cache
def written_journal() -> bytes:
    """The bytes of a journal holding a completed run 1 and a run 2 that crashed half-way."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "j.db"
        asyncio.run(Plumber(graph(Sink()), journal=path).run())
        with contextlib.suppress(Crash):
            asyncio.run(Plumber(graph(Sink(crash_on=10 * (N // 2) + 1)), journal=Journal(path, new_run=True)).run())
        assert sorted(p.name for p in Path(directory).iterdir()) == ["j.db"]  # one file: nothing in a log
        return path.read_bytes()


def test_the_written_journal_holds_what_the_damage_tests_need(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(written_journal())
    stored = read_journal_file(path, with_items=True)
    assert stored is not None
    assert [(run.id, run.state) for run in stored.runs] == [(1, "completed"), (2, "failed")]
    assert 0 < stored.runs[1].done < N
    assert stored.runs[1].finished["out"]  # items finished whose root is not done


@contextlib.contextmanager
def untouched(path: Path) -> Iterator[None]:
    """The file's bytes and modification time, and the directory's listing, are the same after."""
    before = (path.read_bytes(), path.stat().st_mtime_ns, sorted(path.parent.iterdir()))
    yield
    assert (path.read_bytes(), path.stat().st_mtime_ns, sorted(path.parent.iterdir())) == before


def damage(path: Path, *statements: str) -> None:
    connection = sqlite3.connect(path)
    try:
        for statement in statements:
            connection.execute(statement)
        connection.commit()
    finally:
        connection.close()


PROGRESS = '{"roots": {source: [upto, [[lo, hi], ...]]}, "sinks": {sink: count}}'
ROOT = "[upto, [[lo, hi], ...]], whole numbers with upto <= lo < hi, the ranges in order"
COUNT = "a whole number from 0 to 2**62"
ITEM = "an item id: a JSON array [source, position, output index, ...]"

DAMAGES = [
    (
        "UPDATE runs SET progress = '{not json' WHERE id = 2",
        f"run 2's progress is not JSON: '{{not json'; expected {PROGRESS}",
    ),
    (
        "UPDATE runs SET progress = json_remove(progress, '$.roots') WHERE id = 2",
        "run 2's progress['roots'] is missing; expected an object {source: [upto, [[lo, hi], ...]]}",
    ),
    (
        "UPDATE runs SET progress = json_set(progress, '$.roots.src', 5) WHERE id = 2",
        f"run 2's progress['roots']['src'] is 5; expected {ROOT}",
    ),
    (
        """UPDATE runs SET progress = json_set(progress, '$.roots.src', json('[3, [[9, 5]]]')) WHERE id = 2""",
        f"run 2's progress['roots']['src'] is [3, [[9, 5]]]; expected {ROOT}",
    ),
    (
        """UPDATE runs SET progress = json_set(progress, '$.roots.src', json('[3.5, []]')) WHERE id = 1""",
        f"run 1's progress['roots']['src'] is [3.5, []]; expected {ROOT}",
    ),
    (
        "UPDATE runs SET progress = json_set(progress, '$.sinks.out', -1) WHERE id = 2",
        f"run 2's progress['sinks']['out'] is -1; expected {COUNT}",
    ),
    (
        "UPDATE runs SET progress = json_set(progress, '$.roots', json('{\"elsewhere\": [0, []]}')) WHERE id = 2",
        "run 2's progress['roots'] is for ['elsewhere']; expected this graph's sources ['src']",
    ),
    (
        "UPDATE runs SET state = 'banana' WHERE id = 1",
        "run 1's state is 'banana'; expected one of 'running', 'completed', 'stopped', 'failed', 'cancelled'",
    ),
    (
        "UPDATE runs SET started = 'yesterday' WHERE id = 2",
        "run 2's started is 'yesterday'; expected a Unix time (a number from 0 to 1e11)",
    ),
    (
        "UPDATE runs SET updated = 1e300 WHERE id = 2",
        "run 2's updated is 1e+300; expected a Unix time (a number from 0 to 1e11)",
    ),
    ("UPDATE runs SET attempts = 1.5 WHERE id = 2", "run 2's attempts is 1.5; expected a whole number from 1 to 2**62"),
    ("UPDATE runs SET progress = x'7b7d' WHERE id = 2", f"run 2's progress is a blob of 2 bytes; expected {PROGRESS}"),
    ("UPDATE nodes SET finished = 'x' WHERE node = 'three'", f"run 1's count of node 'three' is 'x'; expected {COUNT}"),
    (
        "UPDATE nodes SET node = x'00' WHERE node = 'three' AND run = 2",
        "a node's name in run 2 is a blob of 1 byte; expected a node's name (text)",
    ),
    (
        "UPDATE finished SET item = 'oops' WHERE rowid = (SELECT min(rowid) FROM finished)",
        f"an item in run 2's finished rows is not JSON: 'oops'; expected {ITEM}",
    ),
    (
        "UPDATE finished SET item = '[[1], 2]' WHERE rowid = (SELECT min(rowid) FROM finished)",
        f"an item in run 2's finished rows is [[1], 2]; expected {ITEM}",
    ),
    (
        "UPDATE finished SET seq = 'x' WHERE rowid = (SELECT min(rowid) FROM finished)",
        f"a position in run 2's finished rows is 'x'; expected {COUNT}",
    ),
    (
        "UPDATE finished SET run = 'two' WHERE rowid = (SELECT min(rowid) FROM finished)",
        "a run id in the finished rows is 'two'; expected the id of one of the journal's runs (1, 2)",
    ),
    (
        "UPDATE nodes SET run = 3 WHERE run = 2 AND node = 'src'",
        "a run id in the nodes rows is 3; expected the id of one of the journal's runs (1, 2)",
    ),
    (
        "UPDATE meta SET value = x'0102' WHERE key = 'graph_hash'",
        "the graph hash is a blob of 2 bytes; expected the hash of the journal's graph (16 hex digits)",
    ),
    (
        "UPDATE meta SET value = char(10) WHERE key = 'graph_hash'",
        "the graph hash is '\\n'; expected the hash of the journal's graph (16 hex digits)",
    ),
    (
        "UPDATE meta SET value = '{\"a\": 1}' WHERE key = 'nodes'",
        "the list of node names is {'a': 1}; expected a JSON array of the graph's node names",
    ),
    # run 2's crash is recorded as the sink's failure (pipelines.journal.recovery)
    (
        "UPDATE failures SET outcome = 'lost'",
        "an outcome in run 2's failures is 'lost'; expected one of 'failed', 'skipped', 'routed'",
    ),
    (
        "UPDATE failures SET item = '[1]'",
        "an item in run 2's failures is [1]; expected an item id: a JSON array [source, position, output index, ...]",
    ),
    (
        "UPDATE failures SET run = 7",
        "a run id in the failures rows is 7; expected the id of one of the journal's runs (1, 2)",
    ),
    (
        "UPDATE failures SET node = 'nowhere'",
        "a node's name in run 2's failures is 'nowhere'; expected one of the graph's nodes (src, three, out)",
    ),
]


@pytest.mark.parametrize(("statement", "message"), DAMAGES)
def test_a_damaged_journal_is_refused_and_left_alone(tmp_path: Path, statement: str, message: str) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(written_journal())
    damage(path, statement)
    calls.clear()
    sink = Sink()
    with untouched(path):
        with pytest.raises(JournalError) as refused:
            Plumber(graph(sink), journal=path)
        assert str(refused.value) == f"{path}: damaged journal: {message}"
    assert (calls, sink.seen) == (Counter(), [])  # nothing ran


@pytest.mark.parametrize(("statement", "message"), [d for d in DAMAGES if "this graph's" not in d[1]])
def test_inspecting_a_damaged_journal_says_what_is_wrong(tmp_path: Path, statement: str, message: str) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(written_journal())
    damage(path, statement)
    with untouched(path), pytest.raises(JournalError) as refused:
        read_journal_file(path)
    assert str(refused.value) == f"{path}: damaged journal: {message}"


async def test_a_damaged_count_never_hangs_the_run(tmp_path: Path) -> None:
    """A count that is text made the writer's first commit raise on the loop: the sinks waited for ever."""
    path = tmp_path / "j.db"
    path.write_bytes(written_journal())
    damage(path, "UPDATE nodes SET finished = '7' || 'x' WHERE node = 'three' AND run = 2")
    with pytest.raises(JournalError, match=r"damaged journal: run 2's count of node 'three' is '7x'"):
        Plumber(graph(Sink()), journal=path)


# -- the class of damage: any value of any row -------------------------------------------------------


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
        max_leaves=12,
    )


def mutated(data: st.DataObject, value: Any) -> Any:
    """`value` with one of its parts (or itself) replaced by another JSON value, or removed from its parent."""
    if isinstance(value, (list, dict)) and value and data.draw(st.booleans(), label="go inside"):
        keys = list(range(len(value))) if isinstance(value, list) else list(value)
        key = data.draw(st.sampled_from(keys), label="part")
        if data.draw(st.integers(0, 4), label="remove it") == 0:
            copy = list(value) if isinstance(value, list) else dict(value)
            del copy[key]
            return copy
        copy = list(value) if isinstance(value, list) else dict(value)
        copy[key] = mutated(data, value[key])
        return copy
    return data.draw(json_values(), label="new part")


def column_values(data: st.DataObject, current: Any, nullable: bool) -> tuple[str, Any]:
    """A value for a column that holds `current`, JSON-ish or not, of any SQLite type: (its SQL, the value)."""
    kinds = ["text", "json", "integer", "real", "blob", "not utf-8"]
    if isinstance(current, str):
        with contextlib.suppress(ValueError):
            json.loads(current)
            kinds.append("mutated")
    if nullable:
        kinds.append("null")
    kind = data.draw(st.sampled_from(kinds), label="kind")
    if kind == "text":
        return "?", data.draw(st.text(max_size=20), label="text")
    if kind == "json":
        return "?", json.dumps(data.draw(json_values(), label="json"))
    if kind == "mutated":
        return "?", json.dumps(mutated(data, json.loads(current)))
    if kind == "integer":
        return "?", data.draw(st.integers(-(2**63), 2**63 - 1), label="integer")
    if kind == "real":
        return "?", data.draw(st.floats(allow_nan=False), label="real")
    if kind == "blob":
        return "?", data.draw(st.binary(max_size=8), label="blob")
    if kind == "not utf-8":
        return "CAST(? AS TEXT)", b"\xff\n" + data.draw(st.binary(max_size=6), label="bytes")
    return "?", None


def damage_at_random(path: Path, data: st.DataObject) -> None:
    connection = sqlite3.connect(path)
    try:
        for _ in range(data.draw(st.integers(1, 3), label="damages")):
            table = data.draw(st.sampled_from(["meta", "runs", "finished", "nodes"]), label="table")
            rowids = [rowid for (rowid,) in connection.execute(f"SELECT rowid FROM {table} ORDER BY rowid")]
            if not rowids:
                continue
            rowid = data.draw(st.sampled_from(rowids), label="row")
            if data.draw(st.integers(0, 9), label="delete the row") == 0:
                connection.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
                continue
            columns = connection.execute(f"PRAGMA table_info({table})").fetchall()
            _, column, _, _, _, _ = data.draw(st.sampled_from(columns), label="column")
            nullable = not any(c[1] == column and (c[3] or c[5]) for c in columns)  # notnull, or in the key
            connection.text_factory = bytes  # what is there, even text that is not UTF-8
            (current,) = connection.execute(f"SELECT {column} FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
            connection.text_factory = str
            if isinstance(current, bytes):
                with contextlib.suppress(UnicodeDecodeError):
                    current = current.decode()
            sql, value = column_values(data, current, nullable)
            try:
                connection.execute(f"UPDATE {table} SET {column} = {sql} WHERE rowid = ?", (value, rowid))
            except sqlite3.Error:  # a constraint of the schema refuses it: SQLite keeps that damage out
                reject()
        connection.commit()
    finally:
        connection.close()


def expected_items(path: Path) -> dict[Any, int] | None:
    """What a resume of the journal as it reads must give the sink: every item it does not record as handled.

    None when the journal reads, but not as a journal of this graph could (the Plumber must refuse it).
    """
    stored = read_journal_file(path, with_items=True)
    assert stored is not None
    last = stored.runs[-1] if stored.runs else None
    if last is not None and last.state == "completed":
        return {}
    if last is not None and set(last.roots) != {"src"}:
        return None
    upto, above = last.roots["src"] if last is not None else (0, [])
    finished = last.finished.get("out", set()) if last is not None else set()
    return {
        ("src", i, j): 10 * i + j
        for i in range(N)
        if not (i < upto or any(lo <= i < hi for lo, hi in above))
        for j in range(3)
        if ("src", i, j) not in finished
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(data=st.data())
def test_any_damage_resumes_what_the_journal_says_or_is_refused_untouched(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "j.db"
        path.write_bytes(written_journal())
        damage_at_random(path, data)
        try:
            expected = expected_items(path)
        except JournalError:
            expected = None
        calls.clear()
        sink = Sink()
        with untouched(path):
            try:
                plumber = Plumber(graph(sink), journal=path)
            except JournalError as exc:
                message = str(exc)
                assert message.startswith(f"{path}: ")
                assert "\n" not in message
                assert (calls, sink.seen) == (Counter(), [])
                event("refused")
                return
        assert expected is not None, "the Plumber took a journal it should have refused"
        event("resumed" if expected else "nothing to redo")
        result = asyncio.run(plumber.run())
        assert result.state == "completed"
        seen = Counter(item for item, _ in sink.seen)
        assert all(n == 1 for n in seen.values())
        assert dict(sink.seen) == expected
