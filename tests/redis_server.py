"""A real redis-server for the distributed tests: on a free port of 127.0.0.1, in a temporary directory."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class RedisServer:
    """One redis-server process; `url` to reach it, `kill()` to take it away mid-test."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is not installed: the distributed tests need it (apt-get install redis-server)")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)]
        arguments += ["--save", "", "--appendonly", "no", "--logfile", str(directory / "redis.log")]
        self.process = subprocess.Popen([executable, *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        for _ in range(500):  # up to ~5 s: it is usually ready in a few milliseconds
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                pytest.fail(f"redis-server exited at start with {self.process.returncode}: {error}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.01)
        self.stop()
        pytest.fail("redis-server did not answer PING within 5 s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    try:
        yield server
    finally:
        server.stop()
