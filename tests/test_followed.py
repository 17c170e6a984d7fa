"""Followed items (pipelines.keyless): a run whose only hook is Tracing stays keyless but for the
items Tracing samples, and makes the same spans, counts and outputs as the same run with keys."""

from __future__ import annotations

import collections
import itertools
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipelines import Plumber, Processor, node
from pipelines.tracing import Tracing

from .backends import BACKENDS, run_on, trio_twins
from .helpers import until
from .test_tracing import numbers


class KeyedAnyway:
    """A hook that hears nothing and, as every hook that does not say otherwise, needs every key."""


SEEN: list[Any] = []
"""The arguments the stages were called with: each a value of the user's, never an envelope."""


@node
async def plus(x: int) -> int:
    SEEN.append(x)
    return x + 1


@node
async def thirds_out(x: int) -> int | None:
    SEEN.append(x)
    return None if x % 3 == 0 else x


@node
async def fails_on_fives(x: int) -> int:
    SEEN.append(x)
    if x % 5 == 1:
        raise ValueError(f"no {x}")
    return x


async def plus_q(processor: Processor, q_elt: tuple[int]) -> int:
    """The original style: the item comes as a 1-tuple."""
    SEEN.append(q_elt)
    return q_elt[0] + 1


@node
async def awaits(x: int) -> int:
    """A stage that waits (as I/O would) before it answers: its worker gives the loop away mid-piece."""
    SEEN.append(x)
    await anyio.lowlevel.checkpoint()
    if x % 3 == 0:
        await anyio.lowlevel.checkpoint()
    return x


def fails_once_on_fours() -> Any:
    """A stage that fails the first time it meets a multiple of 4: its retry waits, then it answers.
    A function of its own for each stage, so that two such stages fail alike in every run."""
    failed: set[int] = set()

    @node
    async def retried(x: int) -> int:
        SEEN.append(x)
        if x % 4 == 0 and x not in failed:
            failed.add(x)
            raise ValueError(f"not yet {x}")
        return x

    return retried


@node
async def keep(x: int) -> int:
    SEEN.append(x)
    return x


STAGES: dict[str, dict[str, Any]] = {
    "plus": {"coro": plus},
    "filter": {"coro": thirds_out},
    "skip": {"coro": fails_on_fives, "properties": {"on_error": "skip"}},
    "original": {"coro": plus_q},
    "awaits": {"coro": awaits},
    "retry": {"coro": fails_once_on_fours, "properties": {"retry": {"max_attempts": 2, "backoff_factor": 0.0}}},
}
FACTORIES = {"retry"}
"""The stages whose `coro` makes the stage's function (one per stage, built for each run)."""


async def numbers_put(processor: Processor, output_q: Any, n: int) -> None:
    """The original style's source: it puts each item into its output queue."""
    for i in range(n):
        await output_q.put(i)


def line(n: int, stages: list[tuple[str, int]], sinks: int, putting: bool = False) -> dict[str, Any]:
    """A source (yielding, or `putting` as the original style does), `stages` in a line (kind,
    workers), then `sinks` sinks fed by the last node."""
    nodes: dict[str, Any] = {"source": {"coro": numbers_put if putting else numbers, "args": {"n": n}}}
    order = ["source"]
    for i, (kind, workers) in enumerate(stages):
        spec = dict(STAGES[kind])
        if kind in FACTORIES:
            spec["coro"] = spec["coro"]()
        spec["properties"] = dict(spec.get("properties", {}))
        if workers:  # else the default: an elastic pool, which grows while its workers wait
            spec["properties"]["workers"] = workers
        nodes[f"s{i}"] = spec
        order.append(f"s{i}")
    ends = [f"sink{j}" for j in range(sinks)]
    for end in ends:
        nodes[end] = {"coro": keep}
    graph: dict[str, Any] = {a: [b] for a, b in itertools.pairwise(order)}
    graph[order[-1]] = ends
    graph |= {end: None for end in ends}
    return {"nodes": nodes, "graph": graph}


def summary(spans: tuple[ReadableSpan, ...]) -> collections.Counter[tuple[Any, ...]]:
    """Each span as (node, item, outcome, the node of its parent span, whether it records an exception)."""
    names = {span.context.span_id: span.name for span in spans if span.context is not None}
    return collections.Counter(
        (
            span.name,
            (span.attributes or {})["pipelines.item"],
            (span.attributes or {})["pipelines.outcome"],
            names.get(span.parent.span_id) if span.parent is not None else None,
            any(event.name == "exception" for event in span.events),
        )
        for span in spans
    )


