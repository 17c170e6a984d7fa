"""Drawing graphs: exact Mermaid, DOT and text output, and names that need escaping."""

from __future__ import annotations

import re
from collections.abc import Callable
from textwrap import dedent
from typing import Any

import pytest

from pipelines import Plumber, Processor, node
from pipelines.drawing import to_ascii, to_dot, to_mermaid
from pipelines.graph import GraphSpec

Drawer = Callable[[Plumber | GraphSpec], str]
DRAWERS: dict[str, Drawer] = {"mermaid": to_mermaid, "dot": to_dot, "ascii": to_ascii}


async def produce(processor: Processor, output_q: Any) -> None:
    await output_q.put(1)


async def handle(processor: Processor, q_elt: tuple[Any, ...]) -> Any:
    return q_elt[0]


def build(graph: dict[str, list[str] | None], props: dict[str, dict[str, Any]] | None = None) -> Plumber:
    """A Plumber for `graph` (name -> successors): nodes fed by nothing are sources."""
    props = props or {}
    routed = {p["on_error"] for p in props.values() if "on_error" in p}
    fed = {s for succ in graph.values() for s in succ or ()} | routed
    nodes = {
        name: {"coro": handle if name in fed else produce, **({"properties": props[name]} if name in props else {})}
        for name in graph
    }
    return Plumber({"nodes": nodes, "graph": graph})


# Each graph is built inside its test, so that a graph the parser rejects fails that test alone.
GRAPHS: dict[str, tuple[dict[str, list[str] | None], dict[str, dict[str, Any]]]] = {
    "chain": ({"a": ["b"], "b": ["c"], "c": None}, {}),
    "readme": ({"inp": ["rev", "out"], "rev": ["out"], "out": None}, {}),
    "merge": (
        {"left": ["both"], "right": ["both"], "both": ["out"], "out": None},
        {"both": {"aggregate_inputs": False}},
    ),
    "error_route": (
        {"numbers": ["invert"], "invert": ["show"], "show": None, "report": None},
        {"invert": {"on_error": "report"}},
    ),
    "workers": (
        {"urls": ["fetch"], "fetch": ["save"], "save": None},
        {
            "fetch": {"workers": 4, "ordered": True, "queue_size": 10, "timeout": 2.5, "retry": 3},
            "save": {"on_error": "skip"},
        },
    ),
    "escaping": (
        {
            'say "hi"': ["a [b] (c) {d} #1 <&>", "naïve\n✓"],
            "a [b] (c) {d} #1 <&>": ["C:\\dir\\"],
            "naïve\n✓": ["C:\\dir\\"],
            "C:\\dir\\": None,
        },
        {"C:\\dir\\": {"aggregate_inputs": False}},
    ),
}

