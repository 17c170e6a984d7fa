"""The live dashboard in a real headless Chromium (Playwright) against a real aiohttp server.

Each test serves make_app() on 127.0.0.1 with an attached pipeline, opens the page and drives it
like a person would: it reads what the page shows (elements with `data-testid`) and clicks its
buttons. Waits are on the page's own `updates` counter (one per `stats` event) and on its text,
never on time; Playwright's timeouts are only safety nets.

Needs Chromium installed as a system program (`chromium`, or the path in $CHROMIUM).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Dialog, Page, async_playwright, expect

from pipelines import Plumber, Processor
from pipelines.web import HUB, Hub, attach, make_app

from .web_helpers import serving

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000  # a safety net for every wait on the page, never a pace

expect.set_options(timeout=WAIT_MS)


def chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise AssertionError("the dashboard tests need Chromium: install the 'chromium' package or set $CHROMIUM")
    return path


# -- the pipelines shown --------------------------------------------------------------------


async def numbers(processor: Processor, output_q: Any) -> None:
    """Endless: 0, 1, 2, ... paced a little so a run lasts while the page watches it."""
    n = 0
    while True:
        await asyncio.sleep(0.005)
        await output_q.put(n)
        n += 1


async def double(processor: Processor, q_elt: tuple[int]) -> int:
    return q_elt[0] * 2


async def keep(processor: Processor, q_elt: tuple[int]) -> None:
    pass


def endless() -> Plumber:
    return Plumber(
        {
            "nodes": {"numbers": {"coro": numbers}, "double": {"coro": double}, "keep": {"coro": keep}},
            "graph": {"numbers": ["double"], "double": ["keep"], "keep": None},
        }
    )


HOSTILE_NODE = "<i>check</i>"
HOSTILE_ITEM = "<img src=x onerror=alert(1)>"


async def words(processor: Processor, output_q: Any) -> None:
    for word in ["fine", HOSTILE_ITEM, "good", "<b>bold</b>"]:
        await output_q.put(word)


async def check(processor: Processor, q_elt: tuple[str]) -> str:
    if q_elt[0].startswith("<"):
        raise ValueError(f"markup is not welcome: {q_elt[0]}")
    return q_elt[0]


def failing() -> Plumber:
    return Plumber(
        {
            "nodes": {
                "words": {"coro": words},
                HOSTILE_NODE: {"coro": check, "properties": {"on_error": "skip"}},
                "keep": {"coro": keep},
            },
            "graph": {"words": [HOSTILE_NODE], HOSTILE_NODE: ["keep"], "keep": None},
        }
    )


# -- server, browser and page helpers -------------------------------------------------------


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    """A page of a fresh headless Chromium; fails the test on any script error or alert."""
    problems: list[str] = []

    async def dialog_opened(dialog: Dialog) -> None:
        problems.append(f"dialog: {dialog.message}")
        await dialog.dismiss()  # an open alert would block the page until the test times out

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(WAIT_MS)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("dialog", dialog_opened)
            yield page
        finally:
            await browser.close()
    assert problems == []


async def number(page: Page, testid: str) -> int:
    text = await page.get_by_test_id(testid).text_content()
    assert text is not None
    return int(text.replace(",", ""))


async def count_above(page: Page, node: str, floor: int) -> None:
    """Wait until the page shows `node` having processed more than `floor` items."""
    await page.wait_for_function(
        """([testid, floor]) => {
            const cell = document.querySelector(`[data-testid="${testid}"]`);
            return cell !== null && Number(cell.textContent.replace(/,/g, "")) > floor;
        }""",
        arg=[f"count-{node}", floor],
    )


async def updates_reach(page: Page, target: int) -> None:
    """Wait until the page has applied `target` stats events since it loaded."""
    await page.wait_for_function(
        "target => Number(document.querySelector('[data-testid=\"updates\"]').textContent) >= target",
        arg=target,
    )


async def snapshot(page: Page) -> dict[str, Any]:
    """The run state, the updates counter and each node's processed count, read at one instant."""
    result: dict[str, Any] = await page.evaluate(
        """() => {
            const text = testid => document.querySelector(`[data-testid="${testid}"]`).textContent;
            const counts = {};
            for (const cell of document.querySelectorAll('[data-testid^="count-"]')) {
                counts[cell.dataset.testid.slice(6)] = Number(cell.textContent.replace(/,/g, ""));
            }
            return {state: text("run-state"), updates: Number(text("updates")), counts};
        }"""
    )
    return result


