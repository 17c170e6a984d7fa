"""Lossy edges (pipelines.lossy): a source that must never wait, and a consumer that takes the freshest item.

The scenario of issue 19: a camera puts frames every 10 ms (virtual time), its consumer needs
100 ms per frame. The camera never waits, the consumer sees strictly increasing frames, each the
newest there was when it took it, every frame is either seen or counted dropped, and the edge never
holds more than its size. Then the same drops under a join, an Inbox and a journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import GraphError, Plumber, Registry, load_graph, node, parse_flow
from pipelines.drawing import to_ascii, to_dot, to_mermaid
from pipelines.edges import EdgeStatistics
from pipelines.journal.store import read_journal_file
from pipelines.lineage import DROPPED
from pipelines.lossy import LossyEdge
from pipelines.testing import VirtualClock
from pipelines.transport import MemoryTransport
from pipelines.web import Inbox, ItemDropped

from .backends import started, trio_twins
from .helpers import until

FRAMES = 200
FRAME_PERIOD = 0.01
WORK = 0.1


class Camera:
    """A source putting frames 0, 1, 2, ... every `period` seconds, noting what it put and when."""

    def __init__(self, frames: int = FRAMES, period: float | None = FRAME_PERIOD) -> None:
        self.frames = frames
        self.period = period
        self.newest = -1
        self.put_at: list[float] = []
        self.deepest = 0
        self.edges: list[Any] = []

    async def source(self, processor: Any, output_q: Any) -> None:
        for frame in range(self.frames):
            await output_q.put(frame)
            self.newest = frame
            self.put_at.append(anyio.current_time())
            self.deepest = max([self.deepest, *(edge.qsize() for edge in self.edges)])
            if self.period is None:
                await anyio.lowlevel.checkpoint()  # as fast as the loop allows, letting the consumer run
            else:
                await anyio.sleep(self.period)


class Viewer:
    """A consumer taking `work` seconds per frame, noting each frame and whether it was the newest."""

    def __init__(self, camera: Camera, work: float = WORK) -> None:
        self.camera = camera
        self.work = work
        self.seen: list[int] = []
        self.stale: list[tuple[int, int]] = []

    async def view(self, processor: Any, q_elt: tuple[int]) -> None:
        frame = q_elt[0]
        if frame != self.camera.newest:
            self.stale.append((frame, self.camera.newest))
        self.seen.append(frame)
        await anyio.sleep(self.work)


def camera_graph(camera: Camera, viewer: Viewer, **properties: Any) -> dict[str, Any]:
    return {
        "nodes": {
            "camera": {"coro": camera.source},
            "viewer": {"coro": viewer.view, "properties": properties},
        },
        "graph": {"camera": ["viewer"], "viewer": None},
    }


def increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


# -- the scenario ----------------------------------------------------------------------------------


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_a_camera_never_waits_for_a_consumer_ten_times_slower(virtual_clock: VirtualClock) -> None:
    camera = Camera()
    viewer = Viewer(camera)
    plumber = Plumber(camera_graph(camera, viewer, input="latest"))
    camera.edges = list(plumber.processor("viewer").inputs)
    result = await plumber.run()

    assert result["camera"].blocked_seconds == 0.0
    assert result["camera"].items_out == FRAMES
    # the camera kept its own pace: frame n was put at n * 10 ms
    assert [round(t - camera.put_at[0], 6) for t in camera.put_at] == [
        round(n * FRAME_PERIOD, 6) for n in range(FRAMES)
    ]
    assert increasing(viewer.seen)
    assert viewer.stale == []  # every frame taken was the newest there was
    stats = result["viewer"]
    assert len(viewer.seen) == stats.items_in == stats.completed
    assert len(viewer.seen) + stats.dropped_at_input == FRAMES
    assert stats.dropped == 0  # a drop at the input is not a drop by the node
    assert camera.deepest <= 1
    assert len(viewer.seen) >= FRAMES * FRAME_PERIOD / WORK  # it worked all the time the camera ran
    (edge,) = plumber.processor("viewer").inputs
    assert edge.statistics() == EdgeStatistics(
        depth=0, bound=1, waiting_getters=0, waiting_putters=0, open_producers=0, dropped=stats.dropped_at_input
    )


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_a_ring_keeps_the_newest_items_and_drops_the_oldest(virtual_clock: VirtualClock) -> None:
    camera = Camera()
    viewer = Viewer(camera)
    plumber = Plumber(camera_graph(camera, viewer, input="drop_oldest", queue_size=10, workers=1))
    camera.edges = list(plumber.processor("viewer").inputs)
    result = await plumber.run()

    assert result["camera"].blocked_seconds == 0.0
    assert increasing(viewer.seen)
    stats = result["viewer"]
    assert len(viewer.seen) + stats.dropped_at_input == FRAMES
    assert camera.deepest == 10  # full, never beyond
    assert stats.queue_bound == 10
    # once the camera ended, the ring held its ten newest frames, and the viewer saw them all
    assert viewer.seen[-10:] == list(range(FRAMES - 10, FRAMES))
    # while it ran, each frame the viewer took was the oldest of the ten newest: never further behind
    behind = [newest - frame for frame, newest in viewer.stale if newest < FRAMES - 1]
    assert behind
    assert max(behind) <= 9


async def test_a_source_as_fast_as_the_loop_allows_still_never_waits() -> None:
    camera = Camera(frames=2000, period=None)
    viewer = Viewer(camera, work=0)
    plumber = Plumber(camera_graph(camera, viewer, input="latest"))
    camera.edges = list(plumber.processor("viewer").inputs)
    result = await plumber.run()
    assert result["camera"].blocked_seconds == 0.0
    assert increasing(viewer.seen)
    assert viewer.seen[-1] == 1999
    assert len(viewer.seen) + result["viewer"].dropped_at_input == 2000
    assert camera.deepest <= 1


async def test_the_default_edge_makes_the_camera_wait() -> None:
    """The reference: without a lossy input, the same camera is held back and nothing is dropped."""
    camera = Camera(frames=50, period=None)
    viewer = Viewer(camera, work=0)
    result = await Plumber(camera_graph(camera, viewer, queue_size=1)).run()
    assert viewer.seen == list(range(50))
    assert result["viewer"].dropped_at_input == 0


# -- the edge itself -------------------------------------------------------------------------------


def envelope(n: int) -> tuple[Any, Any, int]:
    return (("cam", n), n, 0)


async def test_the_edge_drops_the_oldest_and_tells_each_key() -> None:
    edge = LossyEdge("v", 3)
    told: list[Any] = []
    edge.on_drop(told.append, tombstones=False)
    for n in range(5):
        assert edge.accepts_now()
        assert edge.put_nowait(envelope(n))
    assert await edge.put_many([envelope(5)]) == 0.0
    assert told == [("cam", 0), ("cam", 1), ("cam", 2)]
    assert edge.statistics().dropped == 3
    assert [await edge.get_many(share=1) for _ in range(3)] == [[envelope(3)], [envelope(4)], [envelope(5)]]
    edge.close()
    assert await edge.get_many() == []


async def test_a_dropped_item_leaves_a_tombstone_when_a_join_waits_downstream() -> None:
    edge = LossyEdge("v", 1, policy="latest")
    edge.on_drop(None, tombstones=True)
    await edge.put_many([envelope(0), envelope(1), (("cam", 7), DROPPED, 0), envelope(2)])
    # the tombstones first (an upstream one is never dropped), then the newest item
    assert await edge.get_many() == [
        (("cam", 7), DROPPED, 0),
        (("cam", 0), DROPPED, 0),
        (("cam", 1), DROPPED, 0),
        envelope(2),
    ]
    assert edge.dropped == 2
    edge.close()
    assert await edge.get_many() == []


async def test_a_waiting_consumer_is_woken_by_a_put() -> None:
    edge = LossyEdge("v", 2)
    taking = started(edge.get_many)
    await until(lambda: edge.statistics().waiting_getters == 1)
    edge.put_nowait(envelope(0))
    assert await taking == [envelope(0)]


def test_a_latest_edge_holds_one_item() -> None:
    with pytest.raises(ValueError, match=r"^edge 'v': policy 'latest' keeps one item, got maxsize 3$"):
        LossyEdge("v", 3, policy="latest")
    with pytest.raises(ValueError, match=r"^edge 'v': policy must be one of drop_oldest, latest, got 'block'$"):
        LossyEdge("v", 3, policy="block")


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 6), steps=st.lists(st.one_of(st.integers(1, 8), st.just(0)), max_size=40))
def test_every_item_put_is_taken_dropped_or_still_held(size: int, steps: list[int]) -> None:
    """A run of puts (n > 0 items at once) and takes (0): nothing is lost uncounted, order is kept."""

    async def scenario() -> None:
        edge = LossyEdge("v", size)
        dropped: list[Any] = []
        edge.on_drop(dropped.append, tombstones=False)
        taken: list[int] = []
        put = 0
        for step in steps:
            if step:
                await edge.put_many([envelope(put + i) for i in range(step)])
                put += step
                assert edge.qsize() <= size
            elif not edge.empty():
                taken.extend(value for _, value, _ in await edge.get_many())
        held: list[int] = []
        while not edge.empty():
            held.extend(value for _, value, _ in await edge.get_many())
        assert increasing(taken + held)
        assert sorted(taken + held + [key[1] for key in dropped]) == list(range(put))
        assert edge.dropped == len(dropped)
        assert len(held) <= size

    asyncio.run(scenario())


# -- joins, the Inbox, the journal -----------------------------------------------------------------


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_a_join_after_a_lossy_input_discards_the_groups_of_dropped_items(virtual_clock: VirtualClock) -> None:
    camera = Camera(frames=100)
    pairs: list[tuple[Any, ...]] = []

    @node
    async def detect(frame: int) -> str:
        await anyio.sleep(WORK)
        return f"d{frame}"

    @node
    async def stamp(frame: int) -> int:
        return frame

    async def pair(processor: Any, q_elt: tuple[Any, ...]) -> None:
        pairs.append(q_elt)

    graph = {
        "nodes": {
            "camera": {"coro": camera.source},
            "detect": {"coro": detect, "properties": {"input": "latest"}},
            "stamp": {"coro": stamp},
            "pair": {"coro": pair},
        },
        "graph": {"camera": ["detect", "stamp"], "detect": ["pair"], "stamp": ["pair"], "pair": None},
    }
    result = await Plumber(graph).run()
    assert pairs
    assert all(detected == f"d{frame}" for detected, frame in pairs)  # never a mismatched pair
    assert increasing([frame for _, frame in pairs])
    dropped = result["detect"].dropped_at_input
    assert dropped > 0
    assert result["pair"].dropped == dropped  # each dropped frame's group was discarded, and counted
    assert len(pairs) + dropped == 100
    assert result["camera"].blocked_seconds == 0.0


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_a_lossy_input_of_a_join_discards_the_group(virtual_clock: VirtualClock) -> None:
    camera = Camera(frames=60)
    pairs: list[tuple[Any, ...]] = []

    @node
    async def half(frame: int) -> int:
        return frame // 2

    @node
    async def same(frame: int) -> int:
        return frame

    async def pair(processor: Any, q_elt: tuple[Any, ...]) -> None:
        pairs.append(q_elt)
        await anyio.sleep(WORK)

    graph = {
        "nodes": {
            "camera": {"coro": camera.source},
            "half": {"coro": half},
            "same": {"coro": same},
            "pair": {"coro": pair, "properties": {"input": "drop_oldest", "queue_size": 4, "workers": 1}},
        },
        "graph": {"camera": ["half", "same"], "half": ["pair"], "same": ["pair"], "pair": None},
    }
    result = await Plumber(graph).run()
    assert pairs
    assert all(h == s // 2 for h, s in pairs)
    stats = result["pair"]
    # a group completes only if neither member was dropped; each other group is discarded once
    assert stats.completed == len(pairs)
    assert stats.completed + stats.dropped == 60
    assert stats.dropped_at_input >= stats.dropped > 0
    assert result["camera"].blocked_seconds == 0.0


async def test_an_inbox_request_whose_item_the_input_dropped_is_answered_item_dropped() -> None:
    inbox = Inbox()
    started = asyncio.Event()
    release = asyncio.Event()

    @node
    async def slow(x: int) -> int:
        if x == 1:
            started.set()
            await release.wait()
        return 10 * x

    @node
    async def answer(x: int) -> int:
        return x

    graph = {
        "nodes": {
            "requests": {"coro": inbox.source},
            "slow": {"coro": slow, "properties": {"input": "latest"}},
            "answer": {"coro": answer},
        },
        "graph": {"requests": ["slow"], "slow": ["answer"], "answer": None},
    }
    plumber = Plumber(graph)
    inbox.bind(plumber)
    async with plumber:
        plumber.create_pipeline()
        first = asyncio.ensure_future(inbox.submit(1))
        await started.wait()
        later = [asyncio.ensure_future(inbox.submit(x)) for x in (2, 3, 4)]
        await until(lambda: plumber.stats()["slow"].dropped_at_input == 2)  # 3 pushed 2 out, 4 pushed 3 out
        release.set()
        assert await first == 10
        for request in later[:2]:
            with pytest.raises(ItemDropped, match=r"^node 'slow' dropped the item$") as dropped:
                await request
            assert dropped.value.node == "slow"
        assert await later[2] == 40
        assert inbox.pending == 0
        assert inbox.in_graph == 0
        await plumber.stop()


class Crash(Exception):
    pass


async def test_an_item_the_input_dropped_is_finished_for_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    seen: list[list[int]] = [[], []]
    dropped: list[list[int]] = [[], []]
    attempt = 0

    @node
    async def frames() -> Any:
        for frame in range(300):
            yield frame
            await anyio.lowlevel.checkpoint()

    async def view(processor: Any, q_elt: tuple[int]) -> None:
        if attempt == 0 and len(seen[0]) == 20:
            raise Crash(q_elt[0])
        seen[attempt].append(q_elt[0])
        for _ in range(5):  # slower than the source: it drops
            await anyio.lowlevel.checkpoint()

    class Drops:
        """A hook noting the frames the viewer's input dropped, per attempt."""

        def node_hooks(self, processor: Any) -> Any:
            return self if processor.name == "view" else None

        def settled(self, key: Any, outcome: str, value: Any, copies: int) -> None:
            if outcome == "dropped":
                dropped[attempt].append(key[1])

    graph = {
        "nodes": {"frames": {"coro": frames}, "view": {"coro": view, "properties": {"input": "latest"}}},
        "graph": {"frames": ["view"], "view": None},
    }
    first = Plumber(graph, journal=path, hooks=[Drops()])
    with contextlib.suppress(Crash):
        await first.run()
    assert first.state == "failed"
    assert len(seen[0]) == 20
    assert dropped[0]
    attempt = 1
    second = Plumber(graph, journal=path, hooks=[Drops()])
    result = await second.run()
    assert result.state == "completed"
    assert second.journal is not None
    assert second.journal.done_before == len(seen[0]) + len(dropped[0])  # dropped items are finished
    redone = seen[1] + dropped[1]
    assert set(redone).isdisjoint(seen[0] + dropped[0])  # nothing finished is redone
    assert sorted(seen[0] + dropped[0] + redone) == list(range(300))
    stored = read_journal_file(path)
    assert stored is not None
    assert stored.runs[0].done == 300


