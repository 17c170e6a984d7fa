"""The journal's writer (pipelines.journal.writer): the progress text each commit writes."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pipelines.journal.writer import Writer

NAMES = st.text(min_size=1, max_size=8)  # any text: quotes, backslashes, control and non-ASCII characters
COUNTS = st.integers(min_value=0, max_value=2**53)
RANGES = st.lists(st.tuples(COUNTS, COUNTS).map(sorted).map(list), max_size=3)


@given(
    roots=st.dictionaries(NAMES, st.tuples(COUNTS, RANGES), min_size=1, max_size=3),
    sinks=st.dictionaries(NAMES, COUNTS, min_size=1, max_size=3),
)
def test_the_progress_is_the_json_of_the_done_ranges_and_the_sinks_counts(
    roots: dict[str, tuple[int, list[list[int]]]], sinks: dict[str, int]
) -> None:
    writer = Writer(
        str(Path("never-opened.db")),
        graph_hash="0" * 16,
        node_names=[*roots, *sinks],
        root_names=list(roots),
        resume=None,
        sync="normal",
        sinks=set(sinks),
        snapshot=dict,
    )
    for name, (upto, above) in roots.items():
        writer._upto[name] = upto
        writer._above[name] = above
    writer._totals.update(sinks)
    expected = {"roots": {name: [upto, above] for name, (upto, above) in roots.items()}, "sinks": sinks}
    text = writer._progress()
    assert json.loads(text) == expected
    # the very text json writes for the writer's own record (its sinks in the order it keeps them)
    kept = {
        "roots": {name: [writer._upto[name], writer._above[name]] for name in writer._upto},
        "sinks": writer._totals,
    }
    assert text == json.dumps(kept, separators=(",", ":"))
