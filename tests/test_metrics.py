"""Prometheus metrics (pipelines.metrics), scraped over real HTTP and parsed by prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from pipelines import Plumber, node
from pipelines.metrics import OUTCOMES, RUN_STATES, mount
from pipelines.stats import LATENCY_BOUNDS
from pipelines.testing import VirtualClock
from pipelines.web import Hub
from tests.redis_server import RedisServer, redis_server
from tests.test_cli import PIPELINES, ROOT, write
from tests.test_cli_serve import start

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

M = "tests.metrics_nodes"
FIFTY_SEVENS = f"""
nodes:
  source: {{coro: "{M}:count", args: {{n: 50}}}}
  check: {{coro: "{M}:fails_on_sevens", properties: {{on_error: skip}}}}
  sink: {{coro: "{M}:keep"}}
flow: "source -> check -> sink"
"""


def parse(text: str) -> Samples:
    """Every sample of an exposition, by (sample name, sorted labels), through prometheus_client's parser."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def at(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


async def scrape(session: aiohttp.ClientSession, url: str, **headers: str) -> Samples:
    async with session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(await response.text())


def assert_fifty_with_five_skipped(samples: Samples, **run: str) -> None:
    """The counts of FIFTY_SEVENS after its run: 50 items, the 5 ending in 7 skipped at check."""

    def node(name: str, metric: str, **extra: str) -> float:
        return at(samples, metric, **run, node=name, **extra)

    assert [node(n, "pipelines_node_items_in_total") for n in ("source", "check", "sink")] == [0, 50, 45]
    assert [node(n, "pipelines_node_items_out_total") for n in ("source", "check", "sink")] == [50, 45, 0]
    check = {o: node("check", "pipelines_node_items_processed_total", outcome=o) for o in OUTCOMES}
    assert check == {"completed": 45, "dropped": 0, "skipped": 5, "failed": 0}
    sink = {o: node("sink", "pipelines_node_items_processed_total", outcome=o) for o in OUTCOMES}
    assert sink == {"completed": 45, "dropped": 0, "skipped": 0, "failed": 0}
    assert [node(n, "pipelines_node_latency_seconds_count") for n in ("source", "check", "sink")] == [0, 50, 45]
    for name, count in (("source", 0), ("check", 50), ("sink", 45)):
        bounds = [*map(str, LATENCY_BOUNDS), "+Inf"]
        buckets = [node(name, "pipelines_node_latency_seconds_bucket", le=le) for le in bounds]
        assert buckets == sorted(buckets)  # cumulative
        assert buckets[-1] == count
    assert [node(n, "pipelines_node_queue_bound") for n in ("source", "check", "sink")] == [0, 100, 100]
    for gauge in ("pipelines_node_items_in_flight", "pipelines_node_queue_depth", "pipelines_node_workers"):
        assert [node(n, gauge) for n in ("source", "check", "sink")] == [0, 0, 0]
    assert node("check", "pipelines_node_retries_total") == 0
    states = {s: at(samples, "pipelines_run_state", **run, state=s) for s in RUN_STATES}
    assert states == {s: float(s == "completed") for s in RUN_STATES}


async def test_serve_answers_metrics_with_the_exact_counts_of_its_run(tmp_path: Path) -> None:
    path = write(tmp_path, "sevens.yaml", FIFTY_SEVENS)
    proc, url = start(path, "--port", "0")
    try:
        async with aiohttp.ClientSession() as session:
            run = {"run": "r1", "pipeline": path}
            samples = await scrape(session, f"{url}/metrics")
            while at(samples, "pipelines_run_state", **run, state="completed") != 1:
                samples = await scrape(session, f"{url}/metrics")  # a round trip each: the run moves on
            assert_fifty_with_five_skipped(samples, **run)
    finally:
        proc.send_signal(signal.SIGINT)  # the run has ended: one Ctrl-C ends the server
        _, err = proc.communicate(timeout=30)
    skipped = "".join(
        f"pipelines: node 'check': skipped item {x} after ValueError('{x} ends in 7')\n" for x in (7, 17, 27, 37, 47)
    )
    assert (proc.returncode, err) == (0, skipped)