# -- building: properties, errors, transports, drawings ---------------------------------------------


async def noop(processor: Any, q_elt: tuple[Any, ...]) -> None:
    return None


async def source(processor: Any, output_q: Any) -> None:
    return None


def two_nodes(**properties: Any) -> dict[str, Any]:
    return {
        "nodes": {"cam": {"coro": source}, "view": {"coro": noop, "properties": properties}},
        "graph": {"cam": ["view"], "view": None},
    }


def test_an_unknown_policy_is_a_graph_error_naming_the_node_and_the_choices() -> None:
    with pytest.raises(GraphError) as error:
        Plumber(two_nodes(input="newest"))
    assert str(error.value) == (
        "node 'view': property 'input' must be 'block' (producers wait while it is full), 'drop_oldest' (the "
        "oldest item waiting makes room) or 'latest' (only the newest item waits), got 'newest'"
    )
    with pytest.raises(
        GraphError, match=r"^node 'view': property 'input' must be 'block' .*, got \{'policy': 'latest'\}$"
    ):
        Plumber(two_nodes(input={"policy": "latest"}))


def test_latest_with_a_larger_size_is_a_graph_error() -> None:
    with pytest.raises(GraphError) as error:
        Plumber(two_nodes(input="latest", queue_size=5))
    assert str(error.value) == (
        "node 'view': property 'input' 'latest' keeps one item, so 'queue_size' must be 1 or left out, got 5 "
        "(for a ring of several items use 'drop_oldest')"
    )
    with pytest.raises(GraphError, match=r"^node 'view': property 'queue_size' must be an int >= 1"):
        Plumber(two_nodes(input="drop_oldest", queue_size=0))


