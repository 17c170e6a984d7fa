"""Tokens: a malformed credential is refused exactly like a wrong one, and nothing reaches its sender.

Real servers on 127.0.0.1 and real clients: raw HTTP over a socket (so that a header can carry
bytes that are not UTF-8) for the control API, python-socketio's AsyncClient for the dashboard's
namespace. Each socket.io check synchronises on the client's own events: the namespace's
`connect_error`, then a sentinel sent after the dashboard has pushed to everyone it serves, on a
second namespace of the same connection (packets of one connection arrive in order, so whatever
the dashboard sent before the sentinel has arrived by then).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import socketio
from aiohttp import web
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipelines import Plumber, Processor
from pipelines.web import HUB, Dashboard, Hub, attach, make_app
from pipelines.web.dashboard import NAMESPACE
from pipelines.web.security import token_matches

from .web_helpers import serving

TOKEN = "s3cret-t0ken"
REFUSED = (401, {"error": "this server requires a token"})
SAFETY_NET = 10  # seconds: only so that a broken server fails the test instead of hanging it


async def count_up(processor: Processor, output_q: Any) -> None:
    i = 0
    while True:
        await output_q.put(i)
        i += 1
        await asyncio.sleep(0)


async def keep(processor: Processor, q_elt: tuple[int]) -> None:
    pass


def endless() -> Plumber:
    return Plumber(
        {"nodes": {"numbers": {"coro": count_up}, "keep": {"coro": keep}}, "graph": {"numbers": ["keep"], "keep": None}}
    )


# -- the control API, over a raw socket -------------------------------------------------------


async def raw_request(url: str, method: str, path: str, headers: list[bytes]) -> tuple[int, Any]:
    """Send one HTTP/1.1 request byte for byte; the status and the body of the answer (JSON decoded)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        head = [f"{method} {path} HTTP/1.1".encode(), f"Host: {parts.netloc}".encode(), b"Connection: close"]
        writer.write(b"\r\n".join([*head, *headers, b"Content-Length: 0", b"", b""]))
        await writer.drain()
        answer = await reader.read()  # until the server closes: Connection: close
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    try:
        return int(status_line.split()[1]), json.loads(body)
    except ValueError:
        return int(status_line.split()[1]), body


MALFORMED_HEADERS = {
    "not utf-8": b"Authorization: Bearer \xff\xfe\xfd",
    "the token then a stray byte": b"Authorization: Bearer " + TOKEN.encode() + b"\x80",
    "latin-1 lookalike": "Authorization: Bearer s3cret-t0kén".encode("latin-1"),
    "overlong utf-8": b"Authorization: Bearer \xc0\xaf",
    "empty": b"Authorization: Bearer ",
    "no scheme": b"Authorization: " + TOKEN.encode(),
    "very long": b"Authorization: Bearer " + b"x" * 6000,
}
MALFORMED_QUERIES = {
    "not utf-8": "?token=%FF%FE",
    "a lone surrogate": "?token=%ED%A0%80",
    "the token then a stray byte": f"?token={TOKEN}%80",
    "empty": "?token=",
    "very long": "?token=" + "x" * 6000,
}


@pytest.mark.parametrize("header", MALFORMED_HEADERS.values(), ids=MALFORMED_HEADERS.keys())
async def test_a_malformed_bearer_header_is_401_like_a_wrong_token(header: bytes) -> None:
    app = make_app(token=TOKEN)
    attach(app, endless, hub=app[HUB])
    async with serving(app) as url:
        for method, path in [("GET", "/api/runs"), ("GET", "/api/stats"), ("POST", "/api/pause")]:
            assert await raw_request(url, method, path, [header]) == REFUSED
        assert app[HUB].get().plumber.paused is False  # the refused pause did nothing
        status, _ = await raw_request(url, "GET", "/api/runs", [f"Authorization: Bearer {TOKEN}".encode()])
        assert status == 200  # the same request with the token goes through


@pytest.mark.parametrize("query", MALFORMED_QUERIES.values(), ids=MALFORMED_QUERIES.keys())
async def test_a_malformed_token_parameter_is_401_like_a_wrong_token(query: str) -> None:
    app = make_app(token=TOKEN)
    attach(app, endless, hub=app[HUB])
    async with serving(app) as url:
        for method, path in [("GET", "/api/runs"), ("GET", "/api/graph"), ("POST", "/api/stop")]:
            assert await raw_request(url, method, path + query, []) == REFUSED
        assert app[HUB].get().plumber.state == "running"  # the refused stop did nothing


# -- the dashboard's socket.io namespace ------------------------------------------------------

PROBE = "/probe"


class DashboardServer:
    """A Dashboard with a token, pushed by the test itself, and a namespace that lets anyone in."""

    def __init__(self, hub: Hub, sio: socketio.AsyncServer) -> None:
        self.sio = sio
        self.dashboard = Dashboard(hub, sio, token=TOKEN)  # not attached: no timed pushes
        self.probes: dict[str, asyncio.Event] = {}
        sio.on("connect", self._probe_connect, namespace=PROBE)

    async def _probe_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        self.probes.setdefault(sid, asyncio.Event())

    async def push_then_mark(self, probe_sid: str) -> None:
        """Push to every dashboard client (the run list included), then send the sentinel."""
        await self.dashboard.push()
        await self.sio.emit("sentinel", to=probe_sid, namespace=PROBE)

    def dashboard_clients(self) -> list[str]:
        return [sid for sid, _ in self.sio.manager.get_participants(NAMESPACE, None)]


