"""What the command says when an extra is missing or Redis cannot be reached: one line, exit 2.

Real import failures: the subprocess's Python path starts with a directory holding a package of the
module's name that fails to import as a missing one does, so the command meets exactly what it
meets when the extra is not installed. A real closed port: a socket bound and never listening.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import CHAIN, PIPELINES, ROOT, write


def run_without(module: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command with `module` impossible to import, as when it is not installed."""
    hidden = tmp_path / "hidden"
    (hidden / module).mkdir(parents=True, exist_ok=True)
    (hidden / module / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name='{module}')\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{hidden}{os.pathsep}{ROOT}"}
    return subprocess.run(
        [*PIPELINES, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, check=False
    )


@pytest.mark.parametrize(
    ("module", "command", "message"),
    [
        ("redis", "run", "--redis needs the 'redis' extra (cannot import redis): pip install 'aiopipelines[redis]'"),
        ("redis", "worker", "--redis needs the 'redis' extra (cannot import redis): pip install 'aiopipelines[redis]'"),
        (
            "msgpack",
            "run",
            "--redis needs the 'redis' extra (cannot import msgpack): pip install 'aiopipelines[redis]'",
        ),
        ("redis", "serve", "--redis needs the 'redis' extra (cannot import redis): pip install 'aiopipelines[redis]'"),
    ],
)
def test_redis_without_its_extra_is_one_line(tmp_path: Path, module: str, command: str, message: str) -> None:
    path = write(tmp_path, "chain.yaml", CHAIN)
    proc = run_without(module, tmp_path, command, path, "--redis", "redis://127.0.0.1:6379/0")
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"pipelines: {message}\n")


@pytest.mark.parametrize("module", ["aiohttp", "socketio"])
def test_serve_without_the_web_extra_is_one_line(tmp_path: Path, module: str) -> None:
    path = write(tmp_path, "chain.yaml", CHAIN)
    proc = run_without(module, tmp_path, "serve", path, "--port", "0")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"pipelines: serve needs the 'web' extra (cannot import {module}): pip install 'aiopipelines[web]'\n",
    )


def test_a_yaml_file_without_pyyaml_is_one_line_and_json_still_works(tmp_path: Path) -> None:
    path = write(tmp_path, "chain.yaml", CHAIN)
    proc = run_without("yaml", tmp_path, "validate", path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"pipelines: {path}: reading YAML needs PyYAML: pip install 'aiopipelines[files]'\n",
    )
    graph = '{"nodes": {"a": {"coro": "tests.cli_nodes:count", "args": {"n": 1}}}, "graph": {"a": null}}'
    path = write(tmp_path, "one.json", graph)
    proc = run_without("yaml", tmp_path, "validate", path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"{path}: ok (1 nodes)\n", "")


def test_uvloop_without_its_extra_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "chain.yaml", CHAIN)
    proc = run_without("uvloop", tmp_path, "run", path, "--loop", "uvloop")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        "pipelines: --loop uvloop needs the 'uvloop' extra (cannot import uvloop): "
        "pip install 'aiopipelines[uvloop]'\n",
    )


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 where nothing listens, for as long as the test runs: bound, never listening."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.mark.parametrize("command", ["run", "worker", "serve"])
def test_a_redis_that_cannot_be_reached_is_one_line_before_anything_else(
    tmp_path: Path, closed_port: int, command: str
) -> None:
    path = write(tmp_path, "chain.yaml", CHAIN)
    url = f"redis://127.0.0.1:{closed_port}/0"
    proc = subprocess.run(
        [*PIPELINES, command, path, "--redis", url, *(["--port", "0"] if command == "serve" else [])],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"pipelines: cannot reach Redis at {url}: Error 111 connecting to 127.0.0.1:{closed_port}. "
        f"Connect call failed ('127.0.0.1', {closed_port}).\n",
    )


def test_a_redis_url_with_a_password_is_not_shown_with_it(tmp_path: Path, closed_port: int) -> None:
    path = write(tmp_path, "chain.yaml", CHAIN)
    url = f"redis://me:secret@127.0.0.1:{closed_port}/0"
    proc = subprocess.run(
        [*PIPELINES, "run", path, "--redis", url], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert proc.returncode == 2
    assert "secret" not in proc.stderr
    assert proc.stderr.startswith(f"pipelines: cannot reach Redis at redis://me:***@127.0.0.1:{closed_port}/0: ")
