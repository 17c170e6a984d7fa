"""RedisEdge: a node's input channel whose buffer is a Redis Stream read by a consumer group.

The same object serves both sides in a process: the node's predecessors that run here add
entries (`put_many`, `put_nowait`), and, if the node runs here, its workers read them
(`get_many`). Every instance of the node, in any process, reads as one consumer of the group.

- **Bound.** Entries are added by a script that adds only while the stream holds fewer than its
  bound; acknowledged entries are deleted, so the stream's length is the number in flight. A full
  stream makes the producer wait (its `blocked_seconds`); nothing is ever trimmed.
- **At least once.** A batch taken by a worker task is acknowledged by that task's next
  `get_many()`: by then the outputs of the batch were added downstream. A process that dies
  leaves its batches unacknowledged; after `claim_idle` seconds an idle instance of the same node
  claims them. An entry delivered more than `max_deliveries` times fails with `DeliveryError`
  under its node's `on_error`, instead of being handed to the node again.
- **End-of-stream.** `get_many()` returns an empty list once every producer of the stream is done
  in every process (see pipelines.distributed.session) and the stream is empty, or when this
  process leaves the run.

Items a source puts one by one gather in a small local buffer (at most `batch`) sent when the
source yields to the loop, so that a source pays one round trip per batch, not per item.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sized
from typing import TYPE_CHECKING, Any

from ..edges import EdgeStatistics
from ..errors import PipelineError
from ..lineage import DROPPED
from .codec import decode, encode
from .errors import DeliveryError, SerializationError

if TYPE_CHECKING:
    from ..driver import Processor
    from .session import Session

__all__ = ["RedisEdge"]

logger = logging.getLogger(__name__)

_ACK_CHUNK = 1000  # ids per acknowledgement script call (Lua's unpack has a limit)
_NOBODY: Sized = ()
_MAX_PUT_PAUSE = 0.05


class RedisEdge:
    """The input of node `node`, fed by `producers`, as the stream `session.keys.stream(node, producer)`.

    An `Edge` (pipelines.edges) whose buffer is in Redis.
    """

    def __init__(self, session: Session, name: str, node: str, producers: tuple[str, ...], maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"edge {name!r}: maxsize must be >= 1, got {maxsize!r}")
        self.name = name
        self.maxsize = maxsize
        self._open_producers = len(producers)
        self.node = node
        self.producers = producers
        # A zip join has one input per producer, named '{node}<-{producer}'; any other edge is the node's.
        self.producer = producers[0] if name != node and len(producers) == 1 else None
        self.key = session.keys.stream(node, self.producer)
        self._session = session
        self._outbox: list[bytes] = []
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._inbox: list[tuple[bytes, bytes]] = []  # (id, data) delivered here, not yet taken
        self._held: dict[asyncio.Task[Any], list[bytes]] = {}  # ids taken by each worker task
        self._fetch_lock = asyncio.Lock()
        self._eos = False
        self._last_claim = 0.0

    def __repr__(self) -> str:
        return f"<RedisEdge {self.name!r} {self.key!r}>"

    # -- inspection (local view; Redis's view is in the aggregated stats) -------------------

    def qsize(self) -> int:
        return len(self._inbox)

    def empty(self) -> bool:
        return not self._inbox

    def full(self) -> bool:
        return len(self._outbox) >= self._session.options.batch

    @property
    def closed(self) -> bool:
        """True once end-of-stream was seen here."""
        return self._eos

    @property
    def idle_consumers(self) -> Sized:
        # The consumers are in other processes: a producer always completes its batch.
        return _NOBODY

    def on_backlog(self, callback: Any) -> None:
        """Items arrive here only when a worker fetches them: a pool over Redis grows from what it took."""

    def statistics(self) -> EdgeStatistics:
        return EdgeStatistics(len(self._inbox), self.maxsize, 0, 0, 0 if self._eos else len(self.producers))

    def held_ids(self) -> list[bytes]:
        """Entries delivered to this process and not yet acknowledged."""
        ids = [entry_id for entry_id, _ in self._inbox]
        for batch in self._held.values():
            ids += batch
        return ids

    # -- producer side ----------------------------------------------------------------------

    def close(self) -> None:
        """A local producer is done; whether the node's input ended is decided in Redis."""
        self._open_producers -= 1

    def accepts_now(self) -> bool:
        return len(self._outbox) < self._session.options.batch

    def put_nowait(self, item: Any) -> bool:
        if len(self._outbox) >= self._session.options.batch:
            return False
        data = self._encode_from_source(item)
        self._outbox.append(data)
        if self._flusher is None:
            self._flusher = self._session.start(self._flush_soon(), f"pipelines:flush:{self.name}")
        return True

    async def put_many(self, items: list[Any]) -> float:
        outbox = self._outbox
        failed: list[tuple[Any, SerializationError]] = []
        for envelope in items:
            try:
                outbox.append(encode(envelope))
            except SerializationError as exc:
                key, value, producer = envelope
                processor = self._session.processor_at(producer)
                if processor.spec.is_source:
                    raise self._unsendable(processor, value, exc) from None
                if processor.spec.forward_drops:
                    outbox.append(encode((key, DROPPED, producer)))
                failed.append((envelope, exc))
        waited = await self.flush()
        for envelope, error in failed:
            await self._item_unsendable(envelope, error)
        return waited

    def _encode_from_source(self, envelope: Any) -> bytes:
        try:
            return encode(envelope)
        except SerializationError as exc:
            raise self._unsendable(self._session.processor_at(envelope[2]), envelope[1], exc) from None

    def _unsendable(self, processor: Processor, value: Any, exc: SerializationError) -> SerializationError:
        return SerializationError(
            f"{processor.kind} {processor.name!r}: item {_short(value)} cannot be sent to {self.node!r} "
            f"over Redis: {exc} "
            "(only None, bool, int, float, str, bytes and lists, tuples and dicts of them travel)"
        )

    async def _item_unsendable(self, envelope: Any, exc: SerializationError) -> None:
        """An output that cannot travel fails its item under the producer's on_error (told once, by its first edge)."""
        key, value, producer = envelope
        processor = self._session.processor_at(producer)
        if processor.outputs[0] is not self:
            return
        error = self._unsendable(processor, value, exc)
        if processor.spec.is_generator:
            # Other outputs of the same input item may already be downstream: the item cannot be
            # failed as a whole, so the run fails.
            processor.fail_run(error)
            return
        # The item was counted as completed and handed on; it is a failed item instead.
        await processor.fail_item(key, value, error, handed_on=True)

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(0)  # let the source put what it has ready
            await self.flush()
        finally:
            self._flusher = None

    async def flush(self) -> float:
        """Send the local buffer, waiting while the stream is full; return the seconds spent waiting."""
        session = self._session
        loop = asyncio.get_running_loop()
        waited = 0.0
        pause = 0.001
        async with self._flush_lock:
            outbox = self._outbox
            while outbox:
                added = await session.call(session.put_script, [self.key], [self.maxsize, *outbox])
                del outbox[:added]
                if outbox:
                    started = loop.time()
                    await asyncio.sleep(pause)
                    waited += loop.time() - started
                    pause = min(pause * 2, _MAX_PUT_PAUSE) if added == 0 else 0.001
        return waited

    # -- consumer side ----------------------------------------------------------------------

    async def get_many(self, share: int = 1) -> list[Any]:
        """Acknowledge what this task took before, then take the next batch; [] at end-of-stream."""
        task = asyncio.current_task()
        assert task is not None
        done = self._held.pop(task, None)
        if done:
            await self._ack(done)
        session = self._session
        while True:
            if self._inbox:
                inbox = self._inbox
                limit = -(-len(inbox) // share)
                taken, self._inbox = inbox[:limit], inbox[limit:]
                self._held[task] = [entry_id for entry_id, _ in taken]
                return self._envelopes(taken)
            if self._eos or session.leaving:
                return []
            async with self._fetch_lock:
                if not self._inbox and not self._eos and not session.leaving:
                    await self._fetch()

    def _envelopes(self, taken: list[tuple[bytes, bytes]]) -> list[Any]:
        envelopes = []
        for entry_id, data in taken:
            try:
                envelopes.append(decode(data))
            except ValueError as exc:
                raise PipelineError(f"node {self.node!r}: entry {entry_id!r} of {self.key!r}: {exc}") from None
        return self._session.filter_duplicates(self.node, envelopes)

    async def _fetch(self) -> None:
        session = self._session
        options = session.options
        reply = await session.call(
            session.redis.xreadgroup,
            session.group,
            session.consumer,
            {self.key: ">"},
            count=min(options.batch, self.maxsize),
            block=options.block_ms,
        )
        if reply:
            self._inbox += [(entry_id, fields[b"d"]) for entry_id, fields in reply[0][1]]
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_claim >= options.claim_idle / 2:
            self._last_claim = loop.time()
            if await self._claim():
                return
        done = await session.done_nodes()
        if all(p in done for p in self.producers) and await session.call(session.redis.xlen, self.key) == 0:
            self._eos = True

    async def _claim(self) -> bool:
        """Take over entries left unacknowledged for claim_idle seconds; True if any came."""
        session = self._session
        options = session.options
        mine = set(self.held_ids())
        claimed = await session.call(
            session.claim_script,
            [self.key],
            [session.group, session.consumer, int(options.claim_idle * 1000), min(options.batch, self.maxsize)],
        )
        fresh = [(entry_id, data, times) for entry_id, data, times in claimed if entry_id not in mine]
        if not fresh:
            return False
        logger.warning(
            "node %r: took over %d items a stopped or stalled worker left unacknowledged", self.node, len(fresh)
        )
        for entry_id, data, times in fresh:
            if times > options.max_deliveries:
                await self._poisoned(entry_id, data, times)
            else:
                self._inbox.append((entry_id, data))
        return True

    async def _poisoned(self, entry_id: bytes, data: bytes, times: int) -> None:
        """An entry delivered too often: fail its item under the node's on_error, then acknowledge it."""
        key, value, producer = decode(data)
        processor = self._session.processor(self.node)
        error = DeliveryError(
            f"node {self.node!r}: item {_short(value)} was delivered {times} times without being acknowledged "
            f"(max_deliveries is {self._session.options.max_deliveries}): each worker that took it stopped or "
            "stalled"
        )
        if processor.spec.join_mode is not None or value is DROPPED:
            logger.error("%s; it counts as dropped", error)
            self._inbox.append((entry_id, encode((key, DROPPED, producer))))
            return
        arg = value if processor.spec.style == "item" else (value,)
        if await processor.fail_item(key, arg, error):
            await self._ack([entry_id])

    async def _ack(self, ids: list[bytes]) -> None:
        session = self._session
        for start in range(0, len(ids), _ACK_CHUNK):
            await session.call(session.ack_script, [self.key], [session.group, *ids[start : start + _ACK_CHUNK]])


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
