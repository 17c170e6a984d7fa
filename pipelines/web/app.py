"""make_app: an aiohttp application with a socket.io server, the control API and the dashboard.

app = make_app(token=None)                    # a Hub in app[HUB], the AsyncServer in app[SIO]
attach(app, plumber, hub=app[HUB])            # show and control this pipeline
web.run_app(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
from aiohttp import web

from .control import add_control_api
from .dashboard import Dashboard
from .hub import Hub

__all__ = ["HUB", "SIO", "make_app"]

HUB = web.AppKey("pipelines.hub", Hub)
SIO = web.AppKey("pipelines.sio", socketio.AsyncServer)


def make_app(
    *,
    hub: Hub | None = None,
    token: str | None = None,
    sio: socketio.AsyncServer | None = None,
    interval: float = 0.5,
    redis_url: str | None = None,
) -> web.Application:
    """An application serving the dashboard at `/`, the control API at /api and socket.io.

    `token`: required by every control call and dashboard connection (use
    pipelines.web.required_token(host, token) to get one when binding beyond loopback).
    `interval`: seconds between two stats pushes to an open dashboard.
    `redis_url`: share emits with the other servers using the same Redis (python-socketio's
    AsyncRedisManager, which needs the `redis` package), so that several server processes behind
    one address can reach each other's clients; closed when the app shuts down.
    """
    app = web.Application()
    hub = hub or Hub()
    if sio is None:
        manager = None
        if redis_url is not None:
            manager = _ClosingRedisManager(redis_url)
            app.on_cleanup.append(manager.aclose)
        sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)
    sio.attach(app)
    add_control_api(app, hub, token=token)
    Dashboard(hub, sio, token=token, interval=interval).attach(app)
    app[HUB] = hub
    app[SIO] = sio
    return app


class _ClosingRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """AsyncRedisManager that can be closed: python-socketio has no call for it, and its publishing
    and listening sides each connect on their own, so every client it makes is kept to be closed."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._clients: list[Any] = []

    def _redis_connect(self) -> None:
        super()._redis_connect()
        self._clients += [self.pubsub, self.redis]

    async def aclose(self, app: web.Application | None = None) -> None:
        listening = getattr(self, "thread", None)
        if listening is not None:
            listening.cancel()
            await asyncio.wait([listening])
        for client in self._clients:
            await client.aclose()
        self._clients.clear()
