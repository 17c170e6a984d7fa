"""Recovery per outcome (pipelines.journal.recovery): on resume, items that failed, were skipped or
were routed to an error node are rerun or kept, per node and for the whole run; what succeeded is
never redone."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines import Plumber, Processor, node
from pipelines.errors import GraphError
from pipelines.graph import parse_graph
from pipelines.journal import Journal
from pipelines.journal.engine import RunJournal
from pipelines.journal.recovery import undone
from pipelines.journal.store import read_journal_file

N = 12
down: set[int] = set()  # the items the "service" refuses while it is down


class ServiceDown(Exception):
    pass


@node
async def numbers(n: int) -> Any:
    for i in range(n):
        yield i


@node
async def call_service(x: int) -> int:
    if x in down:
        raise ServiceDown(x)
    return 100 + x


@node
async def other_service(x: int) -> int:
    if x in down:
        raise ServiceDown(x)
    return 200 + x


class Sink:
    """Records (item id, value) of every item it is given, over every run."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, Any]] = []

    async def record(self, processor: Processor, q_elt: tuple[Any, ...]) -> None:
        self.seen.append((processor.item_id, q_elt[0]))


def ids(seen: list[tuple[Any, Any]]) -> list[Any]:
    return sorted(key for key, _ in seen)


def chain(sink: Sink, **props: Any) -> dict[str, Any]:
    return {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": N}},
            "service": {"coro": call_service, "properties": props},
            "out": {"coro": sink.record},
        },
        "graph": {"src": ["service"], "service": ["out"], "out": None},
    }


async def run(graph: dict[str, Any], path: Path, **journal: Any) -> Plumber:
    plumber = Plumber(graph, journal=Journal(path, **journal))
    with contextlib.suppress(ServiceDown):
        await plumber.run()
    if plumber.state == "completed":
        (hook,) = [h for h in plumber.hooks if isinstance(h, RunJournal)]
        assert hook.counts == {}
    return plumber


def failures(path: Path) -> list[tuple[str, str, tuple[Any, ...]]]:
    stored = read_journal_file(path)
    assert stored is not None
    return stored.runs[-1].failures


@pytest.fixture(autouse=True)
def service_up() -> Any:
    down.clear()
    yield
    down.clear()


async def test_skipped_items_are_kept_on_resume_and_rerun_with_rerun_failed(tmp_path: Path) -> None:
    sink, path = Sink(), tmp_path / "j.db"
    down.update({3, 7, 8})
    first = await run(chain(sink, on_error="skip"), path)
    assert first.state == "completed"
    assert ids(sink.seen) == [("src", i) for i in range(N) if i not in (3, 7, 8)]
    assert failures(path) == [("service", "skipped", ("src", i)) for i in (3, 7, 8)]

    down.clear()  # the service is back
    kept = await run(chain(sink, on_error="skip"), path)
    assert kept.journal is not None
    assert kept.journal.already_completed
    assert len(sink.seen) == N - 3

    rerun = await run(chain(sink, on_error="skip"), path, rerun_failed=True)
    journal = rerun.journal
    assert journal is not None
    assert (rerun.state, journal.resumed, journal.run_id) == ("completed", True, 1)
    assert journal.rerun == [("src", 3), ("src", 7), ("src", 8)]
    assert sink.seen[N - 3 :] == [(("src", 3), 103), (("src", 7), 107), (("src", 8), 108)]  # exactly those
    assert journal.skipped_at_sources == N - 3  # every item that succeeded was passed over at the source
    assert failures(path) == []
    again = await run(chain(sink, on_error="skip"), path, rerun_failed=True)
    assert again.journal is not None
    assert again.journal.already_completed
    assert len(sink.seen) == N


async def test_an_item_skipped_again_is_recorded_again(tmp_path: Path) -> None:
    sink, path = Sink(), tmp_path / "j.db"
    down.update({2, 5})
    await run(chain(sink, on_error="skip"), path)
    down.discard(2)  # the service is back for one of them only
    second = await run(chain(sink, on_error="skip"), path, rerun_failed=True)
    assert second.journal is not None
    assert second.journal.rerun == [("src", 2), ("src", 5)]
    assert failures(path) == [("service", "skipped", ("src", 5))]
    assert ids(sink.seen) == [("src", i) for i in range(N) if i != 5]


