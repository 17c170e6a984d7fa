"""The live dashboard: a page at `/` and a socket.io namespace that pushes a run's stats to it.

Socket.io namespace ``/dashboard`` (connect with ``auth={'token': ...}`` when the server has one):

    server -> client  runs    [{"id", "label", "state", "paused"}, ...]   on connect and on every change
    client -> server  watch   {"run": ID or null}                          follow one run (null: the newest live)
    server -> client  graph   RunEntry.graph() of the watched run           after each watch
    server -> client  history {"run", "reset", "every", "kept", "samples"}  after each watch (reset: true, every
                              sample kept), then the samples the page has not had yet, as they come
    server -> client  stats   RunEntry.stats() of the watched run           after each watch, then every `interval` s

`samples` are History.as_json() (pipelines.web.history): per node, the items out since the
previous sample, the queue depth and the workers, every `every` seconds (the hub's
`sample_every`), at most `kept` of them. While its app runs, the dashboard samples its hub on that
schedule, so a page opened late still sees the last minutes of a run.

The page's buttons call the control API (pipelines.web.control). The socket.io client script is
vendored in ``static/`` (see ``static/VENDORED.md``); nothing is fetched from a CDN.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import socketio
from aiohttp import web

from .hub import Hub
from .security import token_matches

__all__ = ["NAMESPACE", "STATIC_PREFIX", "Dashboard"]

logger = logging.getLogger(__name__)

NAMESPACE = "/dashboard"
STATIC_PREFIX = "/_pipelines/"


class Dashboard:
    """Serves the dashboard page and keeps every open page up to date with the run it watches."""

    def __init__(self, hub: Hub, sio: socketio.AsyncServer, *, token: str | None = None, interval: float = 0.5) -> None:
        self.hub = hub
        self.sio = sio
        self.token = token
        self.interval = interval
        self._watching: dict[str, str | None] = {}  # sid -> the run id it asked for (None: newest live)
        self._sent: dict[str, tuple[str, int]] = {}  # sid -> (run id, seq of the newest sample it was sent)
        sio.on("connect", self._connect, namespace=NAMESPACE)
        sio.on("disconnect", self._disconnect, namespace=NAMESPACE)
        sio.on("watch", self._watch, namespace=NAMESPACE)

    def attach(self, app: web.Application, *, path: str = "/") -> None:
        """Serve the page at `path` and its files under /_pipelines/; while `app` runs, push stats
        and history to the open pages and sample the hub every `hub.sample_every` seconds."""
        static = resources.files(__package__).joinpath("static")

        async def page(request: web.Request) -> web.StreamResponse:
            return web.Response(text=static.joinpath("index.html").read_text("utf-8"), content_type="text/html")

        app.router.add_get(path, page)
        app.router.add_static(STATIC_PREFIX, str(static))
        app.cleanup_ctx.append(self._pushing)

    # -- socket.io handlers -------------------------------------------------------------------

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        # `auth` is any JSON value the client chose. Anything but the token, of any type, is
        # refused here: an exception other than this refusal would leave the client in the
        # namespace's broadcast room without having been let in.
        given = auth.get("token") if isinstance(auth, dict) else None
        if not token_matches(self.token, given):
            raise socketio.exceptions.ConnectionRefusedError("this server requires a token")
        self._watching[sid] = None
        await self.sio.emit("runs", self._runs(), to=sid, namespace=NAMESPACE)

    async def _disconnect(self, sid: str, *args: Any) -> None:
        self._watching.pop(sid, None)
        self._sent.pop(sid, None)

    async def _watch(self, sid: str, data: Any) -> None:
        run = data.get("run") if isinstance(data, dict) else None
        if run is not None and not isinstance(run, str):
            run = None
        self._watching[sid] = run
        await self._send(sid, with_graph=True)

    # -- pushing ------------------------------------------------------------------------------

    def _runs(self) -> list[dict[str, Any]]:
        return [entry.summary() for entry in self.hub.runs()]

    async def _send(self, sid: str, *, with_graph: bool) -> None:
        try:
            entry = self.hub.get(self._watching.get(sid))
        except LookupError:
            return
        if with_graph:
            await self.sio.emit("graph", entry.graph(), to=sid, namespace=NAMESPACE)
        history = entry.history
        sent = self._sent.get(sid)
        # A page is sent history once it has watched (it draws the graph first); then each new
        # sample, and all of them again when the run it follows changes.
        if with_graph or sent is not None:
            reset = with_graph or sent is None or sent[0] != entry.id
            after = 0 if reset or sent is None else sent[1]
            if reset or history.last_seq > after:
                self._sent[sid] = (entry.id, history.last_seq)
                payload = {
                    "run": entry.id,
                    "reset": reset,
                    "every": self.hub.sample_every,
                    "kept": history.kept,
                    "samples": history.as_json(after),
                }
                await self.sio.emit("history", payload, to=sid, namespace=NAMESPACE)
        await self.sio.emit("stats", entry.stats(), to=sid, namespace=NAMESPACE)

    async def push(self) -> None:
        """Send every open page the stats of the run it watches (and the run list if it changed)."""
        runs = None
        if self.hub.version != self._seen_version:
            self._seen_version = self.hub.version
            runs = self._runs()
        # To the pages this dashboard let in, each by its sid, rather than a broadcast to the
        # namespace: only a client that passed the token check hears anything, also when a
        # Redis manager shares the namespace with servers that hold other tokens.
        for sid in list(self._watching):
            if runs is not None:
                await self.sio.emit("runs", runs, to=sid, namespace=NAMESPACE)
            await self._send(sid, with_graph=False)

    _seen_version = -1

    async def _pushing(self, app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(self._push_forever(), name="pipelines:dashboard"),
            loop.create_task(self._sample_forever(), name="pipelines:dashboard-samples"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    async def _sample_forever(self) -> None:
        # On a fixed schedule rather than a sleep after each sample, so samples do not drift apart;
        # ticks missed while the loop was busy are skipped, not caught up in a burst.
        loop = asyncio.get_running_loop()
        every = self.hub.sample_every
        due = loop.time() + every
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                self.hub.sample()
            except Exception:
                logger.exception("dashboard: sampling the runs failed")
            due += every
            if due <= loop.time():
                due = loop.time() + every

    async def _push_forever(self) -> None:
        while True:
            try:
                await self.push()
            except Exception:
                logger.exception("dashboard: pushing stats failed")
            await asyncio.sleep(self.interval)
