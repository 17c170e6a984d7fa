"""The flow syntax: texts compiled to exact wiring and properties, errors at exact columns, graphs that run."""

from __future__ import annotations

import asyncio
import copy
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipelines
from pipelines import Failure, GraphError, Plumber
from pipelines.flow import OPTION_NAMES, Flow, apply_flow, parse_flow
from pipelines.properties import PROPERTY_NAMES
from pipelines.testing import VirtualClock

MAX_NESTING = 100  # the documented limit of nesting in graphs, files and flows


def wiring(text: str) -> dict[str, list[str]]:
    return parse_flow(text).successors


def props(text: str) -> dict[str, dict[str, Any]]:
    return parse_flow(text).properties


# --- valid flows ---------------------------------------------------------------------------------


def test_a_chain_lists_every_node_in_order_of_first_appearance() -> None:
    flow = parse_flow("a -> b -> c")
    assert flow == Flow(nodes=("a", "b", "c"), successors={"a": ["b"], "b": ["c"], "c": []}, properties={})


def test_an_empty_text_or_only_comments_is_an_empty_flow() -> None:
    assert parse_flow("") == Flow(nodes=(), successors={}, properties={})
    assert parse_flow("# nothing\n\n   ;;\n") == Flow(nodes=(), successors={}, properties={})


def test_a_lone_node_has_no_successors() -> None:
    assert parse_flow("solo") == Flow(nodes=("solo",), successors={"solo": []}, properties={})


def test_inputs_through_join_arrows_are_joined() -> None:
    assert wiring("a |-> c; b |-> c") == {"a": ["c"], "c": [], "b": ["c"]}
    assert props("a |-> c; b |-> c") == {"c": {"aggregate_inputs": True}}


def test_inputs_through_plain_arrows_are_merged() -> None:
    assert wiring("a -> c; b -> c") == {"a": ["c"], "c": [], "b": ["c"]}
    assert props("a -> c; b -> c") == {"c": {"aggregate_inputs": False}}


def test_a_node_with_a_single_input_gets_no_aggregate_inputs_whatever_the_arrow() -> None:
    assert props("a |-> b") == {}
    assert props("a -> b") == {}
    assert props("a |-> b; a |-> b") == {}  # the same edge twice is one input


def test_parallel_branches_share_their_predecessor_and_successor() -> None:
    flow = parse_flow("x -> (a || b) -> y")
    assert flow.successors == {"x": ["a", "b"], "a": ["y"], "b": ["y"], "y": []}
    assert flow.properties == {"y": {"aggregate_inputs": False}}


def test_parallel_binds_tighter_than_the_arrows() -> None:
    assert parse_flow("a -> b || c -> d") == parse_flow("a -> (b || c) -> d")
    assert parse_flow("a |-> b || c |-> d") == parse_flow("a |-> (b || c) |-> d")
    assert wiring("a || b -> c") == {"a": ["c"], "b": ["c"], "c": []}


def test_arrows_are_left_associative_over_groups() -> None:
    flow = parse_flow("(a -> b) || c -> d")
    assert flow.nodes == ("a", "b", "c", "d")
    assert flow.successors == {"a": ["b"], "b": ["d"], "c": ["d"], "d": []}


def test_a_group_connects_its_entries_and_its_exits() -> None:
    # entries of the group are a and c, exits b and c
    assert wiring("x -> ((a -> b) || c) |-> y") == {
        "x": ["a", "c"],
        "a": ["b"],
        "b": ["y"],
        "c": ["y"],
        "y": [],
    }


def test_a_root_level_parallel_declares_both_branches() -> None:
    assert parse_flow("a || b") == Flow(nodes=("a", "b"), successors={"a": [], "b": []}, properties={})


def test_successors_keep_the_order_of_appearance_without_duplicates() -> None:
    flow = parse_flow("a -> c\na -> b\na -> (c || d)\na -> b")
    assert flow.successors["a"] == ["c", "b", "d"]
    assert flow.nodes == ("a", "c", "b", "d")


def test_outcome_branches_set_the_error_node_and_the_successors() -> None:
    flow = parse_flow("src -> b (0 -> f, 1 -> s)")
    assert flow.successors == {"src": ["b"], "b": ["s"], "f": [], "s": []}
    assert flow.properties == {"b": {"on_error": "f"}}


def test_outcome_branches_in_either_order() -> None:
    assert parse_flow("b (1 -> s, 0 -> f)").successors == {"b": ["s"], "s": [], "f": []}
    assert props("b (1 -> s, 0 -> f)") == {"b": {"on_error": "f"}}


def test_the_exits_of_outcome_branches_are_the_exits_of_both() -> None:
    flow = parse_flow("b (0 -> f, 1 -> s) -> d")
    assert flow.successors == {"b": ["s"], "f": ["d"], "s": ["d"], "d": []}
    assert flow.properties == {"b": {"on_error": "f"}, "d": {"aggregate_inputs": False}}