def test_a_source_has_no_input_policy() -> None:
    graph = two_nodes()
    graph["nodes"]["cam"]["properties"] = {"input": "latest"}
    with pytest.raises(GraphError, match=r"^node 'cam': property 'input' does not apply to a source"):
        Plumber(graph)


def test_sizes_and_edges_follow_the_policy() -> None:
    plumber = Plumber(two_nodes(input="latest"), queue_size=50)
    (edge,) = plumber.processor("view").inputs
    assert isinstance(edge, LossyEdge)
    assert (edge.policy, edge.maxsize) == ("latest", 1)
    plumber = Plumber(two_nodes(input="drop_oldest"), queue_size=50)
    (edge,) = plumber.processor("view").inputs
    assert isinstance(edge, LossyEdge)
    assert (edge.policy, edge.maxsize) == ("drop_oldest", 50)
    (edge,) = Plumber(two_nodes(input="block")).processor("view").inputs
    assert not isinstance(edge, LossyEdge)


class BlockingOnly:
    """A transport without lossy edges (as the Redis one)."""

    def __init__(self) -> None:
        self.memory = MemoryTransport()

    def edge(self, name: str, node: str, producers: tuple[str, ...], maxsize: int) -> Any:
        return self.memory.edge(name, node, producers, maxsize)

    def node_task(self, processor: Any) -> Any:
        return self.memory.node_task(processor)


