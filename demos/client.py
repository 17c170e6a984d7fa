"""The socket.io demo client: sends the original demo's graph with 5 random strings, prints results.

    python demos/client.py [--url http://127.0.0.1:8080] [--count 5]

Each string goes inp -> coro1 (reverse) -> coro2 (upper) and coro3 (string-reverse) -> out, so
10 results come back as `recv`; the client exits on `done` (or with status 1 on `error`), printing
the seconds from sending the graph to `done`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any

import socketio


def original_payload(strings: list[str]) -> dict[str, Any]:
    """The graph the original demo client sent (tuples become lists on the wire)."""
    return {
        "nodes": {
            "inp": {"coro": "ProcessFunc.inputcoro", "args": {"strings_from_client": strings}},
            "coro1": {"coro": "ProcessFunc.coro1"},
            "coro2": {"coro": "ProcessFunc.coro2"},
            "coro3": {"coro": "ProcessFunc.coro3"},
            "out": {"coro": "ProcessFunc.outputcoro", "properties": {"aggregate_inputs": False}},
        },
        "graph": {
            "inp": ("coro1",),
            "coro1": ("coro2", "coro3"),
            "coro2": ("out",),
            "coro3": ("out",),
            "out": None,
        },
    }


async def main(url: str, count: int) -> int:
    sio = socketio.AsyncClient()
    finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @sio.on("recv")
    async def recv(data: Any) -> None:
        print(f"received: {data}", flush=True)

    @sio.on("done")
    async def done(data: dict[str, Any]) -> None:
        elapsed = time.perf_counter() - started
        print(f"done: run {data['run']} {data['state']} in {elapsed:.2f} s", flush=True)
        if not finished.done():
            finished.set_result(0)

    @sio.on("error")
    async def error(message: str) -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)
        if not finished.done():
            finished.set_result(1)

    strings = [hex(random.getrandbits(64)) for _ in range(count)]
    print(f"sending: {strings}", flush=True)
    await sio.connect(url)
    try:
        started = time.perf_counter()
        await sio.emit("process_msg", original_payload(strings))
        return await finished
    finally:
        await sio.disconnect()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The socket.io demo client of pipelines.")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.count)))
