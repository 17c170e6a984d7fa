"""Drawing a pipeline graph: Mermaid, Graphviz DOT, or plain text for a terminal.

Each function takes a `Plumber` or a `GraphSpec` and returns the drawing as a string ending with a
newline. Nodes come in the order of ``input_d['nodes']`` and data edges in the order each node
lists its successors, so the same graph dict always gives the same text.

Every format shows the same facts about a node:

* its role: a *source* (no input), a *sink* (no successor), an *error node* (fed by other nodes'
  ``on_error`` routes), a *join* (several inputs paired by lineage into one tuple) or a *merge*
  (several inputs passed on one by one: ``'aggregate_inputs': False``);
* the properties that change how it runs, when not the default, in this order: ``workers=N``,
  ``ordered``, ``input=latest`` or ``input=drop_oldest`` (a lossy input), ``queue_size=N``,
  ``timeout=Ns``, ``retry=N`` (attempts), ``on_error=skip`` and ``state`` (a stateful sink);
* its data edges, and its error route (``on_error`` naming a node) as a distinct, labelled edge; a
  data edge into a lossy input is dotted and labelled with its policy;
* for a node that routes its outputs (pipelines.routing), the edge to a successor reached only
  through a route is labelled with its descriptor (``2``), and a routing function shows as the
  note ``route=<its name>``.

Node names are arbitrary non-empty strings: each format escapes them so that quotes, spaces,
brackets, backslashes, newlines and unicode never break its syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import networkx as nx

from .graph import GraphSpec, NodeSpec
from .plumber import Plumber

__all__ = ["to_ascii", "to_dot", "to_mermaid"]

INDENT = "    "


def _spec_of(graph: Plumber | GraphSpec) -> GraphSpec:
    """The GraphSpec behind `graph`; TypeError for anything else."""
    if isinstance(graph, Plumber):
        return graph._spec
    if isinstance(graph, GraphSpec):
        return graph
    raise TypeError(f"expected a Plumber or a GraphSpec, got {type(graph).__name__}")


def _is_join(spec: NodeSpec) -> bool:
    return spec.join_mode is not None


def _is_merge(spec: NodeSpec) -> bool:
    return spec.join_mode is None and len(spec.inputs) >= 2


def _role_tag(spec: NodeSpec) -> str:
    """'join', 'merge' or '' : what a node does with several inputs."""
    if _is_join(spec):
        return "join"
    if _is_merge(spec):
        return "merge"
    return ""


def _error_route(spec: NodeSpec) -> str | None:
    """The error node this node's failed items go to, if any."""
    target = spec.properties.on_error
    return None if target in ("fail", "skip") else target


def _property_notes(spec: NodeSpec) -> list[str]:
    """The properties that differ from the default, as short ``key=value`` notes."""
    props = spec.properties
    notes: list[str] = []
    if props.workers is not None and props.workers != 1:
        notes.append(f"workers={props.workers}")
    if props.ordered:
        notes.append("ordered")
    if props.input != "block":
        notes.append(f"input={props.input}")
    if props.queue_size is not None and props.input != "latest":
        notes.append(f"queue_size={props.queue_size}")
    if props.timeout is not None:
        notes.append(f"timeout={props.timeout:g}s")
    if props.retry is not None:
        notes.append(f"retry={props.retry.max_attempts}")
    if props.on_error == "skip":
        notes.append("on_error=skip")
    if spec.route is not None:
        notes.append(f"route={getattr(spec.route, '__name__', 'function')}")
    if spec.state is not None:
        notes.append("state")  # a stateful sink (pipelines.state): a journal keeps its state
    return notes


def _label_lines(spec: NodeSpec) -> tuple[str, str]:
    """The two lines of a node's box: ``name (join)`` and its property notes (maybe empty)."""
    tag = _role_tag(spec)
    return (f"{spec.name} ({tag})" if tag else spec.name), ", ".join(_property_notes(spec))


def _route_labels(spec: NodeSpec) -> dict[str, str]:
    """The descriptor of each successor reached only through a route, as its edge's label."""
    return {target: str(descriptor) for descriptor, targets in spec.routes.items() for target in targets}


def _edges(spec: GraphSpec) -> Iterator[tuple[str, str, str, str | None]]:
    """Every edge as (from, to, line, label): each node's data edges, then its error route.

    `line` is 'solid' for data, 'dashed' for an error route, 'dotted' into a lossy input; `label`
    is the descriptor of a route, 'on_error', the lossy input's policy, or None.
    """
    for name, node_spec in spec.nodes.items():
        labels = _route_labels(node_spec)
        for succ in node_spec.successors:
            policy = spec.nodes[succ].properties.input
            if succ in labels:
                yield name, succ, "solid", labels[succ]
            elif policy != "block":
                yield name, succ, "dotted", policy
            else:
                yield name, succ, "solid", None
        target = _error_route(node_spec)
        if target is not None:
            yield name, target, "dashed", "on_error"