async def traced(graph: dict[str, Any], sample: float, keyed: bool) -> tuple[Plumber, Any, Any, list[Any]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hooks: list[Any] = [Tracing(sample=sample, tracer_provider=provider, seed=7)]
    if keyed:
        hooks.append(KeyedAnyway())
    SEEN.clear()
    plumber = Plumber(graph, hooks=hooks, collect_outputs=True)
    result = await plumber.run()
    provider.shutdown()
    return plumber, result, summary(exporter.get_finished_spans()), SEEN[:]


def counts(result: Any) -> dict[str, tuple[int, ...]]:
    """Each node's counts of items: in, out, completed, failed, retried, skipped, dropped."""
    return {
        name: (s.items_in, s.items_out, s.completed, s.failed, s.retried, s.skipped, s.dropped)
        for name, s in result.stats.items()
    }


STAGE = st.tuples(st.sampled_from(sorted(STAGES)), st.sampled_from([0, 1, 3]))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stages=st.lists(STAGE, min_size=1, max_size=4),
    sinks=st.integers(1, 2),
    n=st.integers(0, 60),
    sample=st.sampled_from([0.2, 1.0]),
    putting=st.booleans(),
)
def test_a_followed_run_traces_counts_and_outputs_as_the_keyed_run(
    backend: str, stages: list[tuple[str, int]], sinks: int, n: int, sample: float, putting: bool
) -> None:
    followed, result, spans, seen = run_on(
        backend, lambda: traced(line(n, stages, sinks, putting), sample, keyed=False)
    )
    keyed, keyed_result, keyed_spans, keyed_seen = run_on(
        backend, lambda: traced(line(n, stages, sinks, putting), sample, keyed=True)
    )
    assert followed.keys_needed is None
    assert keyed.keys_needed == "hooks are installed (KeyedAnyway)"
    # Every followed item put into an edge was met by its consumer: no piece is looked through for nothing.
    assert [edge.keyed for processor in followed.nodes for edge in processor.inputs] == [0] * (len(stages) + sinks)
    assert spans == keyed_spans
    assert counts(result) == counts(keyed_result)
    for j in range(sinks):
        assert sorted(result.outputs[f"sink{j}"]) == sorted(keyed_result.outputs[f"sink{j}"])
    assert sorted(map(repr, seen)) == sorted(map(repr, keyed_seen))  # the user's values, never an envelope
    traced_items = {item for _, item, *_ in spans}
    assert len(traced_items) == (n if sample == 1.0 else len(traced_items))
    if sample == 1.0:
        assert sum(1 for name, *_ in spans if name == "source") == n


async def test_only_the_sampled_items_make_spans_and_every_value_reaches_the_functions_bare() -> None:
    graph = line(40, [("plus", 1), ("filter", 1), ("skip", 3), ("original", 1)], 1)
    plumber, result, spans, seen = await traced(graph, 0.25, keyed=False)
    assert all(type(x) in (int, tuple) and (type(x) is int or type(x[0]) is int) for x in seen)
    assert plumber.keys_needed is None
    sources = sorted(item for name, item, *_ in spans if name == "source")
    assert 0 < len(sources) < 40  # a sample: some items, not all
    for item in sources:
        path = sorted((name, outcome) for name, traced_item, outcome, *_ in spans if traced_item == item)
        position = int(item.strip("()").split(", ")[1])
        x = position + 1  # after s0
        if x % 3 == 0:
            assert path == [("s0", "sent"), ("s1", "dropped"), ("source", "sent")]
        elif x % 5 == 1:
            assert path == [("s0", "sent"), ("s1", "sent"), ("s2", "skipped"), ("source", "sent")]
        else:
            whole = ["s0", "s1", "s2", "s3"]
            assert path == [*((name, "sent") for name in whole), ("sink0", "result"), ("source", "sent")]
    kept = [x + 1 for x in range(1, 41) if x % 3 and x % 5 != 1]
    assert sorted(result.outputs["sink0"]) == kept
    assert result["s1"].dropped == sum(1 for x in range(1, 41) if x % 3 == 0)
    assert result["s2"].skipped == sum(1 for x in range(1, 41) if x % 3 and x % 5 == 1)