async def test_a_failure_that_failed_the_run_is_rerun_by_default_or_kept_by_the_node(tmp_path: Path) -> None:
    for recovery, expected in ((None, [103]), ({"failed": "keep"}, [])):
        sink, path = Sink(), tmp_path / f"{recovery is None}.db"
        down.add(3)
        props = {"workers": 1, "queue_size": 1} | ({"recovery": recovery} if recovery else {})
        first = await run(chain(sink, **props), path)
        assert first.state == "failed"
        assert ("service", "failed", ("src", 3)) in failures(path)
        before = {key for key, _ in sink.seen}
        down.clear()
        second = await run(chain(sink, **props), path)
        assert second.state == "completed"
        assert second.journal is not None
        assert second.journal.rerun == ([("src", 3)] if expected else [])
        # Nothing that succeeded is given again; the failed item is rerun, or not at all.
        redone = [value for key, value in sink.seen[len(before) :] if key in before]
        assert redone == []
        assert sorted(v for k, v in sink.seen if k == ("src", 3)) == expected
        assert ids(sink.seen) == [("src", i) for i in range(N) if expected or i != 3]


def fan_graph(left: Sink, right: Sink, errors: Sink, left_props: dict[str, Any], right_props: dict[str, Any]) -> Any:
    return {
        "nodes": {
            "src": {"coro": numbers, "args": {"n": N}},
            "a": {"coro": call_service, "properties": left_props},
            "b": {"coro": other_service, "properties": right_props},
            "left": {"coro": left.record},
            "right": {"coro": right.record},
            "errors": {"coro": errors.record},
        },
        "graph": {"src": ["a", "b"], "a": ["left"], "b": ["right"], "left": None, "right": None, "errors": None},
    }


@pytest.mark.parametrize(
    ("b_recovery", "rerun_failed", "rerun_at_b"),
    [
        (None, False, False),
        (None, True, True),
        ("keep", True, False),  # the node keeps its items whatever the run says
        ({"skipped": "rerun"}, False, True),  # ...or reruns them without the flag
        ({"routed": "rerun"}, False, False),  # another outcome's choice
    ],
)
async def test_per_node_recovery_overrides_the_run(
    tmp_path: Path, b_recovery: Any, rerun_failed: bool, rerun_at_b: bool
) -> None:
    left, right, errors, path = Sink(), Sink(), Sink(), tmp_path / "j.db"
    right_props: dict[str, Any] = {"on_error": "skip"}
    if b_recovery is not None:
        right_props["recovery"] = b_recovery
    graph = fan_graph(left, right, errors, {"on_error": "errors"}, right_props)
    down.update({4, 9})
    first = await run(graph, path)
    assert first.state == "completed"
    assert ids(errors.seen) == [("src", 4), ("src", 9)]
    assert sorted(failures(path)) == [
        ("a", "routed", ("src", 4)),
        ("a", "routed", ("src", 9)),
        ("b", "skipped", ("src", 4)),
        ("b", "skipped", ("src", 9)),
    ]
    down.clear()
    second = await run(graph, path, rerun_failed=rerun_failed)
    journal = second.journal
    assert journal is not None
    # a's items are routed (kept by default); with the flag, both nodes' outcomes count.
    rerun_at_a = rerun_failed
    assert journal.already_completed == (not rerun_at_a and not rerun_at_b)
    expected = [("src", 4), ("src", 9)] if (rerun_at_a or rerun_at_b) else []
    assert journal.rerun == expected
    # A rerun source item goes through both branches; what a sink finished is passed over.
    assert ids(left.seen) == [("src", i) for i in range(N) if i not in (4, 9) or expected]
    assert ids(right.seen) == [("src", i) for i in range(N) if i not in (4, 9) or expected]
    assert ids(errors.seen) == [("src", 4), ("src", 9)]  # the error node never sees them twice
    assert len(failures(path)) == (0 if expected else 4)


async def test_a_rerun_branch_does_not_redo_the_sink_of_the_branch_that_succeeded(tmp_path: Path) -> None:
    left, right, errors, path = Sink(), Sink(), Sink(), tmp_path / "j.db"
    graph = fan_graph(left, right, errors, {}, {"on_error": "skip"})
    down.add(5)
    graph["nodes"]["a"]["coro"] = double_only  # the left branch does not call the service
    del graph["nodes"]["errors"], graph["graph"]["errors"]
    await run(graph, path)
    assert ids(left.seen) == [("src", i) for i in range(N)]
    assert ids(right.seen) == [("src", i) for i in range(N) if i != 5]
    down.clear()
    second = await run(graph, path, rerun_failed=True)
    assert second.journal is not None
    assert second.journal.rerun == [("src", 5)]
    assert ids(left.seen) == [("src", i) for i in range(N)]  # each once: finished before, passed over
    assert right.seen[-1] == (("src", 5), 205)
    assert len(right.seen) == N
    with sqlite3.connect(path) as db:  # a completed run keeps no sink rows once nothing failed
        assert db.execute("SELECT COUNT(*) FROM finished").fetchone() == (0,)
    db.close()


