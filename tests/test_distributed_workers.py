"""`pipelines run --redis` and `pipelines worker` as real processes, against a real redis-server."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.redis_server import RedisServer, redis_server

ROOT = Path(__file__).parent.parent
PIPELINES = [sys.executable, "-W", "error", "-c", "from pipelines.cli import console_main; console_main()"]
QUICK = ["--heartbeat", "0.1", "--dead-after", "1", "--claim-idle", "0.5"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as running:
        yield running


class Process:
    """A `pipelines` command running in the background; its output is read as it comes."""

    started: ClassVar[list[Process]] = []  # by the current test; the ones it left running are killed after it

    def __init__(self, *args: str, hold: bool = False) -> None:
        env = {**os.environ, "PIPELINES_TEST_HOLD": "1" if hold else "0"}
        self.popen = subprocess.Popen(
            [*PIPELINES, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env
        )
        self.shown = b""
        Process.started.append(self)

    def wait_for(self, condition: Callable[[str], bool], timeout: float = 60) -> None:
        """Read stdout until `condition(what it printed so far)` holds (at most `timeout` s of silence)."""
        assert self.popen.stdout is not None
        while not condition(self.shown.decode()):
            if not select.select([self.popen.stdout], [], [], timeout)[0]:
                raise AssertionError(f"no progress; printed so far: {self.shown.decode()!r}")
            chunk = os.read(self.popen.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"exited first; printed: {self.shown.decode()!r}")
            self.shown += chunk

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        stdout, stderr = self.popen.communicate(timeout=timeout)
        return self.popen.returncode, (self.shown + stdout).decode(), stderr.decode()


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    """A failing test leaves no process behind (nor its pipes, for a later test to find unclosed)."""
    yield
    while Process.started:
        popen = Process.started.pop().popen
        if popen.poll() is None:
            popen.kill()
        popen.communicate()


def graph_file(tmp_path: Path, flow: str, nodes: dict[str, str]) -> str:
    lines = ["nodes:"] + [f"  {name}: {spec}" for name, spec in nodes.items()] + [f'flow: "{flow}"']
    path = tmp_path / "graph.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def numbers_in(text: str) -> list[int]:
    return sorted(int(line) for line in text.splitlines() if re.fullmatch(r"-?\d+", line))


def summary_row(text: str, node: str) -> list[str]:
    [row] = [line.split() for line in text.splitlines() if line.split()[:1] == [node] and len(line.split()) == 10]
    return row[1:4]  # in, out, done


def last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    return lines[-1]


N = "tests.distributed_nodes"


def test_a_graph_split_over_three_workers_delivers_every_item(server: RedisServer, tmp_path: Path) -> None:
    nodes = {
        "source": f'{{coro: "{N}:count", args: {{n: 200}}}}',
        "double": f'{{coro: "{N}:double"}}',
        "inc": f'{{coro: "{N}:inc"}}',
        "show": f'{{coro: "{N}:show"}}',
    }
    path = graph_file(tmp_path, "source -> double -> inc -> show", nodes)
    workers = [
        Process("worker", path, "--redis", server.url, "--nodes", name, *QUICK) for name in nodes if name != "source"
    ]
    code, out, _ = Process("run", path, "--redis", server.url, *QUICK).finish()
    assert (code, summary_row(out, "source"), summary_row(out, "show")) == (0, ["-", "200", "-"], ["200", "0", "200"])
    assert re.search(r"^completed in \d+\.\d\ds$", out, re.M), out
    results = [worker.finish() for worker in workers]
    assert [r[0] for r in results] == [0, 0, 0]
    assert numbers_in(results[2][1]) == [2 * i + 1 for i in range(200)]
    assert all(summary_row(r[1], "inc") == ["200", "200", "200"] for r in results)


def test_a_killed_worker_s_items_are_taken_over_by_another(server: RedisServer, tmp_path: Path) -> None:
    nodes = {
        "source": f'{{coro: "{N}:count", args: {{n: 300}}}}',
        "hold": f'{{coro: "{N}:hold_if_told"}}',
        "show": f'{{coro: "{N}:show"}}',
    }
    path = graph_file(tmp_path, "source -> hold -> show", nodes)
    hanging = Process("worker", path, "--redis", server.url, "--nodes", "hold", *QUICK, hold=True)
    run = Process("run", path, "--redis", server.url, *QUICK)
    hanging.wait_for(lambda shown: "holding" in shown)  # it has taken a batch, and sits on it
    hanging.popen.send_signal(signal.SIGKILL)
    assert hanging.finish()[0] == -signal.SIGKILL
    survivor = Process("worker", path, "--redis", server.url, "--nodes", "hold,show", *QUICK)
    code, out, err = run.finish()
    assert code == 0, err
    code, out, err = survivor.finish()
    assert code == 0, err
    assert numbers_in(out) == list(range(300))  # every item, and no duplicate: the killed one sent nothing
    assert re.search(r"node 'hold': took over \d+ items a stopped or stalled worker left unacknowledged", err)


def test_stopping_the_run_drains_every_worker(server: RedisServer, tmp_path: Path) -> None:
    nodes = {"source": f'{{coro: "{N}:endless"}}', "double": f'{{coro: "{N}:double"}}', "show": f'{{coro: "{N}:show"}}'}
    path = graph_file(tmp_path, "source -> double -> show", nodes)
    first = Process("worker", path, "--redis", server.url, "--nodes", "double", *QUICK)
    second = Process("worker", path, "--redis", server.url, "--nodes", "show", *QUICK)
    run = Process("run", path, "--redis", server.url, *QUICK)
    second.wait_for(lambda shown: len(numbers_in(shown)) >= 20)
    run.popen.send_signal(signal.SIGINT)
    code, out, err = run.finish()
    assert code == 0, err
    assert re.search(r"^stopped in ", out, re.M), out
    sent = int(summary_row(out, "source")[1])
    assert summary_row(out, "show") == [str(sent), "0", str(sent)]
    results = [first.finish(), second.finish()]
    assert [(c, bool(re.search(r"^stopped in ", o, re.M))) for c, o, _ in results] == [(0, True), (0, True)]
    assert numbers_in(results[1][1]) == [2 * i for i in range(sent)]  # nothing the source sent was lost


def test_an_item_that_cannot_be_sent_fails_the_run_with_one_line(server: RedisServer, tmp_path: Path) -> None:
    nodes = {
        "source": f'{{coro: "{N}:count", args: {{n: 6}}}}',
        "as_set": f'{{coro: "{N}:as_set"}}',
        "show": f'{{coro: "{N}:show"}}',
    }
    path = graph_file(tmp_path, "source -> as_set -> show", nodes)
    worker = Process("worker", path, "--redis", server.url, *QUICK)
    code, _, err = Process("run", path, "--redis", server.url, *QUICK).finish()
    message = (
        "SerializationError: node 'as_set': item {3} cannot be sent to 'show' over Redis: cannot serialize set {3} "
        "(only None, bool, int, float, str, bytes and lists, tuples and dicts of them travel)"
    )
    assert code == 1
    assert last_line(err).startswith(f"pipelines: run failed: RemoteFailure: {message} (pipelines: node 'as_set'")
    code, _, err = worker.finish()
    assert code == 1
    assert last_line(err).startswith(f"pipelines: run failed: {message} (pipelines: node 'as_set' failed on item")


def test_redis_going_away_ends_every_process_with_one_line(tmp_path: Path) -> None:
    nodes = {"source": f'{{coro: "{N}:endless"}}', "show": f'{{coro: "{N}:show"}}'}
    path = graph_file(tmp_path, "source -> show", nodes)
    with redis_server(tmp_path) as server:
        worker = Process("worker", path, "--redis", server.url, *QUICK)
        run = Process("run", path, "--redis", server.url, *QUICK)
        worker.wait_for(lambda shown: len(numbers_in(shown)) >= 20)
        server.kill()
        expected = f"pipelines: run failed: RedisUnavailable: lost the connection to Redis at {server.url}: "
        for process in (run, worker):
            code, _, err = process.finish()
            assert (code, last_line(err)[: len(expected)]) == (1, expected)


def test_a_worker_refuses_a_source(server: RedisServer, tmp_path: Path) -> None:
    nodes = {"source": f'{{coro: "{N}:count", args: {{n: 1}}}}', "show": f'{{coro: "{N}:show"}}'}
    path = graph_file(tmp_path, "source -> show", nodes)
    code, out, err = Process("worker", path, "--redis", server.url, "--nodes", "source").finish()
    assert (code, out, err) == (
        2,
        "",
        f"pipelines: {path}: node 'source' is a source: sources run in the coordinator (pipelines run)\n",
    )


def test_serve_with_redis_shows_the_counts_of_every_worker(server: RedisServer, tmp_path: Path) -> None:
    import json
    import urllib.request

    nodes = {
        "source": f'{{coro: "{N}:count", args: {{n: 150}}}}',
        "double": f'{{coro: "{N}:double"}}',
        "show": f'{{coro: "{N}:show"}}',
    }
    path = graph_file(tmp_path, "source -> double -> show", nodes)
    workers = [Process("worker", path, "--redis", server.url, "--nodes", name, *QUICK) for name in ("double", "show")]
    serving = Process("serve", path, "--redis", server.url, "--port", "0", *QUICK)
    serving.wait_for(lambda shown: "(Ctrl-C to stop)" in shown)
    url = re.search(r"dashboard at (http://127\.0\.0\.1:\d+)/", serving.shown.decode())
    assert url, serving.shown

    def stats() -> dict:
        with urllib.request.urlopen(f"{url[1]}/api/stats", timeout=30) as response:
            return json.loads(response.read())

    now = stats()
    while now["state"] == "running":  # each call is a round trip: the run moves on meanwhile
        now = stats()
    # The run ends on every worker's last counts (read as their nodes finish, before it ends).
    counts = {name: (node["items_in"], node["completed"]) for name, node in now["nodes"].items()}
    assert (now["state"], counts) == ("completed", {"source": (0, 0), "double": (150, 150), "show": (150, 150)})
    serving.popen.send_signal(signal.SIGINT)  # the run has ended: one Ctrl-C ends the server
    code, out, err = serving.finish()
    assert (code, out.splitlines()[-1]) == (0, "completed"), err
    assert [worker.finish()[0] for worker in workers] == [0, 0]
