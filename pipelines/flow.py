"""A text syntax for graphs: the wiring and properties of a graph dict, written as arrows.

::

    # fetch pages, parse them on four workers, store what parses and report what does not
    urls -> fetch[workers=8] * 3 -> parse[workers=4] (0 -> report, 1 -> store)
    store -> (index || archive) |-> done

`parse_flow()` compiles such a text into a `Flow`; `apply_flow()` adds each node's ``coro``,
``args`` and ``properties`` and returns a graph dict for `Plumber`. The tokenizer and the
recursive-descent parser are written by hand, with no parser-generator dependency: the grammar is
small, and every error must point at an exact line and column.

Grammar (``{x}`` repeats, ``[x]`` is optional)::

    flow      := [chain] { (NEWLINE | ';') [chain] } EOF
    chain     := parallel { ('->' | '|->') parallel }      # loosest, left to right
    parallel  := term { '||' term }                       # binds tighter than the arrows
    term      := '(' chain ')'
               | NUMBER '*' node [outcomes]                # 3 * a: retry
               | node ['*' NUMBER] [outcomes]              # a * 3: retry
    node      := NAME ['[' [option { ',' option } [',']] ']']
    option    := NAME '=' (NUMBER | 'true' | 'false' | NAME | STRING)
    outcomes  := '(' branch { ',' branch } ')'
    branch    := ('0' '->' | DIGIT ('->' | '|->')) chain      # DIGIT: 1 to 9

``NAME`` is ``[A-Za-z_][A-Za-z0-9_]*``; ``STRING`` is quoted with ``"`` or ``'`` (no escapes);
``#`` starts a comment to the end of the line. A newline ends a statement unless it comes inside
parentheses or brackets, or after ``->``, ``|->``, ``||`` or ``*``. Parentheses (groups and
outcome branches) nest at most `MAX_NESTING` (100) deep: the parser recurses once per level.

Meaning. Every expression has entry nodes and exit nodes. ``A -> B`` and ``A |-> B`` add an edge
from every exit of A to every entry of B; ``A || B`` are parallel branches (entries and exits are
the unions). So ``a -> b || c -> d`` is ``a -> (b || c) -> d``. The arrow only matters for a node
with several inputs: inputs arriving through ``|->`` are joined (``aggregate_inputs: true``, one
item of each as a tuple), through ``->`` merged (``aggregate_inputs: false``); a node with a single
input gets no ``aggregate_inputs``. ``b (0 -> f, 1 -> s)``: b's outputs go to s, its failed items
to the error node f (``on_error: 'f'``, no edge b -> f); the exits are those of all branches, and
b itself when there is no ``1`` branch (its default outputs then go on). Descriptors 2 to 9 are
routes (pipelines.routing): ``b (1 -> s, 2 -> big, 3 -> small)`` adds the edges b -> big and
b -> small and ``routes: {2: ['big'], 3: ['small']}``, so that big gets only the outputs b routes
to it (``route(value, 'big')`` or ``route(value, 2)``) and s the others. ``a * 3`` sets
``retry: {'max_attempts': 3}``; ``a[workers=4]`` sets properties. A node may appear in any number
of statements; repeated settings must agree.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import GraphError
from .graph import MAX_NESTING
from .policies import RetryPolicy
from .properties import PROPERTY_NAMES, parse_properties, parse_routes

__all__ = ["OPTION_NAMES", "Flow", "apply_flow", "parse_flow"]

# Properties a hook function or a structured value is needed for cannot be written as a scalar.
NOT_OPTIONS = {
    "retry": "'retry' is not an option: write 'a * 3' for 3 attempts",
    "setup": "'setup' is not an option: a hook is a function, give it in the node's 'properties'",
    "teardown": "'teardown' is not an option: a hook is a function, give it in the node's 'properties'",
    "events": "'events' is not an option: its handlers are functions, give them in the node's 'properties'",
    "state": "'state' is not an option: a state is made by a function, give it in the node's 'properties'",
    "route": "'route' is not an option: a routing function is given in the node's 'properties'",
    "routes": "'routes' is not an option: write the routes as outcomes, as in 'b (1 -> s, 2 -> big)'",
}
OPTION_NAMES = tuple(name for name in PROPERTY_NAMES if name not in NOT_OPTIONS)

ARROWS = ("->", "|->")
# A line ending with one of these goes on with the next line.
CONTINUES = ("->", "|->", "||", "*")
BRACKETS = {"(": ")", "[": "]"}


@dataclass(frozen=True)
class Flow:
    """A compiled flow: its nodes in order of first appearance, their successors and properties.

    `successors` has every node (``[]`` for none), in the order the edges appear, without
    duplicates; error routes are not edges but ``on_error`` properties. `properties` only has the
    nodes that got some.
    """

    nodes: tuple[str, ...]
    successors: dict[str, list[str]]
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_flow(text: str, *, filename: str = "<flow>") -> Flow:
    """Compile a flow text; raise GraphError with ``file:line:col``, the line and a caret on any problem."""
    source = _Source(filename, text)
    return _Parser(source, _tokenize(source)).parse()


def apply_flow(flow: Flow, nodes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Return the graph dict of `flow` with each node's ``coro``, ``args`` and ``properties`` from `nodes`.

    The flow gives the wiring (``'graph'``, None for a node without successors) and adds its
    properties to each node's ``'properties'``. A property set in both with different values, a
    node of the flow without an entry in `nodes`, or an entry the flow never names, is a
    GraphError naming it. Neither argument is modified.
    """
    for name in flow.nodes:
        if name not in nodes:
            raise GraphError(f"node {name!r} is named in the flow but has no entry in nodes")
    for name in nodes:
        if name not in flow.successors:
            raise GraphError(f"node {name!r} has an entry in nodes but the flow never names it")
    return {
        "nodes": {name: _merge_node(name, nodes[name], flow.properties.get(name, {})) for name in flow.nodes},
        "graph": {name: list(flow.successors[name]) or None for name in flow.nodes},
    }


