"""pipelines.files: graph files and --set assignments; every damaged file is one GraphError naming it."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import GraphError, Plumber, Registry
from pipelines.files import load_graph, set_args

MAX_NESTING = 100  # the documented limit of nesting in graphs, files and flows

TOO_DEEP = f"nested more than {MAX_NESTING} levels deep (mappings and lists inside one another)"


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def graph_with_arg(value: str) -> str:
    """A JSON graph file whose node 'a' has the arg v given as JSON text: v sits 4 levels deep."""
    return '{"nodes": {"a": {"coro": "m:f", "args": {"v": ' + value + '}}}, "graph": {"a": null}}'


def nested_lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("suffix", ["json", "yaml"])
@pytest.mark.parametrize("depth", [MAX_NESTING - 3, 150, 3000], ids=["one-past-the-limit", "150", "3000"])
def test_a_file_nested_too_deep_is_one_graph_error(tmp_path: Path, suffix: str, depth: int) -> None:
    # JSON is YAML too; at 3000 levels both parsers run out of stack, at 150 they do not
    path = write(tmp_path, f"deep.{suffix}", graph_with_arg(nested_lists(depth)))
    with pytest.raises(GraphError, match=exactly(f"{path}: {TOO_DEEP}")):
        load_graph(path)


@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_a_file_nested_to_the_limit_loads(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path, f"deep.{suffix}", graph_with_arg(nested_lists(MAX_NESTING - 4)))
    value = load_graph(path)["nodes"]["a"]["args"]["v"]
    depth = 0
    while value is not None:
        depth += 1
        value = value[0] if value else None
    assert depth == MAX_NESTING - 4


@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_a_file_that_is_only_brackets_is_one_graph_error(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path, f"brackets.{suffix}", nested_lists(100_000))
    with pytest.raises(GraphError, match=exactly(f"{path}: {TOO_DEEP}")):
        load_graph(path)


@pytest.mark.parametrize(
    "value", ["&loop [*loop]", "&loop {inner: *loop}", "&loop [1, [2, *loop]]"], ids=["list", "mapping", "deeper"]
)
def test_a_yaml_value_that_contains_itself_is_refused(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, "loop.yaml", f"nodes:\n  a: {{coro: 'm:f', args: {{v: {value}}}}}\ngraph: {{a: null}}\n")
    message = f"{path}: a value contains itself (a YAML anchor used inside its own definition)"
    with pytest.raises(GraphError, match=exactly(message)):
        load_graph(path)


def test_yaml_anchors_shared_many_times_over_are_walked_once(tmp_path: Path) -> None:
    # 40 levels of 10 aliases each: 10 ** 40 paths, 40 distinct lists
    lines = ["l0: &l0 [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 40)]
    anchors = "\n".join("      " + line for line in lines)
    path = write(tmp_path, "shared.yaml", f"nodes:\n  a:\n    coro: 'm:f'\n    args:\n{anchors}\ngraph: {{a: null}}\n")
    args = load_graph(path)["nodes"]["a"]["args"]
    assert args["l39"][0] is args["l39"][9] is args["l38"]


def test_an_integer_too_long_to_read_is_one_graph_error(tmp_path: Path) -> None:
    limit = "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; use "
    limit += "sys.set_int_max_str_digits() to increase the limit"
    path = write(tmp_path, "long.json", graph_with_arg("1" * 5000))
    with pytest.raises(GraphError, match=exactly(f"{path}: invalid JSON: {limit}")):
        load_graph(path)
    path = write(tmp_path, "long.yaml", graph_with_arg("1" * 5000))
    message = f"{path}:1:47: invalid YAML: cannot read '11111111111111111111'... as a YAML int: {limit}"
    with pytest.raises(GraphError, match=exactly(message)):
        load_graph(path)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2001-02-30", "cannot read '2001-02-30' as a YAML timestamp: day is out of range for month"),
        ("!!int ''", "cannot read '' as a YAML int"),
        ("!!float ''", "cannot read '' as a YAML float"),
        ("!!bool maybe", "cannot read 'maybe' as a YAML bool"),
        ("!!timestamp ''", "cannot read '' as a YAML timestamp"),
        ("!!set [1]", "expected a mapping node, but found sequence"),
    ],
)
def test_a_yaml_value_python_cannot_build_is_reported_at_the_value(tmp_path: Path, value: str, problem: str) -> None:
    # PyYAML's constructors raise ValueError, IndexError, KeyError or AttributeError on these
    path = write(tmp_path, "value.yaml", f"nodes:\n  a: {{coro: 'm:f', args: {{v: {value}}}}}\ngraph: {{a: null}}\n")
    with pytest.raises(GraphError, match=exactly(f"{path}:2:30: invalid YAML: {problem}")):
        load_graph(path)


def test_a_character_yaml_does_not_allow_is_reported_in_one_line_at_its_place(tmp_path: Path) -> None:
    path = write(tmp_path, "nul.yaml", "nodes:\n  a: {coro: 'm:\x00f'}\ngraph: {a: null}\n")
    message = f"{path}:2:16: invalid YAML: unacceptable character #x0000: special characters are not allowed"
    with pytest.raises(GraphError, match=exactly(message)):
        load_graph(path)


@pytest.mark.parametrize("value", ["!!int ", "!!bool x", "2001-02-30", "[1, !!float '']"])
def test_a_set_value_yaml_cannot_build_is_taken_as_text(value: str) -> None:
    assert set_args(GRAPH, [f"a.v={value}"])["nodes"]["a"]["args"] == {"v": value}


GRAPH: dict[str, Any] = {"nodes": {"a": {"coro": "m:f"}}, "graph": {"a": None}}


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 3000])
def test_a_set_value_nested_too_deep_is_one_graph_error(depth: int) -> None:
    with pytest.raises(GraphError, match=exactly(f"--set a.v: the value is {TOO_DEEP}")):
        set_args(GRAPH, ["a.v=" + nested_lists(depth)])


def test_a_set_value_that_contains_itself_is_refused() -> None:
    message = "--set a.v: the value contains itself (a YAML anchor used inside its own definition)"
    with pytest.raises(GraphError, match=exactly(message)):
        set_args(GRAPH, ["a.v=&x [*x]"])


def test_a_set_value_at_the_limit_is_set() -> None:
    graph = set_args(GRAPH, ["a.v=" + nested_lists(MAX_NESTING)])
    assert json.dumps(graph["nodes"]["a"]["args"]["v"]) == nested_lists(MAX_NESTING)
    assert set_args(GRAPH, ["a.v=[1, {x: 2}]", "a.w=plain words"])["nodes"]["a"]["args"] == {
        "v": [1, {"x": 2}],
        "w": "plain words",
    }


def test_a_flow_that_does_not_fit_the_nodes_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "flow.yaml", "nodes:\n  a: {coro: 'm:f'}\nflow: a -> b\n")
    with pytest.raises(GraphError, match=exactly(f"{path}: node 'b' is named in the flow but has no entry in nodes")):
        load_graph(path)


# A good graph file in each format, and pieces of damage to insert anywhere in it: syntax, tags
# PyYAML cannot build, numbers that are not finite or too long, keys of other types, deep nesting.
GOOD = {
    "yaml": """nodes:
  source: {coro: "tests.cli_nodes:count", args: {n: 5}}
  double: {coro: "tests.cli_nodes:double", properties: {retry: {max_attempts: 3, backoff_factor: 0.1}, timeout: 2}}
  show: {coro: "tests.cli_nodes:show"}