def test_without_a_success_branch_the_node_itself_goes_on() -> None:
    flow = parse_flow("b (0 -> f) |-> d")
    assert flow.successors == {"b": ["d"], "f": ["d"], "d": []}
    assert flow.properties == {"b": {"on_error": "f"}, "d": {"aggregate_inputs": True}}


def test_only_a_success_branch_sets_no_error_node() -> None:
    flow = parse_flow("b (1 -> s) -> d")
    assert flow.successors == {"b": ["s"], "s": ["d"], "d": []}
    assert flow.properties == {}


def test_outcome_branches_are_whole_expressions() -> None:
    flow = parse_flow("b (1 -> s -> t || u, 0 -> f -> g)")
    assert flow.successors == {"b": ["s"], "s": ["t", "u"], "t": [], "u": [], "f": ["g"], "g": []}
    assert flow.properties == {"b": {"on_error": "f"}}
    assert wiring("b (1 -> (s || t))") == {"b": ["s", "t"], "s": [], "t": []}
    assert props("b (0 -> (f -> g))") == {"b": {"on_error": "f"}}


def test_a_join_arrow_in_a_success_branch_joins() -> None:
    assert props("a -> (b || c); b (1 |-> d); c |-> d") == {"d": {"aggregate_inputs": True}}


def test_an_error_node_given_in_another_statement() -> None:
    flow = parse_flow("src -> b -> c\nb (0 -> f)")
    assert flow.successors == {"src": ["b"], "b": ["c"], "c": [], "f": []}
    assert flow.properties == {"b": {"on_error": "f"}}


def test_retry_in_both_orders() -> None:
    assert props("a * 3") == {"a": {"retry": {"max_attempts": 3}}}
    assert props("2 * a") == {"a": {"retry": {"max_attempts": 2}}}
    assert wiring("src -> 4 * a -> b * 2") == {"src": ["a"], "a": ["b"], "b": []}


def test_retry_with_options_and_outcome_branches() -> None:
    expected = {"b": {"workers": 2, "retry": {"max_attempts": 3}, "on_error": "f"}}
    assert props("b[workers=2] * 3 (0 -> f, 1 -> s)") == expected
    assert props("3 * b[workers=2] (0 -> f, 1 -> s)") == expected


def test_options_of_every_kind() -> None:
    text = (
        "a -> b[workers=4, queue_size=10, ordered=true, timeout=2.5, on_error=skip, aggregate_inputs=false, style=item]"
    )
    assert props(text) == {
        "b": {
            "workers": 4,
            "queue_size": 10,
            "ordered": True,
            "timeout": 2.5,
            "on_error": "skip",
            "aggregate_inputs": False,
            "style": "item",
        }
    }


def test_option_values_quoted_exponent_and_int_timeout() -> None:
    assert props("a -> b[style='item', on_error=\"skip\", timeout=1e1]") == {
        "b": {"style": "item", "on_error": "skip", "timeout": 10.0}
    }
    assert props("a -> b[timeout=3]") == {"b": {"timeout": 3}}


def test_options_allow_a_trailing_comma_and_empty_brackets() -> None:
    assert props("a -> b[workers=2,]") == {"b": {"workers": 2}}
    assert parse_flow("a[] -> b[]") == parse_flow("a -> b")


def test_options_are_the_scalar_properties() -> None:
    assert {"aggregate_inputs", "on_error", "ordered", "queue_size", "style", "timeout", "workers"} <= set(OPTION_NAMES)
    assert set(OPTION_NAMES) == set(PROPERTY_NAMES) - {
        "events",
        "retry",
        "route",
        "routes",
        "setup",
        "state",
        "teardown",
    }


def test_compatible_repeats_are_fine() -> None:
    text = "a[workers=2] -> b * 3\na[workers=2, workers=2] -> c; b * 3; 3 * b; b (0 -> f); b (0 -> f)"
    assert props(text) == {"a": {"workers": 2}, "b": {"retry": {"max_attempts": 3}, "on_error": "f"}}


def test_an_explicit_aggregate_inputs_that_agrees_with_the_arrows() -> None:
    assert props("a |-> c; b |-> c[aggregate_inputs=true]") == {"c": {"aggregate_inputs": True}}
    assert props("a -> c[aggregate_inputs=false]; b -> c") == {"c": {"aggregate_inputs": False}}
    assert props("a |-> c[aggregate_inputs=false]") == {"c": {"aggregate_inputs": False}}  # one input


