"""The server side of B10: an aiohttp handler that answers through a pipeline, or directly.

    python -m benchmarks.web_server {pipeline|direct}     prints "port N", serves until stdin closes

Both handlers run the same three coroutines on the number in ``?x=``: the direct one awaits them
in turn, the pipeline one submits the number to an Inbox feeding the three-node graph.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from pipelines import Plumber
from pipelines.web import Inbox, attach


async def add_one(x: int) -> int:
    return x + 1


async def double(x: int) -> int:
    return 2 * x


async def negate(x: int) -> int:
    return -x


def three_nodes(source: object) -> dict[str, object]:
    item = {"style": "item"}
    return {
        "nodes": {
            "requests": {"coro": source},
            "add_one": {"coro": add_one, "properties": item},
            "double": {"coro": double, "properties": item},
            "negate": {"coro": negate, "properties": item},
        },
        "graph": {"requests": ["add_one"], "add_one": ["double"], "double": ["negate"], "negate": None},
    }


def build(mode: str) -> web.Application:
    app = web.Application()
    if mode == "pipeline":
        inbox = Inbox(max_pending=10_000)
        attach(app, lambda: Plumber(three_nodes(inbox.source)), inbox=inbox)

        async def handle(request: web.Request) -> web.Response:
            return web.Response(text=str(await inbox.submit(int(request.query["x"]))))

    elif mode == "direct":

        async def handle(request: web.Request) -> web.Response:
            return web.Response(text=str(await negate(await double(await add_one(int(request.query["x"]))))))

    else:
        raise SystemExit(f"mode must be 'pipeline' or 'direct', got {mode!r}")
    app.router.add_get("/work", handle)
    return app


async def serve(mode: str) -> None:
    runner = web.AppRunner(build(mode), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"port {runner.addresses[0][1]}", flush=True)
        # Serve until the benchmark closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