@node
async def double_only(x: int) -> int:
    return 2 * x


SHAPES = "'rerun', 'keep' or a dict of them per outcome"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("again", f"node 'service': property 'recovery' must be {SHAPES}, got 'again'"),
        (3, f"node 'service': property 'recovery' must be {SHAPES} (failed, skipped, routed), got int"),
        (
            {"lost": "rerun"},
            "node 'service': property 'recovery': unknown outcome 'lost' (known outcomes: failed, skipped, routed)",
        ),
        (
            {"skipped": True},
            "node 'service': property 'recovery': outcome 'skipped' must be 'rerun' or 'keep', got True",
        ),
    ],
)
def test_a_bad_recovery_property_names_the_node_and_the_value(value: Any, message: str) -> None:
    with pytest.raises(GraphError) as caught:
        parse_graph(chain(Sink(), recovery=value), lambda x: x)
    assert str(caught.value) == message


def test_recovery_in_a_flow_and_per_outcome() -> None:
    from pipelines.flow import apply_flow, parse_flow

    graph = apply_flow(
        parse_flow("a -> b[recovery=keep] -> c"),
        {"a": {"coro": numbers, "args": {"n": 1}}, "b": {"coro": call_service}, "c": {"coro": Sink().record}},
    )
    assert parse_graph(graph, lambda x: x).nodes["b"].properties.recovery == (
        ("failed", "keep"),
        ("skipped", "keep"),
        ("routed", "keep"),
    )
    spec = parse_graph(chain(Sink(), recovery={"skipped": "rerun"}), lambda x: x)
    assert spec.nodes["service"].properties.recovery == (("skipped", "rerun"),)


def test_recovery_is_not_part_of_the_graph_hash() -> None:
    from pipelines.journal.ids import graph_hash

    sink = Sink()
    base = graph_hash(parse_graph(chain(sink, on_error="skip"), lambda x: x))
    changed = graph_hash(parse_graph(chain(sink, on_error="skip", recovery="rerun"), lambda x: x))
    assert changed == base  # choosing what to rerun is what a resume is for: the journal stays valid


@given(
    upto=st.integers(0, 30),
    gaps=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), max_size=5),
    seqs=st.sets(st.integers(0, 80), max_size=10),
)
def test_undone_removes_exactly_the_positions(upto: int, gaps: list[tuple[int, int]], seqs: set[int]) -> None:
    above, at = [], upto
    for gap, length in gaps:
        above.append((at + gap, at + gap + length))
        at += gap + length
    done = set(range(upto)) | {i for lo, hi in above for i in range(lo, hi)}
    new_upto, new_above = undone(upto, above, seqs)
    assert set(range(new_upto)) | {i for lo, hi in new_above for i in range(lo, hi)} == done - seqs
    assert all(lo < hi for lo, hi in new_above)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(new_above))
    assert not new_above or new_upto < new_above[0][0]


# -- from the command line ---------------------------------------------------------------------------

SERVICE = """
nodes:
  source: {coro: "tests.cli_nodes:count", args: {n: 20}}
  service:
    coro: "tests.journal_nodes:call_service"
    args: {down: "DOWN"}
    properties: PROPS
  sink: {coro: "tests.journal_nodes:append_line", args: {path: "OUT"}}
flow: "source -> service -> sink"
"""


def service_graph(tmp_path: Path, props: str) -> tuple[str, Path, Path]:
    from tests.test_cli import write

    down, out = tmp_path / "down.txt", tmp_path / "out.txt"
    text = SERVICE.replace("DOWN", str(down)).replace("OUT", str(out)).replace("PROPS", props)
    return write(tmp_path, "service.yaml", text), down, out