EXPECTED: dict[str, dict[str, str]] = {
    "chain": {
        "mermaid": """\
            flowchart LR
                n0(["a"])
                n1["b"]
                n2[["c"]]
                n0 --> n1
                n1 --> n2
            """,
        "dot": """\
            digraph pipeline {
                rankdir=LR;
                node [shape=box];
                "a" [style=rounded];
                "b";
                "c" [peripheries=2];
                "a" -> "b";
                "b" -> "c";
            }
            """,
        "ascii": """\
            0  a  --> b
            1  b  --> c
            2  c
            """,
    },
    "readme": {
        "mermaid": """\
            flowchart LR
                n0(["inp"])
                n1["rev"]
                n2[["out (join)"]]
                n0 --> n1
                n0 --> n2
                n1 --> n2
            """,
        "dot": """\
            digraph pipeline {
                rankdir=LR;
                node [shape=box];
                "inp" [style=rounded];
                "rev";
                "out" [shape=invtrapezium, peripheries=2, label="out (join)"];
                "inp" -> "rev";
                "inp" -> "out";
                "rev" -> "out";
            }
            """,
        "ascii": """\
            0  inp  --> rev, out
            1  rev  --> out
            2  out  (join of inp, rev)
            """,
    },
    "merge": {
        "mermaid": """\
            flowchart LR
                n0(["left"])
                n1(["right"])
                n2["both (merge)"]
                n3[["out"]]
                n0 --> n2
                n1 --> n2
                n2 --> n3
            """,
        "dot": """\
            digraph pipeline {
                rankdir=LR;
                node [shape=box];
                "left" [style=rounded];
                "right" [style=rounded];
                "both" [label="both (merge)"];
                "out" [peripheries=2];
                "left" -> "both";
                "right" -> "both";
                "both" -> "out";
            }
            """,
        "ascii": """\
            0  left   --> both
            0  right  --> both
            1  both   --> out  (merge of left, right)
            2  out
            """,
    },
    "error_route": {
        "mermaid": """\
            flowchart LR
                n0(["numbers"])
                n1["invert"]
                n2[["show"]]
                n3{{"report"}}
                n0 --> n1
                n1 --> n2
                n1 -. on_error .-> n3
            """,
        "dot": """\
            digraph pipeline {
                rankdir=LR;
                node [shape=box];
                "numbers" [style=rounded];
                "invert";
                "show" [peripheries=2];
                "report" [shape=hexagon, peripheries=2];
                "numbers" -> "invert";
                "invert" -> "show";
                "invert" -> "report" [style=dashed, label="on_error"];
            }
            """,
        "ascii": """\
            0  numbers  --> invert
            1  invert   --> show  ..> report (on_error)
            2  show
            2  report   (on_error of invert)
            """,
    },
    "workers": {
        "mermaid": """\
            flowchart LR
                n0(["urls"])
                n1["fetch<br/>workers=4, ordered, queue_size=10, timeout=2.5s, retry=3"]
                n2[["save<br/>on_error=skip"]]
                n0 --> n1
                n1 --> n2
            """,
        "dot": """\
            digraph pipeline {
                rankdir=LR;
                node [shape=box];
                "urls" [style=rounded];
                "fetch" [label="fetch\\nworkers=4, ordered, queue_size=10, timeout=2.5s, retry=3"];
                "save" [peripheries=2, label="save\\non_error=skip"];
                "urls" -> "fetch";
                "fetch" -> "save";
            }
            """,
        "ascii": """\
            0  urls   --> fetch
            1  fetch  --> save  [workers=4, ordered, queue_size=10, timeout=2.5s, retry=3]
            2  save   [on_error=skip]
            """,
    },
    "escaping": {
        "mermaid": """\
            flowchart LR
                n0(["say #quot;hi#quot;"])
                n1["a [b] (c) {d} #35;1 #lt;#amp;#gt;"]
                n2["naïve#10;✓"]
                n3[["C:\\dir\\ (merge)"]]
                n0 --> n1
                n0 --> n2
                n1 --> n3
                n2 --> n3
            """,
        "dot": """\
            digraph pipeline {
                rankdir=LR;
                node [shape=box];
                "say \\"hi\\"" [style=rounded];
                "a [b] (c) {d} #1 <&>";
                "naïve\\n✓";
                "C:\\\\dir\\\\" [peripheries=2, label="C:\\\\dir\\\\ (merge)"];
                "say \\"hi\\"" -> "a [b] (c) {d} #1 <&>";
                "say \\"hi\\"" -> "naïve\\n✓";
                "a [b] (c) {d} #1 <&>" -> "C:\\\\dir\\\\";
                "naïve\\n✓" -> "C:\\\\dir\\\\";
            }
            """,
        "ascii": """\
            0  'say "hi"'              --> 'a [b] (c) {d} #1 <&>', 'naïve\\n✓'
            1  'a [b] (c) {d} #1 <&>'  --> 'C:\\\\dir\\\\'
            1  'naïve\\n✓'              --> 'C:\\\\dir\\\\'
            2  'C:\\\\dir\\\\'             (merge of 'a [b] (c) {d} #1 <&>', 'naïve\\n✓')
            """,
    },
}


@pytest.mark.parametrize("fmt", DRAWERS)
@pytest.mark.parametrize("case", GRAPHS)
def test_exact_output(case: str, fmt: str) -> None:
    assert DRAWERS[fmt](build(*GRAPHS[case])) == dedent(EXPECTED[case][fmt])


@pytest.mark.parametrize("fmt", DRAWERS)
def test_a_graph_spec_draws_like_its_plumber(fmt: str) -> None:
    plumber, draw = build(*GRAPHS["readme"]), DRAWERS[fmt]
    assert draw(plumber.spec) == draw(plumber)


@pytest.mark.parametrize("fmt", DRAWERS)
def test_anything_else_is_a_type_error(fmt: str) -> None:
    with pytest.raises(TypeError, match=r"^expected a Plumber or a GraphSpec, got dict$"):
        DRAWERS[fmt]({"nodes": {}, "graph": {}})  # type: ignore[arg-type]


def test_text_view_of_a_twelve_node_dag() -> None:
    plumber = build(
        {
            "src": ["parse"],
            "ticks": ["audit"],
            "parse": ["clean", "tag"],
            "clean": ["score"],
            "tag": ["score", "index"],
            "score": ["store"],
            "index": ["store"],
            "audit": ["store"],
            "store": ["archive"],
            "errors": ["notify"],
            "notify": None,
            "archive": None,
        },
        {
            "parse": {"workers": 4, "on_error": "errors"},
            "score": {"workers": 2, "ordered": True},
            "store": {"aggregate_inputs": False},
        },
    )
    assert to_ascii(plumber) == dedent(
        """\
        0  src      --> parse
        0  ticks    --> audit
        1  parse    --> clean, tag  ..> errors (on_error)  [workers=4]
        1  audit    --> store
        2  clean    --> score
        2  tag      --> score, index
        2  errors   --> notify  (on_error of parse)
        3  score    --> store  (join of clean, tag)  [workers=2, ordered]
        3  index    --> store
        3  notify
        4  store    --> archive  (merge of score, index, audit)
        5  archive
        """
    )