# -- tests ----------------------------------------------------------------------------------


async def test_pause_holds_the_source_resume_lets_it_go_and_stop_drains() -> None:
    app = make_app(interval=0.1)
    attach(app, endless, hub=app[HUB], label="numbers")
    async with serving(app) as url, browser_page() as page:
        await page.goto(url + "/")
        state = page.get_by_test_id("run-state")
        await expect(state).to_have_text("running")
        await expect(page.get_by_test_id("run-label")).to_have_text("numbers")
        await expect(page.get_by_test_id("box-numbers")).to_contain_text("numbers")
        await expect(page.get_by_test_id("edge-numbers-double")).to_have_attribute("data-kind", "data")
        await count_above(page, "numbers", 0)
        before = await number(page, "count-numbers")
        await count_above(page, "numbers", before)  # it rises
        await expect(page.get_by_test_id("pause")).to_be_enabled()
        await expect(page.get_by_test_id("resume")).to_be_disabled()

        await page.get_by_test_id("pause").click()
        await expect(state).to_have_text("paused")
        await expect(page.get_by_test_id("pause")).to_be_disabled()
        await expect(page.get_by_test_id("resume")).to_be_enabled()
        paused = await snapshot(page)
        held = paused["counts"]["numbers"]
        # What was already in the graph reaches the sink; the source sends nothing more.
        await count_above(page, "keep", held - 1)
        await updates_reach(page, paused["updates"] + 3)
        await expect(page.get_by_test_id("rate-numbers")).to_have_text("0")  # the rate of the last 2 s
        later = await snapshot(page)
        assert (later["state"], later["counts"]) == ("paused", {"numbers": held, "double": held, "keep": held})

        await page.get_by_test_id("resume").click()
        await expect(state).to_have_text("running")
        await count_above(page, "numbers", held)

        await page.get_by_test_id("stop").click()
        await expect(state).to_have_text("stopped")
        for button in ("pause", "resume", "stop"):
            await expect(page.get_by_test_id(button)).to_be_disabled()
        final = await snapshot(page)
        sent = final["counts"]["numbers"]
        assert sent > held
        assert final["counts"] == {"numbers": sent, "double": sent, "keep": sent}  # drained, nothing lost


async def test_a_node_paused_from_its_row_holds_alone_and_shows_it() -> None:
    app = make_app(interval=0.1)
    attach(app, lambda: Plumber(_endless_graph(), queue_size=4), hub=app[HUB])
    async with serving(app) as url, browser_page() as page:
        await page.goto(url + "/")
        await expect(page.get_by_test_id("run-state")).to_have_text("running")
        await count_above(page, "keep", 0)
        badge = page.get_by_test_id("paused-keep")
        await expect(badge).to_be_hidden()
        await expect(page.get_by_test_id("resume-keep")).to_be_disabled()

        await page.get_by_test_id("pause-keep").click()
        await expect(badge).to_be_visible()
        await expect(page.get_by_test_id("pause-keep")).to_be_disabled()
        await expect(page.get_by_test_id("resume-keep")).to_be_enabled()
        await expect(page.get_by_test_id("pause-double")).to_be_enabled()  # only that node is paused
        await expect(page.get_by_test_id("paused-double")).to_be_hidden()
        await expect(page.get_by_test_id("box-keep")).to_have_class(re.compile(r"\bpaused\b"))
        # keep takes nothing: its input fills to its bound, then the nodes before it wait too
        await expect(page.get_by_test_id("queue-keep")).to_have_text("4 / 4")
        await expect(page.get_by_test_id("queue-double")).to_have_text("4 / 4")
        held = await snapshot(page)
        await updates_reach(page, held["updates"] + 3)
        later = await snapshot(page)
        assert (later["state"], later["counts"]) == ("running", held["counts"])  # the run goes on, held

        await page.get_by_test_id("resume-keep").click()
        await expect(badge).to_be_hidden()
        await expect(page.get_by_test_id("box-keep")).not_to_have_class(re.compile(r"\bpaused\b"))
        await count_above(page, "keep", held["counts"]["keep"])
        await expect(page.get_by_test_id("pause-keep")).to_be_enabled()