def sink_lines(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


def test_the_command_line_reruns_exactly_the_skipped_items_with_rerun_failed(tmp_path: Path) -> None:
    from tests.test_cli import run_cli

    graph, down, out = service_graph(tmp_path, "{on_error: skip}")
    journal = str(tmp_path / "run.db")
    down.write_text("4\n11\n17\n")  # the service is down for these items
    first = run_cli("run", graph, "--journal", journal)
    assert first.returncode == 0, first.stderr
    assert sorted(sink_lines(out)) == sorted(f"source/{i} {1000 + i}" for i in range(20) if i not in (4, 11, 17))
    down.unlink()  # the service is back

    shown = run_cli("journal", journal)
    assert shown.stdout.splitlines()[-1] == (
        "  items that did not succeed: service skipped 3 (rerun or kept on resume: see --rerun-failed)"
    )
    kept = run_cli("run", graph, "--journal", journal)
    assert kept.returncode == 0, kept.stderr
    assert f"{journal}: run 1 already completed; nothing to do" in kept.stdout
    assert len(sink_lines(out)) == 17  # without the flag the skipped items are kept as finished

    rerun = run_cli("run", graph, "--journal", journal, "--rerun-failed")
    assert rerun.returncode == 0, rerun.stderr
    assert f"{journal}: resuming run 1: 17 source items were done; rerunning 3 that did not succeed" in rerun.stderr
    # exactly those, once (in any order: the service node's calls overlap in its elastic pool)
    assert sorted(sink_lines(out)[17:]) == ["source/11 1011", "source/17 1017", "source/4 1004"]
    again = run_cli("run", graph, "--journal", journal, "--rerun-failed")
    assert f"{journal}: run 1 already completed; nothing to do" in again.stdout
    assert len(sink_lines(out)) == 20


def test_the_command_line_resumes_a_failed_run_rerunning_its_failure_or_keeping_it(tmp_path: Path) -> None:
    from tests.test_cli import run_cli

    for props, rerun in (("{workers: 1}", True), ("{workers: 1, recovery: {failed: keep}}", False)):
        where = tmp_path / str(rerun)
        where.mkdir()
        graph, down, out = service_graph(where, props)
        journal = str(where / "run.db")
        down.write_text("6\n")
        first = run_cli("run", graph, "--journal", journal)
        assert first.returncode == 1
        assert "ServiceDown: service down for item 6" in first.stderr
        before = sink_lines(out)
        assert "source/6 1006" not in before
        down.unlink()
        second = run_cli("run", graph, "--journal", journal)
        assert second.returncode == 0, second.stderr
        if rerun:
            assert "rerunning 1 that did not succeed" in second.stderr
        after = sink_lines(out)
        # Each item that succeeded is in the file once (a sink commits before it takes more: no repeats here).
        expected = {f"source/{i} {1000 + i}" for i in range(20) if rerun or i != 6}
        assert sorted(after) == sorted(expected)
        assert len(after) == len(set(after))
        stored = read_journal_file(journal)
        assert stored is not None
        assert stored.runs[-1].failures == ([] if rerun else [("service", "failed", ("source", 6))])


# -- a failure a hook answers for ---------------------------------------------------------------------


async def test_an_inbox_failure_is_recorded_as_finished_with_failure_not_pending(tmp_path: Path) -> None:
    import aiohttp
    from aiohttp import web

    from pipelines.web import Inbox, attach
    from tests.web_helpers import item_chain, serving

    async def parse(text: str) -> int:
        return int(text)  # a bad request: ValueError, answered to that request alone

    inbox, path = Inbox(), tmp_path / "j.db"
    app = web.Application()
    attach(app, lambda: Plumber(item_chain(inbox.source, ("parse", parse)), journal=path), inbox=inbox)

    async def handle(request: web.Request) -> web.Response:
        try:
            return web.json_response(await inbox.submit(request.query["x"]))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    app.router.add_get("/work", handle)
    answers = []
    async with serving(app) as url, aiohttp.ClientSession() as session:
        for x in ("1", "2", "three", "4", "5"):  # one after the other: their positions are 0 to 4
            async with session.get(f"{url}/work", params={"x": x}) as response:
                answers.append((response.status, await response.text()))
    assert answers == [
        (200, "1"),
        (200, "2"),
        (400, "invalid literal for int() with base 10: 'three'"),
        (200, "4"),
        (200, "5"),
    ]
    stored = read_journal_file(path)
    assert stored is not None
    (run,) = stored.runs
    assert run.state == "stopped"
    assert run.failures == [("parse", "failed", ("requests", 2))]
    assert run.roots == {"requests": (5, [])}  # every request is done: the bad one as failed, not pending
    assert run.nodes["parse"] == 4  # a sink's count is what it finished: the bad request failed there
