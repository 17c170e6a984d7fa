"""The public surface: names exported, a quiet import, and logging left to the application."""

from __future__ import annotations

import inspect
import logging
import subprocess
import sys

import pipelines


def test_all_lists_exactly_the_public_names_sorted() -> None:
    public = sorted(
        name for name, value in vars(pipelines).items() if not name.startswith("_") and not inspect.ismodule(value)
    )
    assert sorted(pipelines.__all__) == public
    assert pipelines.__all__ == sorted(pipelines.__all__, key=lambda n: (n[0].islower(), n))


def test_import_prints_nothing_and_configures_no_logging() -> None:
    code = (
        "import logging, pipelines, pipelines.plumber, pipelines.processor;"
        "print(len(logging.getLogger().handlers), len(logging.getLogger('pipelines').handlers))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout == "0 0\n"
    assert proc.stderr == ""


def test_the_library_logs_under_the_pipelines_logger() -> None:
    from pipelines import calls, ledger, lifecycle, plumber, program

    for module in (calls, ledger, lifecycle, plumber, program):
        assert module.logger.name.startswith("pipelines.")
    assert logging.getLogger("pipelines").level == logging.NOTSET


def test_the_core_does_not_import_the_integrations() -> None:
    code = (
        "import sys, pipelines; print(sorted(m for m in sys.modules if m in ('yaml', 'rich', 'trio', 'anyio')"
        " or m.split('.')[:2] in (['pipelines', 'cli'], ['pipelines', 'testing'], ['pipelines', 'trio_runtime'])))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout == "[]\n"
