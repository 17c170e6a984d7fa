"""OpenTelemetry tracing (pipelines.tracing), collected by the SDK's own in-memory exporter."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace as otel
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode

from pipelines import Plumber, node
from pipelines.hooks import NO_HOOKS
from pipelines.tracing import Tracing


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@node
async def numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


@node
async def plus(x: int) -> int:
    return x + 1


@node
async def twice(x: int) -> int:
    return 2 * x


@node
async def pair(both: tuple[int, int]) -> tuple[int, int]:
    return both


@node
async def keep(x: Any) -> Any:
    return x


def diamond(n: int) -> dict[str, Any]:
    return {
        "nodes": {
            "source": {"coro": numbers, "args": {"n": n}},
            "plus": {"coro": plus},
            "twice": {"coro": twice},
            "join": {"coro": pair},
            "sink": {"coro": keep},
        },
        "graph": {"source": ["plus", "twice"], "plus": ["join"], "twice": ["join"], "join": ["sink"], "sink": None},
    }


def by_trace(spans: tuple[ReadableSpan, ...]) -> dict[int, dict[str, ReadableSpan]]:
    traces: dict[int, dict[str, ReadableSpan]] = collections.defaultdict(dict)
    for span in spans:
        assert span.context is not None
        assert span.name not in traces[span.context.trace_id], f"two spans of {span.name} in one trace"
        traces[span.context.trace_id][span.name] = span
    return traces


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_every_item_is_one_trace_with_a_span_per_node_at_sample_one(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    result = await Plumber(diamond(20), hooks=[Tracing(sample=1.0, tracer_provider=provider)]).run()
    assert result["sink"].completed == 20
    spans = exporter.get_finished_spans()
    assert len(spans) == 20 * 5
    traces = by_trace(spans)
    assert len(traces) == 20  # one trace id per source item
    items = set()
    for trace in traces.values():
        assert sorted(trace) == ["join", "plus", "sink", "source", "twice"]
        source, plus_, twice_, join, sink = (trace[n] for n in ("source", "plus", "twice", "join", "sink"))
        keys = {span.attributes["pipelines.item"] for span in trace.values()}  # type: ignore[index]
        assert len(keys) == 1  # the whole trace is one item's path
        items |= keys
        assert parent_id(source) is None
        assert parent_id(plus_) == parent_id(twice_) == span_id(source)
        assert parent_id(join) == span_id(plus_)  # the join's first input is its parent...
        assert [link.context.span_id for link in join.links] == [span_id(twice_)]  # ...and the other a link
        assert parent_id(sink) == span_id(join)
        outcomes = {name: span.attributes["pipelines.outcome"] for name, span in trace.items()}  # type: ignore[index]
        assert outcomes == {"source": "sent", "plus": "sent", "twice": "sent", "join": "sent", "sink": "result"}
        for span in (plus_, twice_, join, sink):
            parent = trace["plus" if span is join else "join" if span is sink else "source"]
            assert span.start_time == parent.end_time  # from the moment it was handed on
            assert span.end_time is not None
            assert span.start_time is not None
            assert span.end_time >= span.start_time
    assert items == {repr(("source", i)) for i in range(20)}


async def test_sample_zero_installs_nothing_and_makes_no_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    plumber = Plumber(diamond(50), hooks=[Tracing(sample=0.0, tracer_provider=provider)])
    plumber.create_pipeline()
    assert all(p.ledger.hooks is NO_HOOKS for p in plumber.nodes)  # no call per item at all
    result = await plumber.join()
    assert result["sink"].completed == 50
    assert exporter.get_finished_spans() == ()


async def test_a_sampled_item_is_traced_through_the_whole_graph(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    await Plumber(diamond(400), hooks=[Tracing(sample=0.1, tracer_provider=provider, seed=7)]).run()
    traces = by_trace(exporter.get_finished_spans())
    assert 0 < len(traces) < 400
    assert all(sorted(trace) == ["join", "plus", "sink", "source", "twice"] for trace in traces.values())


@node(on_error="skip")
async def no_threes(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(f"{x} divides by 3")
    return x


@node
async def explain(failure: Any) -> str:
    return f"{failure.node}: {failure.item}"


@node
async def halves(x: int) -> AsyncIterator[int]:
    yield x // 2
    yield x - x // 2


async def test_failures_routes_and_generators_have_their_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    graph = {
        "nodes": {
            "source": {"coro": numbers, "args": {"n": 6}},
            "check": {"coro": no_threes},
            "split": {"coro": halves},
            "strict": {"coro": plus, "properties": {"on_error": "errors"}},
            "errors": {"coro": explain},
            "sink": {"coro": keep, "properties": {"aggregate_inputs": False}},
        },
        "graph": {
            "source": ["check"],
            "check": ["split"],
            "split": ["strict"],
            "strict": ["sink"],
            "errors": None,
            "sink": None,
        },
    }

    @node
    async def refuse_zero(x: int) -> int:
        if x == 0:
            raise ArithmeticError("zero")
        return x

    graph["nodes"]["strict"]["coro"] = refuse_zero
    await Plumber(graph, hooks=[Tracing(sample=1.0, tracer_provider=provider)]).run()
    spans = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 6  # type: ignore[union-attr]  # one per source item
    skipped = [s for s in spans if s.attributes["pipelines.outcome"] == "skipped"]  # type: ignore[index]
    assert sorted(s.attributes["pipelines.item"] for s in skipped) == [  # type: ignore[index]
        repr(("source", 0)),
        repr(("source", 3)),
    ]
    for span in skipped:
        assert span.status.status_code is StatusCode.ERROR
        assert [event.name for event in span.events] == ["exception"]
        assert span.events[0].attributes["exception.type"] == "ValueError"  # type: ignore[index]
    # item 1 splits into 0 and 1: the 0 fails at strict and is routed to the error node
    routed = [s for s in spans if s.attributes["pipelines.outcome"] == "routed"]  # type: ignore[index]
    assert [s.attributes["pipelines.item"] for s in routed] == [repr(("source", 1, 0))]  # type: ignore[index]
    [error_span] = [s for s in spans if s.name == "errors"]
    assert parent_id(error_span) == span_id(routed[0])
    assert error_span.context.trace_id == routed[0].context.trace_id  # type: ignore[union-attr]
    split_spans = [s for s in spans if s.name == "split"]
    assert len(split_spans) == 2 * 4  # one per output of the 4 items that got there
    for span in split_spans:
        [check_span] = [
            s
            for s in spans
            if s.name == "check" and s.context.trace_id == span.context.trace_id  # type: ignore[union-attr]
        ]
        assert parent_id(span) == span_id(check_span)


@pytest.mark.parametrize("sample", [-0.1, 1.5, "1%", float("nan")])
def test_a_sample_outside_zero_to_one_is_refused(sample: Any) -> None:
    with pytest.raises(ValueError, match=r"^Tracing: sample must be a fraction from 0 to 1, got "):
        Tracing(sample=sample)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """A DAG with one source, n0: every other node takes one or more earlier nodes as inputs."""
    size = draw(st.integers(min_value=2, max_value=8))
    inputs: dict[str, list[str]] = {}
    for i in range(1, size):
        earlier = [f"n{j}" for j in range(i)]
        inputs[f"n{i}"] = draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=3, unique=True))
    return inputs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=dags(), items=st.integers(min_value=1, max_value=12))
def test_on_any_dag_each_item_is_one_trace_whose_spans_follow_its_inputs(
    inputs: dict[str, list[str]], items: int
) -> None:
    names = ["n0", *inputs]
    successors: dict[str, list[str]] = {name: [] for name in names}
    for name, preds in inputs.items():
        for pred in preds:
            successors[pred].append(name)
    graph = {
        "nodes": {"n0": {"coro": numbers, "args": {"n": items}}} | {name: {"coro": keep} for name in inputs},
        "graph": {name: successors[name] or None for name in names},
    }
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(sample=1.0, tracer_provider=provider)
    check = OpenAtEnd(tracing)
    plumber = Plumber(graph, hooks=[check, tracing])
    asyncio.run(plumber.run())
    provider.shutdown()
    assert check.open == [0]  # every trace closed once its item's paths had all ended
    spans = exporter.get_finished_spans()
    assert len(spans) == items * len(names)  # a span per item per node: every node joins its inputs
    traces = by_trace(spans)
    assert len(traces) == items
    for trace in traces.values():
        assert sorted(trace) == sorted(names)
        for name, preds in inputs.items():
            ordered = plumber.spec.nodes[name].inputs  # a join's inputs, in the order it pairs them
            assert sorted(ordered) == sorted(preds)
            span = trace[name]
            assert parent_id(span) == span_id(trace[ordered[0]])
            assert [link.context.span_id for link in span.links] == [span_id(trace[p]) for p in ordered[1:]]


async def test_beyond_max_open_the_oldest_trace_is_forgotten_and_no_span_is_orphaned(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = Tracing(sample=1.0, tracer_provider=provider, max_open=2)
    await Plumber(diamond(30), hooks=[tracing]).run()
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    assert sorted(s.attributes["pipelines.item"] for s in roots) == sorted(  # type: ignore[index]
        repr(("source", i)) for i in range(30)
    )  # every item's root span is made...
    assert len(spans) < 30 * 5  # ...but the traces forgotten while their items were queued lose the rest
    made = {span_id(s) for s in spans}
    assert all(s.parent.span_id in made for s in spans if s.parent is not None)
    assert all(link.context.span_id in made for s in spans for link in s.links)


# -- spans built for the SDK are those its tracer makes -------------------------------------------


class ThroughProvider(otel.TracerProvider):
    """An implementation of the OpenTelemetry API that is not the SDK's own: every span it makes is
    started and ended through an SDK provider's tracer, as a vendor's wrapper would."""

    def __init__(self, inner: TracerProvider) -> None:
        self.inner = inner

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> otel.Tracer:
        return ThroughTracer(
            self.inner.get_tracer(instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        )


class ThroughTracer(otel.Tracer):
    def __init__(self, inner: otel.Tracer) -> None:
        self.inner = inner

    def start_span(self, *args: Any, **kwargs: Any) -> otel.Span:
        return self.inner.start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.start_as_current_span(*args, **kwargs)


def failing_graph() -> dict[str, Any]:
    """A skip, a generator, a node routing its failures to an error node, and a join."""

    @node
    async def refuse_zero(x: int) -> int:
        if x == 0:
            raise ArithmeticError("zero")
        return x

    return {
        "nodes": {
            "source": {"coro": numbers, "args": {"n": 8}},
            "check": {"coro": no_threes},
            "split": {"coro": halves},
            "strict": {"coro": refuse_zero, "properties": {"on_error": "errors"}},
            "other": {"coro": twice},
            "join": {"coro": pair},
            "errors": {"coro": explain},
            "sink": {"coro": keep},
        },
        "graph": {
            "source": ["check"],
            "check": ["split"],
            "split": ["strict", "other"],
            "strict": ["join"],
            "other": ["join"],
            "join": ["sink"],
            "errors": None,
            "sink": None,
        },
    }


def described(spans: tuple[ReadableSpan, ...]) -> list[tuple[Any, ...]]:
    """Each span as what an exporter would send of it, its ids replaced by the (name, item) they name."""
    names = {span_id(s): (s.name, s.attributes["pipelines.item"]) for s in spans}  # type: ignore[index]
    traces = {s.context.trace_id for s in spans}  # type: ignore[union-attr]
    roots = {s.context.trace_id: names[span_id(s)] for s in spans if s.parent is None}  # type: ignore[union-attr]
    assert len(roots) == len(traces)  # one root per trace
    shown = []
    for s in spans:
        assert s.context is not None
        assert s.context.trace_flags.sampled
        assert s.start_time is not None
        assert s.end_time is not None
        assert s.end_time >= s.start_time
        shown.append(
            (
                s.name,
                dict(s.attributes or {}),
                roots[s.context.trace_id],
                names[s.parent.span_id] if s.parent is not None else None,
                s.parent.trace_id == s.context.trace_id if s.parent is not None else None,
                [names[link.context.span_id] for link in s.links],
                [link.context.trace_id == s.context.trace_id for link in s.links],
                s.start_time == s.end_time if s.parent is None else None,  # a root: the moment the item left
                s.kind,
                s.status.status_code,
                s.status.description,
                [
                    (e.name, {k: v for k, v in (e.attributes or {}).items() if k != "exception.stacktrace"})
                    for e in s.events
                ],
                [e.timestamp == s.end_time for e in s.events],
                [str(e.attributes["exception.stacktrace"]).splitlines()[-1] for e in s.events],  # type: ignore[index]
                s.instrumentation_scope,
                s.resource.attributes,
                s.dropped_attributes,
                s.dropped_events,
                s.dropped_links,
            )
        )
    return sorted(shown, key=repr)


def started_at_handing(spans: tuple[ReadableSpan, ...]) -> bool:
    """Whether each span but a root starts when its parent ended (the moment the item was handed on)."""
    by_id = {span_id(s): s for s in spans}
    return all(s.start_time == by_id[s.parent.span_id].end_time for s in spans if s.parent is not None)


@pytest.mark.parametrize("make_graph", [lambda: diamond(6), failing_graph])
async def test_the_spans_built_for_the_sdk_are_those_its_tracer_makes(make_graph: Any) -> None:
    made = {}
    for way in ("built", "through the tracer"):
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        given = provider if way == "built" else ThroughProvider(provider)
        await Plumber(make_graph(), hooks=[Tracing(sample=1.0, tracer_provider=given)]).run()
        provider.shutdown()
        spans = exporter.get_finished_spans()
        assert started_at_handing(spans)
        made[way] = described(spans)
    assert len(made["built"]) > 20
    assert made["built"] == made["through the tracer"]


async def test_the_spans_of_a_failure_record_its_exception_as_the_sdk_does(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    await Plumber(failing_graph(), hooks=[Tracing(sample=1.0, tracer_provider=provider)]).run()
    [routed] = [s for s in exporter.get_finished_spans() if s.attributes["pipelines.outcome"] == "routed"]  # type: ignore[index]
    assert routed.status.status_code is StatusCode.ERROR
    assert routed.status.description == "ArithmeticError: zero"
    [event] = routed.events
    assert event.name == "exception"
    assert event.timestamp == routed.end_time
    assert event.attributes is not None
    assert {k: v for k, v in event.attributes.items() if k != "exception.stacktrace"} == {
        "exception.type": "ArithmeticError",
        "exception.message": "zero",
        "exception.escaped": "False",
    }
    stack = str(event.attributes["exception.stacktrace"])
    assert stack.startswith("Traceback (most recent call last):\n")
    assert stack.endswith('    raise ArithmeticError("zero")\nArithmeticError: zero\n')


@pytest.mark.parametrize("way", ["built", "through the tracer"])
async def test_a_provider_whose_sampler_records_nothing_gets_no_span(way: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    given = provider if way == "built" else ThroughProvider(provider)
    result = await Plumber(diamond(10), hooks=[Tracing(sample=1.0, tracer_provider=given)]).run()
    provider.shutdown()
    assert result["sink"].completed == 10
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize("way", ["built", "through the tracer"])
async def test_a_run_inside_a_span_makes_its_traces_children_of_it(way: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    given = provider if way == "built" else ThroughProvider(provider)
    with provider.get_tracer("app").start_as_current_span("request") as request:
        await Plumber(diamond(3), hooks=[Tracing(sample=1.0, tracer_provider=given)]).run()
    provider.shutdown()
    spans = [s for s in exporter.get_finished_spans() if s.name != "request"]
    assert len(spans) == 3 * 5
    context = request.get_span_context()
    assert {s.context.trace_id for s in spans} == {context.trace_id}  # type: ignore[union-attr]
    roots = [s for s in spans if s.name == "source"]
    assert [parent_id(s) for s in roots] == [context.span_id] * 3


# -- a trace closes once its item's paths have all ended ----------------------------------------


class OpenAtEnd:
    """A hook installed before the Tracing: how many traces it still held open when the run ended."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.open: list[int] = []

    def run_ended(self, plumber: Plumber, state: str) -> None:
        self.open.append(self.tracing.open_traces)