def _endless_graph() -> dict[str, Any]:
    return {
        "nodes": {"numbers": {"coro": numbers}, "double": {"coro": double}, "keep": {"coro": keep}},
        "graph": {"numbers": ["double"], "double": ["keep"], "keep": None},
    }


async def test_a_server_with_a_token_wants_it_in_the_page_address() -> None:
    app = make_app(token="t0k", interval=0.1)
    attach(app, endless, hub=app[HUB], label="guarded")
    async with serving(app) as url, browser_page() as page:
        await page.goto(url + "/")
        banner = page.get_by_test_id("banner")
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text("This server requires a token")
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "refused")
        assert await snapshot(page) == {"state": "no run", "updates": 0, "counts": {}}

        await page.goto(url + "/?token=wrong")
        await expect(banner).to_contain_text("refused the token")
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "refused")

        await page.goto(url + "/?token=t0k")
        await expect(page.get_by_test_id("run-state")).to_have_text("running")
        await expect(banner).to_be_hidden()
        await count_above(page, "numbers", 0)
        # The buttons carry the token too: the control API answers 401 without it.
        await page.get_by_test_id("pause").click()
        await expect(page.get_by_test_id("run-state")).to_have_text("paused")
        await expect(page.get_by_test_id("error")).to_have_text("")


async def test_failures_are_listed_newest_first_as_plain_text() -> None:
    app = make_app(interval=0.1)
    attach(app, failing, hub=app[HUB], label="<script>label</script>")
    async with serving(app) as url, browser_page() as page:
        await page.goto(url + "/")
        await expect(page.get_by_test_id("run-state")).to_have_text("completed")
        await expect(page.get_by_test_id("run-label")).to_have_text("<script>label</script>")
        failures = page.get_by_test_id("failure")
        await expect(failures).to_have_count(2)
        await expect(page.get_by_test_id("failure-node")).to_have_text([HOSTILE_NODE, HOSTILE_NODE])
        await expect(page.get_by_test_id("failure-error")).to_have_text(
            [
                "ValueError('markup is not welcome: <b>bold</b>')",
                f"ValueError('markup is not welcome: {HOSTILE_ITEM}')",
            ]
        )
        await expect(page.get_by_test_id("failure-item")).to_have_text(["('<b>bold</b>',)", f"('{HOSTILE_ITEM}',)"])
        await expect(page.get_by_test_id("failure-outcome")).to_have_text(["skipped", "skipped"])
        await expect(page.get_by_test_id(f"box-{HOSTILE_NODE}")).to_contain_text(HOSTILE_NODE)
        await expect(page.get_by_test_id(f"row-{HOSTILE_NODE}")).to_contain_text(HOSTILE_NODE)
        assert (await snapshot(page))["counts"] == {"words": 4, HOSTILE_NODE: 2, "keep": 2}
        assert await number(page, f"skipped-{HOSTILE_NODE}") == 2
        assert await number(page, f"failed-{HOSTILE_NODE}") == 0
        # Nothing the pipeline said became markup: no element came from the names or the items.
        assert await page.evaluate("document.querySelectorAll('img, i, b, script:not([src])').length") == 0


