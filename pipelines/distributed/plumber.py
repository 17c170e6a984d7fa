"""DistributedPlumber: a Plumber whose edges are Redis Streams and whose nodes run in several processes.

Each process builds the whole graph (so every process validates it the same way) and runs only
its own nodes: the coordinator runs the sources, a worker the nodes it was given. Every other node
is stood for by a task that ends when that node is done everywhere, so the Plumber's own lifecycle
(run, stop, cancel, fail, the RunResult) covers the whole distributed run unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .. import runtime
from ..errors import PipelineStateError
from ..graph import DEFAULT_QUEUE_SIZE
from ..plumber import Plumber
from ..stats import NodeStats, RunResult
from ..types import RunState
from .session import Session

__all__ = ["DistributedPlumber"]


class DistributedPlumber(Plumber):
    """The part of a distributed run that this process plays; built by RedisTransport, started by run()."""

    def __init__(
        self,
        session: Session,
        input_d: dict[str, Any],
        coro_map: Callable[[Any], Any] | None = None,
        env_vars: dict[str, Any] | None = None,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self._session = session
        super().__init__(input_d, coro_map, env_vars, queue_size=queue_size, transport=session)
        session.attach(self)

    @property
    def run_id(self) -> str | None:
        """The id of the run, once run() has created (coordinator) or found (worker) it."""
        return self._session.run_id if self._session.opened else None

    @property
    def consumer(self) -> str:
        """This process's name as a reader of the run's streams (host, pid and a random part)."""
        return self._session.consumer

    @property
    def local_nodes(self) -> list[str]:
        """The nodes this process runs, in the graph's order."""
        return [node.name for node in self.nodes if node.name in self._session.local]

    def create_pipeline(self) -> None:
        """Not for a distributed run, which connects to Redis first: use `await run()`."""
        if not self._session.opened:
            raise PipelineStateError("a distributed run starts with await run(), which connects to Redis first")
        super().create_pipeline()
        self._session.start(self._session.serve(), "pipelines:redis")

    async def run(self) -> RunResult:
        """Take part in the run to its end; returns the RunResult with the stats of every process.

        The coordinator creates the run and returns when every node is done everywhere; a worker
        first waits for a run of its graph (or joins the one it was given), and returns when the run
        is done or, after stop(), when its own nodes have finished what they took. Raises as
        Plumber.run() does; a failure in another process raises RemoteFailure.
        """
        if self.state != "built":
            raise PipelineStateError("run() was already called on this Plumber; a Plumber runs once")
        runtime.require_asyncio(
            "the Redis transport (redis.asyncio)", "run a distributed graph under asyncio (`asyncio.run(...)`)"
        )
        session = self._session
        await session.open()
        failure: BaseException | None = None
        try:
            result = await super().run()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            ended = self._ended_state()
            await session.close(ended, failure if ended == "failed" else None)
        state = result.state
        if not session.coordinator and session.final_state in ("stopping", "stopped"):
            state = "stopped"
        return dataclasses.replace(result, state=state, stats=self.stats())

    def _ended_state(self) -> RunState:
        return self.state  # read anew: the run has moved on since run() began

    def stop_nowait(self) -> None:
        """Coordinator: stop the sources, and the run drains everywhere. Worker: leave the run once
        its nodes have finished the items they took (other workers carry on with the rest)."""
        if self.state == "built":
            self._session.abandon()
            return
        super().stop_nowait()
        self._session.stopping()

    def cancel(self) -> None:
        """End this process's part now (the coordinator's cancel ends every worker's too); items
        taken and not acknowledged are delivered again to other workers."""
        if self.state == "built":
            self._session.abandon()
            return
        super().cancel()

    def stats(self) -> dict[str, NodeStats]:
        """Every node's counters summed over the processes running it (refreshed every half second)."""
        return self._session.stats() or super().stats()