def test_several_statements_over_several_lines_with_comments() -> None:
    text = """\
# the main line
src -> parse   # parse every line
parse -> (
    store      # a comment inside parentheses
    || index
) |->
    done

parse[workers=4,
      ordered=true]; src -> audit
"""
    flow = parse_flow(text)
    assert flow.nodes == ("src", "parse", "store", "index", "done", "audit")
    assert flow.successors == {
        "src": ["parse", "audit"],
        "parse": ["store", "index"],
        "store": ["done"],
        "index": ["done"],
        "done": [],
        "audit": [],
    }
    assert flow.properties == {"parse": {"workers": 4, "ordered": True}, "done": {"aggregate_inputs": True}}


def test_a_line_ending_with_an_operator_goes_on() -> None:
    assert parse_flow("a ->\n\n  b ||\n c\nd |->\n e *\n 2") == parse_flow("a -> b || c; d |-> e * 2")
    assert parse_flow("3 *\n a") == parse_flow("3 * a")


def test_windows_line_endings_and_tabs() -> None:
    assert parse_flow("a\t->\tb\r\nb -> c\r\n") == parse_flow("a -> b -> c")


def test_names_with_digits_and_underscores() -> None:
    assert parse_flow("_a1 -> B_2").nodes == ("_a1", "B_2")


# --- apply_flow ----------------------------------------------------------------------------------


async def a_coro(processor: Any, q_elt: Any) -> None:
    return None


def test_apply_flow_adds_wiring_and_merges_properties() -> None:
    flow = parse_flow("src -> (a || b) -> sink * 2\nb (0 -> f)")
    nodes: dict[str, dict[str, Any]] = {
        "sink": {"coro": "sink", "properties": {"workers": 3}},
        "src": {"coro": "src", "args": {"n": 1}},
        "a": {"coro": "a", "properties": {}},
        "b": {"coro": "b", "args": {}, "properties": {"on_error": "f", "ordered": True}},
        "f": {"coro": "f"},
    }
    before = copy.deepcopy(nodes)
    graph = apply_flow(flow, nodes)
    assert graph == {
        "nodes": {
            "src": {"coro": "src", "args": {"n": 1}},
            "a": {"coro": "a", "properties": {}},
            "b": {"coro": "b", "args": {}, "properties": {"on_error": "f", "ordered": True}},
            "sink": {
                "coro": "sink",
                "properties": {"workers": 3, "aggregate_inputs": False, "retry": {"max_attempts": 2}},
            },
            "f": {"coro": "f"},
        },
        "graph": {"src": ["a", "b"], "a": ["sink"], "b": ["sink"], "sink": None, "f": None},
    }
    assert list(graph["nodes"]) == list(flow.nodes) == list(graph["graph"])
    assert nodes == before
    graph["nodes"]["sink"]["properties"]["retry"]["max_attempts"] = 9
    assert flow.properties["sink"]["retry"] == {"max_attempts": 2}  # the flow shares nothing


def test_apply_flow_accepts_a_retry_that_means_the_same() -> None:
    graph = apply_flow(parse_flow("s -> a * 3"), {"s": {"coro": "s"}, "a": {"coro": "a", "properties": {"retry": 3}}})
    assert graph["nodes"]["a"]["properties"] == {"retry": 3}


@pytest.mark.parametrize(
    ("text", "nodes", "message"),
    [
        pytest.param(
            "s -> a[workers=2]",
            {"s": {"coro": "s"}, "a": {"coro": "a", "properties": {"workers": 3}}},
            "node 'a': property 'workers' is 2 in the flow but 3 in nodes",
            id="conflicting-property",
        ),
        pytest.param(
            "s -> a * 3",
            {"s": {"coro": "s"}, "a": {"coro": "a", "properties": {"retry": {"max_attempts": 3, "jitter": 0.5}}}},
            "node 'a': property 'retry' is {'max_attempts': 3} in the flow but "
            "{'max_attempts': 3, 'jitter': 0.5} in nodes",
            id="conflicting-retry",
        ),
        pytest.param(
            "a -> c; b -> c",
            {"a": {"coro": "a"}, "b": {"coro": "b"}, "c": {"coro": "c", "properties": {"aggregate_inputs": 0}}},
            "node 'c': property 'aggregate_inputs' is False in the flow but 0 in nodes",
            id="bool-is-not-int",
        ),
        pytest.param(
            "s -> a -> b",
            {"s": {"coro": "s"}, "a": {"coro": "a"}},
            "node 'b' is named in the flow but has no entry in nodes",
            id="missing-entry",
        ),
        pytest.param(
            "s -> a",
            {"s": {"coro": "s"}, "a": {"coro": "a"}, "typo": {"coro": "a"}},
            "node 'typo' has an entry in nodes but the flow never names it",
            id="unnamed-entry",
        ),
        pytest.param(
            "s -> a",
            {"s": {"coro": "s"}, "a": a_coro},
            "node 'a': its entry in nodes must be a dict with 'coro', got function",
            id="entry-not-a-dict",
        ),
        pytest.param(
            "s -> a * 2",
            {"s": {"coro": "s"}, "a": {"coro": "a", "properties": ["workers"]}},
            "node 'a': 'properties' must be a dict, got list",
            id="properties-not-a-dict",
        ),
    ],
)
def test_apply_flow_errors(text: str, nodes: dict[str, Any], message: str) -> None:
    with pytest.raises(GraphError) as info:
        apply_flow(parse_flow(text), nodes)
    assert str(info.value) == message


