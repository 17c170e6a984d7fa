"""Processors built by hand, in the original's keyword form, over the user's own asyncio queues."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest

from pipelines import GraphError, PipelineError, PipelineStateError, Plumber
from pipelines.processor import InputProcessor, Processor

from .helpers import chain, source_of


async def backwards(processor: Processor, q_elt: tuple[str]) -> str:
    return q_elt[0][::-1]


async def glue(processor: Processor, q_elt: tuple[str, ...], sep: str = "+") -> str:
    return sep.join(q_elt)


async def test_two_processors_built_by_hand_feed_one_consumer_queue() -> None:
    words, lefts, rights = asyncio.Queue[str](), asyncio.Queue[str](), asyncio.Queue[str]()
    results = asyncio.Queue[str]()
    single = Processor(name="single", coro=backwards, input_srcs=[words], output_dests=[results])
    paired = Processor(name="paired", coro=glue, input_srcs=[lefts, rights], output_dests=[results], sep="/")
    await words.put("stressed")
    assert await results.get() == "desserts"
    await rights.put("right")  # the pair waits for its other half
    await lefts.put("left")
    assert await results.get() == "left/right"
    await single.aclose()
    await paired.aclose()
    assert (single.stats().completed, paired.stats().completed) == (1, 1)
    assert results.empty()


async def test_a_processor_built_by_hand_keeps_the_original_attributes() -> None:
    source, dest = asyncio.Queue[int](), asyncio.Queue[int]()
    env = {"region": "eu"}
    processor = Processor("rev", coro=backwards, input_srcs=[source], output_dests=[dest], env_vars=env)
    async with processor:
        assert processor.name == "rev"
        assert str(processor) == f"<Processor:{processor.uuid};rev>"
        assert uuid.UUID(processor.uuid)
        assert processor.env_vars is env
        assert processor.processor_coro is backwards
        assert processor.liason_queues == ([source], [dest])
        assert processor.input_queue is not None
        assert processor.input_queue.maxsize == 100  # queue_size 0, the original's unbounded: the default bound


async def test_aggregation_takes_one_item_from_each_source_in_the_order_of_input_srcs() -> None:
    sources = [asyncio.Queue[str]() for _ in range(3)]
    dest = asyncio.Queue[str]()
    processor = Processor(name="three", coro=glue, input_srcs=sources, output_dests=[dest])
    for i in (2, 0, 1):  # the third source first: the tuple still follows input_srcs
        for n in range(2):
            await sources[i].put(f"{'abc'[i]}{n}")
    await processor.aclose()
    assert [dest.get_nowait() for _ in range(2)] == ["a0+b0+c0", "a1+b1+c1"]
    assert dest.empty()


async def test_an_incomplete_aggregate_at_close_is_discarded_and_counted() -> None:
    lefts, rights, dest = asyncio.Queue[str](), asyncio.Queue[str](), asyncio.Queue[str]()
    processor = Processor(name="pairs", coro=glue, input_srcs=[lefts, rights], output_dests=[dest])
    for item in ("l0", "l1"):
        lefts.put_nowait(item)
    rights.put_nowait("r0")
    await processor.aclose()
    assert [dest.get_nowait()] == ["l0+r0"]
    stats = processor.stats()
    assert (stats.completed, stats.dropped) == (1, 1)


async def test_every_result_goes_to_every_destination() -> None:
    source = asyncio.Queue[str]()
    dests = [asyncio.Queue[str]() for _ in range(3)]
    processor = Processor(name="rev", coro=backwards, input_srcs=[source], output_dests=dests)
    for word in ("ab", "cd"):
        source.put_nowait(word)
    await processor.aclose()
    assert [[d.get_nowait(), d.get_nowait()] for d in dests] == [["ba", "dc"]] * 3


async def test_close_reads_what_the_sources_hold_then_the_processor_ends() -> None:
    source, dest = asyncio.Queue[str](), asyncio.Queue[str]()
    processor = Processor(name="rev", coro=backwards, input_srcs=[source], output_dests=[dest])
    for word in ("one", "two", "three"):
        source.put_nowait(word)  # not read yet when close() is called
    processor.close()
    processor.close()  # again: nothing more
    await processor.join()
    assert [dest.get_nowait() for _ in range(3)] == ["eno", "owt", "eerht"]
    source.put_nowait("late")  # the user's own queue: no longer read
    assert source.qsize() == 1
    assert processor.input_queue is not None
    with pytest.raises(PipelineStateError, match="node 'rev': its inputs have ended"):
        processor.input_queue.put_nowait("late")


async def test_a_processor_without_destinations_keeps_its_results_in_its_output_queue() -> None:
    processor = Processor(name="rev", coro=backwards)  # no input_srcs: fed through its input_queue
    assert processor.input_queue is not None
    await processor.input_queue.put("abc")
    results: Any = processor.output_queue
    assert await results.get() == "cba"
    await processor.aclose()


async def test_a_failing_coroutine_is_logged_and_raised_by_aclose(caplog: pytest.LogCaptureFixture) -> None:
    async def fragile(processor: Processor, q_elt: tuple[int]) -> int:
        return 10 // q_elt[0]

    source, dest = asyncio.Queue[int](), asyncio.Queue[int]()
    processor = Processor(name="fragile", coro=fragile, input_srcs=[source], output_dests=[dest])
    for n in (5, 0, 2):
        source.put_nowait(n)
    with caplog.at_level(logging.ERROR, logger="pipelines"), pytest.raises(ZeroDivisionError) as raised:
        await processor.aclose()
    assert "pipelines: node 'fragile' failed on item (0,)" in raised.value.__notes__
    assert [r.getMessage().split(";")[0] for r in caplog.records if r.name == "pipelines.standalone"] == [
        "processor 'fragile' failed: ZeroDivisionError('integer division or modulo by zero')"
    ]
    assert dest.empty()  # a failure ends the processor, as it ends a run (on_error 'fail')
    with pytest.raises(ZeroDivisionError):
        await processor.join()  # again: the same failure


async def test_an_input_processor_built_by_hand_ends_when_its_coroutine_returns() -> None:
    async def numbers(processor: Processor, output_q: Any, count: int) -> None:
        for i in range(count):
            await output_q.put(i)

    dests = [asyncio.Queue[int](), asyncio.Queue[int]()]
    source = InputProcessor(name="numbers", coro=numbers, output_dests=dests, count=3)
    await source.join()
    assert [[d.get_nowait() for _ in range(3)] for d in dests] == [[0, 1, 2], [0, 1, 2]]
    assert source.stats().items_out == 3


async def test_closing_an_input_processor_stops_its_coroutine() -> None:
    put = asyncio.Event()

    async def endless(processor: Processor, output_q: Any) -> None:
        while True:
            await output_q.put("tick")
            put.set()

    dest = asyncio.Queue[str](maxsize=1)
    source = InputProcessor(name="endless", coro=endless, output_dests=[dest], queue_size=1)
    await put.wait()
    await source.aclose()
    assert dest.get_nowait() == "tick"


async def test_processors_the_plumber_built_end_with_the_run_not_by_hand() -> None:
    async def show(processor: Processor, q_elt: tuple[int]) -> None:
        pass

    plumber = Plumber(chain("numbers", "show", coros={"numbers": source_of([1]), "show": show}))
    with pytest.raises(PipelineStateError, match="close\\(\\) on node 'show': a processor the Plumber built"):
        plumber.processor("show").close()
    with pytest.raises(PipelineStateError, match="join\\(\\) on node 'numbers'"):
        await plumber.processor("numbers").join()
    await plumber.run()


async def test_the_node_built_by_hand_is_checked_as_in_a_graph() -> None:
    def plain(processor: Processor, q_elt: tuple[int]) -> int:
        return q_elt[0]

    with pytest.raises(GraphError, match="node 'plain'"):
        Processor(name="plain", coro=plain, input_srcs=[asyncio.Queue()])
    with pytest.raises(GraphError, match="node 'rev'"):
        Processor(name="rev", coro=backwards, input_srcs=[asyncio.Queue()], unknown_arg=1)
    with pytest.raises(TypeError, match="input_queue"):
        Processor(name="rev", coro=backwards, input_queue=asyncio.Queue())


def test_building_by_hand_needs_a_running_loop() -> None:
    with pytest.raises(PipelineError, match="Processor 'rev' built by hand needs a running event loop"):
        Processor(name="rev", coro=backwards, input_srcs=[])
