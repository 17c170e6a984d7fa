"""The docs cannot rot: every Python block in README.md and wiki/ runs, and prints what they show.

A ```python block followed by an ```output block must print exactly that output. A block that
cannot run on its own is preceded by a line ``<!-- not run: reason -->``.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "wiki").glob("*.md"))]


@dataclass(frozen=True)
class Fence:
    lang: str
    first: int  # line number of the opening ```
    last: int  # line number of the closing ```
    body: str
    before: str  # the line just above the opening ```


def fences(text: str) -> list[Fence]:
    lines = text.splitlines()
    found = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("```") and len(lines[i]) > 3:
            end = lines.index("```", i + 1)
            body = "\n".join(lines[i + 1 : end]) + "\n"
            found.append(Fence(lines[i][3:].strip(), i + 1, end + 1, body, lines[i - 1] if i else ""))
            i = end
        i += 1
    return found


def blocks(path: Path) -> list[tuple[str, int, str, str | None]]:
    """(id, line, code, expected output) for each runnable Python block of `path`."""
    found = []
    all_fences = fences(path.read_text())
    for fence, after in zip(all_fences, [*all_fences[1:], None], strict=False):
        if fence.lang != "python":
            continue
        if fence.before == "<!-- run with pytest -->":
            continue  # run by test_pytest_doc_block_passes
        if fence.before.startswith("<!-- not run:"):
            assert fence.before.endswith("-->"), fence.before
            assert len(fence.before) > len("<!-- not run: -->"), fence.before
            continue
        # An output block one blank line below the code is what the code prints.
        follows = after is not None and after.lang == "output" and after.first == fence.last + 2
        found.append((f"{path.name}:{fence.first}", fence.first, fence.body, after.body if follows else None))
    return found


CASES = [case for path in DOCS for case in blocks(path)]


def test_every_doc_has_runnable_examples() -> None:
    assert {c[0].split(":")[0] for c in CASES} >= {"README.md"}
    assert len(CASES) >= 10


@pytest.mark.parametrize(("where", "line", "code", "expected"), CASES, ids=[c[0] for c in CASES])
def test_doc_block_runs(where: str, line: int, code: str, expected: str | None) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr}"
    if expected is not None:
        assert proc.stdout == expected, f"{where} printed something else"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    command = (
        "bash .ci/system-packages && python3 -m venv .venv && .venv/bin/pip install -e '.[test]' "
        "&& .venv/bin/python -m pytest"
    )
    assert f"```bash\n{command}\n```" in readme
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_api_reference_covers_every_public_name() -> None:
    import pipelines
    import pipelines.distributed
    import pipelines.journal
    import pipelines.metrics
    import pipelines.testing
    import pipelines.tracing
    import pipelines.web

    reference = (ROOT / "wiki" / "API-reference.md").read_text()
    headings = {line.removeprefix("### ") for line in reference.splitlines() if line.startswith("### ")}
    public = set(pipelines.__all__) | set(pipelines.testing.__all__) | {"make_plumber", "virtual_clock"}
    public |= set(pipelines.journal.__all__)
    public |= set(pipelines.web.__all__)
    public |= set(pipelines.distributed.__all__)
    public |= set(pipelines.metrics.__all__) | set(pipelines.tracing.__all__)
    assert public - headings == set()
    assert headings - public == set()


def test_the_wiki_has_its_pages_and_home_links_them() -> None:
    pages = {p.stem for p in (ROOT / "wiki").glob("*.md")}
    expected = {
        "Home",
        "Tutorial",
        "Graph-format",
        "Processor",
        "Plumber",
        "Semantics",
        "Errors-and-retries",
        "Testing",
        "Cookbook",
        "API-reference",
        "Architecture",
        "Performance",
        "Authoring",
        "Command-line",
        "Durability",
        "Web",
        "Distributed",
        "Migrating",
        "Observability",
        "Live-feeds",
        "Routing",
        "Backends",
    }
    assert pages == expected
    home = (ROOT / "wiki" / "Home.md").read_text()
    assert {page for page in expected - {"Home"} if f"({page}.md)" not in home} == set()


PYTEST_BLOCKS = [
    (f"{path.name}:{fence.first}", fence.body)
    for path in DOCS
    for fence in fences(path.read_text())
    if fence.lang == "python" and fence.before == "<!-- run with pytest -->"
]


@pytest.mark.parametrize(("where", "code"), PYTEST_BLOCKS, ids=[b[0] for b in PYTEST_BLOCKS])
def test_pytest_doc_block_passes(where: str, code: str, tmp_path: Path) -> None:
    (tmp_path / "test_doc_block.py").write_text(code)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "-o",
            "asyncio_mode=strict",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, f"{where} failed:\n{proc.stdout}{proc.stderr}"
    assert " passed" in proc.stdout.splitlines()[-1]


def test_the_api_reference_names_the_public_members() -> None:
    from pipelines import Plumber, Processor

    reference = (ROOT / "wiki" / "API-reference.md").read_text()
    for cls in (Plumber, Processor):
        members = {name for name in dir(cls) if not name.startswith("_")}
        missing = sorted(name for name in members if f"`{name}" not in reference)
        assert missing == [], f"{cls.__name__}: {missing}"
