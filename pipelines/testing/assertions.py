"""Assertion helpers for the statistics of a run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from ..stats import NodeStats

__all__ = ["assert_counts"]

_FIELDS = tuple(f.name for f in fields(NodeStats) if f.name != "name")


def assert_counts(result: Any, node: str | None = None, **expected: Any) -> None:
    """Assert that `node`'s stats in `result` have the `expected` values, naming every mismatch.

    `result` is anything with a ``.stats`` (a RunResult, a GraphRun) or a mapping of node name to
    NodeStats, with `node` naming the node; or a NodeRun or a NodeStats, without `node`::

        assert_counts(result, "parse", items_in=10, completed=9, skipped=1)
    """
    stats = getattr(result, "stats", result)
    if node is not None:
        if not isinstance(stats, Mapping) or node not in stats:
            known = ", ".join(stats) if isinstance(stats, Mapping) else "none"
            raise AssertionError(f"no stats for node {node!r} (nodes: {known})")
        stats = stats[node]
    if not isinstance(stats, NodeStats):
        raise TypeError(f"assert_counts() needs a run result or NodeStats, got {type(result).__name__}")
    unknown = sorted(set(expected) - set(_FIELDS))
    if unknown:
        raise TypeError(f"unknown stats field {unknown[0]!r} (fields: {', '.join(_FIELDS)})")
    wrong = [
        f"{key} is {getattr(stats, key)!r}, expected {want!r}"
        for key, want in expected.items()
        if getattr(stats, key) != want
    ]
    if wrong:
        raise AssertionError(f"node {stats.name!r}: " + "; ".join(wrong))