async def test_the_run_selector_switches_the_page_to_another_run() -> None:
    app = make_app(interval=0.1)
    attach(app, endless, hub=app[HUB], label="numbers")
    attach(app, failing, hub=app[HUB], label="words")
    async with serving(app) as url, browser_page() as page:
        await page.goto(url + "/")
        options = page.get_by_test_id("run-select").locator("option")
        await expect(options).to_have_text(["newest live run", "words (r2) — completed", "numbers (r1) — running"])
        # By default the page follows the newest live run.
        await expect(page.get_by_test_id("run-label")).to_have_text("numbers")
        await count_above(page, "numbers", 0)

        await page.get_by_test_id("run-select").select_option("r2")
        await expect(page.get_by_test_id("run-label")).to_have_text("words")
        await expect(page.get_by_test_id("run-state")).to_have_text("completed")
        await expect(page.get_by_test_id("failure")).to_have_count(2)
        assert (await snapshot(page))["counts"] == {"words": 4, HOSTILE_NODE: 2, "keep": 2}
        for button in ("pause", "resume", "stop"):
            await expect(page.get_by_test_id(button)).to_be_disabled()

        await page.get_by_test_id("run-select").select_option("")
        await expect(page.get_by_test_id("run-label")).to_have_text("numbers")
        await expect(page.get_by_test_id("run-state")).to_have_text("running")
        await expect(page.get_by_test_id("failures-empty")).to_be_visible()
        await expect(page.get_by_test_id("failure")).to_have_count(0)


async def test_the_workers_column_shows_a_pool_growing_while_its_items_wait() -> None:
    release = asyncio.Event()

    async def three(processor: Processor, output_q: Any) -> None:
        for i in range(3):
            await output_q.put(i)

    async def waits(processor: Processor, q_elt: tuple[int]) -> int:
        await release.wait()  # stands for I/O: the pool takes each item in a worker of its own
        return q_elt[0]

    def waiting() -> Plumber:
        return Plumber(
            {
                "nodes": {"three": {"coro": three}, "wait": {"coro": waits}, "keep": {"coro": keep}},
                "graph": {"three": ["wait"], "wait": ["keep"], "keep": None},
            }
        )

    app = make_app(interval=0.1)
    attach(app, waiting, hub=app[HUB], label="waiting")
    async with serving(app) as url, browser_page() as page:
        await page.goto(url + "/")
        await expect(page.get_by_test_id("workers-wait")).to_have_text("3 (peak 3)")
        await expect(page.get_by_test_id("chart-workers-wait")).to_have_text("3 workers · peak 3")
        await expect(page.get_by_test_id("box-wait")).to_contain_text("3 workers")
        await expect(page.get_by_test_id("inflight-wait")).to_have_text("3")
        await expect(page.get_by_test_id("workers-keep")).to_have_text("1 (peak 1)")
        await expect(page.get_by_test_id("workers-three")).to_have_text("\u2013")  # an en dash: a source has no workers
        release.set()
        await expect(page.get_by_test_id("run-state")).to_have_text("completed")
        await expect(page.get_by_test_id("workers-wait")).to_have_text("0 (peak 3)")
        await expect(page.get_by_test_id("chart-workers-wait")).to_have_text("0 workers · peak 3")


# -- time, outcomes and layout ----------------------------------------------------------------


def outcomes(ended: asyncio.Event) -> Plumber:
    """0..29: `evens` filters out the odd ones, `check` sends the multiples of 3 to `errors`,
    `picky` skips the multiples of 10; `ended` is set when the run has ended."""

    async def thirty(processor: Processor, output_q: Any) -> None:
        for i in range(30):
            await output_q.put(i)

    async def evens(processor: Processor, q_elt: tuple[int]) -> int | None:
        return q_elt[0] if q_elt[0] % 2 == 0 else None

    async def by_three(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] % 3 == 0:
            raise ValueError(f"a multiple of 3: {q_elt[0]}")
        return q_elt[0]

    async def tens(processor: Processor, q_elt: tuple[int]) -> int:
        if q_elt[0] % 10 == 0:
            raise ValueError(f"a multiple of 10: {q_elt[0]}")
        return q_elt[0]

    plumber = Plumber(
        {
            "nodes": {
                "numbers": {"coro": thirty},
                "evens": {"coro": evens},
                "check": {"coro": by_three, "properties": {"on_error": "errors"}},
                "keep": {"coro": keep},
                "errors": {"coro": keep},
                "picky": {"coro": tens, "properties": {"on_error": "skip"}},
            },
            "graph": {
                "numbers": ["evens", "picky"],
                "evens": ["check"],
                "check": ["keep"],
                "keep": None,
                "errors": None,
                "picky": None,
            },
        }
    )
    plumber.signals.connect("run_ended", lambda signal: ended.set())
    return plumber