def test_a_transport_without_lossy_edges_refuses_the_policy_when_built() -> None:
    with pytest.raises(GraphError) as error:
        Plumber(two_nodes(input="latest"), transport=BlockingOnly())
    assert str(error.value) == (
        "node 'view': property 'input' 'latest' needs edges that can drop items, and this run's transport "
        "(BlockingOnly) has none; use 'block' (producers wait)"
    )
    Plumber(two_nodes(), transport=BlockingOnly())  # the default policy needs nothing more


def test_a_distributed_run_refuses_a_lossy_input_when_built() -> None:
    from pipelines.distributed import RedisTransport

    graph = {
        "nodes": {"cam": {"coro": "tests.lossy_nodes.cam"}, "view": {"coro": "tests.lossy_nodes.view"}},
        "graph": {"cam": ["view"], "view": None},
    }
    graph["nodes"]["view"]["properties"] = {"input": "drop_oldest"}
    with pytest.raises(
        GraphError, match=r"^node 'view': property 'input' 'drop_oldest' needs edges that can drop items"
    ):
        RedisTransport("redis://127.0.0.1:1/0").plumber(graph, _resolve)


def _resolve(name: str) -> Any:
    return {"tests.lossy_nodes.cam": source, "tests.lossy_nodes.view": noop}[name]