# -- Mermaid -----------------------------------------------------------------------------------

# Shapes: (open, close) around the quoted label.
MERMAID_SHAPES = {
    "source": ("([", "])"),  # stadium
    "sink": ("[[", "]]"),  # subroutine: a box with double sides
    "error": ("{{", "}}"),  # hexagon
    "node": ("[", "]"),  # rectangle
}
_MERMAID_ENTITIES = {
    '"': "#quot;",
    "#": "#35;",
    "%": "#37;",  # some Mermaid versions strip ``%%`` comments anywhere on a line
    "&": "#amp;",
    "<": "#lt;",
    ">": "#gt;",
    "`": "#96;",  # a label opening with a backtick would be read as Markdown
}


def _mermaid_text(text: str) -> str:
    """`text` made safe inside a quoted Mermaid label, with Mermaid's ``#name;`` entity codes.

    Quotes, ``#``, ``%``, ``&``, ``<``, ``>``, backticks and every unprintable character
    (newlines, tabs, ...) become entity codes; everything else, unicode included, is kept as it is.
    """
    out: list[str] = []
    for ch in text:
        if ch in _MERMAID_ENTITIES:
            out.append(_MERMAID_ENTITIES[ch])
        elif ch != " " and not ch.isprintable():
            out.append(f"#{ord(ch)};")
        else:
            out.append(ch)
    return "".join(out)


def _mermaid_shape(spec: NodeSpec) -> tuple[str, str]:
    if spec.error_sources:
        return MERMAID_SHAPES["error"]
    if spec.is_source:
        return MERMAID_SHAPES["source"]
    if spec.is_sink:
        return MERMAID_SHAPES["sink"]
    return MERMAID_SHAPES["node"]


def to_mermaid(graph: Plumber | GraphSpec) -> str:
    """The graph as a Mermaid flowchart, left to right.

    The first line is ``flowchart LR``, then one line per node, then one line per edge. A node's
    id is ``n<i>``, its position in ``input_d['nodes']``, and its name is the quoted label, so
    any name is safe. Shapes: a source is a stadium ``n0(["inp"])``, an error node a hexagon
    ``{{"..."}}``, a sink a subroutine box ``[["..."]]``, any other node a rectangle ``["..."]``
    (first that applies, in this order). A join's label reads ``name (join)``, a merge's
    ``name (merge)``; properties that are not the default follow on a second line (``<br/>``).
    Data edges are ``n0 --> n1``, a route labelled with its descriptor ``n1 -->|"2"| n2``; an error
    route is dotted and labelled ``n1 -. on_error .-> n3``, and an edge into a lossy input with its
    policy, ``n0 -. latest .-> n1``.
    """
    spec = _spec_of(graph)
    ids = {name: f"n{i}" for i, name in enumerate(spec.nodes)}
    lines = ["flowchart LR"]
    for name, node_spec in spec.nodes.items():
        first, second = _label_lines(node_spec)
        label = _mermaid_text(first) + (f"<br/>{_mermaid_text(second)}" if second else "")
        opening, closing = _mermaid_shape(node_spec)
        lines.append(f'{INDENT}{ids[name]}{opening}"{label}"{closing}')
    for source, target, line, tag in _edges(spec):
        if tag is None:
            arrow = "-->"
        elif line == "solid":
            arrow = f'-->|"{tag}"|'
        else:
            arrow = f"-. {tag} .->"  # Mermaid has one broken line, for dashed and dotted alike
        lines.append(f"{INDENT}{ids[source]} {arrow} {ids[target]}")
    return "\n".join(lines) + "\n"


# -- Graphviz DOT ------------------------------------------------------------------------------

_DOT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}


def _dot_text(text: str) -> str:
    """`text` escaped for the inside of a DOT double-quoted string read as an escString.

    Backslashes are doubled and quotes escaped (Graphviz reads ``\\\\`` and ``\\"`` as pairs), and
    newlines are written ``\\n`` so that every statement stays on one line.
    """
    return "".join(_DOT_ESCAPES.get(ch, ch) for ch in text)


def _dot_attributes(spec: NodeSpec) -> list[str]:
    """The attributes that set a node's look apart from the default box with its name."""
    attrs: list[str] = []
    if spec.error_sources:
        attrs.append("shape=hexagon")
    elif _is_join(spec):
        attrs.append("shape=invtrapezium")
    elif spec.is_source:
        attrs.append("style=rounded")
    if spec.is_sink:
        attrs.append("peripheries=2")
    first, second = _label_lines(spec)
    # Graphviz shows a node whose name starts with '%' under an internal id unless it has a label.
    if first != spec.name or second or spec.name.startswith("%"):
        attrs.append(f'label="{_dot_text(first)}' + (f"\\n{_dot_text(second)}" if second else "") + '"')
    return attrs