async def test_drops_at_a_lossy_input_show_apart_from_the_nodes_own() -> None:
    """Ten frames put at once into a node that keeps only the latest: nine are dropped at its input."""
    ended = asyncio.Event()

    async def ten(processor: Processor, output_q: Any) -> None:
        for i in range(10):
            await output_q.put(i)  # never waits on a lossy input: all ten are in before the viewer takes

    plumber = Plumber(
        {
            "nodes": {"camera": {"coro": ten}, "viewer": {"coro": keep, "properties": {"input": "latest"}}},
            "graph": {"camera": ["viewer"], "viewer": None},
        }
    )
    plumber.signals.connect("run_ended", lambda signal: ended.set())
    hub = Hub(sample_every=0.05)
    app = make_app(hub=hub, interval=0.1)
    attach(app, lambda: plumber, hub=hub, label="lossy")
    async with serving(app) as url, browser_page() as page:
        await ended.wait()
        assert plumber.stats()["viewer"].dropped_at_input == 9
        await page.goto(url + "/")
        await expect(page.get_by_test_id("run-state")).to_have_text("completed")
        badge = page.get_by_test_id("badge-dropped_at_input-viewer")
        await expect(badge.locator("text")).to_have_text("9 dropped at input")
        await expect(badge).to_have_attribute("data-tone", "quiet")
        await expect(page.get_by_test_id("badge-dropped-viewer")).to_be_hidden()
        await expect(page.get_by_test_id("dropped-viewer")).to_have_text("0 +9 at input")