def test_the_flow_syntax_sets_the_policy() -> None:
    flow = parse_flow("camera -> detect[input=latest] -> store[input=drop_oldest, queue_size=10]")
    assert flow.properties == {"detect": {"input": "latest"}, "store": {"input": "drop_oldest", "queue_size": 10}}


def test_drawings_mark_lossy_inputs() -> None:
    plumber = Plumber(two_nodes(input="latest"))
    assert '"cam" -> "view" [style=dotted, label="latest"];' in to_dot(plumber)
    assert "n0 -. latest .-> n1" in to_mermaid(plumber)
    assert "input=latest" in to_ascii(plumber)


def test_a_graph_file_sets_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "feed.yaml"
    path.write_text(
        "nodes:\n"
        "  cam: {coro: cam}\n"
        "  view: {coro: view, properties: {input: drop_oldest, queue_size: 4}}\n"
        "flow: cam -> view\n"
    )
    plumber = Plumber(load_graph(path), Registry({"cam": source, "view": noop}))
    (edge,) = plumber.processor("view").inputs
    assert isinstance(edge, LossyEdge)
    assert (edge.policy, edge.maxsize) == ("drop_oldest", 4)


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_a_zip_join_of_two_lossy_cameras_pairs_only_frames_of_one_position(virtual_clock: VirtualClock) -> None:
    """Two independent cameras into a zip join whose inputs keep the latest: a pair is the n-th
    frame of each, and a position either camera's input dropped is discarded, counted once."""
    left, right = Camera(frames=40), Camera(frames=40, period=FRAME_PERIOD * 3)
    pairs: list[tuple[Any, ...]] = []

    async def pair(processor: Any, q_elt: tuple[Any, ...]) -> None:
        pairs.append(q_elt)
        await anyio.sleep(WORK)

    graph = {
        "nodes": {
            "left": {"coro": left.source},
            "right": {"coro": right.source},
            "pair": {"coro": pair, "properties": {"input": "latest"}},
        },
        "graph": {"left": ["pair"], "right": ["pair"], "pair": None},
    }
    plumber = Plumber(graph)
    assert [edge.name for edge in plumber.processor("pair").inputs] == ["pair<-left", "pair<-right"]
    result = await plumber.run()
    assert pairs
    assert all(a == b for a, b in pairs)
    stats = result["pair"]
    assert stats.completed == len(pairs)
    assert stats.completed + stats.dropped == 40  # every position paired or discarded, once
    assert stats.dropped_at_input > 0
    assert result["left"].blocked_seconds == result["right"].blocked_seconds == 0.0


