"""The HTTP control API: graph, stats, pause, resume, stop; tokens beyond loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from pipelines import Plumber, Processor
from pipelines.web import HUB, PLUMBER, attach, is_loopback, make_app, required_token

from .helpers import until, yield_now
from .web_helpers import serving


async def count_up(processor: Processor, output_q: Any) -> None:
    i = 0
    while True:
        await output_q.put(i)
        i += 1
        await asyncio.sleep(0)


async def double(x: int) -> int:
    return 2 * x


async def keep(x: int) -> None:
    await asyncio.sleep(0)


def endless_graph() -> dict[str, Any]:
    item = {"style": "item"}
    return {
        "nodes": {
            "numbers": {"coro": count_up},
            "double": {"coro": double, "properties": {**item, "workers": 2}},
            "keep": {"coro": keep, "properties": item},
        },
        "graph": {"numbers": ["double"], "double": ["keep"], "keep": None},
    }


async def call(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.request(method, url, **kwargs) as response:
        return response.status, await response.json()


async def test_graph_lists_nodes_by_layer_and_every_edge() -> None:
    app = make_app()
    attach(app, lambda: Plumber(endless_graph()), hub=app[HUB], label="numbers")
    async with serving(app) as url, aiohttp.ClientSession() as session:
        assert await call(session, "GET", f"{url}/api/graph") == (
            200,
            {
                "run": "r1",
                "label": "numbers",
                "nodes": [
                    {"name": "numbers", "role": "source", "layer": 0, "row": 0},
                    {"name": "double", "role": "node", "layer": 1, "row": 0},
                    {"name": "keep", "role": "sink", "layer": 2, "row": 0},
                ],
                "edges": [
                    {"from": "numbers", "to": "double", "kind": "data"},
                    {"from": "double", "to": "keep", "kind": "data"},
                ],
            },
        )
        assert await call(session, "GET", f"{url}/api/runs") == (
            200,
            [{"id": "r1", "label": "numbers", "state": "running", "paused": False}],
        )


async def test_pause_holds_the_source_resume_goes_on_stop_drains() -> None:
    app = make_app()
    attach(app, lambda: Plumber(endless_graph(), queue_size=8), hub=app[HUB])
    async with serving(app) as url, aiohttp.ClientSession() as session:
        plumber = app[PLUMBER]
        await until(lambda: plumber.stats()["keep"].completed > 50, limit=100_000)
        status, body = await call(session, "POST", f"{url}/api/pause")
        assert (status, body) == (200, {"id": "r1", "label": "pipeline", "state": "running", "paused": True})
        await until(lambda: all(s.in_flight == s.queue_depth == 0 for s in plumber.stats().values()), limit=100_000)
        status, first = await call(session, "GET", f"{url}/api/stats")
        for _ in range(3):
            await yield_now(200)  # loop turns in which a source that was not held would put more
            status, again = await call(session, "GET", f"{url}/api/stats")
            counts = {n: (v["items_in"], v["items_out"], v["completed"]) for n, v in again["nodes"].items()}
            assert counts == {n: (v["items_in"], v["items_out"], v["completed"]) for n, v in first["nodes"].items()}
        put = first["nodes"]["numbers"]["items_out"]
        assert first["nodes"]["keep"]["completed"] == put  # everything the source put arrived: nothing lost
        assert (first["state"], first["paused"]) == ("running", True)
        status, body = await call(session, "POST", f"{url}/api/resume")
        assert body["paused"] is False
        await until(lambda: plumber.stats()["keep"].completed > put + 50, limit=100_000)
        status, body = await call(session, "POST", f"{url}/api/stop")
        assert (status, body["state"]) == (200, "stopping")
        await plumber.join()
        stats = plumber.stats()
        assert plumber.state == "stopped"
        assert stats["keep"].completed == stats["numbers"].items_out


async def test_an_unknown_run_or_no_run_is_404_with_a_message() -> None:
    app = make_app()
    async with serving(app) as url, aiohttp.ClientSession() as session:
        assert await call(session, "GET", f"{url}/api/stats") == (404, {"error": "no run yet"})
        assert await call(session, "POST", f"{url}/api/pause", params={"run": "r9"}) == (
            404,
            {"error": "unknown run 'r9' (known runs: none)"},
        )


async def test_with_a_token_every_call_must_carry_it() -> None:
    app = make_app(token="s3cret")
    attach(app, lambda: Plumber(endless_graph()), hub=app[HUB])
    refused = (401, {"error": "this server requires a token"})
    async with serving(app) as url, aiohttp.ClientSession() as session:
        for method, path in [("GET", "runs"), ("GET", "graph"), ("GET", "stats"), ("POST", "pause"), ("POST", "stop")]:
            assert await call(session, method, f"{url}/api/{path}") == refused
            assert await call(session, method, f"{url}/api/{path}", headers={"Authorization": "Bearer nope"}) == refused
        assert app[PLUMBER].state == "running"  # no refused call did anything
        status, body = await call(session, "POST", f"{url}/api/pause", headers={"Authorization": "Bearer s3cret"})
        assert (status, body["paused"]) == (200, True)
        status, body = await call(session, "POST", f"{url}/api/resume", params={"token": "s3cret"})
        assert (status, body["paused"]) == (200, False)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.10", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_only_loopback_binds_go_without_a_token(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert required_token(host, "given") == "given"
    token = required_token(host, None)
    if loopback:
        assert token is None
    else:
        assert token is not None
        assert len(token) >= 32
        assert required_token(host, None) != token  # made up anew, never a fixed default


def controlled_graph(scales: list[int]) -> dict[str, Any]:
    """The endless graph, whose node 'double' answers the event 'scale' (and 'broken', which raises)."""

    async def scale(processor: Processor, factor: int) -> None:
        scales.append(factor)

    async def broken(processor: Processor) -> None:
        raise OSError("the model file is gone")

    graph = endless_graph()
    graph["nodes"]["double"]["properties"]["events"] = {"scale": scale, "broken": broken}
    return graph


async def test_one_node_is_paused_resumed_and_sent_events_over_http() -> None:
    scales: list[int] = []
    app = make_app()
    attach(app, lambda: Plumber(controlled_graph(scales), queue_size=8), hub=app[HUB])
    async with serving(app) as url, aiohttp.ClientSession() as session:
        plumber = app[PLUMBER]
        await until(lambda: plumber.stats()["keep"].completed > 20, limit=100_000)
        assert await call(session, "POST", f"{url}/api/nodes/keep/pause") == (
            200,
            {"run": "r1", "node": "keep", "paused": True},
        )
        # keep takes nothing more: its input fills to its bound, and the nodes before it wait
        await until(lambda: plumber.stats()["keep"].queue_depth == 8 and plumber.stats()["keep"].in_flight == 0)
        _, first = await call(session, "GET", f"{url}/api/stats")
        await yield_now(200)
        _, again = await call(session, "GET", f"{url}/api/stats")
        assert again["nodes"]["keep"]["completed"] == first["nodes"]["keep"]["completed"]
        assert (again["nodes"]["keep"]["paused"], again["nodes"]["double"]["paused"]) == (True, False)
        assert (again["paused"], again["paused_nodes"]) == (False, ["keep"])
        assert await call(session, "POST", f"{url}/api/nodes/double/events/scale", json={"factor": 3}) == (
            200,
            {"run": "r1", "node": "double", "event": "scale", "handled": True},
        )
        assert scales == [3]
        assert await call(session, "POST", f"{url}/api/nodes/keep/resume") == (
            200,
            {"run": "r1", "node": "keep", "paused": False},
        )
        done = first["nodes"]["keep"]["completed"]
        await until(lambda: plumber.stats()["keep"].completed > done + 20, limit=100_000)
        assert await call(session, "POST", f"{url}/api/nodes/numbers/stop") == (
            200,
            {"run": "r1", "node": "numbers", "stopped": True},
        )
        await plumber.join()
        stats = plumber.stats()
        assert plumber.state == "completed"
        assert stats["keep"].completed == stats["numbers"].items_out  # the stream ended and everything drained


async def test_node_control_refusals_name_the_culprit() -> None:
    scales: list[int] = []
    app = make_app()
    attach(app, lambda: Plumber(controlled_graph(scales), queue_size=8), hub=app[HUB])
    async with serving(app) as url, aiohttp.ClientSession() as session:
        plumber = app[PLUMBER]
        await until(lambda: plumber.stats()["keep"].completed > 5, limit=100_000)
        api = f"{url}/api/nodes"
        assert await call(session, "POST", f"{api}/nope/pause") == (
            404,
            {"error": "unknown node 'nope' (nodes: numbers, double, keep)"},
        )
        assert await call(session, "POST", f"{api}/double/stop") == (
            400,
            {
                "error": "node 'double' is not a source: only a source can be stopped (its stream ends); "
                "hold it with pause('double'), or stop the whole run with stop()"
            },
        )
        assert await call(session, "POST", f"{api}/double/events/reload") == (
            404,
            {"error": "node 'double' has no event 'reload' (its events: 'scale', 'broken')"},
        )
        assert await call(session, "POST", f"{api}/keep/events/scale") == (
            404,
            {"error": "node 'keep' has no event 'scale' (its events: none; declare them in its property 'events')"},
        )
        status, body = await call(session, "POST", f"{api}/double/events/scale", json={"size": 3})
        assert status == 400
        assert body["error"].startswith("event 'scale' of node 'double' cannot take parameters {'size': 3}: ")
        assert await call(session, "POST", f"{api}/double/events/scale", json=[3]) == (
            400,
            {"error": "the body must be a JSON object of the event's parameters, got list"},
        )
        assert await call(session, "POST", f"{api}/double/events/scale", data=b"{not json") == (
            400,
            {"error": "the body must be a JSON object of the event's parameters (or empty)"},
        )
        assert await call(session, "POST", f"{api}/double/events/broken") == (
            500,
            {"error": "node 'double': the handler of event 'broken' raised OSError('the model file is gone')"},
        )
        assert scales == []
        assert plumber.state == "running"  # nothing refused stopped the run, and the server serves on
        await plumber.stop()
        assert await call(session, "POST", f"{api}/double/events/scale", json={"factor": 2}) == (
            409,
            {"error": "send_event() after the run ended (state 'stopped')"},
        )


async def test_with_a_token_every_node_call_must_carry_it() -> None:
    scales: list[int] = []
    app = make_app(token="s3cret")
    attach(app, lambda: Plumber(controlled_graph(scales)), hub=app[HUB])
    refused = (401, {"error": "this server requires a token"})
    paths = ["nodes/keep/pause", "nodes/keep/resume", "nodes/numbers/stop", "nodes/double/events/scale"]
    async with serving(app) as url, aiohttp.ClientSession() as session:
        for path in paths:
            assert await call(session, "POST", f"{url}/api/{path}", json={"factor": 2}) == refused
            wrong = {"Authorization": "Bearer nope"}
            assert await call(session, "POST", f"{url}/api/{path}", json={"factor": 2}, headers=wrong) == refused
        plumber = app[PLUMBER]
        assert (plumber.state, plumber.paused_nodes, scales) == ("running", (), [])  # no refused call did anything
        good = {"Authorization": "Bearer s3cret"}
        status, body = await call(session, "POST", f"{url}/api/nodes/keep/pause", headers=good)
        assert (status, body["paused"]) == (200, True)
        status, body = await call(session, "POST", f"{url}/api/nodes/keep/resume", params={"token": "s3cret"})
        assert (status, body["paused"]) == (200, False)
        status, body = await call(
            session, "POST", f"{url}/api/nodes/double/events/scale", json={"factor": 2}, headers=good
        )
        assert (status, scales) == (200, [2])