def _merge_node(name: str, entry: object, flow_props: Mapping[str, Any]) -> dict[str, Any]:
    """One node's entry with the flow's properties added; a property both set differently is an error."""
    if not isinstance(entry, Mapping):
        raise GraphError(f"node {name!r}: its entry in nodes must be a dict with 'coro', got {type(entry).__name__}")
    given = entry.get("properties")
    if given is not None and not isinstance(given, Mapping):
        raise GraphError(f"node {name!r}: 'properties' must be a dict, got {type(given).__name__}")
    merged = dict(given or {})
    for key, value in flow_props.items():
        if key in merged and not _same_value(key, merged[key], value):
            raise GraphError(f"node {name!r}: property {key!r} is {value!r} in the flow but {merged[key]!r} in nodes")
        merged.setdefault(key, copy.deepcopy(value))
    result = dict(entry)
    if merged or "properties" in entry:
        result["properties"] = merged
    return result


def _same_value(key: str, a: object, b: object) -> bool:
    """Whether two values of property `key` mean the same: ``retry: 3`` is ``a * 3``, True is not 1."""
    if key == "retry":
        try:
            return RetryPolicy.from_value(a) == RetryPolicy.from_value(b)  # type: ignore[arg-type]
        except ValueError:
            return a == b
    if key == "routes":  # {2: 'x'} is {'2': ['x']}
        try:
            return parse_routes("", a) == parse_routes("", b)
        except GraphError:
            return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


# --- source text and errors -------------------------------------------------------------------


class _Source:
    """The text being compiled, to quote a line under an error."""

    def __init__(self, filename: str, text: str) -> None:
        self.filename = filename
        self.text = text
        self.lines = text.split("\n")

    def error(self, line: int, col: int, problem: str) -> GraphError:
        """``file:line:col: problem``, then the line and a caret under column `col` (both 1-based)."""
        shown = self.lines[line - 1].rstrip(" \t\r")
        # Keep the tabs of the line before the caret, so it lines up however tabs are displayed.
        pad = "".join(ch if ch == "\t" else " " for ch in shown[: col - 1])
        return GraphError(f"{self.filename}:{line}:{col}: {problem}\n    {shown}\n    {pad}^")


# --- tokenizer ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    """One token: `kind` is 'name', 'number', 'string', 'newline', 'eof' or the operator itself."""

    kind: str
    text: str
    line: int
    col: int

    @property
    def end(self) -> int:
        """The column just after the token."""
        return self.col + len(self.text)

    def describe(self) -> str:
        """The token as quoted in a message."""
        if self.kind == "eof":
            return "end of input"
        if self.kind == "newline":
            return "end of line"
        return f"'{self.text}'"


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_OPERATORS = ("|->", "->", "||", "*", ",", "(", ")", "[", "]", "=", ";")


