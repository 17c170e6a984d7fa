"""B13 live feed: how old the frames a slow consumer sees are, under each input policy.

A camera puts frames every 10 ms; its consumer, one worker, needs 100 ms per frame. With the default input
(`block`, a bounded edge of 100) the camera is held back and the consumer works through a full
queue of old frames; `drop_oldest` keeps a ring of the 10 newest; `latest` keeps only the newest.
The figure is the age of each frame when the consumer takes it (the time since the camera made it),
and how many frames the camera had made since; `relative` is the mean age as a fraction of the
default edge's.

Run on virtual time (pipelines.testing.virtual_time): the camera's period and the consumer's work
are timers, so the figures are those of the policy, the same on any machine and in every round.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass
from typing import Any

from pipelines import Plumber
from pipelines.testing.virtual_time import VirtualTimeLoop

from .harness import Case, Config, Samples, Unavailable, alternate
from .report import Row, count, ratio, seconds, unavailable_row

__all__ = ["B13"]

PERIOD = 0.01
WORK = 0.1

BLOCK = "input 'block' (default edge, bound 100)"
RING = "input 'drop_oldest', queue_size 10"
LATEST = "input 'latest'"
POLICIES: dict[str, dict[str, Any]] = {
    BLOCK: {"workers": 1},
    RING: {"input": "drop_oldest", "queue_size": 10, "workers": 1},
    LATEST: {"input": "latest", "workers": 1},
}

B13_TITLE = "live feed: age of the frames a 10x slower consumer takes (camera every 10 ms, 100 ms per frame)"
B13_LABELS = tuple(POLICIES)


@dataclass(frozen=True)
class Watched:
    """What the consumer saw in one run."""

    ages: list[float]
    behind: list[int]
    dropped: int
    camera_waited: float


async def watch(frames: int, properties: dict[str, Any]) -> Watched:
    loop = asyncio.get_running_loop()
    made_at: list[float] = []
    ages: list[float] = []
    behind: list[int] = []

    async def camera(processor: Any, output_q: Any) -> None:
        for frame in range(frames):
            made_at.append(loop.time())
            await output_q.put(frame)
            await asyncio.sleep(PERIOD)

    async def consumer(processor: Any, q_elt: tuple[int]) -> None:
        frame = q_elt[0]
        ages.append(loop.time() - made_at[frame])
        behind.append(len(made_at) - 1 - frame)
        await asyncio.sleep(WORK)

    graph = {
        "nodes": {"camera": {"coro": camera}, "consumer": {"coro": consumer, "properties": properties}},
        "graph": {"camera": ["consumer"], "consumer": None},
    }
    result = await Plumber(graph).run()
    stats = result["consumer"]
    if len(ages) + stats.dropped_at_input != frames:
        raise AssertionError(f"{len(ages)} frames seen and {stats.dropped_at_input} dropped, of {frames}")
    return Watched(ages, behind, stats.dropped_at_input, result["camera"].blocked_seconds)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _run_b13(config: Config) -> list[Row]:
    frames = config.size(2_000, 100)
    seen: dict[str, Watched] = {}

    def trial(label: str) -> Any:
        def run() -> float:
            with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
                watched = runner.run(watch(frames, POLICIES[label]))
            seen[label] = watched
            return statistics.fmean(watched.ages)

        return run

    results = alternate({label: trial(label) for label in POLICIES}, config.rounds)
    rows = []
    reference = results[BLOCK]
    for label, result in results.items():
        if isinstance(result, Unavailable):
            rows.append(unavailable_row("B13", label, count(frames), result))
            continue
        watched = seen[label]
        measured = (
            f"age mean {seconds(result.median)}, p99 {seconds(p99(watched.ages))}; "
            f"{statistics.fmean(watched.behind):.1f} frames behind; {count(watched.dropped)} dropped; "
            f"camera waited {seconds(watched.camera_waited)}"
        )
        if label == BLOCK:
            rows.append(Row("B13", label, count(frames), measured, "1.00x", "(reference)"))
        elif isinstance(reference, Samples):
            # the age as a fraction of the default edge's (0.00x: each frame taken as it was made)
            fraction = statistics.median(v / r for v, r in zip(result.values, reference.values, strict=True))
            rows.append(Row("B13", label, count(frames), measured, ratio(fraction), BLOCK))
        else:
            rows.append(Row("B13", label, count(frames), measured, "n/a", f"{BLOCK} (unavailable)"))
    return rows


B13 = Case("B13", B13_TITLE, B13_LABELS, _run_b13)
