"""B1 linear, and B7 loops: integers through three x + 1 stages, against the hand-written chain."""

from __future__ import annotations

from functools import partial

from . import competitors, handwritten
from .graphs import chain, pipeline, processor_chain
from .harness import Case, Config, Trial, alternate, optional, timed
from .report import Row, throughput_rows

__all__ = ["B1", "B7"]

STAGES = 3

PROCESSOR = "pipelines, f(processor, q_elt)"
ITEM = "pipelines, @node f(item)"
HAND = "hand-written asyncio.Queue(100) chain"
AIOSTREAM = "aiostream pipe.map (default: task per item)"
AIOSTREAM_1 = "aiostream pipe.map, task_limit=1"
PYPELN = "pypeln task.map (workers=1, maxsize=100)"
FLOOR = "floor: loop awaiting 3 coroutines per item"


def expected(n: int) -> int:
    return n * (n - 1) // 2 + STAGES * n


def pipelines_trials(n: int, loop: str | None = None) -> dict[str, Trial]:
    """The two pipelines styles and the hand-written chain, on `loop` (by default, the run's loop)."""
    want = expected(n)
    return {
        PROCESSOR: timed(pipeline(partial(processor_chain, n, STAGES)), want, loop),
        ITEM: timed(pipeline(partial(chain, n, STAGES)), want, loop),
        HAND: timed(partial(handwritten.chain, n, STAGES), want, loop),
    }


B1_TITLE = "linear: source -> 3 x (x + 1) -> sink"
B1_LABELS = (PROCESSOR, ITEM, HAND, AIOSTREAM, AIOSTREAM_1, PYPELN, FLOOR)


def _run_b1(config: Config) -> list[Row]:
    n = config.size(200_000, 2_000)
    want = expected(n)
    trials = pipelines_trials(n)

    def aiostream_trial(limit: int | None) -> Trial:
        return optional("aiostream", lambda: timed(partial(competitors.aiostream_chain(STAGES, limit), n), want))

    trials[AIOSTREAM] = aiostream_trial(None)
    trials[AIOSTREAM_1] = aiostream_trial(1)
    trials[PYPELN] = optional("pypeln", lambda: timed(partial(competitors.pypeln_chain(STAGES, 100), n), want))
    trials[FLOOR] = timed(partial(handwritten.floor, n), want)
    results = alternate(trials, config.rounds)
    return throughput_rows("B1", n, results, {label: HAND for label in B1_LABELS if label != HAND})


B1 = Case("B1", B1_TITLE, B1_LABELS, _run_b1)


def _on(loop: str, label: str) -> str:
    return f"{loop}: {label}"


B7_TITLE = "loops: B1 on asyncio and on uvloop"
B7_LABELS = tuple(_on(loop, label) for label in (PROCESSOR, ITEM, HAND) for loop in ("asyncio", "uvloop"))


def _run_b7(config: Config) -> list[Row]:
    n = config.size(200_000, 2_000)
    trials: dict[str, Trial] = {}
    references: dict[str, str | None] = {}
    for loop in ("asyncio", "uvloop"):
        for label, trial in pipelines_trials(n, loop).items():
            trials[_on(loop, label)] = trial
    for label in (PROCESSOR, ITEM, HAND):
        # each uvloop row against the same code on asyncio; pipelines on asyncio against the hand-written chain
        references[_on("uvloop", label)] = _on("asyncio", label)
        references[_on("asyncio", label)] = _on("asyncio", HAND) if label != HAND else None
    results = alternate({label: trials[label] for label in B7_LABELS}, config.rounds)
    return throughput_rows("B7", n, results, references)


B7 = Case("B7", B7_TITLE, B7_LABELS, _run_b7)