async def test_an_ended_run_shows_drops_apart_from_failures_and_charts_that_add_up() -> None:
    ended = asyncio.Event()
    hub = Hub(sample_every=0.05)
    app = make_app(hub=hub, interval=0.1)
    attach(app, lambda: outcomes(ended), hub=hub, label="outcomes")
    async with serving(app) as url, browser_page() as page:
        await ended.wait()  # the page opens on a run that has ended
        (entry,) = hub.runs()
        await page.goto(url + "/")
        await expect(page.get_by_test_id("run-state")).to_have_text("completed")
        await expect(page.get_by_test_id("count-keep")).to_have_text("10")

        # A filter's drops wear a quiet badge of their own; failures are red; skips amber.
        badges = {
            "badge-dropped-evens": ("15 dropped", "quiet"),
            "badge-failed-check": ("✕ 5 failed", "bad"),
            "badge-skipped-picky": ("3 skipped", "warn"),
        }
        for testid, (text, tone) in badges.items():
            await expect(page.get_by_test_id(testid)).to_be_visible()
            await expect(page.get_by_test_id(testid).locator("text")).to_have_text(text)
            await expect(page.get_by_test_id(testid)).to_have_attribute("data-tone", tone)
        for testid in ("badge-failed-evens", "badge-skipped-evens", "badge-dropped-check", "badge-failed-picky"):
            await expect(page.get_by_test_id(testid)).to_be_hidden()
        fills = await page.evaluate(
            """() => ["badge-failed-check", "badge-skipped-picky", "badge-dropped-evens"].map(
                testid => getComputedStyle(document.querySelector(`[data-testid="${testid}"] rect`)).fill)"""
        )
        assert fills[0] == "rgb(184, 50, 42)"  # the failures' red
        assert len(set(fills)) == 3
        # The table: the same counts, red only for the failures.
        cells = await page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('td[data-testid]')].map(
                td => [td.dataset.testid, [td.textContent, td.className]]))"""
        )
        assert cells["dropped-evens"] == ["15", "num"]
        assert cells["failed-check"] == ["5", "num bad"]
        assert cells["skipped-picky"] == ["3", "num warn"]
        assert cells["failed-evens"] == ["0", "num zero"]
        # The failure list says what became of each item: routed to the error node, or skipped.
        await expect(page.get_by_test_id("failure")).to_have_count(8)
        listed = await page.evaluate(
            """() => [...document.querySelectorAll('[data-testid="failure"]')].map(li => [
                li.querySelector('[data-testid="failure-node"]').textContent,
                li.querySelector('[data-testid="failure-outcome"]').textContent])"""
        )
        assert sorted(listed) == [["check", "to error node"]] * 5 + [["picky", "skipped"]] * 3

        # The charts: every sample the hub took, adding up to what each node sent on.
        samples = str(len(entry.history))
        totals = {"numbers": 30, "evens": 15, "check": 10, "keep": 10, "errors": 5, "picky": 27}
        for name, total in totals.items():
            chart = page.get_by_test_id(f"chart-out-{name}")
            await expect(chart).to_have_attribute("data-total", str(total))
            await expect(chart).to_have_attribute("data-samples", samples)
        # The workers shown are the stats' own.
        stats = entry.plumber.stats()
        for name, s in stats.items():
            if name == "numbers":
                continue
            await expect(page.get_by_test_id(f"workers-{name}")).to_have_text(f"{s.workers} (peak {s.peak_workers})")
            workers = "0 workers" if s.workers == 0 else f"{s.workers} worker" + ("s" if s.workers > 1 else "")
            await expect(page.get_by_test_id(f"chart-workers-{name}")).to_have_text(
                f"{workers} · peak {s.peak_workers}"
            )

        # Ended, it stays as it was: the same figures and charts, update after update.
        before = await snapshot(page)
        await updates_reach(page, before["updates"] + 3)
        after = await snapshot(page)
        assert (
            after["counts"]
            == before["counts"]
            == {
                "numbers": 30,
                "evens": 15,
                "check": 10,
                "keep": 10,
                "errors": 5,
                "picky": 27,
            }
        )
        await expect(page.get_by_test_id("chart-out-numbers")).to_have_attribute("data-samples", samples)


def gated(gates: list[asyncio.Event], arrived: asyncio.Event, want: list[int]) -> Plumber:
    """feed -> double -> keep: `feed` puts 10, 15, 5 items, each batch once its gate is set;
    `arrived` is set when `keep` has seen `want[0]` items."""
    seen: list[int] = []

    async def feed(processor: Processor, output_q: Any) -> None:
        n = 0
        for size, gate in zip([10, 15, 5], gates, strict=True):
            await gate.wait()
            for _ in range(size):
                await output_q.put(n)
                n += 1

    async def count(processor: Processor, q_elt: tuple[int]) -> None:
        seen.append(q_elt[0])
        if len(seen) == want[0]:
            arrived.set()

    return Plumber(
        {
            "nodes": {"feed": {"coro": feed}, "double": {"coro": double}, "keep": {"coro": count}},
            "graph": {"feed": ["double"], "double": ["keep"], "keep": None},
        }
    )


async def test_a_page_opened_late_sees_the_history_then_each_new_sample() -> None:
    gates = [asyncio.Event() for _ in range(3)]
    arrived = asyncio.Event()
    want = [0]
    hub = Hub(sample_every=3600)  # the test takes the samples itself
    app = make_app(hub=hub, interval=0.1)
    attach(app, lambda: gated(gates, arrived, want), hub=hub, label="batches")
    async with serving(app) as url, browser_page() as page:
        (entry,) = hub.runs()
        for gate, total in zip(gates[:2], (10, 25), strict=True):
            want[0] = total
            gate.set()
            await arrived.wait()
            arrived.clear()
            hub.sample()
        assert [s.out[0] for s in entry.history.samples()] == [10, 15]

        await page.goto(url + "/")
        feed = page.get_by_test_id("chart-out-feed")
        await expect(feed).to_have_attribute("data-samples", "2")
        await expect(feed).to_have_attribute("data-total", "25")
        await expect(page.get_by_test_id("chart-out-keep")).to_have_attribute("data-total", "25")
        await expect(page.get_by_test_id("chart-queue-keep")).to_have_attribute("data-bound", "100")
        await expect(page.get_by_test_id("chart-span")).to_contain_text("a sample every 3,600 s")

        want[0] = 30
        gates[2].set()
        await arrived.wait()  # the source returns: the run ends and takes its last sample
        await expect(page.get_by_test_id("run-state")).to_have_text("completed")
        await expect(feed).to_have_attribute("data-samples", "3")
        await expect(feed).to_have_attribute("data-total", "30")
        await expect(page.get_by_test_id("chart-out-keep")).to_have_attribute("data-total", "30")
        queues = [s.queue[2] for s in entry.history.samples()]
        assert all(0 <= depth <= 100 for depth in queues)
        await expect(page.get_by_test_id("chart-queue-keep")).to_have_attribute("data-max", str(max(queues)))


LAYOUT_PROBLEMS = """() => {
    const problems = [];
    const name = el => el.dataset.testid || el.className || el.tagName;
    const boxes = [document.documentElement, document.body, ...document.querySelectorAll(
        ".topbar, .layout, .card, .card-head, .table-scroll, .graph-wrap, .charts, .chart-panel, .chart-row, "
        + ".failures")];
    for (const el of boxes) {
        if (el.scrollWidth > el.clientWidth) {
            problems.push(`${name(el)} overflows: ${el.scrollWidth} > ${el.clientWidth}`);
        }
    }
    const card = document.querySelector(".table-card").getBoundingClientRect();
    for (const td of document.querySelectorAll(".nodes td")) {
        const r = td.getBoundingClientRect();
        if (r.left < card.left || r.right > card.right) problems.push(`${name(td)} sticks out of its card`);
    }
    const footer = document.querySelector(".statusbar").getBoundingClientRect();
    for (const el of document.querySelectorAll(".card, [data-testid=failures]")) {
        const r = el.getBoundingClientRect();
        const overlap = r.top < footer.bottom && footer.top < r.bottom
            && r.left < footer.right && footer.left < r.right;
        if (overlap) problems.push(`the status bar covers ${name(el)}`);
    }
    return problems;
}"""


async def layout_problems(page: Page) -> list[str]:
    """What is clipped, sticks out or is covered, with the page scrolled to its top and to its end."""
    problems: list[str] = []
    for scroll in ("window.scrollTo(0, 0)", "window.scrollTo(0, document.body.scrollHeight)"):
        await page.evaluate(scroll)
        problems += await page.evaluate(LAYOUT_PROBLEMS)
    return problems


async def skips_fives(processor: Processor, q_elt: tuple[int]) -> int:
    if q_elt[0] % 5 == 0:
        raise ValueError(f"a multiple of 5: {q_elt[0]}")
    return q_elt[0]


def endless_with_failures() -> Plumber:
    return Plumber(
        {
            "nodes": {
                "numbers": {"coro": numbers},
                "a_node_with_a_long_name_for_the_layout": {"coro": skips_fives, "properties": {"on_error": "skip"}},
                "keep": {"coro": keep},
            },
            "graph": {
                "numbers": ["a_node_with_a_long_name_for_the_layout"],
                "a_node_with_a_long_name_for_the_layout": ["keep"],
                "keep": None,
            },
        }
    )


@pytest.mark.parametrize("width", [800, 1400])
async def test_the_page_fits_its_width_while_a_run_goes_and_after_it_ended(width: int) -> None:
    hub = Hub(sample_every=0.1)
    app = make_app(hub=hub, interval=0.1)
    attach(app, endless_with_failures, hub=hub, label="a run with failures")
    async with serving(app) as url, browser_page() as page:
        await page.set_viewport_size({"width": width, "height": 700})
        await page.goto(url + "/")
        await page.wait_for_function(
            """() => document.querySelectorAll('[data-testid="failure"]').length >= 5
                && Number(document.querySelector('[data-testid="chart-out-numbers"]').dataset.samples) >= 3"""
        )
        assert await layout_problems(page) == []

        await page.get_by_test_id("stop").click()
        await expect(page.get_by_test_id("run-state")).to_have_text("stopped")
        assert await layout_problems(page) == []
        final = await snapshot(page)
        sent = final["counts"]["numbers"]
        assert final["counts"]["keep"] == sent - len(range(0, sent, 5))
        samples = await page.get_by_test_id("chart-out-numbers").get_attribute("data-samples")
        await expect(page.get_by_test_id("chart-out-numbers")).to_have_attribute("data-total", str(sent))
        await updates_reach(page, final["updates"] + 3)
        assert (await snapshot(page))["counts"] == final["counts"]
        await expect(page.get_by_test_id("chart-out-numbers")).to_have_attribute("data-samples", samples or "")
