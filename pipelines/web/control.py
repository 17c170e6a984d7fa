"""The HTTP control API of a Hub's runs (JSON).

    GET  /api/runs             [{"id", "label", "state", "paused"}, ...]
    GET  /api/graph[?run=ID]   {"run", "label", "nodes": [{"name", "role", "layer", "row"}], "edges": [...]}
    GET  /api/stats[?run=ID]   {"run", "state", "paused", "elapsed", "nodes": {name: counters}, "failures"}
    POST /api/pause[?run=ID]   hold the run's sources         -> {"id", "label", "state", "paused"}
    POST /api/resume[?run=ID]  let them go on                 -> the same
    POST /api/stop[?run=ID]    stop the sources and drain     -> the same (state 'stopping')

    POST /api/nodes/NODE/pause[?run=ID]    hold that node alone   -> {"run", "node", "paused"}
    POST /api/nodes/NODE/resume[?run=ID]   let it go on           -> the same
    POST /api/nodes/NODE/stop[?run=ID]     a source ends its stream -> {"run", "node", "stopped": true}
    POST /api/nodes/NODE/events/EVENT[?run=ID]  body: a JSON object of parameters; answers once the
                                           node handled it        -> {"run", "node", "event", "handled": true}

Without ``run`` a call acts on the newest live run. An unknown run, node or event is 404 with
``{"error": "..."}``; a node that cannot do it (stopping a node that is not a source, parameters
the event's handler cannot take, a body that is not a JSON object) 400; a run that has not started
or has ended where that matters 409; an event handler that raised 500 with what it raised. With a
token set, every call without it is 401.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..errors import PipelineStateError
from .hub import Hub, RunEntry
from .security import token_matches

__all__ = ["add_control_api", "request_token"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_token(request: web.Request) -> str | None:
    """The token a request carries: its Bearer header, or its ``token`` query parameter."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :]
    return request.query.get("token")


def add_control_api(app: web.Application, hub: Hub, *, token: str | None = None) -> None:
    """Add the /api routes for `hub`'s runs to `app`; with `token`, every call must carry it."""

    def guarded(handler: Callable[[web.Request, RunEntry], Awaitable[Any]]) -> Handler:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            if not token_matches(token, request_token(request)):
                return web.json_response({"error": "this server requires a token"}, status=401)
            try:
                entry = hub.get(request.query.get("run"))
            except LookupError as exc:
                return web.json_response({"error": str(exc)}, status=404)
            try:
                answer = await handler(request, entry)
            except (LookupError, ValueError, TypeError, PipelineStateError, HandlerFailed) as exc:
                return _refused(exc)
            return web.json_response(answer)

        return endpoint

    async def runs(request: web.Request) -> web.StreamResponse:
        if not token_matches(token, request_token(request)):
            return web.json_response({"error": "this server requires a token"}, status=401)
        return web.json_response([entry.summary() for entry in hub.runs()])

    app.router.add_get("/api/runs", runs)
    app.router.add_get("/api/graph", guarded(_graph))
    app.router.add_get("/api/stats", guarded(_stats))
    app.router.add_post("/api/pause", guarded(_pause))
    app.router.add_post("/api/resume", guarded(_resume))
    app.router.add_post("/api/stop", guarded(_stop))
    app.router.add_post("/api/nodes/{node}/pause", guarded(_node_pause))
    app.router.add_post("/api/nodes/{node}/resume", guarded(_node_resume))
    app.router.add_post("/api/nodes/{node}/stop", guarded(_node_stop))
    app.router.add_post("/api/nodes/{node}/events/{event}", guarded(_node_event))


# -- the handlers, each given the request and the run it names ---------------------------------


async def _graph(request: web.Request, entry: RunEntry) -> Any:
    return entry.graph()


async def _stats(request: web.Request, entry: RunEntry) -> Any:
    return entry.stats()


async def _pause(request: web.Request, entry: RunEntry) -> Any:
    if entry.live and entry.plumber.state != "built":
        entry.plumber.pause()
    return entry.summary()


async def _resume(request: web.Request, entry: RunEntry) -> Any:
    entry.plumber.resume()
    return entry.summary()


async def _stop(request: web.Request, entry: RunEntry) -> Any:
    if entry.plumber.state == "running":
        entry.plumber.stop_nowait()
    return entry.summary()


async def _node_pause(request: web.Request, entry: RunEntry) -> Any:
    node = request.match_info["node"]
    entry.plumber.pause(node)
    return {"run": entry.id, "node": node, "paused": node in entry.plumber.paused_nodes}


async def _node_resume(request: web.Request, entry: RunEntry) -> Any:
    node = request.match_info["node"]
    entry.plumber.resume(node)
    return {"run": entry.id, "node": node, "paused": node in entry.plumber.paused_nodes}


async def _node_stop(request: web.Request, entry: RunEntry) -> Any:
    node = request.match_info["node"]
    entry.plumber.stop_source(node)
    return {"run": entry.id, "node": node, "stopped": True}


async def _node_event(request: web.Request, entry: RunEntry) -> Any:
    node, event = request.match_info["node"], request.match_info["event"]
    params: Any = {}
    if request.can_read_body:
        try:
            params = await request.json()
        except ValueError:
            raise ValueError("the body must be a JSON object of the event's parameters (or empty)") from None
    if not isinstance(params, dict):
        raise ValueError(f"the body must be a JSON object of the event's parameters, got {type(params).__name__}")
    entry.plumber.check_event(node, event, **params)  # refused here: 404, 400 or 409
    try:
        await entry.plumber.send_event(node, event, **params)
    except PipelineStateError:
        raise  # the node ended while the event waited
    except Exception as exc:
        raise HandlerFailed(f"node {node!r}: the handler of event {event!r} raised {exc!r}") from exc
    return {"run": entry.id, "node": node, "event": event, "handled": True}


class HandlerFailed(Exception):
    """An event handler raised: the run goes on, the caller gets 500 with what it raised."""


def _refused(exc: Exception) -> web.StreamResponse:
    """The answer to a control call its run, node or parameters refused."""
    status = 409 if isinstance(exc, PipelineStateError) else 404 if isinstance(exc, LookupError) else 400
    if isinstance(exc, HandlerFailed):
        status = 500
    return web.json_response({"error": str(exc)}, status=status)
