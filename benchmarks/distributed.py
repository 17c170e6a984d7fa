"""B8 distributed: the source in this process, `x + 1` and the sink in a worker process, over Redis.

The case starts its own redis-server (on a free port of 127.0.0.1, nothing saved to disk) and, for
each round, a worker process (`pipelines worker`) that waits for the run; the timed span is the
coordinator's `run()`, from creating the run to every node being done. The check is the number of
items the sink finished, summed over the processes. Beside it: the same graph in memory, in one
process. Rows with `batch` 100 (the default) and 500 (entries per Redis call).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pipelines import Plumber, node

from .harness import Case, Config, Trial, Unavailable, alternate, timed
from .report import Row, count, per_second, ratio, unavailable_row

__all__ = ["B8"]

IN_MEMORY = "in memory, one process"
LABELS = ("two processes over Redis, batch 100", "two processes over Redis, batch 500", IN_MEMORY)
QUEUE_SIZE = 1000
GRAPH = {
    "nodes": {
        "numbers": {"coro": "benchmarks.graphs:numbers", "args": {"count": 0}},
        "add_one": {"coro": "benchmarks.graphs:add_one"},
        "sink": {"coro": "benchmarks.distributed:discard"},
    },
    "graph": {"numbers": ["add_one"], "add_one": ["sink"], "sink": None},
}


@node
async def discard(x: int) -> None:
    """The sink: the count of items it finished is the check."""


def _graph(n: int) -> dict[str, Any]:
    graph = json.loads(json.dumps(GRAPH))
    graph["nodes"]["numbers"]["args"]["count"] = n
    return graph


class _Redis:
    """A throwaway redis-server for the case."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise Unavailable("redis-server not installed (apt-get install redis-server)")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}/0"
        arguments = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", ""]
        self.process = subprocess.Popen([executable, *arguments, "--appendonly", "no"], stdout=subprocess.DEVNULL)
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.01)
        raise Unavailable("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _distributed(n: int, url: str, batch: int, directory: Path, workers: list[subprocess.Popen[bytes]]) -> Trial:
    def make() -> Awaitable[int]:
        from pipelines.distributed import RedisTransport
        from pipelines.registry import Registry

        path = directory / "graph.json"
        path.write_text(json.dumps(_graph(n)))
        command = "from pipelines.cli import console_main; console_main()"
        arguments = ["worker", str(path), "--redis", url, "--batch", str(batch), "--queue-size", str(QUEUE_SIZE)]
        worker = subprocess.Popen(
            [sys.executable, "-c", command, *arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=Path.cwd(),
        )
        workers.append(worker)
        assert worker.stderr is not None
        if b"waiting for a run" not in worker.stderr.readline():  # started, and waiting: outside the timed span
            raise AssertionError("the worker did not start")
        transport = RedisTransport(url, batch=batch)
        plumber = transport.plumber(_graph(n), Registry(imports=True), queue_size=QUEUE_SIZE)

        async def run() -> int:
            result = await plumber.run()
            return result["sink"].completed

        return run()

    return timed(make, n)


def _in_memory(n: int) -> Trial:
    def make() -> Awaitable[int]:
        from pipelines.registry import Registry

        plumber = Plumber(_graph(n), Registry(imports=True), queue_size=QUEUE_SIZE)

        async def run() -> int:
            return (await plumber.run())["sink"].completed

        return run()

    return timed(make, n)


def _run_b8(config: Config) -> list[Row]:
    n = config.size(200_000, 500)
    workers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        try:
            server = _Redis(directory)
        except Unavailable as missing:
            return [unavailable_row("B8", label, count(n), missing) for label in LABELS]
        try:
            trials: dict[str, Callable[[], float]] = {
                LABELS[0]: _distributed(n, server.url, 100, directory, workers),
                LABELS[1]: _distributed(n, server.url, 500, directory, workers),
                IN_MEMORY: _in_memory(n),
            }
            results = alternate(trials, config.rounds)
        finally:
            for worker in workers:
                worker.wait(30)
                if worker.stderr is not None:
                    worker.stderr.close()
            server.stop()
    rows = []
    reference = results[IN_MEMORY]
    for label, result in results.items():
        if isinstance(result, Unavailable):
            rows.append(unavailable_row("B8", label, count(n), result))
        elif label == IN_MEMORY:
            rows.append(Row("B8", label, count(n), per_second(n, result), ratio(1.0), "(reference)"))
        else:
            assert not isinstance(reference, Unavailable)
            rows.append(Row("B8", label, count(n), per_second(n, result), ratio(result.ratio_to(reference)), IN_MEMORY))
    return rows


B8_TITLE = "distributed: source -> x + 1 -> sink, the last two in a worker process, edges over Redis"
B8 = Case("B8", B8_TITLE, LABELS, _run_b8)