@pytest.mark.parametrize("stages", [[("awaits", 3), ("plus", 1)], [("retry", 0), ("awaits", 0), ("plus", 3)]])
async def test_followed_outputs_a_waiting_worker_left_are_counted_before_another_hands_them_on(
    stages: list[tuple[str, int]],
) -> None:
    """Workers that wait mid-piece (on I/O, or between a retry's attempts): the other workers hand on
    the outputs the waiting one finished (pipelines.pool), followed ones among them, to a node that
    must know of them."""
    followed, result, spans, seen = await traced(line(200, stages, 1), 1.0, keyed=False)
    _keyed, keyed_result, keyed_spans, keyed_seen = await traced(line(200, stages, 1), 1.0, keyed=True)
    assert sorted(result.outputs["sink0"]) == sorted(keyed_result.outputs["sink0"])
    assert spans == keyed_spans
    assert sorted(map(repr, seen)) == sorted(map(repr, keyed_seen))
    assert [edge.keyed for processor in followed.nodes for edge in processor.inputs] == [0] * (len(stages) + 1)


async def test_a_followed_item_whose_put_a_stop_gives_up_is_not_counted_as_waiting() -> None:
    """The source waits for room to put a followed item when the run stops: the item is not sent,
    and no edge is left counting it (its consumer would look through every piece for it)."""
    release = anyio.Event()
    taken: list[int] = []

    @node
    async def held(x: int) -> int:
        taken.append(x)
        await release.wait()
        return x

    graph = line(10, [("plus", 1)], 1, putting=True)
    graph["nodes"]["s0"] = {"coro": held, "properties": {"workers": 1, "queue_size": 1}}
    provider = TracerProvider()
    plumber = Plumber(graph, hooks=[Tracing(sample=1.0, tracer_provider=provider)], collect_outputs=True)
    edge = plumber.processor("s0").inputs[0]
    results: list[Any] = []

    async def run() -> None:
        results.append(await plumber.run())

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        # s0 holds item 0, item 1 fills its input: the source waits to put item 2.
        await until(lambda: taken == [0] and edge.statistics().waiting_putters == 1)
        plumber.stop_nowait()
        release.set()
    provider.shutdown()
    (result,) = results
    assert result.state == "stopped"
    assert result.outputs["sink0"] == [0, 1]
    assert result["source"].items_out == 2
    assert [edge.keyed for processor in plumber.nodes for edge in processor.inputs] == [0, 0]


@pytest.mark.parametrize("others", [[], [KeyedAnyway()]])
async def test_keys_are_needed_only_by_hooks_that_need_them_all_and_a_followed_run_fuses_nothing(
    others: list[Any],
) -> None:
    provider = TracerProvider()
    plumber = Plumber(
        line(3, [("plus", 1)], 1), hooks=[Tracing(sample=0.5, tracer_provider=provider), *others], fuse=True
    )
    assert plumber.keys_needed == ("hooks are installed (KeyedAnyway)" if others else None)
    result = await plumber.run()
    assert result["sink0"].completed == 3
    assert plumber.fused == ()  # fusing would leave no node to hear the followed items at
    provider.shutdown()


async def test_a_tracing_that_samples_nothing_leaves_a_run_to_fuse() -> None:
    provider = TracerProvider()
    plumber = Plumber(line(3, [("plus", 1)], 1), hooks=[Tracing(sample=0, tracer_provider=provider)], fuse=True)
    result = await plumber.run()
    assert plumber.fused == (("source", "s0", "sink0"),)
    assert result["sink0"].completed == 3
    provider.shutdown()


async def test_a_followed_item_that_fails_the_run_is_named_in_its_note() -> None:
    graph = line(10, [("skip", 1)], 1)
    graph["nodes"]["s0"]["properties"]["on_error"] = "fail"
    provider = TracerProvider()
    plumber = Plumber(graph, hooks=[Tracing(sample=1.0, tracer_provider=provider)])
    with pytest.raises(ValueError, match="no 1") as raised:
        await plumber.run()
    assert "pipelines: node 's0' failed on item 1" in (raised.value.__notes__ or [])
    provider.shutdown()


globals().update(trio_twins(globals()))
