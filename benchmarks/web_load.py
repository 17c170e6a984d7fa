"""B10 web load: concurrent HTTP clients through an aiohttp handler, answered by a pipeline or directly.

Each server runs in a process of its own (benchmarks.web_server); the clients run here, on
`CLIENTS` connections, each sending its requests one after another. The rows give throughput and
the median and 99th percentile latency of a request, for the handler that submits to a three-node
pipeline and for the same handler awaiting the three coroutines itself; the last row is the
pipeline's cost per request, measured in one process without HTTP: `inbox.submit()` against
awaiting the three coroutines, with the same concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .harness import Case, Config, Samples, Unavailable, alternate, timed
from .report import Row, count, per_second

__all__ = ["B10"]

CLIENTS = 64
ROOT = Path(__file__).parent.parent

PIPELINE = "aiohttp handler -> Inbox -> 3 nodes"
DIRECT = "aiohttp handler awaiting the 3 coroutines"
SUBMIT = "in process, no HTTP: inbox.submit() vs awaiting the 3"
B10_TITLE = f"web load: {CLIENTS} concurrent HTTP clients; p50/p99 request latency; overhead of submit()"
B10_LABELS = (PIPELINE, DIRECT, SUBMIT)


@contextlib.contextmanager
def _server(mode: str) -> Iterator[str]:
    with subprocess.Popen(
        [sys.executable, "-m", "benchmarks.web_server", mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            line = proc.stdout.readline()
            if not line.startswith("port "):
                raise Unavailable(f"the {mode} server did not start: {line!r}")
            yield f"http://127.0.0.1:{int(line.split()[1])}/work"
        finally:
            proc.stdin.close()  # the server's signal to shut down
            proc.wait(timeout=60)


async def _load(url: str, requests: int, latencies: list[float]) -> int:
    import aiohttp

    todo = iter(range(requests))
    total = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal total
        for x in todo:
            start = time.perf_counter()
            async with session.get(url, params={"x": str(x)}) as response:
                answer = int(await response.text())
            latencies.append(time.perf_counter() - start)
            if answer != -2 * (x + 1):
                raise AssertionError(f"request {x} got {answer}")
            total += answer

    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
    return total


def _http_trial(url: str, requests: int, latencies: list[list[float]]) -> float:
    with asyncio.Runner() as runner:
        runner.run(_load(url, CLIENTS, []))  # warm the connections up
        mine: list[float] = []
        start = time.perf_counter()
        got = runner.run(_load(url, requests, mine))
        elapsed = time.perf_counter() - start
    if got != -requests * (requests + 1):
        raise AssertionError(f"wrong total {got}")
    latencies.append(mine)
    return elapsed


async def _submit_all(requests: int, through_pipeline: bool) -> int:
    from pipelines import Plumber
    from pipelines.web import Inbox

    from .web_server import add_one, double, negate, three_nodes

    todo = iter(range(requests))
    total = 0
    inbox = Inbox(max_pending=10_000)
    plumber = Plumber(three_nodes(inbox.source))
    inbox.bind(plumber)

    async def client() -> None:
        nonlocal total
        for x in todo:
            if through_pipeline:
                answer = await inbox.submit(x)
            else:
                answer = await negate(await double(await add_one(x)))
            total += answer  # not `total += await ...`: that reads total before the await

    async with plumber:
        plumber.create_pipeline()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        await plumber.stop()
    return total


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _run_b10(config: Config) -> list[Row]:
    try:
        import aiohttp  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"aiohttp not installed ({exc}); pip install -e '.[web]'") from None
    requests = config.size(6_000, 200)
    submits = config.size(100_000, 500)
    latencies: dict[str, list[list[float]]] = {PIPELINE: [], DIRECT: []}
    with _server("pipeline") as pipeline_url, _server("direct") as direct_url:
        results = alternate(
            {
                PIPELINE: lambda: _http_trial(pipeline_url, requests, latencies[PIPELINE]),
                DIRECT: lambda: _http_trial(direct_url, requests, latencies[DIRECT]),
            },
            config.rounds,
        )
    want = -submits * (submits + 1)
    in_process = alternate(
        {
            "pipeline": timed(lambda: _submit_all(submits, True), want),
            "direct": timed(lambda: _submit_all(submits, False), want),
        },
        config.rounds,
    )
    rows = []
    for label in (PIPELINE, DIRECT):
        result = results[label]
        assert isinstance(result, Samples)
        p50 = statistics.median(statistics.median(r) for r in latencies[label])
        p99 = statistics.median(_percentile(r, 0.99) for r in latencies[label])
        latency = f"p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms"
        relative = "" if label == DIRECT else f"{result.ratio_to(results[DIRECT]):.2f}x"
        rows.append(
            Row(
                "B10",
                label,
                count(requests),
                f"{per_second(requests, result)}; {latency}",
                relative,
                "" if label == DIRECT else DIRECT,
            )
        )
    piped, direct = in_process["pipeline"], in_process["direct"]
    assert isinstance(piped, Samples)
    assert isinstance(direct, Samples)
    overhead = statistics.median((p - d) / submits for p, d in zip(piped.values, direct.values, strict=True))
    rows.append(
        Row(
            "B10",
            SUBMIT,
            count(submits),
            f"{per_second(submits, piped)} vs {per_second(submits, direct)}",
            f"+{overhead * 1e6:.1f} µs per request",
            "awaiting the 3 directly",
        )
    )
    return rows


B10 = Case("B10", B10_TITLE, B10_LABELS, _run_b10)
