"""`pipelines serve`: a real subprocess serving the dashboard and the control API of a graph file."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from .test_cli import PIPELINES, ROOT, write

ENDLESS = """
nodes:
  source: {coro: "tests.cli_nodes:endless"}
  double: {coro: "tests.cli_nodes:double"}
  show: {coro: "tests.cli_nodes:drop"}
flow: "source -> double -> show"
"""


def api(url: str, path: str, method: str = "GET", token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"{url}/api/{path}", method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*PIPELINES, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.fullmatch(r"pipelines: dashboard at (http://[\d.]+:\d+)/(\?token=\S+)? \(Ctrl-C to stop\)\n", line)
    assert match, line + (proc.stderr.read() if proc.stderr else "")
    return proc, match[1]


def test_serve_runs_the_file_and_the_control_api_stops_it(tmp_path: Path) -> None:
    proc, url = start(write(tmp_path, "endless.yaml", ENDLESS), "--port", "0")
    try:
        status, graph = api(url, "graph")
        assert (status, [n["name"] for n in graph["nodes"]]) == (200, ["source", "double", "show"])
        while api(url, "stats")[1]["nodes"]["show"]["completed"] < 20:
            pass  # each call is a round trip to the server: the run moves on meanwhile
        status, body = api(url, "stop", "POST")
        assert (status, body["state"]) == (200, "stopping")
        while api(url, "stats")[1]["state"] != "stopped":
            pass
        status, stats = api(url, "stats")
        assert stats["nodes"]["show"]["completed"] == stats["nodes"]["source"]["items_out"]  # drained: none lost
    finally:
        proc.send_signal(signal.SIGINT)  # the run has ended: one Ctrl-C ends the server
        out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")
    assert out.endswith("stopped\n")


def test_serve_beyond_loopback_makes_up_a_token_and_requires_it(tmp_path: Path) -> None:
    proc, url = start(write(tmp_path, "endless.yaml", ENDLESS), "--port", "0", "--host", "0.0.0.0")
    try:
        loopback = url.replace("0.0.0.0", "127.0.0.1")
        assert api(loopback, "stats") == (401, {"error": "this server requires a token"})
        assert api(loopback, "pause", "POST") == (401, {"error": "this server requires a token"})
    finally:
        proc.send_signal(signal.SIGINT)  # running: the first Ctrl-C stops, drains, and ends the server
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert err.startswith("pipelines: stopping the sources; Ctrl-C again to cancel\n")
    assert out.endswith("stopped\n")


def test_serve_with_a_token_accepts_it(tmp_path: Path) -> None:
    proc, url = start(write(tmp_path, "endless.yaml", ENDLESS), "--port", "0", "--token", "t0k")
    try:
        assert api(url, "stats")[0] == 401
        status, body = api(url, "pause", "POST", token="t0k")
        assert (status, body["paused"]) == (200, True)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


FAILING = """
nodes:
  source: {coro: "tests.cli_nodes:count", args: {n: 10}}
  breaks: {coro: "tests.cli_nodes:fails_on_three"}
  show: {coro: "tests.cli_nodes:drop"}
flow: "source -> breaks -> show"
"""


def test_serve_says_at_once_why_the_run_failed_and_keeps_the_dashboard_up(tmp_path: Path) -> None:
    proc, url = start(write(tmp_path, "failing.yaml", FAILING), "--port", "0")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # said when the run fails, not only when the server leaves
        assert line == (
            "pipelines: run failed: ValueError: three is not allowed (node 'breaks' failed on item 3) "
            "(Ctrl-C to leave)\n"
        )
        assert api(url, "stats")[1]["state"] == "failed"  # still serving
    finally:
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert out.splitlines()[-1] == "failed"


def test_serve_on_a_port_out_of_range_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [*PIPELINES, "serve", write(tmp_path, "failing.yaml", FAILING), "--port", "70000"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "pipelines: cannot serve on 127.0.0.1:70000: bind(): port must be 0-65535.\n"


def test_metrics_on_a_port_out_of_range_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [*PIPELINES, "run", write(tmp_path, "failing.yaml", FAILING), "--metrics-port", "70000"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "pipelines: cannot serve metrics on 127.0.0.1:70000: bind(): port must be 0-65535.\n"


def test_an_ipv6_address_is_shown_in_brackets_in_a_url() -> None:
    from pipelines.cli.observe import http_url

    assert http_url("::1", 8080, "/metrics") == "http://[::1]:8080/metrics"
    assert http_url("127.0.0.1", 8080, "/") == "http://127.0.0.1:8080/"
    assert http_url("localhost", 80, "/") == "http://localhost:80/"
