"""Graph validation: every malformed graph raises GraphError naming the node and the problem."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import GraphError, PipelineError, Plumber, Registry, RetryPolicy, node
from pipelines.properties import PROPERTY_NAMES

from .helpers import add_one, collector, source_of

MAX_NESTING = 100  # the documented limit of nesting in graphs, files and flows

_, sink = collector()
source = source_of([1])


def good() -> dict[str, Any]:
    return {
        "nodes": {"inp": {"coro": source}, "rev": {"coro": add_one}, "out": {"coro": sink}},
        "graph": {"inp": ["rev"], "rev": ["out"], "out": None},
    }


def assert_rejected(graph: Any, message: str, coro_map: Any = None, **kwargs: Any) -> None:
    with pytest.raises(GraphError, match=f"^{re.escape(message)}$"):
        Plumber(graph, coro_map, **kwargs)


def test_graph_error_is_a_pipeline_error_and_a_value_error() -> None:
    assert issubclass(GraphError, PipelineError)
    assert issubclass(GraphError, ValueError)


def test_input_must_be_a_dict() -> None:
    assert_rejected([1, 2], "graph must be a dict with keys 'nodes' and 'graph', got list")


@pytest.mark.parametrize("missing", ["nodes", "graph"])
def test_nodes_and_graph_are_required(missing: str) -> None:
    graph = good()
    del graph[missing]
    assert_rejected(graph, f"graph is missing its {missing!r} dict")


def test_unknown_top_level_key() -> None:
    assert_rejected({**good(), "edges": {}}, "graph has unknown key 'edges' (expected 'nodes' and 'graph')")


def test_unknown_successor_lists_the_known_nodes() -> None:
    graph = good()
    graph["graph"]["rev"] = ["revv"]
    assert_rejected(graph, "node 'rev': unknown successor 'revv' (known nodes: inp, out, rev)")


def test_node_in_nodes_but_not_in_graph() -> None:
    graph = good()
    del graph["graph"]["out"]
    assert_rejected(graph, "node 'out' is in 'nodes' but not in 'graph' (give it successors or None)")


def test_node_in_graph_but_not_in_nodes() -> None:
    graph = good()
    graph["graph"]["extra"] = None
    assert_rejected(graph, "node 'extra' is in 'graph' but not in 'nodes'")


def test_cycle_names_its_nodes() -> None:
    graph = good()
    graph["nodes"]["b"] = {"coro": add_one}
    graph["graph"]["rev"] = ["b"]
    graph["graph"]["b"] = ["rev", "out"]
    assert_rejected(graph, "node 'rev': cycle: rev -> b -> rev")


def test_self_loop_is_a_cycle() -> None:
    graph = good()
    graph["graph"]["rev"] = ["rev"]
    assert_rejected(graph, "node 'rev': cycle: rev -> rev")


def test_missing_coro() -> None:
    graph = good()
    graph["nodes"]["rev"] = {"args": {}}
    assert_rejected(graph, "node 'rev': missing 'coro'")


def test_a_plain_function_without_an_executor() -> None:
    def plain(item: Any) -> None:
        pass

    graph = good()
    graph["nodes"]["rev"]["coro"] = plain
    with pytest.raises(
        GraphError,
        match=r"^node 'rev': <function .*plain.*> is a plain \(blocking\) function; give the node 'executor': "
        r"'thread' \(or 'process' for CPU-heavy work\) so that it does not block the event loop \(it is then called "
        r"as plain\(item\)\); or, if it never blocks, make it `async def` and put @node above it "
        r"\(from pipelines import node\)$",
    ):
        Plumber(graph)


def test_an_async_function_of_one_item_without_node_is_told_to_use_node() -> None:
    async def shout(item: str, *, suffix: str = "!") -> str:
        return item.upper() + suffix

    graph = good()
    graph["nodes"]["rev"] = {"coro": shout, "args": {"suffix": "?"}}
    assert_rejected(
        graph,
        "node 'rev': coro test_an_async_function_of_one_item_without_node_is_told_to_use_node.<locals>.shout(item: "
        "'str', *, suffix: 'str' = '!') -> 'str' takes one item, but a node's function is called as "
        "f(processor, q_elt, **args) (the original signature, q_elt a tuple) unless it is marked with @node: put "
        "@node above `async def shout` (from pipelines import node), or give the node 'properties': "
        "{'style': 'item'}",
    )
    node(shout)  # the fix the message gives
    assert Plumber(graph).nodes[1].name == "rev"


def test_an_async_generator_source_of_args_only_without_node_is_told_to_use_node() -> None:
    async def numbers(n: int) -> Any:
        for i in range(n):
            yield i

    graph = good()
    graph["nodes"]["inp"] = {"coro": numbers, "args": {"n": 2}}
    with pytest.raises(GraphError, match=r"^node 'inp': coro .*numbers\(n: 'int'\) -> 'Any' is an async generator "):
        Plumber(graph)


def test_a_function_that_may_take_two_arguments_gets_no_hint() -> None:
    async def either(processor: Any, q_elt: Any = None) -> Any:
        return q_elt

    async def varargs(*items: Any) -> Any:
        return items

    for fn in (either, varargs):
        graph = good()
        graph["nodes"]["rev"]["coro"] = fn
        node_spec = Plumber(graph).nodes[1].spec  # accepted: nothing says it was not meant that way
        assert (node_spec.name, node_spec.style) == ("rev", "processor")  # called as f(processor, q_elt)


def test_a_coro_that_is_not_a_function() -> None:
    graph = good()
    graph["nodes"]["rev"]["coro"] = 42
    assert_rejected(
        graph,
        "node 'rev': coro 42 resolved to 42, which is not an async function or async generator function "
        "(or a plain function run in an executor)",
    )


def test_coro_map_failure_names_the_node() -> None:
    graph = good()
    graph["nodes"]["rev"]["coro"] = "Funcs.nothing"
    known = {"Funcs.src": source, "Funcs.sink": sink}
    graph["nodes"]["inp"]["coro"] = "Funcs.src"
    graph["nodes"]["out"]["coro"] = "Funcs.sink"
    assert_rejected(
        graph,
        "node 'rev': coro_map could not resolve coro 'Funcs.nothing': KeyError('Funcs.nothing')",
        coro_map=known.__getitem__,
    )


def test_args_that_do_not_bind() -> None:
    graph = good()
    graph["nodes"]["rev"]["args"] = {"width": 3}
    with pytest.raises(
        GraphError,
        match=r"^node 'rev': coro cannot be called as add_one\(processor.*\).* with args "
        r"\{'width': 3\}: got an unexpected keyword argument 'width'$",
    ):
        Plumber(graph)


def test_args_missing_a_required_parameter() -> None:
    async def scale(processor: Any, q_elt: Any, factor: int) -> int:
        return int(q_elt[0] * factor)

    graph = good()
    graph["nodes"]["rev"]["coro"] = scale
    with pytest.raises(GraphError, match=r"missing a required argument: 'factor'$"):
        Plumber(graph)
    graph["nodes"]["rev"]["args"] = {"factor": 2}
    Plumber(graph)


def test_unknown_property_lists_the_known_ones() -> None:
    graph = good()
    graph["nodes"]["rev"]["properties"] = {"worker": 2}
    assert_rejected(
        graph,
        "node 'rev': unknown property 'worker' (known properties: aggregate_inputs, events, executor, input, "
        "max_workers, on_error, ordered, queue_size, recovery, retry, route, routes, setup, state, style, teardown, "
        "timeout, workers)",
    )


@pytest.mark.parametrize(
    ("prop", "value", "expected"),
    [
        ("workers", 0, "an int >= 1"),
        ("workers", 2.5, "an int >= 1"),
        ("queue_size", -1, "an int >= 1 (every edge is bounded)"),
        ("queue_size", 0, "an int >= 1 (every edge is bounded)"),
        ("aggregate_inputs", "yes", "true or false"),
        ("timeout", 0, "a finite number of seconds > 0, or null"),
        ("style", "plain", "'processor' (f(processor, q_elt)) or 'item' (f(item))"),
    ],
)
def test_bad_property_values(prop: str, value: Any, expected: str) -> None:
    graph = good()
    graph["nodes"]["rev"]["properties"] = {prop: value}
    assert_rejected(graph, f"node 'rev': property {prop!r} must be {expected}, got {value!r}")


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), float("-inf"), 10**400, True], ids=["nan", "inf", "-inf", "huge-int", "bool"]
)
def test_a_timeout_that_is_not_a_finite_number_is_refused(value: Any) -> None:
    graph = good()
    graph["nodes"]["rev"]["properties"] = {"timeout": value}
    assert_rejected(
        graph, f"node 'rev': property 'timeout' must be a finite number of seconds > 0, or null, got {value!r}"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("backoff_factor", float("nan")),
        ("backoff_factor", float("inf")),
        ("max_backoff", float("nan")),
        ("max_backoff", float("inf")),
        ("max_backoff", 10**400),
    ],
)
def test_a_retry_number_that_is_not_finite_is_refused_naming_the_node(field: str, value: Any) -> None:
    graph = good()
    graph["nodes"]["rev"]["properties"] = {"retry": {field: value}}
    assert_rejected(graph, f"node 'rev': property 'retry': {field} must be a finite number >= 0, got {value!r}")
    graph["nodes"]["rev"]["properties"] = {"retry": {"jitter": value}}
    assert_rejected(graph, f"node 'rev': property 'retry': jitter must be a number between 0 and 1, got {value!r}")


def test_bad_retry_policy() -> None:
    graph = good()
    graph["nodes"]["rev"]["properties"] = {"retry": {"max_attempts": 0}}
    assert_rejected(graph, "node 'rev': property 'retry': max_attempts must be an int >= 1, got 0")
    graph["nodes"]["rev"]["properties"] = {"retry": {"attempts": 3}}
    with pytest.raises(GraphError, match=r"^node 'rev': property 'retry': unknown retry field 'attempts'"):
        Plumber(graph)


def test_on_error_naming_no_node() -> None:
    graph = good()
    graph["nodes"]["rev"]["properties"] = {"on_error": "errs"}
    assert_rejected(graph, "node 'rev': on_error 'errs' is not 'fail', 'skip' or a node (known nodes: inp, out, rev)")


def test_error_node_cannot_also_have_inputs() -> None:
    graph = good()
    graph["nodes"]["rev"]["properties"] = {"on_error": "out"}
    assert_rejected(
        graph, "node 'out' is the error node of 'rev' and cannot also have inputs in 'graph' (fed by 'rev')"
    )


def test_per_item_properties_do_not_apply_to_a_source() -> None:
    graph = good()
    graph["nodes"]["inp"]["properties"] = {"workers": 2}
    assert_rejected(graph, "node 'inp': property 'workers' does not apply to a source (a node without inputs)")


def test_item_style_source_must_be_an_async_generator() -> None:
    @node
    async def not_a_generator() -> None:
        pass

    graph = good()
    graph["nodes"]["inp"]["coro"] = not_a_generator
    with pytest.raises(GraphError, match=r"^node 'inp': a source in 'item' style must be an async generator"):
        Plumber(graph)


def test_node_names_must_be_strings() -> None:
    assert_rejected({"nodes": {1: {"coro": source}}, "graph": {1: None}}, "node names must be non-empty strings, got 1")


def test_empty_graph() -> None:
    assert_rejected({"nodes": {}, "graph": {}}, "graph has no nodes")


def test_successors_of_the_wrong_type() -> None:
    graph = good()
    graph["graph"]["rev"] = 3
    assert_rejected(graph, "node 'rev': successors must be a list of node names or None, got int")


def test_join_of_a_merge_of_the_same_items_is_rejected() -> None:
    graph = {
        "nodes": {
            "s": {"coro": source},
            "a": {"coro": add_one},
            "b": {"coro": add_one},
            "m": {"coro": add_one, "properties": {"aggregate_inputs": False}},
            "j": {"coro": sink},
        },
        "graph": {"s": ["a", "b", "j"], "a": ["m"], "b": ["m"], "m": ["j"], "j": None},
    }
    assert_rejected(
        graph,
        "node 'j': cannot pair its inputs by lineage: input 'm' carries several copies of the same items "
        "(merged at 'm'); set 'aggregate_inputs': false on 'j' to merge its inputs in arrival order instead",
    )


def test_join_of_an_input_mixing_sources_is_rejected() -> None:
    graph = {
        "nodes": {
            "s1": {"coro": source},
            "s2": {"coro": source},
            "m": {"coro": add_one, "properties": {"aggregate_inputs": False}},
            "j": {"coro": sink},
        },
        "graph": {"s1": ["m", "j"], "s2": ["m"], "m": ["j"], "j": None},
    }
    assert_rejected(
        graph,
        "node 'j': cannot pair its inputs by lineage: input 'm' carries items of several sources (s1, s2); "
        "set 'aggregate_inputs': false on 'j' to merge its inputs in arrival order instead",
    )


def test_key_order_of_nodes_and_graph_does_not_matter() -> None:
    graph = good()
    graph["graph"] = {"out": None, "rev": ["out"], "inp": ["rev"]}
    plumber = Plumber(graph)
    assert [p.name for p in plumber.nodes] == ["inp", "rev", "out"]
    assert sorted(plumber.graph.edges) == [("inp", "rev"), ("rev", "out")]


def test_a_string_successor_is_one_successor() -> None:
    graph = good()
    graph["graph"]["rev"] = "out"  # ('out') without its comma
    assert sorted(Plumber(graph).graph.edges) == [("inp", "rev"), ("rev", "out")]


def test_retry_policy_object_and_decorator_defaults_are_accepted() -> None:
    @node(workers=3)
    async def double(x: int) -> int:
        return x * 2

    graph = good()
    graph["nodes"]["rev"] = {"coro": double, "properties": {"retry": RetryPolicy(max_attempts=2)}}
    spec = Plumber(graph).spec.nodes["rev"]
    assert spec.properties.workers == 3
    assert spec.properties.retry == RetryPolicy(max_attempts=2)
    assert spec.style == "item"


def test_join_of_an_expanded_and_a_plain_branch_is_rejected() -> None:
    async def explode(processor: Any, q_elt: Any) -> Any:
        yield q_elt[0]

    graph = {
        "nodes": {"s": {"coro": source}, "x": {"coro": explode}, "b": {"coro": add_one}, "j": {"coro": sink}},
        "graph": {"s": ["x", "b"], "x": ["j"], "b": ["j"], "j": None},
    }
    assert_rejected(
        graph,
        "node 'j': cannot pair its inputs by lineage: they derive from a source through different expanding "
        "(async generator) nodes: 'x' from 's' through x, 'b' from 's'; set 'aggregate_inputs': false on 'j' "
        "to merge its inputs in arrival order instead",
    )


def test_join_fed_through_an_error_route_is_rejected() -> None:
    graph = {
        "nodes": {
            "s": {"coro": source},
            "f": {"coro": add_one, "properties": {"on_error": "e"}},
            "e": {"coro": add_one},
            "j": {"coro": sink},
        },
        "graph": {"s": ["f", "j"], "f": None, "e": ["j"], "j": None},
    }
    assert_rejected(
        graph,
        "node 'j': cannot pair its inputs by lineage: input 'e' carries only the items that failed (through error "
        "node 'e'), so a group could wait for an item that never comes; set 'aggregate_inputs': false on 'j' to "
        "merge its inputs in arrival order instead",
    )


@pytest.mark.parametrize("size", [0, -1, True, 2.0])
def test_plumber_queue_size_must_be_a_positive_int(size: Any) -> None:
    assert_rejected(good(), f"queue_size must be an int >= 1 (every edge is bounded), got {size!r}", queue_size=size)


# --- nesting: a graph is checked without recursing into user data ---------------------------------

NODE_TOO_DEEP = "nested more than 100 levels deep (dicts, lists, tuples and sets inside one another)"


def nested(depth: int, kind: type = list) -> Any:
    value: Any = kind()
    for _ in range(depth - 1):
        value = kind([value])
    return value


async def takes_anything(processor: Any, q_elt: Any, **kwargs: Any) -> Any:
    return q_elt


@pytest.mark.parametrize("depth", [MAX_NESTING - 1, 5000], ids=["one-past-the-limit", "5000"])
@pytest.mark.parametrize("where", ["args", "properties", "key"])
def test_a_node_nested_too_deep_is_refused_naming_it(depth: int, where: str) -> None:
    # the node's entry is level 1 and its 'args' level 2: a value there of depth 99 is level 101
    graph = good()
    if where == "args":
        graph["nodes"]["rev"]["args"] = {"v": nested(depth)}
    elif where == "properties":
        graph["nodes"]["rev"]["properties"] = {"timeout": nested(depth)}
    else:
        graph["nodes"]["rev"]["args"] = {"v": {nested(depth, tuple): 1}}
    assert_rejected(graph, f"node 'rev': {NODE_TOO_DEEP}")


def test_a_node_nested_to_the_limit_is_accepted() -> None:
    graph = good()
    deep = nested(MAX_NESTING - 2)
    graph["nodes"]["rev"] = {"coro": takes_anything, "args": {"v": deep}}
    assert Plumber(graph).spec.nodes["rev"].args == {"v": deep}


def test_args_that_contain_themselves_are_accepted_as_before() -> None:
    loop: list[Any] = []
    loop.append(loop)
    graph = good()
    graph["nodes"]["rev"] = {"coro": takes_anything, "args": {"v": loop}}
    assert Plumber(graph).spec.nodes["rev"].args["v"] is loop


def test_successors_nested_too_deep_are_refused_naming_the_node() -> None:
    graph = good()
    graph["graph"]["rev"] = [nested(5000)]
    assert_rejected(graph, f"node 'rev': unknown successor a list {NODE_TOO_DEEP} (known nodes: inp, out, rev)")


def test_a_node_name_nested_too_deep_is_refused() -> None:
    graph = good()
    name = nested(5000, tuple)
    graph["nodes"][name] = {"coro": add_one}
    graph["graph"][name] = None
    assert_rejected(graph, f"node names must be non-empty strings, got a tuple {NODE_TOO_DEEP}")


def test_the_same_list_shared_many_times_over_is_walked_once() -> None:
    shared: Any = [0] * 10
    for _ in range(60):  # 10 ** 60 paths through 60 distinct lists
        shared = [shared] * 10
    graph = good()
    graph["nodes"]["rev"] = {"coro": takes_anything, "args": {"v": shared[:1]}}
    assert Plumber(graph).spec.nodes["rev"].args["v"][0] is shared[0]


# --- coro names through a Registry: its own names are checked where they are given ---------------

REGISTRY_NAME = "Registry: a name must be a non-empty string without '.' or ':'"


@pytest.mark.parametrize("name", [1, None, "", "a.b", "pkg:f", ("a",)])
def test_a_registry_refuses_a_name_no_coro_could_ever_name(name: Any) -> None:
    message = f"^{re.escape(f'{REGISTRY_NAME}, got {name!r}')}$"
    with pytest.raises(ValueError, match=message):
        Registry({"fine": add_one, name: add_one})
    registry = Registry()
    with pytest.raises(ValueError, match=message):
        registry.add(name, add_one)
    if name is not None:  # register() without a name takes the function's own
        with pytest.raises(ValueError, match=message):
            registry.register(name)(add_one)
    assert name not in registry  # nothing was registered


@pytest.mark.parametrize("prefix", [1, "", None, "pkg:mod"])
def test_a_registry_refuses_an_import_prefix_that_is_not_a_module_name(prefix: Any) -> None:
    message = f"Registry: imports must be True, False or module names, got {prefix!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Registry(imports=["demos", prefix])


def test_an_unknown_name_lists_the_registered_ones_in_order() -> None:
    registry = Registry({"source": source, "b": add_one, "a": add_one, "sink": sink})
    graph = {
        "nodes": {"inp": {"coro": "source"}, "rev": {"coro": "missing"}, "out": {"coro": "sink"}},
        "graph": {"inp": ["rev"], "rev": ["out"], "out": None},
    }
    assert_rejected(
        graph,
        "node 'rev': coro_map could not resolve coro 'missing': LookupError(\"'missing' is not registered "
        '(registered names: a, b, sink, source)")',
        registry,
    )


# --- any values in a graph: it builds, or one GraphError in one line --------------------------------


async def any_source(processor: Any, output_q: Any, **kwargs: Any) -> None:
    await output_q.put(1)


async def any_generator(item: Any, **kwargs: Any) -> Any:
    yield item


def any_blocking(item: Any, **kwargs: Any) -> Any:
    return item


ANY_REGISTRY = Registry({"src": any_source, "f": takes_anything, "gen": any_generator, "blocking": any_blocking})
NUMBERS = st.one_of(
    st.floats(),
    st.integers(min_value=-(2**1100), max_value=2**1100),
    st.integers(-3, 200),
    st.sampled_from([0, 1, 0.5, True, False, None]),
)
WORDS = st.sampled_from(["f", "src", "fail", "skip", "thread", "process", "item", "processor", "a", "b", "c"])
KEYS = st.one_of(st.text(max_size=4), st.integers(-3, 3), st.none(), st.booleans(), st.floats(allow_nan=False))
# Past the recursion limit too: hypothesis raises the limit while it runs a test.
DEEP = st.sampled_from([MAX_NESTING - 3, MAX_NESTING + 1, 5000]).map(nested)
VALUES = st.one_of(
    st.recursive(
        st.one_of(NUMBERS, WORDS, st.text(max_size=4)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3), st.tuples(inner)
        ),
        max_leaves=6,
    ),
    DEEP,
)
RETRY_FIELDS = st.sampled_from(["max_attempts", "backoff_factor", "max_backoff", "jitter", "retry_on"])
RETRY = st.one_of(VALUES, st.dictionaries(st.one_of(RETRY_FIELDS, KEYS), st.one_of(NUMBERS, VALUES), max_size=4))
PROPERTIES = st.tuples(
    st.dictionaries(st.one_of(st.sampled_from(PROPERTY_NAMES), KEYS), st.one_of(NUMBERS, WORDS, VALUES), max_size=3),
    st.fixed_dictionaries({}, optional={"retry": RETRY}),
).map(lambda parts: {**parts[0], **parts[1]})


@st.composite
def graphs_with_any_values(draw: st.DrawFn) -> dict[str, Any]:
    """A DAG of 1 to 4 registered nodes whose args and properties are anything."""
    names = ["a", "b", "c", "d"][: draw(st.integers(1, 4))]
    nodes: dict[str, Any] = {}
    successors: dict[str, list[str]] = {name: [] for name in names}
    for i, name in enumerate(names):
        entry: dict[str, Any] = {"coro": "src" if i == 0 else draw(st.sampled_from(["f", "gen", "blocking", "src"]))}
        if draw(st.booleans()):
            entry["args"] = draw(st.dictionaries(st.text(min_size=1, max_size=3), VALUES, max_size=2))
        if draw(st.booleans()):
            entry["properties"] = draw(PROPERTIES)
        nodes[name] = entry
        if i:
            for pred in draw(st.lists(st.sampled_from(names[:i]), min_size=1, max_size=2, unique=True)):
                successors[pred].append(name)
    return {"nodes": nodes, "graph": {name: succ or None for name, succ in successors.items()}}


@settings(max_examples=400, deadline=None)
@given(graphs_with_any_values())
def test_any_values_in_a_graph_build_it_or_raise_one_graph_error_in_one_line(graph: dict[str, Any]) -> None:
    try:
        Plumber(graph, ANY_REGISTRY)
    except GraphError as exc:
        message = str(exc)
        assert "\n" not in message
        assert message.startswith("node '")
