"""Watch a small endless pipeline live: `python demos/dashboard.py`, then open http://127.0.0.1:8080/.

Orders flow from a source through parse and price to a slow store (whose small queue shows
backpressure); price rejects some orders, which go to the `rejects` node. Ctrl-C stops the server
and drains the run. Needs the `web` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import signal
from typing import Any

from aiohttp import web

from pipelines import Plumber, Processor
from pipelines.web import HUB, attach, make_app, required_token


async def orders(processor: Processor, output_q: Any) -> None:
    for n in itertools.count(1):
        await asyncio.sleep(random.uniform(0.002, 0.02))
        await output_q.put({"order": n, "amount": random.randint(1, 500)})


async def parse(processor: Processor, q_elt: tuple[dict[str, Any]]) -> dict[str, Any]:
    await asyncio.sleep(random.uniform(0.001, 0.01))
    return q_elt[0]


async def price(processor: Processor, q_elt: tuple[dict[str, Any]]) -> dict[str, Any]:
    order = q_elt[0]
    if order["amount"] > 480:
        raise ValueError(f"amount {order['amount']} over the limit for order {order['order']}")
    return {**order, "total": round(order["amount"] * 1.2, 2)}


async def store(processor: Processor, q_elt: tuple[dict[str, Any]]) -> None:
    await asyncio.sleep(random.uniform(0.01, 0.05))


async def rejects(processor: Processor, q_elt: tuple[Any]) -> None:
    pass


GRAPH = {
    "nodes": {
        "orders": {"coro": orders},
        "parse": {"coro": parse, "properties": {"workers": 2}},
        "price": {"coro": price, "properties": {"on_error": "rejects"}},
        "store": {"coro": store, "properties": {"workers": 2, "queue_size": 8}},
        "rejects": {"coro": rejects},
    },
    "graph": {"orders": ["parse"], "parse": ["price"], "price": ["store"], "store": None, "rejects": None},
}


async def serve(host: str, port: int, token: str | None) -> None:
    """Serve until SIGINT or SIGTERM; the app's shutdown drains the pipeline."""
    app = make_app(token=token)
    attach(app, lambda: Plumber(GRAPH), hub=app[HUB], label="orders demo", drain_timeout=5)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        query = f"?token={token}" if token else ""
        print(f"dashboard: http://{host}:{runner.addresses[0][1]}/{query}", flush=True)
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--token", help="required from clients (one is made up when binding beyond loopback)")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, required_token(args.host, args.token)))


if __name__ == "__main__":
    main()