async def test_serve_with_a_token_asks_it_of_the_scraper(tmp_path: Path) -> None:
    path = write(tmp_path, "sevens.yaml", FIFTY_SEVENS)
    proc, url = start(path, "--port", "0", "--token", "s3cret")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/metrics") as response:
                assert (response.status, await response.text()) == (401, "this server requires a token\n")
            samples = await scrape(session, f"{url}/metrics", Authorization="Bearer s3cret")
            assert ("pipelines_node_items_in_total", (("node", "check"), ("pipeline", path), ("run", "r1"))) in samples
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


@node
async def numbers(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield i


@node(on_error="skip")
async def no_sevens(x: int) -> int:
    if x % 10 == 7:
        raise ValueError(x)
    return x


@node
async def discard(x: int) -> None:
    pass


def fifty_with_sevens() -> dict[str, object]:
    return {
        "nodes": {
            "source": {"coro": numbers, "args": {"n": 50}},
            "check": {"coro": no_sevens},
            "sink": {"coro": discard},
        },
        "graph": {"source": ["check"], "check": ["sink"], "sink": None},
    }


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_mount_serves_a_plumber_s_metrics_in_the_user_s_app() -> None:
    plumber = Plumber(fifty_with_sevens())
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app.router.add_get("/hello", hello)
    mount(app, plumber)
    runner, url = await serve_app(app)
    try:
        async with aiohttp.ClientSession() as session:
            before = await scrape(session, f"{url}/metrics")
            assert {s: at(before, "pipelines_run_state", state=s) for s in RUN_STATES} == {
                s: float(s == "built") for s in RUN_STATES
            }
            assert at(before, "pipelines_node_items_in_total", node="check") == 0
            await plumber.run()
            assert_fifty_with_five_skipped(await scrape(session, f"{url}/metrics"))
            async with session.get(f"{url}/hello") as response:
                assert await response.text() == "hello"  # the app's own routes are untouched
    finally:
        await runner.cleanup()


async def test_mount_of_a_hub_labels_each_run_and_speaks_openmetrics_when_asked() -> None:
    hub = Hub()
    first, second = Plumber(fifty_with_sevens()), Plumber(fifty_with_sevens())
    hub.add(first, "first")
    hub.add(second, "second")
    app = web.Application()
    mount(app, hub, path="/prometheus")
    runner, url = await serve_app(app)
    try:
        await first.run()
        async with aiohttp.ClientSession() as session:
            samples = await scrape(session, f"{url}/prometheus")
            assert_fifty_with_five_skipped(samples, run="r1", pipeline="first")
            assert at(samples, "pipelines_node_items_in_total", run="r2", pipeline="second", node="check") == 0
            assert at(samples, "pipelines_run_state", run="r2", pipeline="second", state="built") == 1
            accept = "application/openmetrics-text; version=1.0.0"
            async with session.get(f"{url}/prometheus", headers={"Accept": accept}) as response:
                assert response.headers["Content-Type"].startswith("application/openmetrics-text")
                text = await response.text()
            assert text.endswith("# EOF\n")
            assert 'pipelines_node_items_in_total{node="check",pipeline="first",run="r1"} 50.0' in text
        await second.run()
    finally:
        await runner.cleanup()


# -- a worker of a distributed run, with --metrics-port --------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as running:
        yield running


QUICK = ["--heartbeat", "0.1", "--dead-after", "1", "--claim-idle", "0.5"]


def launch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*PIPELINES, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def metrics_address(proc: subprocess.Popen[str]) -> str:
    """Read the worker's stderr until it says where its metrics are."""
    assert proc.stderr is not None
    seen = ""
    while True:
        line = proc.stderr.readline()
        assert line, f"exited first; it said: {seen!r}"
        seen += line
        found = re.fullmatch(r"pipelines: metrics at (http://127\.0\.0\.1:\d+/metrics)\n", line)
        if found:
            return found[1]


async def test_a_worker_serves_the_counts_of_its_own_nodes(server: RedisServer, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "split.yaml",
        f"""
nodes:
  source: {{coro: "{M}:count", args: {{n: 30}}}}
  double: {{coro: "{M}:double"}}
  gate: {{coro: "{M}:gate"}}
flow: "source -> double -> gate"
""",
    )
    doubling = launch("worker", path, "--redis", server.url, "--nodes", "double", "--metrics-port", "0", *QUICK)
    gating = launch("worker", path, "--redis", server.url, "--nodes", "gate", *QUICK)
    coordinator = launch("run", path, "--redis", server.url, *QUICK)
    try:
        url = await asyncio.to_thread(metrics_address, doubling)
        async with aiohttp.ClientSession() as session:
            samples = await scrape(session, url)
            while at(samples, "pipelines_node_items_processed_total", node="double", outcome="completed") < 30:
                samples = await scrape(session, url)  # the gate holds the run open meanwhile
            assert {name for name, _ in samples} >= {"pipelines_node_items_in_total", "pipelines_run_state"}
            assert {dict(labels).get("node") for _, labels in samples} == {"double", None}  # its own node only
            assert at(samples, "pipelines_node_items_in_total", node="double") == 30
            assert at(samples, "pipelines_node_items_out_total", node="double") == 30
            assert at(samples, "pipelines_run_state", state="running") == 1
        assert gating.stdin is not None
        gating.stdin.write("go\n")
        gating.stdin.flush()
        results = [await asyncio.to_thread(p.communicate, timeout=60) for p in (coordinator, gating, doubling)]
        assert [p.returncode for p in (coordinator, gating, doubling)] == [0, 0, 0], results
    finally:
        for proc in (coordinator, gating, doubling):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_metrics_port_that_cannot_be_bound_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sevens.yaml", FIFTY_SEVENS)
    proc = subprocess.run(
        [*PIPELINES, "run", path, "--metrics-port", "1", "--metrics-host", "192.0.2.1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2
    assert re.fullmatch(r"pipelines: cannot serve metrics on 192\.0\.2\.1:1: .+\n", proc.stderr), proc.stderr


def test_the_core_imports_no_metrics_and_the_metrics_need_no_socketio() -> None:
    code = (
        "import sys, pipelines;"
        "before = sorted(m for m in ('prometheus_client', 'opentelemetry', 'aiohttp') if m in sys.modules);"
        "import pipelines.metrics; print(before, 'socketio' in sys.modules)"
    )
    proc = subprocess.run([*PIPELINES[:3], "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout == "[] False\n"


def test_metrics_port_without_the_extra_names_it_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "prometheus_client.py").write_text(
        "raise ModuleNotFoundError('hidden by the test', name='prometheus_client')\n"
    )
    path = write(tmp_path, "sevens.yaml", FIFTY_SEVENS)
    proc = subprocess.run(
        [*PIPELINES, "run", path, "--metrics-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "hidden")},
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        "pipelines: --metrics-port needs the metrics extra (prometheus_client is missing): "
        "pip install 'aiopipelines[metrics]'\n"
    )


@pytest.mark.parametrize(
    ("hidden", "module", "extra"),
    [("prometheus_client", "pipelines.metrics", "metrics"), ("opentelemetry", "pipelines.tracing", "otel")],
)
def test_importing_without_the_extra_names_the_extra(tmp_path: Path, hidden: str, module: str, extra: str) -> None:
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / f"{hidden}.py").write_text(
        f"raise ModuleNotFoundError('hidden by the test', name={hidden!r})\n"
    )
    code = f"import {module}"
    proc = subprocess.run(
        [*PIPELINES[:3], "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "hidden")},
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        f"ModuleNotFoundError: {module} needs the {extra} extra ({hidden} is missing): "
        f"pip install 'aiopipelines[{extra}]'"
    )


@pytest.mark.asyncio(loop_factories=["asyncio"])  # virtual time needs asyncio's own loop
async def test_the_latency_histogram_puts_each_item_in_the_bucket_of_its_time(virtual_clock: VirtualClock) -> None:
    @node
    async def numbers() -> Any:
        for i in range(12):
            yield i

    @node
    async def slow(x: int) -> int:
        await asyncio.sleep(0.05)
        return x

    @node
    async def quick(x: int) -> None:
        await asyncio.sleep(2.0 if x == 0 else 0)

    graph = {
        "nodes": {
            "numbers": {"coro": numbers},
            "slow": {"coro": slow, "properties": {"workers": 1}},
            "quick": {"coro": quick, "properties": {"workers": 1}},
        },
        "graph": {"numbers": ["slow"], "slow": ["quick"], "quick": None},
    }
    result = await Plumber(graph).run()
    assert LATENCY_BOUNDS == (1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0)
    assert result["slow"].latency_counts == (0, 0, 0, 0, 12, 0, 0, 0)  # 50 ms each: at most 0.1 s
    # the first item alone takes 2 s; the other eleven, taken in one batch after it, none
    assert result["quick"].latency_counts == (11, 0, 0, 0, 0, 0, 1, 0)
    assert result["numbers"].latency_counts == (0,) * 8
