"""The socket.io graph server: the original demo's protocol, refused payloads, isolation, disconnects."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from demos import server as demo_server
from demos.client import original_payload
from pipelines import Processor, Registry
from pipelines.web import HUB, SIO, Hub, make_app
from pipelines.web.graph_server import GraphServer, Limits

from .helpers import until, yield_now
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

    yielded = 0  # how many values `repeat` has yielded, in every run

    @classmethod
    async def repeat(cls, processor: Processor, q_elt: tuple[Any], times: int) -> AsyncIterator[Any]:
        """A generator sink: one item in, `times` results out, without ever awaiting anything else."""
        for i in range(times):
            cls.yielded += 1
            yield [q_elt[0], i]


class Client:
    """A real socket.io client that records every event it receives.

    Clear `reading` and its handlers stop returning: python-socketio acknowledges an event when
    its handler returns, so to the server this client has stopped reading.
    """

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient()
        self.events: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()
        self.reading = asyncio.Event()
        self.reading.set()
        for event in ("recv", "done", "error"):
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event: str) -> Any:
        async def record(data: Any) -> None:
            await self.reading.wait()
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
        "node 'inp': property 'setup' cannot be set by a client (allowed: aggregate_inputs, input, on_error, "
        "ordered, queue_size, retry, style, timeout, workers)",
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
        assert re.fullmatch(r"done: run r1 completed in \d+\.\d\d s", lines[-1]), lines[-1]
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err


async def test_with_a_redis_manager_a_server_emits_to_a_client_of_another_server(tmp_path: Path) -> None:
    """Two socket.io servers share one Redis: an emit from one reaches a client connected to the other."""
    from .redis_server import redis_server

    demo_server.DELAY["scale"] = 0.0
    with redis_server(tmp_path) as redis:
        first, second = demo_server.build_app(redis_url=redis.url), demo_server.build_app(redis_url=redis.url)
        async with serving(first) as url_one, serving(second) as url_two:
            async with connected(url_two) as client:
                # The graph runs on the second server, which answers through the Redis manager.
                await client.sio.emit("process_msg", original_payload(["ab", "cd"]))
                await client.wait_for("done")
                assert sorted(client.of("recv")) == expected_results(["ab", "cd"])
                # The first server emits to a client it does not hold: Redis carries it to the second.
                await first[SIO].emit("recv", data="from the other server", to=client.sio.get_sid())
                await client.wait_for("recv", 5)
                assert client.of("recv")[-1] == "from the other server"
            assert url_one != url_two


# -- results are bounded: a client's run goes at the client's pace --------------------------


async def steady(read: Any, turns: int = 500, limit: int = 200) -> Any:
    """`read()` once it has kept its value through `turns` event-loop turns (at most `limit` tries)."""
    value = read()
    for _ in range(limit):
        await yield_now(turns)
        again = read()
        if again == value:
            return value
        value = again
    raise AssertionError(f"still changing after {limit * turns} loop turns: {value!r}")


def counting(upto: int, queue: int) -> dict[str, Any]:
    return {
        "nodes": {
            "inp": {"coro": "Nodes.numbers", "args": {"upto": upto}},
            "out": {"coro": "Nodes.keep", "properties": {"queue_size": queue}},
        },
        "graph": {"inp": ["out"], "out": None},
    }


async def test_a_client_that_stops_reading_holds_its_run_back_then_gets_every_result_once_in_order() -> None:
    limits = Limits(max_pending_results=40)
    queue, upto = 8, 3000
    # What the source can have put while the client reads nothing: the results held for the
    # client, one more batch of the sink (at most its input's bound), and its full input edge.
    bound = limits.max_pending_results + 2 * queue
    async with graph_server(limits) as (url, hub, _), connected(url) as client:
        client.reading.clear()
        await client.sio.emit("process_msg", counting(upto, queue))
        await until(lambda: len(hub.runs()) == 1, limit=100_000)
        (entry,) = hub.runs()
        put = await steady(lambda: entry.plumber.stats()["inp"].items_out)
        assert put <= bound
        assert entry.plumber.state == "running"
        client.reading.set()  # it reads again: the run goes on to the end
        (done,) = await client.wait_for("done")
        assert done["state"] == "completed"
        assert client.of("recv") == list(range(upto))  # every result, once, in order
        assert entry.plumber.stats()["inp"].items_out == upto


async def test_a_generator_sink_is_held_back_between_its_values() -> None:
    limits = Limits(max_pending_results=30)
    times = 2000
    payload = {
        "nodes": {
            "inp": {"coro": "Nodes.numbers", "args": {"upto": 2}},
            "out": {"coro": "Nodes.repeat", "args": {"times": times}},
        },
        "graph": {"inp": ["out"], "out": None},
    }
    Nodes.yielded = 0
    async with graph_server(limits) as (url, _, _), connected(url) as client:
        client.reading.clear()
        await client.sio.emit("process_msg", payload)
        yielded = await steady(lambda: Nodes.yielded)
        # plus the one each of the sink's workers holds while it waits: the two items run at once
        assert 0 < yielded <= limits.max_pending_results + 2
        client.reading.set()
        (done,) = await client.wait_for("done")
        assert done["state"] == "completed"
        received = client.of("recv")
        # the two items' values interleave (they run at once); each item's come in the order yielded
        for n in range(2):
            assert [value for value in received if value[0] == n] == [[n, i] for i in range(times)]
        assert len(received) == 2 * times


@contextlib.asynccontextmanager
async def silent_client(url: str) -> AsyncIterator[tuple[str, Any]]:
    """A socket.io client over a bare websocket that sends graphs and never reads what comes back.

    Yields its sid and `send(payload)`. It speaks Engine.IO 4 / Socket.IO 5 by hand: the open
    packet, a connect to the default namespace, then events; leaving the block closes the socket.
    """
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket") as ws,
    ):
        opened = await ws.receive_str()
        assert opened.startswith("0"), opened
        await ws.send_str("40")
        accepted = await ws.receive_str()
        assert accepted.startswith("40"), accepted
        sid = json.loads(accepted[2:])["sid"]

        async def send(payload: Any) -> None:
            await ws.send_str("42" + json.dumps(["process_msg", payload]))

        yield sid, send


ENDLESS = {
    "nodes": {"inp": {"coro": "Nodes.endless"}, "out": {"coro": "Nodes.keep", "properties": {"queue_size": 8}}},
    "graph": {"inp": ["out"], "out": None},
}


async def test_a_client_that_never_reads_holds_its_run_and_leaving_releases_everything() -> None:
    limits = Limits(max_pending_results=40)
    bound = limits.max_pending_results + 2 * 8
    async with graph_server(limits) as (url, hub, server):
        async with silent_client(url) as (sid, send):
            await send(ENDLESS)
            await until(lambda: len(hub.runs()) == 1, limit=100_000)
            (entry,) = hub.runs()
            put = await steady(lambda: entry.plumber.stats()["inp"].items_out)
            assert 0 < put <= bound
            assert server.runs_of(sid) != []
            assert server.sio.manager.callbacks.get(sid)  # its acknowledgements are awaited
        # It left mid-run: its run is cancelled and nothing of it is kept.
        await until(lambda: entry.plumber.state == "cancelled", limit=100_000)
        await until(lambda: server.runs_of(sid) == [], limit=100_000)
        await until(lambda: not [t for t in asyncio.all_tasks() if t.get_name().startswith("pipelines:client-")])
        assert all(not s.in_flight for s in entry.plumber.stats().values())
        assert sid not in server.sio.manager.callbacks
        assert [hook.pending for hook in entry.plumber.hooks if hasattr(hook, "pending")] == [0]


# -- soak: whatever its clients do, the server's memory stays flat ---------------------------

SOAK_CYCLES = 3  # after one more cycle that warms the server up
SOAK_LEAVERS = 4  # clients per cycle that leave mid-run
SOAK_GROWTH_KB = 20 * 1024  # the RSS over its warmed-up baseline, at most (wiki/Web.md); measured: about 1.5 MB
SOAK_ENDLESS = {
    "nodes": {"inp": {"coro": "Soak.endless"}, "out": {"coro": "Soak.padded"}},
    "graph": {"inp": ["out"], "out": None},
}


def soak_counting(upto: int) -> dict[str, Any]:
    return {**SOAK_ENDLESS, "nodes": {**SOAK_ENDLESS["nodes"], "inp": {"coro": "Soak.numbers", "args": {"upto": upto}}}}


SOAK_HELD = Limits().max_pending_results + 2 * 100  # pending results, a sink batch, a full edge (default bounds)


def rss_kb(pid: int) -> int:
    """The resident set of process `pid`, in kB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


