"""Serving an aiohttp application on 127.0.0.1 for a test, and small graphs fed by an Inbox."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Run `app` on a free port of 127.0.0.1; yield its base URL; shut it down (cleanup_ctx too)."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def item_chain(source: Any, *stages: tuple[str, Any], props: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A graph: the node 'requests' (coro `source`) then each (name, item-style coro) in turn."""
    props = props or {}
    nodes: dict[str, Any] = {"requests": {"coro": source}}
    names = ["requests"]
    for name, coro in stages:
        nodes[name] = {"coro": coro, "properties": {"style": "item", **props.get(name, {})}}
        names.append(name)
    graph = {n: [names[i + 1]] if i + 1 < len(names) else None for i, n in enumerate(names)}
    return {"nodes": nodes, "graph": graph}