def to_dot(graph: Plumber | GraphSpec) -> str:
    """The graph in Graphviz DOT: ``digraph pipeline { rankdir=LR; ... }``.

    Nodes are boxes (``node [shape=box]``) named by their quoted, escaped names, declared one a
    line in the order of ``input_d['nodes']``; then one line per edge. A source has rounded
    corners (``style=rounded``), a join is a funnel (``shape=invtrapezium``), an error node a
    hexagon (``shape=hexagon``, before join and source), and a sink has a double border
    (``peripheries=2``, with any shape). When the label differs from the name it is given:
    ``name (join)`` or ``name (merge)``, and non-default properties on a second line (and for a
    name starting with ``%``, which Graphviz would otherwise show as an internal id). An error
    route is ``"a" -> "e" [style=dashed, label="on_error"];``, a route ``"b" -> "big" [label="2"];``,
    an edge into a lossy input ``"a" -> "b" [style=dotted, label="latest"];``.
    """
    spec = _spec_of(graph)
    lines = ["digraph pipeline {", f"{INDENT}rankdir=LR;", f"{INDENT}node [shape=box];"]
    for name, node_spec in spec.nodes.items():
        attrs = _dot_attributes(node_spec)
        lines.append(f'{INDENT}"{_dot_text(name)}"' + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    for source, target, line, label in _edges(spec):
        attrs = ([] if line == "solid" else [f"style={line}"]) + ([] if label is None else [f'label="{label}"'])
        style = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f'{INDENT}"{_dot_text(source)}" -> "{_dot_text(target)}"{style};')
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- plain text --------------------------------------------------------------------------------

_PLAIN_NAME = re.compile(r"[\w.:/@+-]+")


def _ascii_name(name: str) -> str:
    """A name as written in the text view: as is when plain (letters, digits, ``_.:/@+-``),
    else its Python repr (``'my node'``), so spaces, commas and newlines stay unambiguous."""
    return name if _PLAIN_NAME.fullmatch(name) else repr(name)


def _layers(spec: GraphSpec) -> list[list[str]]:
    """The nodes in topological generations (data and error edges), each in nodes order."""
    return [sorted(layer, key=lambda n: spec.nodes[n].index) for layer in nx.topological_generations(spec.digraph)]


def _ascii_details(spec: NodeSpec) -> list[str]:
    """What follows a node's name: its edges, what it does with its inputs, its properties."""
    parts: list[str] = []
    if spec.successors:
        labels = _route_labels(spec)
        shown = (_ascii_name(s) + (f" ({labels[s]})" if s in labels else "") for s in spec.successors)
        parts.append("--> " + ", ".join(shown))
    target = _error_route(spec)
    if target is not None:
        parts.append(f"..> {_ascii_name(target)} (on_error)")
    tag = _role_tag(spec)
    if tag:
        parts.append(f"({tag} of {', '.join(map(_ascii_name, spec.inputs))})")
    if spec.error_sources:
        parts.append(f"(on_error of {', '.join(map(_ascii_name, spec.error_sources))})")
    notes = _property_notes(spec)
    if notes:
        parts.append(f"[{', '.join(notes)}]")
    return parts


def to_ascii(graph: Plumber | GraphSpec) -> str:
    """The graph as plain text, one line per node, readable in a terminal without any tool.

    Nodes are grouped in layers: layer 0 holds the sources, and every node sits one layer after
    its furthest input (networkx topological generations over data and error edges); inside a
    layer they keep the order of ``input_d['nodes']``. Each line is, separated by two spaces::

        <layer>  <name>  --> <successors>  ..> <error node> (on_error)  (<join|merge> of <inputs>)
                         (on_error of <nodes>)  [<properties>]

    with only the parts that apply: a sink has no ``-->``; a successor reached only through a route
    is followed by its descriptor, ``--> s, big (2)``; ``(join of a, b)`` lists a join's
    inputs in the order of its tuples, ``(merge of a, b)`` a merge's; an error node reads
    ``(on_error of ...)``. Names are padded to a column; a name that is not plain is written
    as its Python repr. The README graph (``out`` joins ``inp`` and ``rev``) reads::

        0  inp  --> rev, out
        1  rev  --> out
        2  out  (join of inp, rev)
    """
    spec = _spec_of(graph)
    layers = _layers(spec)
    layer_width = len(str(len(layers) - 1))
    name_width = max(len(_ascii_name(name)) for name in spec.nodes)
    lines: list[str] = []
    for depth, layer in enumerate(layers):
        for name in layer:
            head = f"{depth:>{layer_width}}  {_ascii_name(name):<{name_width}}"
            lines.append("  ".join([head, *_ascii_details(spec.nodes[name])]).rstrip())
    return "\n".join(lines) + "\n"