flow: "source -> double -> show"
""",
    "json": """{"nodes": {"source": {"coro": "tests.cli_nodes:count", "args": {"n": 5}},
 "double": {"coro": "tests.cli_nodes:double", "properties": {"retry": {"max_attempts": 3}, "timeout": 2}},
 "show": {"coro": "tests.cli_nodes:show"}}, "graph": {"source": ["double"], "double": ["show"], "show": null}}
""",
}
DAMAGE = [
    *("[", "]", "{", "}", ":", ": ", ",", " ", "\n", "\n  ", "- ", "&a ", "*a", "'", '"', "#", "? ", "<<: ", "\x00"),
    *("!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!set ", "!!python/name:os.system "),
    *("1", "-1", "1e999", ".nan", ".inf", "NaN", "Infinity", "-Infinity", "2001-02-30", "null", "true", "9" * 5000),
    *("1:", "2.5:", "x:", "max_attempts", "jitter", "max_backoff", "retry_on", "workers", "on_error"),
    *("(", ")", "(" * 3000, "||", "|->", "->", "*", "0 ->", "[" * 3000, "]" * 3000),
]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["json", "yaml"]), st.data())
def test_any_damage_to_a_graph_file_is_one_graph_error_naming_it(suffix: str, data: st.DataObject) -> None:
    text = GOOD[suffix]
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.sampled_from(DAMAGE)) + text[at:]
    with tempfile.TemporaryDirectory() as directory:
        path = write(Path(directory), f"graph.{suffix}", text)
        try:
            graph = load_graph(path)
        except GraphError as exc:
            message = str(exc)
            assert message.startswith(str(path))
            if "(flow):" not in message:  # a flow's error quotes the line, with a caret under it
                assert "\n" not in message
            return
    try:
        Plumber(graph, Registry(imports=["tests"]))
    except GraphError as exc:
        message = str(exc)
        assert "\n" not in message
