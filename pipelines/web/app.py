"""make_app: an aiohttp application with a socket.io server, the control API and the dashboard.

app = make_app(token=None)                    # a Hub in app[HUB], the AsyncServer in app[SIO]
attach(app, plumber, hub=app[HUB])            # show and control this pipeline
web.run_app(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

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
) -> web.Application:
    """An application serving the dashboard at `/`, the control API at /api and socket.io.

    `token`: required by every control call and dashboard connection (use
    pipelines.web.required_token(host, token) to get one when binding beyond loopback).
    `interval`: seconds between two stats pushes to an open dashboard.
    """
    app = web.Application()
    hub = hub or Hub()
    sio = sio or socketio.AsyncServer(async_mode="aiohttp")
    sio.attach(app)
    add_control_api(app, hub, token=token)
    Dashboard(hub, sio, token=token, interval=interval).attach(app)
    app[HUB] = hub
    app[SIO] = sio
    return app