def _tokenize(source: _Source) -> list[_Token]:
    """Split the text into tokens; any character outside the language raises, none is skipped.

    A newline becomes a 'newline' token only where it ends a statement: not inside brackets,
    not after an operator that continues the line, and never twice in a row. Its position, like
    that of 'eof', is just after the last token, which is where a caret about it is useful.
    """
    tokens: list[_Token] = []
    depth = 0
    for line_no, line in enumerate(source.lines, start=1):
        col = 0
        while col < len(line):
            ch = line[col]
            if ch in " \t\r":
                col += 1
                continue
            if ch == "#":
                break
            token = _read_token(source, line, line_no, col)
            if token.kind in BRACKETS:
                depth += 1
            elif token.kind in BRACKETS.values():
                depth = max(0, depth - 1)  # an unmatched closer is the parser's to report
            tokens.append(token)
            col = token.end - 1
        if tokens and depth == 0 and tokens[-1].kind not in (*CONTINUES, "newline"):
            last = tokens[-1]
            tokens.append(_Token("newline", "", last.line, last.end))
    last_token = tokens[-1] if tokens else None
    tokens.append(_Token("eof", "", last_token.line, last_token.end) if last_token else _Token("eof", "", 1, 1))
    return tokens


def _read_token(source: _Source, line: str, line_no: int, col: int) -> _Token:
    """The token starting at 0-based `col` of `line`."""
    ch = line[col]
    if match := _NAME.match(line, col):
        return _Token("name", match.group(), line_no, col + 1)
    if match := _NUMBER.match(line, col):
        if match.end() < len(line) and (line[match.end()].isalnum() or line[match.end()] == "_"):
            raise source.error(line_no, col + 1, "a name cannot start with a digit")
        return _Token("number", match.group(), line_no, col + 1)
    if ch in "\"'":
        close = line.find(ch, col + 1)
        if close < 0:
            raise source.error(line_no, col + 1, "this quoted string is never closed on its line")
        return _Token("string", line[col : close + 1], line_no, col + 1)
    for op in _OPERATORS:
        if line.startswith(op, col):
            return _Token(op, op, line_no, col + 1)
    hint = {"-": " (did you mean '->'?)", "|": " (did you mean '||' or '|->'?)", ">": " (did you mean '->'?)"}
    if ch == "-" and line[col + 1 : col + 2].isdigit():
        hint["-"] = " (no value here can be negative)"
    raise source.error(line_no, col + 1, f"unexpected character {ch!r}{hint.get(ch, '')}")


# --- parser ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Part:
    """A parsed expression: the nodes its inputs enter and the nodes its outputs leave from."""

    entries: tuple[str, ...]
    exits: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Setting:
    """A property value, how the flow wrote it, and where."""

    value: Any
    shown: str
    token: _Token


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for group in groups for name in group))


def _where(token: _Token) -> str:
    return f"{token.line}:{token.col}"