def test_text_view_of_a_diamond() -> None:
    plumber = build({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": None})
    assert to_ascii(plumber) == "0  a  --> b, c\n1  b  --> d\n1  c  --> d\n2  d  (join of b, c)\n"


def test_dot_labels_a_name_graphviz_would_show_as_an_internal_id() -> None:
    assert to_dot(build({"%x": ["y"], "y": None})) == dedent(
        """\
        digraph pipeline {
            rankdir=LR;
            node [shape=box];
            "%x" [style=rounded, label="%x"];
            "y" [peripheries=2];
            "%x" -> "y";
        }
        """
    )


# Names chosen to break a careless quoting: quotes, brackets, arrows, comments, entity codes,
# backslash escapes, control characters, keywords and unicode.
AWKWARD = [
    'say "hi"',
    "x]",
    "(y)",
    "{{z}}",
    "a --> b",
    "%% c",
    "#quot;",
    "&amp;",
    "<br/>",
    "`md`",
    "\\N",
    "trail\\",
    "tab\there",
    "two\nlines",
    "cr\r",
    "end",
    "subgraph",
    "ü ✓ 日本",
]


def awkward_chain() -> Plumber:
    return build({name: [AWKWARD[i + 1]] if i + 1 < len(AWKWARD) else None for i, name in enumerate(AWKWARD)})


def mermaid_unescape(text: str) -> str:
    named = {"quot": '"', "amp": "&", "lt": "<", "gt": ">"}
    return re.sub(r"#(\d+|quot|amp|lt|gt);", lambda m: named.get(m[1]) or chr(int(m[1])), text)


def test_mermaid_labels_hold_any_name() -> None:
    lines = to_mermaid(awkward_chain()).splitlines()
    assert len(lines) == 1 + len(AWKWARD) + len(AWKWARD) - 1
    node_line = re.compile(r'    n(\d+)(?:\(\[|\[\[|\[)"([^"]*)"(?:\]\)|\]\]|\])')
    for index, name in enumerate(AWKWARD):
        match = node_line.fullmatch(lines[1 + index])
        assert match is not None, lines[1 + index]
        assert int(match[1]) == index
        assert "`" not in match[2]
        assert "%" not in match[2]
        assert mermaid_unescape(match[2]) == name
    assert lines[1 + len(AWKWARD) :] == [f"    n{i} --> n{i + 1}" for i in range(len(AWKWARD) - 1)]


def test_dot_strings_hold_any_name() -> None:
    lines = to_dot(awkward_chain()).splitlines()
    assert len(lines) == 3 + len(AWKWARD) + len(AWKWARD) - 1 + 1
    quoted = r'"((?:[^"\\\n]|\\.)*)"'
    escapes = {"n": "\n", "r": "\r"}

    def unescape(text: str) -> str:
        return re.sub(r"\\(.)", lambda m: escapes.get(m[1], m[1]), text)

    names = []
    for line in lines[3 : 3 + len(AWKWARD)]:
        match = re.fullmatch(rf"    {quoted}(?: \[.*\])?;", line)
        assert match is not None, line
        names.append(unescape(match[1]))
    assert names == AWKWARD
    for i, line in enumerate(lines[3 + len(AWKWARD) : -1]):
        match = re.fullmatch(rf"    {quoted} -> {quoted};", line)
        assert match is not None, line
        assert (unescape(match[1]), unescape(match[2])) == (AWKWARD[i], AWKWARD[i + 1])
    assert lines[-1] == "}"


def test_text_view_writes_awkward_names_as_their_repr() -> None:
    lines = to_ascii(awkward_chain()).splitlines()
    assert len(lines) == len(AWKWARD)
    for depth, (line, name) in enumerate(zip(lines, AWKWARD, strict=True)):
        shown = name if re.fullmatch(r"[\w.:/@+-]+", name) else repr(name)
        assert line.startswith(f"{depth:>2}  {shown}")
    assert "\t" not in "".join(lines)


def test_a_stateful_sink_and_a_lossy_input_are_marked() -> None:
    @node
    async def frames() -> Any:
        yield 1

    @node
    async def detect(x: int) -> int:
        return x

    @node
    async def tally(x: int, state: dict[str, int]) -> None:
        state["n"] = state.get("n", 0) + 1

    plumber = Plumber(
        {
            "nodes": {
                "frames": {"coro": frames},
                "detect": {"coro": detect, "properties": {"input": "latest"}},
                "tally": {"coro": tally, "properties": {"state": dict}},
            },
            "graph": {"frames": ["detect"], "detect": ["tally"], "tally": None},
        }
    )
    assert to_ascii(plumber) == "0  frames  --> detect\n1  detect  --> tally  [input=latest]\n2  tally   [state]\n"