@node
async def letters() -> AsyncIterator[str]:
    for ch in "abcdefg":
        yield ch


@node
async def after_a_while(x: int) -> int:
    for _ in range(x % 3):
        await asyncio.sleep(0)
    return x


@node
async def by_parity(x: int) -> Any:
    from pipelines import route

    return route(x, "odd" if x % 2 else "even")


def zipped() -> dict[str, Any]:
    """Two independent sources paired by position (the letters run out of partners), then routed by parity."""
    return {
        "nodes": {
            "nums": {"coro": numbers, "args": {"n": 5}},
            "chars": {"coro": letters},
            "slow": {"coro": after_a_while, "properties": {"workers": 3}},
            "zip": {"coro": pair},
            "first": {"coro": lambda_first},
            "split": {"coro": by_parity, "properties": {"routes": {2: "odd", 3: "even"}}},
            "odd": {"coro": keep},
            "even": {"coro": keep},
        },
        "graph": {
            "nums": ["slow"],
            "chars": ["zip"],
            "slow": ["zip"],
            "zip": ["first"],
            "first": ["split"],
            "split": ["odd", "even"],
            "odd": None,
            "even": None,
        },
    }


@node
async def lambda_first(both: tuple[Any, Any]) -> Any:
    return both[1] if isinstance(both[0], str) else both[0]


@pytest.mark.parametrize("make_graph", [lambda: diamond(30), failing_graph, zipped], ids=["diamond", "failing", "zip"])
async def test_every_trace_is_closed_when_the_run_ends(
    make_graph: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracing = Tracing(sample=1.0, tracer_provider=provider)
    check = OpenAtEnd(tracing)
    result = await Plumber(make_graph(), hooks=[check, tracing], collect_outputs=True).run()
    assert result.state == "completed"
    if make_graph is zipped:
        assert {name: sorted(out) for name, out in result.outputs.items()} == {"odd": [1, 3], "even": [0, 2, 4]}
        assert result["zip"].dropped == 2  # 'f' and 'g' had no partner
    assert check.open == [0]
    assert len(exporter.get_finished_spans()) > 20
