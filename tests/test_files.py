"""pipelines.files: graph files and --set assignments; every damaged file is one GraphError naming it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipelines import GraphError
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


@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_an_integer_too_long_to_read_is_one_graph_error(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path, f"long.{suffix}", graph_with_arg("1" * 5000))
    kind = "JSON" if suffix == "json" else "YAML"
    with pytest.raises(GraphError, match=rf"^{re.escape(f'{path}: invalid {kind}: Exceeds the limit (4300 digits)')}"):
        load_graph(path)


def test_a_yaml_date_that_does_not_exist_is_one_graph_error(tmp_path: Path) -> None:
    path = write(tmp_path, "date.yaml", "nodes:\n  a: {coro: 'm:f', args: {day: 2001-02-30}}\ngraph: {a: null}\n")
    with pytest.raises(GraphError, match=exactly(f"{path}: invalid YAML: day is out of range for month")):
        load_graph(path)


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