async def api(session: aiohttp.ClientSession, url: str, path: str) -> Any:
    async with session.get(f"{url}/api/{path}") as response:
        assert response.status == 200
        return await response.json()


async def run_of(session: aiohttp.ClientSession, url: str, sid: str) -> str:
    """The hub's id of the run client `sid` started (polled: the server builds it on its own time)."""
    for _ in range(1000):
        for run in await api(session, url, "runs"):
            if run["label"] == f"client {sid[:8]}":
                return str(run["id"])
    raise AssertionError(f"client {sid} has no run")


async def put_when_held(session: aiohttp.ClientSession, url: str, run: str) -> int:
    """What run `run`'s source has put once 20 polls in a row saw no more (or after 2,000 polls)."""
    last, same = -1, 0
    for _ in range(2000):
        put = int((await api(session, url, f"stats?run={run}"))["nodes"]["inp"]["items_out"])
        same = same + 1 if put == last else 0
        if same == 20:
            break
        last = put
    return put


async def soak_cycle(url: str, pid: int, samples: list[int]) -> tuple[int, int]:
    """A client that never reads, clients that leave mid-run, one that reads a run through.

    Returns what the silent client's source had put when it was first held, and at the end.
    """
    async with aiohttp.ClientSession() as session, silent_client(url) as (sid, send):
        await send(SOAK_ENDLESS)
        run = await run_of(session, url, sid)
        held = await put_when_held(session, url, run)
        samples.append(rss_kb(pid))
        for _ in range(SOAK_LEAVERS):
            async with connected(url) as leaver:
                await leaver.sio.emit("process_msg", SOAK_ENDLESS)
                await leaver.wait_for("recv", 500)
            samples.append(rss_kb(pid))
        async with connected(url) as reader:
            upto = 5000
            await reader.sio.emit("process_msg", soak_counting(upto))
            (done,) = await reader.wait_for("done")
            assert done["state"] == "completed"
            assert [int(r.split(":")[0]) for r in reader.of("recv")] == list(range(upto))
        samples.append(rss_kb(pid))
        still = await put_when_held(session, url, run)
    async with aiohttp.ClientSession() as session:
        for _ in range(1000):  # the silent client left mid-run too: every run ends
            if all(run["state"] in ("cancelled", "completed") for run in await api(session, url, "runs")):
                break
        else:
            raise AssertionError(f"runs still going: {await api(session, url, 'runs')}")
    return held, still


