"""The socket.io graph server: the original demo's protocol, refused payloads, isolation, disconnects."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from demos import server as demo_server
from demos.client import original_payload
from pipelines import Processor, Registry
from pipelines.web import HUB, SIO, Hub, make_app
from pipelines.web.graph_server import GraphServer, Limits

from .helpers import until
from .web_helpers import serving

ROOT = Path(__file__).parent.parent


class Nodes:
    """Coroutines a test server registers besides the demo's."""

    @classmethod
    async def endless(cls, processor: Processor, output_q: Any) -> None:
        i = 0
        while True:
            await output_q.put(i)
            i += 1
            await asyncio.sleep(0)

    @classmethod
    async def numbers(cls, processor: Processor, output_q: Any, upto: int) -> None:
        for i in range(upto):
            await output_q.put(i)

    @classmethod
    async def fragile(cls, processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] == 3:
            raise ValueError("three is bad")
        return q_elt[0]

    @classmethod
    async def keep(cls, processor: Processor, q_elt: tuple[Any]) -> Any:
        return q_elt[0]


class Client:
    """A real socket.io client that records every event it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient()
        self.events: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()
        for event in ("recv", "done", "error"):
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event: str) -> Any:
        async def record(data: Any) -> None:
            self.events.append((event, data))
            self.changed.set()

        return record

    def of(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def wait_for(self, event: str, count: int = 1) -> list[Any]:
        while len(self.of(event)) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)
        return self.of(event)


@contextlib.asynccontextmanager
async def graph_server(limits: Limits | None = None) -> AsyncIterator[tuple[str, Hub, GraphServer]]:
    demo_server.DELAY["scale"] = 0.0
    app = make_app()
    registry = Registry({"ProcessFunc": demo_server.ProcessFunc, "Nodes": Nodes})
    server = GraphServer(app[SIO], registry, hub=app[HUB], limits=limits)
    server.attach(app)
    async with serving(app) as url:
        yield url, app[HUB], server


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Client]:
    client = Client()
    await client.sio.connect(url)
    try:
        yield client
    finally:
        await client.sio.disconnect()


def expected_results(strings: list[str]) -> list[str]:
    return sorted([s[::-1].upper() for s in strings] + [f"{s[::-1]}-{s}" for s in strings])


async def test_the_original_clients_payload_gets_every_result_then_done() -> None:
    strings = [f"0x{i:04x}ab" for i in range(5)]
    async with graph_server() as (url, hub, _), connected(url) as client:
        await client.sio.emit("process_msg", original_payload(strings))
        (done,) = await client.wait_for("done")
        assert sorted(client.of("recv")) == expected_results(strings)
        assert done["state"] == "completed"
        assert (done["stats"]["inp"]["items_out"], done["stats"]["out"]["completed"]) == (5, 10)
        assert client.of("error") == []
        assert [entry.label for entry in hub.runs()] == [f"client {client.sio.get_sid()[:8]}"]


BAD_PAYLOADS = [
    (["not", "a", "dict"], "payload must be a graph dict with 'nodes' and 'graph', got list"),
    ("inp", "payload must be a graph dict with 'nodes' and 'graph', got str"),
    (None, "payload must be a graph dict with 'nodes' and 'graph', got null"),
    (
        {"nodes": {"inp": {"coro": "os.system"}}, "graph": {"inp": None}},
        "node 'inp': 'os.system' is not registered (registered names: Nodes, ProcessFunc)",
    ),
    (
        {"nodes": {"inp": {"coro": "__import__"}}, "graph": {"inp": None}},
        "node 'inp': '__import__' is not registered (registered names: Nodes, ProcessFunc)",
    ),
    (
        {"nodes": {"inp": {"coro": "ProcessFunc.__init__"}}, "graph": {"inp": None}},
        "node 'inp': 'ProcessFunc.__init__': '__init__' is private",
    ),
    (
        {"nodes": {"inp": {"coro": "os:system"}}, "graph": {"inp": None}},
        "node 'inp': 'os:system': this registry resolves registered names only, not imports",
    ),
    (
        {"nodes": {"inp": {"coro": 42}}, "graph": {"inp": None}},
        "node 'inp': 'coro' must be the name of a registered coroutine, got int",
    ),
    (
        {
            "nodes": {"inp": {"coro": "Nodes.endless"}, "out": {"coro": "Nodes.keep"}},
            "graph": {"inp": ["outt"], "out": None},
        },
        "invalid graph: node 'inp': unknown successor 'outt' (known nodes: inp, out)",
    ),
    (
        {"nodes": {"inp": {"coro": "Nodes.endless", "properties": {"setup": "Nodes.keep"}}}, "graph": {"inp": None}},
        "node 'inp': property 'setup' cannot be set by a client (allowed: aggregate_inputs, on_error, ordered, "
        "queue_size, retry, style, timeout, workers)",
    ),
    (
        {"nodes": {"k": {"coro": "Nodes.keep", "properties": {"workers": 1000}}}, "graph": {"k": None}},
        "node 'k': workers 1000 is more than this server allows (16)",
    ),
    (
        {"nodes": {f"n{i}": {"coro": "Nodes.keep"} for i in range(40)}, "graph": {f"n{i}": None for i in range(40)}},
        "graph has 40 nodes (max 32)",
    ),
    (
        {"nodes": {"inp": {"coro": "Nodes.numbers", "args": {"upto": [0] * 20_000}}}, "graph": {"inp": None}},
        "node 'inp': args 'upto' has 20000 items (max 10000)",
    ),
    (
        {"nodes": {"inp": {"coro": "Nodes.numbers", "args": {"upto": "x" * 70_000}}}, "graph": {"inp": None}},
        "payload is 70091 bytes (max 65536)",
    ),
]


@pytest.mark.parametrize(("payload", "message"), BAD_PAYLOADS, ids=[m.split(":")[0][:30] for _, m in BAD_PAYLOADS])
async def test_a_bad_payload_gets_one_error_line_runs_nothing_and_the_server_keeps_serving(
    payload: Any, message: str
) -> None:
    async with graph_server() as (url, hub, _), connected(url) as client:
        await client.sio.emit("process_msg", payload)
        assert await client.wait_for("error") == [message]
        assert hub.runs() == []  # nothing was built, nothing ran
        await client.sio.emit("process_msg", original_payload(["ab"]))
        await client.wait_for("done")
        assert sorted(client.of("recv")) == expected_results(["ab"])
        assert client.of("error") == [message]


async def test_clients_are_isolated_from_each_other() -> None:
    async with graph_server() as (url, _, _), connected(url) as first, connected(url) as second:
        await asyncio.gather(
            first.sio.emit("process_msg", original_payload(["aa", "ab"])),
            second.sio.emit("process_msg", original_payload(["zz", "zy", "zx"])),
        )
        await asyncio.gather(first.wait_for("done"), second.wait_for("done"))
        assert sorted(first.of("recv")) == expected_results(["aa", "ab"])
        assert sorted(second.of("recv")) == expected_results(["zz", "zy", "zx"])


async def test_disconnecting_cancels_the_clients_runs() -> None:
    endless = {
        "nodes": {"inp": {"coro": "Nodes.endless"}, "out": {"coro": "Nodes.keep"}},
        "graph": {"inp": ["out"], "out": None},
    }
    async with graph_server() as (url, hub, server):
        async with connected(url) as client:
            await client.sio.emit("process_msg", endless)
            await client.wait_for("recv", 20)
            sid = client.sio.get_sid()
            assert len(server.runs_of(sid)) == 1
            (entry,) = hub.runs()
        await until(lambda: entry.plumber.state == "cancelled", limit=100_000)
        await until(lambda: server.runs_of(sid) == [], limit=100_000)


async def test_a_failing_run_sends_an_error_line_then_done_failed() -> None:
    payload = {
        "nodes": {
            "inp": {"coro": "Nodes.numbers", "args": {"upto": 5}},
            "bad": {"coro": "Nodes.fragile"},
            "out": {"coro": "Nodes.keep"},
        },
        "graph": {"inp": ["bad"], "bad": ["out"], "out": None},
    }
    async with graph_server() as (url, _, _), connected(url) as client:
        await client.sio.emit("process_msg", payload)
        (done,) = await client.wait_for("done")
        (error,) = client.of("error")
        assert re.fullmatch(r"run r1 failed: ValueError: three is bad \(node 'bad' failed on item \(3,\)\)", error)
        assert done["state"] == "failed"


async def test_a_client_may_run_only_so_many_graphs_at_once() -> None:
    endless = {
        "nodes": {"inp": {"coro": "Nodes.endless"}, "out": {"coro": "Nodes.keep"}},
        "graph": {"inp": ["out"], "out": None},
    }
    async with graph_server(Limits(max_runs_per_client=2)) as (url, hub, _), connected(url) as client:
        for _ in range(3):
            await client.sio.emit("process_msg", endless)
        assert await client.wait_for("error") == ["this client already has 2 runs going (the maximum)"]
        assert len(hub.runs()) == 2


def test_the_demo_server_and_client_talk_over_a_real_socket() -> None:
    server = subprocess.Popen(
        [sys.executable, "-W", "error", str(ROOT / "demos" / "server.py"), "--port", "0", "--delay", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.fullmatch(r"serving on (http://127\.0\.0\.1:\d+)/\n", line)
        assert match, line
        client = subprocess.run(
            [sys.executable, "-W", "error", str(ROOT / "demos" / "client.py"), "--url", match[1], "--count", "3"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (client.returncode, client.stderr) == (0, "")
        lines = client.stdout.splitlines()
        sent = ast.literal_eval(lines[0].removeprefix("sending: "))
        received = sorted(line.removeprefix("received: ") for line in lines[1:-1])
        assert received == expected_results(sent)
        assert lines[-1] == "done: run r1 completed"
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
