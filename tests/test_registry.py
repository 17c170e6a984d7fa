"""Registry: only registered names, attributes defined under them, and allowed imports resolve."""

from __future__ import annotations

import re
from typing import Any

import pytest

import demos.weblog.nodes as weblog_nodes
from pipelines import GraphError, Plumber, Registry, node

from .helpers import collector, source_of


class Funcs:
    @classmethod
    async def double(cls, processor: Any, q_elt: tuple[int]) -> int:
        return 2 * q_elt[0]


def assert_refused(registry: Registry, reference: str, message: str) -> None:
    with pytest.raises(LookupError, match=f"^{re.escape(message)}$"):
        registry(reference)


def test_registered_names_and_attributes_of_registered_classes() -> None:
    registry = Registry({"Funcs": Funcs, "nodes": weblog_nodes})
    assert registry("Funcs.double") == Funcs.double
    assert registry("nodes.parse") is weblog_nodes.parse
    assert "Funcs" in registry
    assert registry(Funcs.double) == Funcs.double  # a function given directly passes through


def test_register_as_a_decorator() -> None:
    registry = Registry()

    @registry.register()
    async def shout(item: str) -> str:
        return item.upper()

    @registry.register("quiet")
    async def whisper(item: str) -> str:
        return item.lower()

    assert registry("shout") is shout
    assert registry("quiet") is whisper


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("print", "'print' is not registered (registered names: Funcs, nodes)"),
        ("os:system", "'os:system': this registry resolves registered names only, not imports"),
        ("Funcs._private", "'Funcs._private': '_private' is private"),
        ("Funcs.triple", "'Funcs.triple': no attribute 'triple'"),
        (
            "nodes.asyncio.create_subprocess_shell",
            "'nodes.asyncio.create_subprocess_shell': 'asyncio' is a module; name a function defined in a module",
        ),
        ("nodes.node", "'nodes.node': 'node' is not defined in 'demos.weblog.nodes' (only imported there)"),
        ("nodes.parse.__globals__", "'nodes.parse.__globals__': '__globals__' is private"),
        (
            "nodes.Counter.fromkeys",
            "'nodes.Counter.fromkeys': 'Counter.fromkeys' is not defined in 'demos.weblog.nodes' (only imported there)",
        ),
        ("", "a coro name must be a non-empty string, got ''"),
    ],
)
def test_what_a_registry_refuses(reference: str, message: str) -> None:
    assert_refused(Registry({"Funcs": Funcs, "nodes": weblog_nodes}), reference, message)


def test_imports_only_from_the_allowed_modules() -> None:
    registry = Registry(imports="demos")
    assert registry("demos.weblog.nodes:parse") is weblog_nodes.parse
    assert_refused(registry, "demosX.mod:f", "'demosX.mod:f': module 'demosX.mod' is not among the allowed demos")
    assert_refused(registry, "os:system", "'os:system': module 'os' is not among the allowed demos")
    assert_refused(
        registry,
        "demos.weblog.nodes:asyncio.create_subprocess_shell",
        "'demos.weblog.nodes:asyncio.create_subprocess_shell': 'asyncio' is a module; name a function defined "
        "in a module",
    )
    assert_refused(
        Registry(imports=True),
        "demos.nope:f",
        "'demos.nope:f': cannot import 'demos.nope' (No module named 'demos.nope')",
    )


async def test_a_registry_is_a_coro_map_and_its_refusal_a_graph_error() -> None:
    seen, sink = collector()
    registry = Registry({"Funcs": Funcs, "source": source_of([1, 2]), "sink": sink})
    graph = {
        "nodes": {"s": {"coro": "source"}, "d": {"coro": "Funcs.double"}, "k": {"coro": "sink"}},
        "graph": {"s": ["d"], "d": ["k"], "k": None},
    }
    await Plumber(graph, registry).run()
    assert seen == [(2,), (4,)]
    graph["nodes"]["d"]["coro"] = "eval"
    with pytest.raises(GraphError, match=r"^node 'd': coro_map could not resolve coro 'eval': LookupError"):
        Plumber(graph, registry)


def test_a_decorated_node_keeps_its_home_module() -> None:
    @node
    async def local(item: int) -> int:
        return item

    assert Registry({"local": local})("local") is local