@contextlib.asynccontextmanager
async def dashboard_server() -> AsyncIterator[tuple[str, DashboardServer]]:
    hub = Hub()
    hub.add(endless(), "numbers")  # a run to list: the `runs` event has something to tell
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    server = DashboardServer(hub, sio)
    async with serving(app) as url:
        yield url, server


class Watcher:
    """A socket.io client on the dashboard namespace and the probe: what it received, and when."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: list[tuple[str, Any]] = []
        self.answered = asyncio.Event()  # the dashboard namespace accepted or refused it
        self.refusal: Any = None
        self.sentinel = asyncio.Event()
        self.probe_connected = asyncio.Event()
        self.sio.on("*", self._record, namespace=NAMESPACE)
        self.sio.on("connect", self.answered.set, namespace=NAMESPACE)
        self.sio.on("connect_error", self._refused, namespace=NAMESPACE)
        self.sio.on("connect", self.probe_connected.set, namespace=PROBE)
        self.sio.on("sentinel", self.sentinel.set, namespace=PROBE)

    async def _record(self, event: str, *data: Any) -> None:
        self.received.append((event, data))

    def _refused(self, data: Any = None) -> None:
        self.refusal = data
        self.answered.set()

    async def attempt(self, url: str, server: DashboardServer, auth: Any) -> None:
        """Connect with `auth`; wait for the dashboard's answer, then for everything it pushes after."""
        await self.sio.connect(url, namespaces=[PROBE, NAMESPACE], auth=auth, wait=False)
        try:
            await asyncio.wait_for(self.probe_connected.wait(), SAFETY_NET)
            await asyncio.wait_for(self.answered.wait(), SAFETY_NET)
            await server.push_then_mark(self.sio.namespaces[PROBE])
            await asyncio.wait_for(self.sentinel.wait(), SAFETY_NET)
        finally:
            await self.sio.disconnect()


async def refused_and_told_nothing(url: str, server: DashboardServer, auth: Any) -> None:
    watcher = Watcher()
    await watcher.attempt(url, server, auth)
    assert watcher.refusal == {"message": "this server requires a token"}
    assert watcher.received == []
    assert server.dashboard_clients() == []  # nothing of it stays in the namespace


MALFORMED_TOKENS: dict[str, Any] = {
    "a list": [TOKEN],
    "an empty list": [],
    "a dict": {"token": TOKEN},
    "an int": 12345,
    "zero": 0,
    "a float": 1.5,
    "NaN": float("nan"),
    "true": True,
    "false": False,
    "null": None,
    "a very long string": "x" * 100_000,
    "a lone surrogate": "\ud800",
    "the token and a lone surrogate": TOKEN + "\udcff",
    "the token with a NUL": TOKEN + "\x00",
    "an empty string": "",
}


async def test_the_right_token_connects_and_is_told_the_runs() -> None:
    """The check below sees what a client is sent: with the token, the runs arrive."""
    async with dashboard_server() as (url, server):
        watcher = Watcher()
        await watcher.attempt(url, server, {"token": TOKEN})
        assert watcher.refusal is None
        assert [event for event, _ in watcher.received] == ["runs", "runs", "stats"]  # on connect, then the push


@pytest.mark.parametrize("token", MALFORMED_TOKENS.values(), ids=MALFORMED_TOKENS.keys())
async def test_a_malformed_dashboard_token_is_refused_and_nothing_is_sent(token: Any) -> None:
    async with dashboard_server() as (url, server):
        await refused_and_told_nothing(url, server, {"token": token})
        await refused_and_told_nothing(url, server, {"token": "wrong"})  # exactly as a wrong one is
        # The server still serves: a client with the token gets in after them.
        watcher = Watcher()
        await watcher.attempt(url, server, {"token": TOKEN})
        assert watcher.refusal is None


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# The whole `auth` of a CONNECT packet. socket.io 5 wants an object; python-socketio sends a list,
# a string, a bool or null as given too. A bare number cannot be sent: on the wire its digits read
# as the packet's acknowledgement id, and python-socketio's decoder fails before any handler runs.
AUTH_PAYLOADS = (
    st.fixed_dictionaries({"token": JSON_VALUES}, optional={"extra": JSON_VALUES})
    | st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)
    | st.lists(JSON_VALUES, max_size=4)
    | st.text()
    | st.booleans()
    | st.none()
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(auth=AUTH_PAYLOADS)
def refuses_any_json_auth(runner: asyncio.Runner, url: str, server: DashboardServer, auth: Any) -> None:
    assume(not (isinstance(auth, dict) and auth.get("token") == TOKEN))
    runner.run(refused_and_told_nothing(url, server, auth))


def test_any_json_auth_payload_without_the_token_is_refused_and_told_nothing() -> None:
    """One server for every example (a fresh one per example would be most of the time spent)."""
    with asyncio.Runner() as runner:
        serve = dashboard_server()
        url, server = runner.run(serve.__aenter__())
        try:
            refuses_any_json_auth(runner, url, server)
            # The server still serves after every refusal: a client with the token gets in.
            watcher = Watcher()
            runner.run(watcher.attempt(url, server, {"token": TOKEN}))
            assert watcher.refusal is None
        finally:
            runner.run(serve.__aexit__(None, None, None))


@given(given_token=JSON_VALUES | st.binary())
def test_token_matches_is_total_and_true_only_for_the_token(given_token: Any) -> None:
    assert token_matches(TOKEN, given_token) is (given_token in (TOKEN, TOKEN.encode()))
    assert token_matches(None, given_token) is True  # no token required
