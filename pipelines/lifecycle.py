"""A node's task from setup to teardown: what `Processor.run` runs, once per node and run.

In order: the node's setup (if it fails, the run fails and nothing else of the node runs); its
work (`Processor.work`: the workers over its input, or a source's production), with its executor
open; at a join, the groups that can never complete are counted and dropped. Then, however the
work ended: end-of-stream to its successors and its error node, the executor closed without
waiting for work still in it, and the teardown, run to its end even while the task is cancelled,
within TEARDOWN_TIMEOUT. The signals 'node_started' and 'node_ended' frame all of it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import runtime
from .executors import close_pool, open_pool

if TYPE_CHECKING:
    from .driver import Processor
    from .lineage import Joiner
    from .types import Envelope

__all__ = ["TEARDOWN_TIMEOUT", "drive"]

logger = logging.getLogger(__name__)

TEARDOWN_TIMEOUT = 30.0


async def drive(node: Processor) -> None:
    """The node's task: setup, the work, end-of-stream downstream, teardown."""
    spec = node.spec
    set_up = False
    finished = False
    signals = node.signals
    signals.emit("node_started", node=node.name)
    try:
        if spec.setup is not None:
            try:
                await spec.setup(node)
            except BaseException as exc:
                # SystemExit or KeyboardInterrupt from setup fails the run like any error (as from
                # the node's function); only the run's own cancellation goes on up
                failure = node.as_failure(exc, runtime.current_task())
                failure.add_note(f"pipelines: setup of node {node.name!r} failed")
                node.fail_run(failure)
                return
        set_up = True
        if node.events is not None:
            node.events.start()
        node.executor = open_pool(spec.name, spec.properties)
        await node.work()
        joiner = node.joiner
        if joiner is not None and (joiner.pending or joiner.abandoned):
            await _discard_incomplete(node, joiner)
        finished = True
    finally:
        if node.events is not None:
            node.events.end()
        node.handoff.close()
        if node.executor is not None:
            # Work still in the executor belongs to a run that is ending: do not wait for it.
            close_pool(node.executor, finished=finished)
            node.executor = None
        if set_up and spec.teardown is not None:
            await runtime.wait_through_cancel(runtime.spawn(_teardown(node)))
        signals.emit("node_ended", node=node.name)


async def _teardown(node: Processor) -> None:
    """The node's teardown, within a time bound; a failure fails the run (as the setup's)."""
    teardown = node.spec.teardown
    assert teardown is not None
    try:
        async with runtime.timeout(TEARDOWN_TIMEOUT):
            await teardown(node)
    except BaseException as exc:
        failure = node.as_failure(exc, runtime.current_task())
        failure.add_note(f"pipelines: teardown of node {node.name!r} failed")
        logger.error("teardown of node %r failed: %r", node.name, failure)
        node.fail_run(failure)


async def _discard_incomplete(node: Processor, joiner: Joiner) -> None:
    """At end-of-stream, the join groups that can never complete are discarded and counted."""
    keys = joiner.drain()
    logger.warning(
        "node %r: %d join groups never completed and were discarded", node.name, len(keys) + joiner.abandoned
    )
    ledger = node.ledger
    released = ledger.hooks.released
    out: list[Envelope] = []
    for key in keys:
        ledger.items_in += 1
        if released is not None:
            released(key)
        ledger.drop(key, out)
    if out:
        await node.emit(out, [])