class _Parser:
    """Recursive descent over the tokens, building the graph as it goes."""

    def __init__(self, source: _Source, tokens: list[_Token]) -> None:
        self.source = source
        self.tokens = tokens
        self.pos = 0
        self.successors: dict[str, dict[str, None]] = {}
        self.inputs: dict[str, dict[str, None]] = {}
        # The first arrow that reached each node: all its inputs must come through the same kind.
        self.arrival: dict[str, _Token] = {}
        self.settings: dict[str, dict[str, _Setting]] = {}
        # Edges that are routes (descriptors 2..9), and the others, to tell apart a successor reached both ways.
        self.routes: dict[str, dict[str, tuple[_Token, dict[str, None]]]] = {}
        self.default_edges: dict[tuple[str, str], _Token] = {}
        # Brackets opened and not yet closed, innermost last: running out of input inside one is
        # reported at the opening bracket, where the fix belongs.
        self.open: list[_Token] = []

    # token access

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        token = self.tokens[self.pos]
        if token.kind != "eof":
            self.pos += 1
        return token

    def error(self, token: _Token, problem: str) -> GraphError:
        if token.kind == "eof" and self.open:
            token, problem = self.open[-1], f"'{self.open[-1].kind}' is never closed"
        return self.source.error(token.line, token.col, problem)

    def opening(self) -> _Token:
        """Consume an opening bracket and remember it until `close()`.

        Each '(' is a level of recursion in this parser: refusing the one too many here keeps a
        deeply nested text a positioned error instead of a RecursionError."""
        token = self.advance()
        if token.kind == "(" and sum(t.kind == "(" for t in self.open) >= MAX_NESTING:
            raise self.error(token, f"parentheses nested more than {MAX_NESTING} deep")
        self.open.append(token)
        return token

    def expect(self, kind: str, problem: str) -> _Token:
        """The next token if it is of `kind`; otherwise raise ``{problem}, got {token}``."""
        token = self.peek()
        if token.kind != kind:
            raise self.error(token, f"{problem}, got {token.describe()}")
        return self.advance()

    # grammar

    def parse(self) -> Flow:
        """flow := [chain] { (NEWLINE | ';') [chain] } EOF"""
        while self.peek().kind != "eof":
            if self.peek().kind in (";", "newline"):
                self.advance()
                continue
            self.chain(None)
            self.end_of_statement()
        return self.compile()

    def end_of_statement(self) -> None:
        token = self.peek()
        if token.kind in (";", "newline", "eof"):
            return
        if token.kind in (")", "]"):
            raise self.error(token, f"'{token.kind}' without a matching '{'(' if token.kind == ')' else '['}'")
        raise self.error(token, f"expected '->', '|->', '||', ';' or a new line, got {token.describe()}")

    def chain(self, after: _Token | None) -> _Part:
        """chain := parallel { ('->' | '|->') parallel }: every exit on the left feeds every entry on the right."""
        left = self.parallel(after)
        while self.peek().kind in ARROWS:
            arrow = self.advance()
            right = self.parallel(arrow)
            self.connect(left.exits, right.entries, arrow)
            left = _Part(left.entries, right.exits)
        return left

    def parallel(self, after: _Token | None) -> _Part:
        """parallel := term { '||' term }: the branches' entries and exits, together."""
        parts = [self.term(after)]
        while self.peek().kind == "||":
            parts.append(self.term(self.advance()))
        return _Part(_union(*(p.entries for p in parts)), _union(*(p.exits for p in parts)))

    def term(self, after: _Token | None) -> _Part:
        """A group in parentheses, or one node with its retry factor, options and outcome branches."""
        token = self.peek()
        if token.kind == "(":
            return self.group()
        if token.kind == "number":
            name = self.prefix_retry()
        elif token.kind == "name":
            name = self.node()
            if self.peek().kind == "*":
                self.advance()
                self.retry(name, self.expect("number", "expected a retry factor after '*'"))
        elif after is None and token.kind in (*ARROWS, "||"):
            raise self.error(
                token,
                f"a statement cannot start with '{token.kind}' "
                "(to go on from the previous line, end that line with the operator)",
            )
        else:
            context = f"after '{after.text}'" if after else "at the start of a statement"
            raise self.error(token, f"expected a node name or '(' {context}, got {token.describe()}")
        if self.peek().kind == "*":
            raise self.error(self.peek(), f"node {name!r} already has a retry factor")
        if self.peek().kind == "(":
            return self.outcomes(name)
        return _Part((name,), (name,))

    def group(self) -> _Part:
        """'(' chain ')': only a single node takes a retry factor, options or outcome branches."""
        opening = self.opening()
        part = self.chain(opening)
        self.close(opening, "')' to close")
        after = self.peek()
        what = {"*": "a retry factor applies", "[": "options apply", "(": "outcome branches apply"}
        if after.kind in what:
            raise self.error(after, f"{what[after.kind]} to a single node, not to a group in parentheses")
        return part

    def close(self, opening: _Token, expected: str) -> None:
        """Consume the bracket closing `opening`; at the end of input point at the one never closed."""
        token = self.peek()
        closer = BRACKETS[opening.kind]
        if token.kind == closer:
            self.advance()
            self.open.pop()
            return
        raise self.error(
            token, f"expected {expected} the '{opening.kind}' at {_where(opening)}, got {token.describe()}"
        )

    def prefix_retry(self) -> str:
        """NUMBER '*' node: the retry factor written first."""
        factor = self.advance()
        star = self.peek()
        if star.kind in ARROWS:
            raise self.error(factor, "an outcome branch must follow a node, as in 'b (0 -> f, 1 -> s)'")
        self.expect("*", f"expected '*' after the retry factor {factor.text}")
        name = self.node(f"expected a node name after '{factor.text} *'")
        self.retry(name, factor)
        return name

    def node(self, problem: str = "expected a node name") -> str:
        """NAME ['[' options ']']: record the node where it first appears."""
        token = self.expect("name", problem)
        self.declare(token.text)
        if self.peek().kind == "[":
            self.options(token.text)
        return token.text

    def declare(self, name: str) -> None:
        self.successors.setdefault(name, {})
        self.inputs.setdefault(name, {})

    def retry(self, name: str, factor: _Token) -> None:
        """Set ``retry: {'max_attempts': n}`` from a factor token; it counts attempts in all, so >= 2."""
        if factor.kind != "number" or not factor.text.isdigit() or int(factor.text) < 2:
            raise self.error(factor, f"a retry factor must be an int >= 2 (attempts in all), got {factor.text}")
        attempts = int(factor.text)
        self.set(name, "retry", {"max_attempts": attempts}, f"retry factor {attempts}", factor)

    def options(self, name: str) -> None:
        """'[' [option {',' option} [',']] ']' after node `name`."""
        opening = self.opening()
        while self.peek().kind != "]":
            self.option(name)
            if self.peek().kind != ",":
                break
            self.advance()
        self.close(opening, "',' or ']' to close")

    def option(self, name: str) -> None:
        """NAME '=' value, checked as the property it sets."""
        key = self.expect("name", "expected an option name")
        if key.text in NOT_OPTIONS:
            raise self.error(key, NOT_OPTIONS[key.text])
        if key.text not in OPTION_NAMES:
            raise self.error(key, f"unknown option {key.text!r} (known options: {', '.join(OPTION_NAMES)})")
        self.expect("=", f"expected '=' after option {key.text!r}")
        token = self.peek()
        if token.kind not in ("number", "name", "string"):
            raise self.error(
                token,
                f"expected a value for option {key.text!r} (a number, true, false, a word or a quoted string), "
                f"got {token.describe()}",
            )
        self.advance()
        value = _value(token)
        if key.text == "on_error" and value not in ("fail", "skip"):
            raise self.error(
                token, f"on_error must be fail or skip here; route failures to an error node with '{name} (0 -> node)'"
            )
        try:
            parse_properties(name, {key.text: value})
        except GraphError as exc:
            raise self.error(token, str(exc)) from None
        self.set(name, key.text, value, f"{key.text}={token.text}", key)

    def outcomes(self, name: str) -> _Part:
        """'(' branch {',' branch} ')' after node `name`: 0 names its error node, 1 its successors."""
        opening = self.opening()
        seen: dict[str, _Token] = {}
        exits: list[tuple[str, ...]] = []
        while True:
            descriptor = self.descriptor(name, seen)
            exits.append(self.branch(name, descriptor))
            if self.peek().kind != ",":
                break
            self.advance()
        self.close(opening, "',' or ')' to close")
        if "1" not in seen:
            exits.insert(0, (name,))  # without a success branch, the node's outputs go on
        return _Part((name,), _union(*exits))

    def descriptor(self, name: str, seen: dict[str, _Token]) -> _Token:
        """A digit 0..9, once each per node: 0 failure, 1 success, 2..9 routes."""
        token = self.peek()
        if token.kind != "number" or not token.text.isdigit() or len(token.text) != 1:
            extra = ""
            if token.kind == "number" and token.text.isdigit():
                extra = " (there are ten descriptors, 0 to 9)"
            raise self.error(
                token,
                "expected an outcome descriptor: 0 (failure), 1 (success) or a route 2..9, "
                f"got {token.describe()}{extra}",
            )
        if token.text in seen:
            first = seen[token.text]
            raise self.error(token, f"outcome {token.text} is given twice for node {name!r} (first at {_where(first)})")
        seen[token.text] = token
        return self.advance()

    def branch(self, name: str, descriptor: _Token) -> tuple[str, ...]:
        """The arrow and expression after a descriptor; returns the branch's exits."""
        arrow = self.peek()
        if descriptor.text == "0" and arrow.kind == "|->":
            raise self.error(arrow, "use '->' after 0: failed items reach the error node one by one, never joined")
        if arrow.kind not in ARROWS:
            raise self.error(arrow, f"expected '->' after outcome {descriptor.text}, got {arrow.describe()}")
        self.advance()
        start = self.peek()
        part = self.chain(arrow)
        if descriptor.text != "0":
            self.connect((name,), part.entries, arrow, route=descriptor)
            return part.exits
        if len(part.entries) != 1:
            raise self.error(
                start,
                f"the failure branch of {name!r} must start with one node (on_error names a single error node), "
                f"got {', '.join(part.entries)}",
            )
        target = part.entries[0]
        if target == name:
            raise self.error(start, f"node {name!r} cannot be its own error node")
        self.set(name, "on_error", target, f"'0 -> {target}'", descriptor)
        return part.exits

    # building the graph

    def connect(
        self, sources: tuple[str, ...], targets: tuple[str, ...], arrow: _Token, route: _Token | None = None
    ) -> None:
        """Add an edge from every source to every target through `arrow`; `route`: the descriptor
        2..9 of the one source's branch these edges are (any other edge is a default one)."""
        for target in targets:
            if target in sources:
                raise self.error(arrow, f"edge from {target!r} to itself")
            first = self.arrival.setdefault(target, arrow)
            if first.kind != arrow.kind:
                raise self.error(
                    arrow,
                    f"node {target!r} is reached through '{arrow.kind}' here but through '{first.kind}' at "
                    f"{_where(first)}; its inputs are either all joined ('|->') or all merged ('->')",
                )
        for src in sources:
            for target in targets:
                self.successors[src][target] = None
                self.inputs[target][src] = None
                if route is None or route.text == "1":
                    self.default_edges.setdefault((src, target), arrow)
                else:
                    self.route_edge(src, target, route)

    def route_edge(self, src: str, target: str, descriptor: _Token) -> None:
        """Record that `target` follows `src` only through the route `descriptor`."""
        routes = self.routes.setdefault(src, {})
        for digit, (first, targets) in routes.items():
            if target in targets and digit != descriptor.text:
                raise self.error(
                    descriptor,
                    f"node {target!r} follows {src!r} through route {digit} (at {_where(first)}) and route "
                    f"{descriptor.text}; give it one descriptor, and route an output to both if need be",
                )
        routes.setdefault(descriptor.text, (descriptor, {}))[1][target] = None

    def set(self, name: str, key: str, value: Any, shown: str, token: _Token) -> None:
        """Set a property of `name`; a repeat must give the same value (True is not 1)."""
        settings = self.settings.setdefault(name, {})
        old = settings.get(key)
        if old is None:
            settings[key] = _Setting(value, shown, token)
        elif type(old.value) is not type(value) or old.value != value:
            raise self.error(token, f"node {name!r}: {shown} conflicts with {old.shown} at {_where(old.token)}")

    def compile(self) -> Flow:
        """Add the aggregate_inputs each node with several inputs gets from its arrows, and each
        node's routes; build the Flow."""
        for name, routes in self.routes.items():
            for digit, (descriptor, targets) in routes.items():
                for target in targets:
                    arrow = self.default_edges.get((name, target))
                    if arrow is not None:
                        raise self.error(
                            arrow,
                            f"node {target!r} follows {name!r} both by default here and through route "
                            f"{digit} at {_where(descriptor)}; a successor is one or the other",
                        )
            value = {int(digit): list(targets) for digit, (_, targets) in sorted(routes.items())}
            first = min((descriptor for descriptor, _ in routes.values()), key=lambda d: (d.line, d.col))
            self.set(name, "routes", value, f"routes {value}", first)
        for name, inputs in self.inputs.items():
            if len(inputs) < 2:
                continue
            arrow = self.arrival[name]
            joined = arrow.kind == "|->"
            given = self.settings.get(name, {}).get("aggregate_inputs")
            if given is not None and given.value is not joined:
                how = "joined through '|->'" if joined else "merged through '->'"
                raise self.error(
                    given.token, f"node {name!r}: {given.shown} conflicts with its inputs {how} at {_where(arrow)}"
                )
            self.set(name, "aggregate_inputs", joined, "", arrow)
        return Flow(
            nodes=tuple(self.successors),
            successors={name: list(succ) for name, succ in self.successors.items()},
            properties={
                name: {key: s.value for key, s in self.settings[name].items()}
                for name in self.successors
                if self.settings.get(name)
            },
        )


def _value(token: _Token) -> Any:
    """The Python value of an option value token."""
    if token.kind == "string":
        return token.text[1:-1]
    if token.kind == "name":
        return {"true": True, "false": False}.get(token.text, token.text)
    if re.fullmatch(r"[0-9]+", token.text):
        return int(token.text)
    return float(token.text)