# --- errors --------------------------------------------------------------------------------------

# (text, expected message): the whole message, so the position, the quoted line and the caret count.
INVALID = [
    pytest.param(
        "a\na -> b -> )",
        "flow.txt:2:11: expected a node name or '(' after '->', got ')'\n    a -> b -> )\n              ^",
        id="missing-node-after-arrow",
    ),
    pytest.param(
        "a -> b ->",
        "flow.txt:1:10: expected a node name or '(' after '->', got end of input\n    a -> b ->\n             ^",
        id="arrow-at-end-of-input",
    ),
    pytest.param(
        "a -> ; b",
        "flow.txt:1:6: expected a node name or '(' after '->', got ';'\n    a -> ; b\n         ^",
        id="arrow-before-semicolon",
    ),
    pytest.param(
        "a || || b",
        "flow.txt:1:6: expected a node name or '(' after '||', got '||'\n    a || || b\n         ^",
        id="double-parallel",
    ),
    pytest.param(
        ") -> a",
        "flow.txt:1:1: expected a node name or '(' at the start of a statement, got ')'\n    ) -> a\n    ^",
        id="statement-starts-with-paren",
    ),
    pytest.param(
        "a\n  -> b",
        "flow.txt:2:3: a statement cannot start with '->' (to go on from the previous line, end that line "
        "with the operator)\n      -> b\n      ^",
        id="operator-at-start-of-line",
    ),
    pytest.param(
        "a b",
        "flow.txt:1:3: expected '->', '|->', '||', ';' or a new line, got 'b'\n    a b\n      ^",
        id="two-names",
    ),
    pytest.param(
        "a -> b )",
        "flow.txt:1:8: ')' without a matching '('\n    a -> b )\n           ^",
        id="unmatched-paren",
    ),
    pytest.param(
        "a ]",
        "flow.txt:1:3: ']' without a matching '['\n    a ]\n      ^",
        id="unmatched-bracket",
    ),
    pytest.param(
        "x -> (a || b",
        "flow.txt:1:6: '(' is never closed\n    x -> (a || b\n         ^",
        id="unclosed-group",
    ),
    pytest.param(
        "x -> (a ||\n  b\n\n# end",
        "flow.txt:1:6: '(' is never closed\n    x -> (a ||\n         ^",
        id="unclosed-group-over-lines",
    ),
    pytest.param(
        "x -> (a -> (b || c) -> d",
        "flow.txt:1:6: '(' is never closed\n    x -> (a -> (b || c) -> d\n         ^",
        id="unclosed-outer-group",
    ),
    pytest.param(
        "x -> (a; b)",
        "flow.txt:1:8: expected ')' to close the '(' at 1:6, got ';'\n    x -> (a; b)\n           ^",
        id="semicolon-inside-group",
    ),
    pytest.param(
        "x -> ()",
        "flow.txt:1:7: expected a node name or '(' after '(', got ')'\n    x -> ()\n          ^",
        id="empty-group",
    ),
    pytest.param(
        "(a || b) * 3",
        "flow.txt:1:10: a retry factor applies to a single node, not to a group in parentheses\n"
        "    (a || b) * 3\n             ^",
        id="retry-on-group",
    ),
    pytest.param(
        "(a || b)[workers=2]",
        "flow.txt:1:9: options apply to a single node, not to a group in parentheses\n"
        "    (a || b)[workers=2]\n            ^",
        id="options-on-group",
    ),
    pytest.param(
        "(a -> b) (0 -> f)",
        "flow.txt:1:10: outcome branches apply to a single node, not to a group in parentheses\n"
        "    (a -> b) (0 -> f)\n             ^",
        id="outcomes-on-group",
    ),
    pytest.param(
        "a @ b",
        "flow.txt:1:3: unexpected character '@'\n    a @ b\n      ^",
        id="illegal-character",
    ),
    pytest.param(
        "a - b",
        "flow.txt:1:3: unexpected character '-' (did you mean '->'?)\n    a - b\n      ^",
        id="lone-minus",
    ),
    pytest.param(
        "a[timeout=-1]",
        "flow.txt:1:11: unexpected character '-' (no value here can be negative)\n    a[timeout=-1]\n              ^",
        id="negative-number",
    ),
    pytest.param(
        "a[timeout=1e999]",
        "flow.txt:1:11: node 'a': property 'timeout' must be a finite number of seconds > 0, or null, got inf\n"
        "    a[timeout=1e999]\n              ^",
        id="infinite-timeout",
    ),
    pytest.param(
        "a | b",
        "flow.txt:1:3: unexpected character '|' (did you mean '||' or '|->'?)\n    a | b\n      ^",
        id="lone-bar",
    ),
    pytest.param(
        "a -> caf\u00e9",
        "flow.txt:1:9: unexpected character '\u00e9'\n    a -> caf\u00e9\n            ^",
        id="non-ascii-name",
    ),
    pytest.param(
        "a -> 2b",
        "flow.txt:1:6: a name cannot start with a digit\n    a -> 2b\n         ^",
        id="name-starting-with-digit",
    ),
    pytest.param(
        "a -> a",
        "flow.txt:1:3: edge from 'a' to itself\n    a -> a\n      ^",
        id="self-edge",
    ),
    pytest.param(
        "a -> (a || b)",
        "flow.txt:1:3: edge from 'a' to itself\n    a -> (a || b)\n      ^",
        id="self-edge-through-group",
    ),
    pytest.param(
        "a -> c\nb |-> c",
        "flow.txt:2:3: node 'c' is reached through '|->' here but through '->' at 1:3; its inputs are either "
        "all joined ('|->') or all merged ('->')\n    b |-> c\n      ^",
        id="joined-and-merged",
    ),
    pytest.param(
        "b (12 -> g)",
        "flow.txt:1:4: expected an outcome descriptor: 0 (failure), 1 (success) or a route 2..9, got '12' "
        "(there are ten descriptors, 0 to 9)\n    b (12 -> g)\n       ^",
        id="outcome-number-too-big",
    ),
    pytest.param(
        "a -> b (c || d)",
        "flow.txt:1:9: expected an outcome descriptor: 0 (failure), 1 (success) or a route 2..9, got 'c'\n"
        "    a -> b (c || d)\n            ^",
        id="name-where-outcome-expected",
    ),
    pytest.param(
        "b ()",
        "flow.txt:1:4: expected an outcome descriptor: 0 (failure), 1 (success) or a route 2..9, got ')'\n"
        "    b ()\n       ^",
        id="empty-outcomes",
    ),
    pytest.param(
        "b (0 -> f, 0 -> g)",
        "flow.txt:1:12: outcome 0 is given twice for node 'b' (first at 1:4)\n    b (0 -> f, 0 -> g)\n               ^",
        id="outcome-twice",
    ),
    pytest.param(
        "b (0 -> (f || g))",
        "flow.txt:1:9: the failure branch of 'b' must start with one node (on_error names a single error node), "
        "got f, g\n    b (0 -> (f || g))\n            ^",
        id="two-error-nodes",
    ),
    pytest.param(
        "b (0 -> b)",
        "flow.txt:1:9: node 'b' cannot be its own error node\n    b (0 -> b)\n            ^",
        id="own-error-node",
    ),
    pytest.param(
        "b (0 |-> f)",
        "flow.txt:1:6: use '->' after 0: failed items reach the error node one by one, never joined\n"
        "    b (0 |-> f)\n         ^",
        id="join-arrow-to-error-node",
    ),
    pytest.param(
        "b (1 s)",
        "flow.txt:1:6: expected '->' after outcome 1, got 's'\n    b (1 s)\n         ^",
        id="outcome-without-arrow",
    ),
    pytest.param(
        "b (0 -> f 1 -> s)",
        "flow.txt:1:11: expected ',' or ')' to close the '(' at 1:3, got '1'\n    b (0 -> f 1 -> s)\n              ^",
        id="outcomes-missing-comma",
    ),
    pytest.param(
        "b (1 -> s) (0 -> f)",
        "flow.txt:1:12: expected '->', '|->', '||', ';' or a new line, got '('\n"
        "    b (1 -> s) (0 -> f)\n               ^",
        id="two-outcome-lists",
    ),
    pytest.param(
        "a -> b (0 -> f",
        "flow.txt:1:8: '(' is never closed\n    a -> b (0 -> f\n           ^",
        id="unclosed-outcomes",
    ),
    pytest.param(
        "0 -> f",
        "flow.txt:1:1: an outcome branch must follow a node, as in 'b (0 -> f, 1 -> s)'\n    0 -> f\n    ^",
        id="outcome-at-root",
    ),
    pytest.param(
        "b (0 -> f)\nb (0 -> g)",
        "flow.txt:2:4: node 'b': '0 -> g' conflicts with '0 -> f' at 1:4\n    b (0 -> g)\n       ^",
        id="two-error-nodes-over-statements",
    ),
    pytest.param(
        "b[on_error=skip] (0 -> f)",
        "flow.txt:1:19: node 'b': '0 -> f' conflicts with on_error=skip at 1:3\n"
        "    b[on_error=skip] (0 -> f)\n                      ^",
        id="error-node-and-skip",
    ),
    pytest.param(
        "a * 1",
        "flow.txt:1:5: a retry factor must be an int >= 2 (attempts in all), got 1\n    a * 1\n        ^",
        id="retry-one",
    ),
    pytest.param(
        "2.5 * a",
        "flow.txt:1:1: a retry factor must be an int >= 2 (attempts in all), got 2.5\n    2.5 * a\n    ^",
        id="retry-float",
    ),
    pytest.param(
        "a * b",
        "flow.txt:1:5: expected a retry factor after '*', got 'b'\n    a * b\n        ^",
        id="retry-by-name",
    ),
    pytest.param(
        "3 -> a",
        "flow.txt:1:1: an outcome branch must follow a node, as in 'b (0 -> f, 1 -> s)'\n    3 -> a\n    ^",
        id="number-then-arrow",
    ),
    pytest.param(
        "3 a",
        "flow.txt:1:3: expected '*' after the retry factor 3, got 'a'\n    3 a\n      ^",
        id="factor-without-star",
    ),
    pytest.param(
        "3 * -> a",
        "flow.txt:1:5: expected a node name after '3 *', got '->'\n    3 * -> a\n        ^",
        id="prefix-retry-without-node",
    ),
    pytest.param(
        "a * 2 * 3",
        "flow.txt:1:7: node 'a' already has a retry factor\n    a * 2 * 3\n          ^",
        id="retry-twice-in-a-term",
    ),
    pytest.param(
        "a * 3; a * 4",
        "flow.txt:1:12: node 'a': retry factor 4 conflicts with retry factor 3 at 1:5\n"
        "    a * 3; a * 4\n               ^",
        id="conflicting-retries",
    ),
    pytest.param(
        "a[worker=4]",
        # the known options follow the properties, which other features add to
        f"flow.txt:1:3: unknown option 'worker' (known options: {', '.join(OPTION_NAMES)})\n    a[worker=4]\n      ^",
        id="unknown-option",
    ),
    pytest.param(
        "a[retry=3]",
        "flow.txt:1:3: 'retry' is not an option: write 'a * 3' for 3 attempts\n    a[retry=3]\n      ^",
        id="retry-as-option",
    ),
    pytest.param(
        "a[setup=open]",
        "flow.txt:1:3: 'setup' is not an option: a hook is a function, give it in the node's 'properties'\n"
        "    a[setup=open]\n      ^",
        id="setup-as-option",
    ),
    pytest.param(
        "a -> b[workers=0]",
        "flow.txt:1:16: node 'b': property 'workers' must be an int >= 1, got 0\n"
        "    a -> b[workers=0]\n                   ^",
        id="workers-zero",
    ),
    pytest.param(
        "a -> b[ordered=yes]",
        "flow.txt:1:16: node 'b': property 'ordered' must be true or false, got 'yes'\n"
        "    a -> b[ordered=yes]\n                   ^",
        id="ordered-not-a-bool",
    ),
    pytest.param(
        "a -> b[queue_size='10']",
        "flow.txt:1:19: node 'b': property 'queue_size' must be an int >= 1 (every edge is bounded), got '10'\n"
        "    a -> b[queue_size='10']\n                      ^",
        id="quoted-number",
    ),
    pytest.param(
        "a -> b[style=fancy]",
        "flow.txt:1:14: node 'b': property 'style' must be 'processor' (f(processor, q_elt)) or 'item' (f(item)), "
        "got 'fancy'\n    a -> b[style=fancy]\n                 ^",
        id="unknown-style",
    ),
    pytest.param(
        "a -> b[on_error=report]",
        "flow.txt:1:17: on_error must be fail or skip here; route failures to an error node with 'b (0 -> node)'\n"
        "    a -> b[on_error=report]\n                    ^",
        id="error-node-as-option",
    ),
    pytest.param(
        "a[workers 4]",
        "flow.txt:1:11: expected '=' after option 'workers', got '4'\n    a[workers 4]\n              ^",
        id="option-without-equals",
    ),
    pytest.param(
        "a[workers=]",
        "flow.txt:1:11: expected a value for option 'workers' (a number, true, false, a word or a quoted string), "
        "got ']'\n    a[workers=]\n              ^",
        id="option-without-value",
    ),
    pytest.param(
        "a[workers=2 ordered=true]",
        "flow.txt:1:13: expected ',' or ']' to close the '[' at 1:2, got 'ordered'\n"
        "    a[workers=2 ordered=true]\n                ^",
        id="options-missing-comma",
    ),
    pytest.param(
        "a[workers=2,\n  ordered=true",
        "flow.txt:1:2: '[' is never closed\n    a[workers=2,\n     ^",
        id="unclosed-options",
    ),
    pytest.param(
        "a[workers=2] -> b\na[workers=3]",
        "flow.txt:2:3: node 'a': workers=3 conflicts with workers=2 at 1:3\n    a[workers=3]\n      ^",
        id="conflicting-options",
    ),
    pytest.param(
        "a[timeout=1] -> b; a[timeout=1.0]",
        "flow.txt:1:22: node 'a': timeout=1.0 conflicts with timeout=1 at 1:3\n"
        "    a[timeout=1] -> b; a[timeout=1.0]\n                         ^",
        id="int-and-float-differ",
    ),
    pytest.param(
        "a -> c; b -> c; c[aggregate_inputs=true]",
        "flow.txt:1:19: node 'c': aggregate_inputs=true conflicts with its inputs merged through '->' at 1:3\n"
        "    a -> c; b -> c; c[aggregate_inputs=true]\n                      ^",
        id="aggregate-against-arrows",
    ),
    pytest.param(
        "a[style='item]",
        "flow.txt:1:9: this quoted string is never closed on its line\n    a[style='item]\n            ^",
        id="unclosed-string",
    ),
    pytest.param(
        "\ta ->\t@",
        "flow.txt:1:7: unexpected character '@'\n    \ta ->\t@\n    \t    \t^",
        id="caret-keeps-tabs",
    ),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_flow_is_reported_at_its_column(text: str, message: str) -> None:
    with pytest.raises(GraphError) as info:
        parse_flow(text, filename="flow.txt")
    assert str(info.value) == message


def test_the_default_filename() -> None:
    with pytest.raises(GraphError, match=r"^<flow>:1:1: "):
        parse_flow("->")


# --- running compiled graphs ---------------------------------------------------------------------


@pipelines.node
async def numbers(count: int) -> Any:
    for i in range(count):
        yield i


async def test_error_branches_run_end_to_end() -> None:
    ok: list[float] = []
    failed: list[tuple[str, Any, str]] = []

    @pipelines.node
    async def invert(x: int) -> float:
        return 1 / x

    @pipelines.node
    async def show(x: float) -> None:
        ok.append(x)

    @pipelines.node
    async def report(failure: Failure) -> None:
        failed.append((failure.node, failure.item, type(failure.exception).__name__))

    flow = parse_flow("numbers -> invert (0 -> report, 1 -> show)")
    graph = apply_flow(
        flow,
        {
            "numbers": {"coro": numbers, "args": {"count": 5}},
            "invert": {"coro": invert},
            "show": {"coro": show},
            "report": {"coro": report},
        },
    )
    result = await Plumber(graph).run()
    assert ok == [1.0, 0.5, 1 / 3, 0.25]
    assert failed == [("invert", 0, "ZeroDivisionError")]
    assert (result["invert"].failed, result["report"].items_in) == (1, 1)


async def test_join_and_merge_arrows_run_end_to_end() -> None:
    pairs: list[Any] = []
    merged: list[Any] = []

    @pipelines.node
    async def double(x: int) -> int:
        return 2 * x

    @pipelines.node
    async def square(x: int) -> int:
        return x * x

    @pipelines.node
    async def pair(both: tuple[int, int]) -> None:
        pairs.append(both)

    @pipelines.node
    async def each(x: int) -> None:
        merged.append(x)

    flow = parse_flow("numbers -> (double || square)\ndouble |-> pair; square |-> pair\n(double || square) -> each")
    assert flow.properties == {"pair": {"aggregate_inputs": True}, "each": {"aggregate_inputs": False}}
    coros = {"numbers": numbers, "double": double, "square": square, "pair": pair, "each": each}
    nodes = {name: {"coro": coro} for name, coro in coros.items()}
    nodes["numbers"]["args"] = {"count": 4}
    await Plumber(apply_flow(flow, nodes)).run()
    assert sorted(pairs) == [(0, 0), (2, 1), (4, 4), (6, 9)]  # (double, square): the order of 'graph'
    assert sorted(merged) == [0, 0, 1, 2, 4, 4, 6, 9]


async def test_parallel_branches_really_run_concurrently() -> None:
    # Each branch waits for the other to have started: run one after the other, they would hang.
    left_started, right_started = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    @pipelines.node
    async def left(x: int) -> str:
        left_started.set()
        await right_started.wait()
        return f"left {x}"

    @pipelines.node
    async def right(x: int) -> str:
        right_started.set()
        await left_started.wait()
        return f"right {x}"

    @pipelines.node
    async def sink(x: str) -> None:
        seen.append(x)

    flow = parse_flow("numbers -> (left || right) -> sink")
    nodes = {
        "numbers": {"coro": numbers, "args": {"count": 1}},
        "left": {"coro": left},
        "right": {"coro": right},
        "sink": {"coro": sink},
    }
    async with asyncio.timeout(30):  # only bounds a failure: the passing run never waits on it
        await Plumber(apply_flow(flow, nodes)).run()
    assert sorted(seen) == ["left 0", "right 0"]


@pytest.mark.asyncio(loop_factories=["asyncio"])  # virtual time needs asyncio's own loop
async def test_retry_and_options_run_end_to_end(virtual_clock: VirtualClock) -> None:
    attempts: dict[int, int] = {}
    seen: list[int] = []

    @pipelines.node
    async def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if x == 1 and attempts[x] < 3:
            raise ConnectionError("try again")
        return x

    @pipelines.node
    async def sink(x: int) -> None:
        seen.append(x)

    flow = parse_flow("numbers -> flaky[workers=2, ordered=true] * 3 -> sink")
    nodes = {"numbers": {"coro": numbers, "args": {"count": 3}}, "flaky": {"coro": flaky}, "sink": {"coro": sink}}
    result = await Plumber(apply_flow(flow, nodes)).run()
    assert seen == [0, 1, 2]
    assert attempts == {0: 1, 1: 3, 2: 1}
    assert (result["flaky"].retried, result["flaky"].failed) == (2, 0)


# --- nesting ---------------------------------------------------------------------------------------


def test_parentheses_nested_to_the_limit_parse() -> None:
    text = "(" * MAX_NESTING + "a -> b" + ")" * MAX_NESTING
    assert wiring(text) == {"a": ["b"], "b": []}


def test_outcome_branches_nested_to_the_limit_parse() -> None:
    text = "".join(f"n{i} (1 -> " for i in range(MAX_NESTING)) + "last" + ")" * MAX_NESTING
    assert wiring(text) == {
        **{f"n{i}": [f"n{i + 1}"] for i in range(MAX_NESTING - 1)},
        f"n{MAX_NESTING - 1}": ["last"],
        "last": [],
    }


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 250, 5000])
def test_parentheses_nested_too_deep_are_reported_at_the_first_one_too_many(depth: int) -> None:
    text = "(" * depth + "a" + ")" * depth
    with pytest.raises(GraphError) as info:
        parse_flow(text, filename="flow.txt")
    column = MAX_NESTING + 1
    assert str(info.value) == (
        f"flow.txt:1:{column}: parentheses nested more than {MAX_NESTING} deep\n    {text}\n    {' ' * (column - 1)}^"
    )


