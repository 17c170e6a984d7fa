"""A GraphServer in a process of its own, for the soak test (tests/test_web_graph_server.py).

    python -m tests.graph_server_soak        # from the repository's root

Prints ``serving on URL`` and the path of the `pipelines` it imported, then serves make_app()
(the control API at /api tells the test about the runs) with a GraphServer whose registry is
`Soak`, until SIGTERM or SIGINT; then it shuts down cleanly and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pipelines
from pipelines import Processor, Registry
from pipelines.web import HUB, SIO, make_app
from pipelines.web.graph_server import GraphServer

from .web_helpers import serving

PAD = "x" * 1000  # each result carries a kilobyte, so that results held anywhere show in the RSS


class Soak:
    """What a soak client may run."""

    @classmethod
    async def endless(cls, processor: Processor, output_q: Any) -> None:
        i = 0
        while True:
            await output_q.put(i)
            i += 1

    @classmethod
    async def numbers(cls, processor: Processor, output_q: Any, upto: int) -> None:
        for i in range(upto):
            await output_q.put(i)

    @classmethod
    async def padded(cls, processor: Processor, q_elt: tuple[int]) -> str:
        return f"{q_elt[0]}:{PAD}"


async def main() -> None:
    app = make_app()
    GraphServer(app[SIO], Registry({"Soak": Soak}), hub=app[HUB]).attach(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serving(app) as url:
        print(f"serving on {url}", flush=True)
        print(pipelines.__file__, flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
