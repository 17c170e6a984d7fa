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
import shutil
from collections.abc import AsyncIterator
from typing import Any

from playwright.async_api import Dialog, Page, async_playwright, expect

from pipelines import Plumber, Processor
from pipelines.web import HUB, attach, make_app

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
        await expect(page.get_by_test_id("inflight-wait")).to_have_text("3")
        await expect(page.get_by_test_id("workers-keep")).to_have_text("1 (peak 1)")
        await expect(page.get_by_test_id("workers-three")).to_have_text("\u2013")  # an en dash: a source has no workers
        release.set()
        await expect(page.get_by_test_id("run-state")).to_have_text("completed")
        await expect(page.get_by_test_id("workers-wait")).to_have_text("0 (peak 3)")