def test_outcome_branches_nested_too_deep_are_reported_at_the_first_one_too_many() -> None:
    text = "".join(f"n{i} (1 -> " for i in range(250)) + "last" + ")" * 250
    with pytest.raises(GraphError) as info:
        parse_flow(text, filename="flow.txt")
    column = text.index(f"n{MAX_NESTING} (") + len(f"n{MAX_NESTING} (")
    assert str(info.value).splitlines()[0] == f"flow.txt:1:{column}: parentheses nested more than {MAX_NESTING} deep"
    assert str(info.value).splitlines()[2] == "    " + " " * (column - 1) + "^"


# Pieces of flow text, valid and not, that random texts are made of; some nest deep at once.
FLOW_PIECES = [
    *("a", "b", "c", "x1", " ", "\n", "\t", "\r", ";", "#", "->", "|->", "||", "*", ",", "=", "(", ")", "[", "]"),
    *("0", "1", "2", "3", "0.5", "1e999", "true", "'s'", '"', "@", "-", "\u00e9", "0 -> ", "1 -> ", "1 |-> "),
    *("workers", "timeout", "retry", "on_error", "skip", "aggregate_inputs", "queue_size", "style", "item"),
    *("(" * 60, ")" * 60, "a (1 -> " * 30),
]


SOUP = st.lists(st.sampled_from(FLOW_PIECES), max_size=30).map("".join)
# Soup inside parentheses or nested outcome branches, past the recursion limit too (hypothesis
# raises that limit while it runs a test, so 3,000 levels).
NESTED = st.tuples(
    SOUP, st.integers(0, 300) | st.sampled_from([99, 100, 101, 250, 3000]), st.sampled_from(["(", "a (1 -> "]), SOUP
).map(lambda t: t[2] * t[1] + t[0] + ")" * t[1] + t[3])


@settings(max_examples=500, deadline=None)
@given(st.one_of(SOUP, NESTED))
def test_any_text_compiles_or_is_an_error_at_its_line_and_column(text: str) -> None:
    try:
        parse_flow(text, filename="flow.txt")
    except GraphError as exc:
        first, line, caret = str(exc).split("\n")
        assert re.match(r"^flow\.txt:\d+:\d+: \S", first)
        assert line.startswith("    ")
        assert caret.strip() == "^"
