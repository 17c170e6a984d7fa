"""The HTTP control API of a Hub's runs (JSON).

    GET  /api/runs             [{"id", "label", "state", "paused"}, ...]
    GET  /api/graph[?run=ID]   {"run", "label", "nodes": [{"name", "role", "layer", "row"}], "edges": [...]}
    GET  /api/stats[?run=ID]   {"run", "state", "paused", "elapsed", "nodes": {name: counters}, "failures"}
    POST /api/pause[?run=ID]   hold the run's sources         -> {"id", "label", "state", "paused"}
    POST /api/resume[?run=ID]  let them go on                 -> the same
    POST /api/stop[?run=ID]    stop the sources and drain     -> the same (state 'stopping')

Without ``run`` a call acts on the newest live run. An unknown run is 404 with
``{"error": "..."}``; with a token set, every call without it is 401.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

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
            return web.json_response(await handler(request, entry))

        return endpoint

    async def runs(request: web.Request) -> web.StreamResponse:
        if not token_matches(token, request_token(request)):
            return web.json_response({"error": "this server requires a token"}, status=401)
        return web.json_response([entry.summary() for entry in hub.runs()])

    async def graph(request: web.Request, entry: RunEntry) -> Any:
        return entry.graph()

    async def stats(request: web.Request, entry: RunEntry) -> Any:
        return entry.stats()

    async def pause(request: web.Request, entry: RunEntry) -> Any:
        if entry.live and entry.plumber.state != "built":
            entry.plumber.pause()
        return entry.summary()

    async def resume(request: web.Request, entry: RunEntry) -> Any:
        entry.plumber.resume()
        return entry.summary()

    async def stop(request: web.Request, entry: RunEntry) -> Any:
        if entry.plumber.state == "running":
            entry.plumber.stop_nowait()
        return entry.summary()

    app.router.add_get("/api/runs", runs)
    app.router.add_get("/api/graph", guarded(graph))
    app.router.add_get("/api/stats", guarded(stats))
    app.router.add_post("/api/pause", guarded(pause))
    app.router.add_post("/api/resume", guarded(resume))
    app.router.add_post("/api/stop", guarded(stop))
