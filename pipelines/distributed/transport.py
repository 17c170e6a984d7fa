"""RedisTransport: where a distributed run's edges live, and how to take part in one."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import RedisUnavailable
from ..graph import DEFAULT_QUEUE_SIZE
from ..stats import NodeStats
from .errors import DistributedError
from .keys import RunKeys, redacted
from .plumber import DistributedPlumber
from .session import Options, Session, graph_digest
from .stats import run_stats

__all__ = ["RedisTransport"]

logger = logging.getLogger(__name__)


class RedisTransport:
    """Carries every edge of a graph over the Redis at `url`, so that its nodes run in several processes.

    `url` is a Redis URL (``redis://[user:password@]host:port/db``, ``rediss://`` for TLS).
    Tuning, all in seconds or counts:

    - `batch`: entries read or sent in one call (a source sends once it has `batch` items, or
      whenever it yields to the event loop);
    - `claim_idle`: an item left unacknowledged this long by an instance that stopped (or stalled)
      is claimed by another instance of the same node; longer than any item takes to handle;
    - `max_deliveries`: an item delivered more often than this fails with DeliveryError under its
      node's on_error instead of being handed to the node again;
    - `heartbeat`, `dead_after`: each process beats every `heartbeat`; one silent for `dead_after`
      is dead, and no longer holds the end of the run back;
    - `poll`: how often an idle process looks at the run (end-of-stream, stop, failures).
    """

    def __init__(
        self,
        url: str,
        *,
        batch: int = 100,
        claim_idle: float = 30.0,
        max_deliveries: int = 5,
        heartbeat: float = 1.0,
        dead_after: float = 10.0,
        poll: float = 0.05,
    ) -> None:
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"RedisTransport: expected a Redis URL such as 'redis://127.0.0.1:6379/0', got {url!r}")
        self.url = url
        self.options = Options(batch, claim_idle, max_deliveries, heartbeat, dead_after, poll)

    def __repr__(self) -> str:
        return f"<RedisTransport {redacted(self.url)}>"

    def plumber(
        self,
        input_d: dict[str, Any],
        coro_map: Callable[[Any], Any] | None = None,
        env_vars: dict[str, Any] | None = None,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        run_id: str | None = None,
    ) -> DistributedPlumber:
        """The coordinator of a new run of this graph: `await plumber.run()` creates the run, runs
        the sources here, and returns when every node is done in every worker. The graph is
        checked now (GraphError)."""
        session = self._session(input_d, coordinator=True, nodes=None, run_id=run_id, on_wait=None)
        return DistributedPlumber(session, input_d, coro_map, env_vars, queue_size=queue_size)

    def worker(
        self,
        input_d: dict[str, Any],
        coro_map: Callable[[Any], Any] | None = None,
        env_vars: dict[str, Any] | None = None,
        *,
        nodes: Collection[str] | None = None,
        run_id: str | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        on_wait: Callable[[str], None] | None = None,
    ) -> DistributedPlumber:
        """A worker running `nodes` (every node but the sources when None) in this process.

        `await plumber.run()` joins run `run_id`, or waits for the next run of the same graph (the
        same dict, args included) and joins it; `on_wait(message)` is called once if it waits.
        It returns when the run is done. Several workers may run the same node: they share its
        input. A join node, or an `ordered` one, runs in one worker at a time.
        """
        session = self._session(input_d, coordinator=False, nodes=nodes, run_id=run_id, on_wait=on_wait)
        return DistributedPlumber(session, input_d, coro_map, env_vars, queue_size=queue_size)

    def _session(
        self,
        input_d: dict[str, Any],
        *,
        coordinator: bool,
        nodes: Collection[str] | None,
        run_id: str | None,
        on_wait: Callable[[str], None] | None,
    ) -> Session:
        if isinstance(nodes, str):
            nodes = [part.strip() for part in nodes.split(",") if part.strip()]
        return Session(
            self.url,
            self.options,
            graph_digest(input_d),
            coordinator=coordinator,
            nodes=nodes,
            run_id=run_id,
            on_wait=on_wait,
        )

    async def ping(self) -> None:
        """Check that the Redis at `url` answers (within 5 seconds to connect, and 5 to reply).

        Raises RedisUnavailable naming the URL (its password hidden) and the reason when it cannot
        be reached, refuses the credentials or the database, or does not answer. A command line
        calls this before it prints anything, so that a wrong URL is one line, not a run that fails.
        """
        try:
            async with aioredis.Redis.from_url(self.url, socket_connect_timeout=5, socket_timeout=5) as r:
                await r.ping()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"cannot reach Redis at {redacted(self.url)}: {exc}") from None

    async def stats(self, run_id: str) -> dict[str, NodeStats]:
        """The stats of run `run_id`, summed over its processes: for a dashboard or a script."""
        async with aioredis.Redis.from_url(self.url) as r:
            return await run_stats(r, run_id)

    async def stop(self, run_id: str) -> None:
        """Ask run `run_id` to stop: its coordinator stops the sources, and everything drains."""
        await self._set(run_id, "stop", "1")

    async def cancel(self, run_id: str) -> None:
        """Cancel run `run_id` everywhere now."""
        await self._set(run_id, "state", "cancelled")

    async def _set(self, run_id: str, field: str, value: str) -> None:
        keys = RunKeys(run_id)
        async with aioredis.Redis.from_url(self.url) as r:
            if not await r.exists(keys.run):
                raise DistributedError(f"no run {run_id!r} on {redacted(self.url)}")
            await r.hset(keys.run, field, value)
