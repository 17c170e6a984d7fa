"""Shared test setup: every async test runs on asyncio and on uvloop, and fails on leaked tasks."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_asyncio

from .backends import LOOPS as LOOP_FACTORIES


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return LOOP_FACTORIES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("asyncio") is not None:
            item.add_marker(pytest.mark.usefixtures("no_task_of_ours_left"))


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def asyncio_reports_nothing() -> Iterator[None]:
    """Fail the test when asyncio reports a task destroyed while pending, or an exception never retrieved;
    or when the trio backend reports an exception in a callback it ran."""
    recorder = _Recorder()
    loggers = [logging.getLogger("asyncio"), logging.getLogger("pipelines.trio_runtime")]
    for logger in loggers:
        logger.addHandler(recorder)
    try:
        yield
        gc.collect()
    finally:
        for logger in loggers:
            logger.removeHandler(recorder)
    assert recorder.messages == []


@pytest_asyncio.fixture
async def no_task_of_ours_left() -> Any:
    """After the test, no task started by pipelines may still be pending."""
    yield
    current = asyncio.current_task()
    left = [
        t.get_name()
        for t in asyncio.all_tasks()
        if t is not current and not t.done() and t.get_name().startswith("pipelines:")
    ]
    assert left == []