def test_soak_a_client_that_never_reads_and_clients_that_leave_keep_the_servers_memory_flat() -> None:
    server = subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "tests.graph_server_soak"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        match = re.fullmatch(r"serving on (http://127\.0\.0\.1:\d+)\n", server.stdout.readline())
        assert match
        assert server.stdout.readline().strip() == str(ROOT / "pipelines" / "__init__.py")  # this tree's code
        samples: list[int] = []
        with asyncio.Runner() as runner:
            runner.run(soak_cycle(match[1], server.pid, []))  # warm up
            baseline = rss_kb(server.pid)
            held = [runner.run(soak_cycle(match[1], server.pid, samples)) for _ in range(SOAK_CYCLES)]
        growth = max(samples) - baseline
        print(f"soak: baseline {baseline} kB, peak {max(samples)} kB, growth {growth} kB; source held at {held}")
        for first, last in held:
            assert first <= SOAK_HELD
            assert last == first  # it stayed held while the other clients came and went
        assert growth <= SOAK_GROWTH_KB
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err


async def test_a_clients_nodes_grow_no_more_workers_than_the_limit() -> None:
    strings = [f"s{i}" for i in range(12)]
    async with graph_server(Limits(max_workers=2)) as (url, _, _), connected(url) as client:
        await client.sio.emit("process_msg", original_payload(strings))
        (done,) = await client.wait_for("done")
    assert done["state"] == "completed"
    assert sorted(client.of("recv")) == expected_results(strings)
    # coro1 awaits (a sleep): its pool grew, but only to the server's max_workers
    assert done["stats"]["coro1"]["peak_workers"] == 2


async def test_a_queue_bound_in_args_is_held_to_the_servers_limit() -> None:
    payload = {
        "nodes": {
            "inp": {"coro": "Nodes.numbers", "args": {"upto": 3}},
            "k": {"coro": "Nodes.keep", "args": {"queue_size": 5000}},
        },
        "graph": {"inp": ["k"], "k": None},
    }
    async with graph_server() as (url, _, _), connected(url) as client:
        await client.sio.emit("process_msg", payload)
        while not client.of("error") and not client.of("done"):
            client.changed.clear()
            await asyncio.wait_for(client.changed.wait(), 10)
        assert client.of("error") == ["node 'k': queue_size 5000 is more than this server allows (1000)"]