async def test_a_woken_consumer_cancelled_hands_the_tombstones_on() -> None:
    edge = LossyEdge("v", 1, policy="latest")
    edge.on_drop(None, tombstones=True)
    first = asyncio.ensure_future(edge.get_many())
    second = asyncio.ensure_future(edge.get_many())
    await until(lambda: edge.statistics().waiting_getters == 2)
    await edge.put_many([(("cam", 7), DROPPED, 0)])  # wakes the first only
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert await second == [(("cam", 7), DROPPED, 0)]


async def test_a_stream_through_a_lossy_input_ends_with_the_items_not_dropped() -> None:
    from pipelines import stream

    @node
    async def slow(x: int) -> int:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        return x

    graph = {
        "nodes": {"entry": {}, "slow": {"coro": slow, "properties": {"input": "latest"}}},
        "graph": {"entry": ["slow"], "slow": None},
    }
    # the feed never waits on a lossy input: every item is in before `slow` takes one, and the
    # newest pushes the others out; the stream counts them settled and ends
    assert [y async for y in stream(graph, range(1000))] == [999]


globals().update(
    trio_twins(
        globals(),
        asyncio_only={
            "test_an_inbox_request_whose_item_the_input_dropped_is_answered_item_dropped": "pipelines.web is "
            "asyncio-only",
            "test_an_item_the_input_dropped_is_finished_for_the_journal": "the journal is asyncio-only",
            "test_a_woken_consumer_cancelled_hands_the_tombstones_on": "asyncio's cancel after a wake-up undoes it; "
            "trio's does not (tests/test_edges.py)",
            "test_a_stream_through_a_lossy_input_ends_with_the_items_not_dropped": "streams are asyncio-only",
        },
    )
)
