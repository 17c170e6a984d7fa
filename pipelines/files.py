"""Graph files: the graph dict in YAML or JSON, with `coro` names resolved by a Registry.

A file holds the same schema as the dict, ``nodes:`` and ``graph:``, or ``nodes:`` and ``flow:``,
a text giving the wiring in the flow syntax (pipelines.flow). Reading YAML needs PyYAML (the
``files`` extra); JSON needs nothing. Every problem is a GraphError whose message starts with the
file's name. A file nests at most `MAX_NESTING` (100) levels of mappings and lists, and no value
contains itself (a YAML anchor used inside its own definition).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import GraphError
from .graph import MAX_NESTING, nesting_problem

__all__ = ["load_graph", "set_args"]

TOO_DEEP = f"nested more than {MAX_NESTING} levels deep (mappings and lists inside one another)"
CONTAINS_ITSELF = "contains itself (a YAML anchor used inside its own definition)"


def load_graph(path: str | Path) -> dict[str, Any]:
    """Read a graph file (.yaml, .yml or .json) into a graph dict, compiling its `flow` if it has one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraphError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise GraphError(f"{path}: not a text file (expected YAML or JSON in UTF-8)") from None
    data = _parse(path, text)
    problem = nesting_problem(data)
    if problem == "too deep":
        raise GraphError(f"{path}: {TOO_DEEP}")
    if problem == "contains itself":
        raise GraphError(f"{path}: a value {CONTAINS_ITSELF}")
    if not isinstance(data, Mapping):
        raise GraphError(f"{path}: expected a mapping with 'nodes' and 'graph' (or 'flow'), got {type(data).__name__}")
    data = dict(data)
    if "flow" in data:
        if "graph" in data:
            raise GraphError(f"{path}: give the wiring once: 'graph' or 'flow', not both")
        flow_text = data.pop("flow")
        if not isinstance(flow_text, str):
            raise GraphError(f"{path}: 'flow' must be a text, got {type(flow_text).__name__}")
        nodes = data.get("nodes")
        if not isinstance(nodes, Mapping):
            raise GraphError(f"{path}: 'nodes' must be a mapping of node names to their coro, args and properties")
        from .flow import apply_flow, parse_flow

        flow = parse_flow(flow_text, filename=f"{path} (flow)")
        try:
            data = {**data, **apply_flow(flow, nodes)}
        except GraphError as exc:
            raise GraphError(f"{path}: {exc}") from None
    return data


def set_args(graph: dict[str, Any], assignments: list[str], *, source: str = "--set") -> dict[str, Any]:
    """Apply ``node.arg=value`` assignments to a graph's args; values are read as YAML/JSON scalars."""
    nodes_d = graph.get("nodes")
    if not isinstance(nodes_d, Mapping) or not all(isinstance(n, Mapping) for n in nodes_d.values()):
        raise GraphError(f"{source}: 'nodes' must be a mapping of node names to mappings (coro, args, properties)")
    nodes = {name: dict(node_d) for name, node_d in nodes_d.items()}
    for assignment in assignments:
        target, sep, raw = assignment.partition("=")
        name, dot, arg = target.partition(".")
        if not sep or not dot or not name or not arg:
            raise GraphError(f"{source} {assignment!r}: expected node.arg=value")
        if name not in nodes:
            raise GraphError(f"{source} {assignment!r}: no node {name!r} (nodes: {', '.join(map(str, nodes))})")
        args = nodes[name].get("args") or {}
        if not isinstance(args, Mapping):
            raise GraphError(f"{source} {assignment!r}: node {name!r} has 'args' that are not a mapping")
        try:
            value = _scalar(raw)
        except RecursionError:
            raise GraphError(f"{source} {name}.{arg}: the value is {TOO_DEEP}") from None
        problem = nesting_problem(value)
        if problem == "too deep":
            raise GraphError(f"{source} {name}.{arg}: the value is {TOO_DEEP}")
        if problem == "contains itself":
            raise GraphError(f"{source} {name}.{arg}: the value {CONTAINS_ITSELF}")
        nodes[name]["args"] = {**args, arg: value}
    return {**graph, "nodes": nodes}


def _parse(path: Path, text: str) -> Any:
    # Both parsers recurse once per level of nesting: too deep a text runs them out of stack.
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise GraphError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
        except RecursionError:
            raise GraphError(f"{path}: {TOO_DEEP}") from None
        except ValueError as exc:  # an int longer than int() reads (sys.get_int_max_str_digits())
            raise GraphError(f"{path}: invalid JSON: {_one_line(exc)}") from None
    if path.suffix not in (".yaml", ".yml"):
        raise GraphError(f"{path}: unknown file type {path.suffix!r} (expected .yaml, .yml or .json)")
    try:
        import yaml
    except ImportError:
        raise GraphError(f"{path}: reading YAML needs PyYAML: pip install 'aiopipelines[files]'") from None
    try:
        return yaml.load(text, Loader=_safe_loader())
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; it has no problem_mark
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise GraphError(f"{path}:{line}:{column}: invalid YAML: unacceptable character {what}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise GraphError(f"{path}{where}: invalid YAML: {_one_line(problem)}") from None
    except RecursionError:
        raise GraphError(f"{path}: {TOO_DEEP}") from None


@functools.cache
def _safe_loader() -> Any:
    """yaml.SafeLoader, with every failure to build a value a ConstructorError at the value.

    PyYAML's own constructors raise what they happen to hit on a scalar they cannot read: IndexError
    for ``!!int ''``, KeyError for ``!!bool x``, ValueError for ``2001-02-30`` or an int longer than
    int() reads, AttributeError for ``!!timestamp ''``.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except (yaml.YAMLError, RecursionError):
                raise
            except Exception as exc:
                tag = str(node.tag).rpartition(":")[2]
                value = node.value if isinstance(node.value, str) else node.id
                shown = repr(value) if len(value) <= 20 else repr(value[:20]) + "..."
                problem = f"cannot read {shown} as a YAML {tag}"
                if isinstance(exc, ValueError):  # its message says why: 'day is out of range for month'
                    problem += f": {_one_line(exc)}"
                raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None

    return Loader


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _scalar(raw: str) -> Any:
    """The value of ``--set node.arg=raw``: YAML (or JSON), else the text itself.

    RecursionError (a value nested too deep to read) is the caller's to report."""
    try:
        import yaml
    except ImportError:
        try:
            return json.loads(raw)
        except ValueError:  # not JSON, or an int too long to read: the text itself
            return raw
    try:
        value = yaml.load(raw, Loader=_safe_loader())
    except yaml.YAMLError:
        return raw
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else raw
