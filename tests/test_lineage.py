"""pipelines.lineage: the Joiner that pairs the inputs of a join by key, and the tombstone markers."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.lineage import DISCARDED, DROPPED, Joiner

# A three-input join whose producers (node indices) are not listed in input order.
PORTS = {7: 0, 4: 1, 9: 2}
FIRST, SECOND, THIRD = 7, 4, 9


def test_the_markers_are_distinct_and_name_themselves() -> None:
    assert (repr(DROPPED), repr(DISCARDED)) == ("DROPPED", "DISCARDED")
    assert DROPPED is not DISCARDED
    assert DROPPED != DISCARDED


@pytest.mark.parametrize("arrival", list(itertools.permutations([FIRST, SECOND, THIRD])))
def test_a_lineage_group_is_released_when_every_input_reported_in_input_order(arrival: tuple[int, ...]) -> None:
    joiner = Joiner(PORTS, zip_mode=False, key_length=2)
    key = ("src", 5)
    value_of = {FIRST: "a", SECOND: "b", THIRD: "c"}
    *early, last = arrival
    for count, producer in enumerate(early, start=1):
        assert joiner.offer(key, value_of[producer], producer) is None
        assert joiner.pending == 1
        heard = arrival[:count]
        assert [joiner.holds(key, p) for p in (FIRST, SECOND, THIRD)] == [p in heard for p in (FIRST, SECOND, THIRD)]
    assert joiner.offer(key, value_of[last], last) == (key, ("a", "b", "c"))
    assert joiner.pending == 0
    assert [joiner.holds(key, p) for p in (FIRST, SECOND, THIRD)] == [False, False, False]


def test_a_diamond_releases_each_group_as_soon_as_it_is_complete_not_in_key_order() -> None:
    joiner = Joiner({3: 0, 5: 1}, zip_mode=False, key_length=2)
    assert joiner.offer(("src", 0), "L0", 3) is None
    assert joiner.offer(("src", 1), "L1", 3) is None
    assert joiner.offer(("src", 2), "R2", 5) is None
    assert joiner.pending == 3
    assert joiner.offer(("src", 1), "R1", 5) == (("src", 1), ("L1", "R1"))
    assert joiner.offer(("src", 2), "L2", 3) == (("src", 2), ("L2", "R2"))
    assert joiner.pending == 1
    assert joiner.offer(("src", 0), "R0", 5) == (("src", 0), ("L0", "R0"))
    assert joiner.pending == 0


def test_keys_of_expanded_items_match_on_every_output_index() -> None:
    joiner = Joiner({3: 0, 5: 1}, zip_mode=False, key_length=3)
    assert joiner.offer(("src", 0, 1), "L01", 3) is None
    assert joiner.offer(("src", 0, 0), "R00", 5) is None
    assert joiner.pending == 2
    assert joiner.offer(("src", 0, 0), "L00", 3) == (("src", 0, 0), ("L00", "R00"))
    assert joiner.offer(("src", 0, 1), "R01", 5) == (("src", 0, 1), ("L01", "R01"))
    assert joiner.pending == 0


@pytest.mark.parametrize("dropping", [FIRST, SECOND, THIRD])
@pytest.mark.parametrize("dropped_first", [True, False])
def test_a_tombstone_on_one_input_discards_the_group(dropping: int, dropped_first: bool) -> None:
    joiner = Joiner(PORTS, zip_mode=False, key_length=2)
    key = ("src", 3)
    others = [p for p in (FIRST, SECOND, THIRD) if p != dropping]
    arrivals = [(dropping, DROPPED)] + [(p, f"v{p}") for p in others]
    if not dropped_first:
        arrivals.reverse()
    *early, (last, last_value) = arrivals
    for producer, value in early:
        assert joiner.offer(key, value, producer) is None
    assert joiner.offer(key, last_value, last) == (key, DISCARDED)
    assert joiner.pending == 0


def test_a_group_every_input_dropped_is_discarded() -> None:
    joiner = Joiner({3: 0, 5: 1}, zip_mode=False, key_length=2)
    assert joiner.offer(("src", 8), DROPPED, 5) is None
    assert joiner.offer(("src", 8), DROPPED, 3) == (("src", 8), DISCARDED)
    assert joiner.pending == 0


@pytest.mark.parametrize("dropping", [3, 5])
@pytest.mark.parametrize("first_input_arrives_first", [True, False])
def test_a_discarded_zip_group_carries_the_first_inputs_key(dropping: int, first_input_arrives_first: bool) -> None:
    joiner = Joiner({3: 0, 5: 1}, zip_mode=True, key_length=1)
    arrivals = [(("left", 4), 3), (("right", 4), 5)]
    if not first_input_arrives_first:
        arrivals.reverse()
    (key_a, producer_a), (key_b, producer_b) = arrivals
    assert joiner.offer(key_a, DROPPED if producer_a == dropping else "a", producer_a) is None
    assert joiner.offer(key_b, DROPPED if producer_b == dropping else "b", producer_b) == (("left", 4), DISCARDED)
    assert joiner.pending == 0


def test_zip_mode_matches_keys_without_the_source_and_keeps_the_first_inputs_key() -> None:
    joiner = Joiner({3: 0, 5: 1}, zip_mode=True, key_length=1)
    assert joiner.offer(("right", 0), "r0", 5) is None
    assert joiner.offer(("left", 1), "l1", 3) is None
    assert joiner.pending == 2
    # holds() leaves the source out too: any source name finds the group of position 1
    assert (joiner.holds(("other", 1), 3), joiner.holds(("other", 1), 5)) == (True, False)
    assert joiner.offer(("left", 0), "l0", 3) == (("left", 0), ("l0", "r0"))
    assert joiner.offer(("right", 1), "r1", 5) == (("left", 1), ("l1", "r1"))
    assert joiner.pending == 0


def test_lineage_mode_keeps_groups_of_different_sources_apart() -> None:
    joiner = Joiner({3: 0, 5: 1}, zip_mode=False, key_length=2)
    assert joiner.offer(("left", 0), "l0", 3) is None
    assert joiner.offer(("right", 0), "r0", 5) is None
    assert joiner.pending == 2
    assert joiner.drain() == [("left", 0), ("right", 0)]


@pytest.mark.parametrize(
    ("zip_mode", "key_length", "whole_item", "expanded_item"),
    [
        (False, 3, ("src", 4), ("src", 4, 0)),
        (True, 2, ("left", 4), ("left", 4, 0)),
    ],
    ids=["lineage", "zip"],
)
def test_a_key_of_the_wrong_length_is_ignored_and_holds_nothing(
    zip_mode: bool, key_length: int, whole_item: tuple[Any, ...], expanded_item: tuple[Any, ...]
) -> None:
    # The tombstone of an item that an expanding node upstream of every input turned into nothing.
    joiner = Joiner({3: 0, 5: 1}, zip_mode=zip_mode, key_length=key_length)
    assert joiner.offer(whole_item, DROPPED, 3) is None
    assert joiner.pending == 0
    assert joiner.holds(whole_item, 3) is False
    assert joiner.drain() == []
    # and later items of full length still pair as usual
    assert joiner.offer(expanded_item, "a", 3) is None
    assert joiner.offer(expanded_item, "b", 5) == (expanded_item, ("a", "b"))


@pytest.mark.parametrize("zip_mode", [False, True], ids=["lineage", "zip"])
def test_the_same_key_twice_on_one_input_raises(zip_mode: bool) -> None:
    joiner = Joiner({3: 0, 5: 1}, zip_mode=zip_mode, key_length=1 if zip_mode else 2)
    assert joiner.offer(("src", 2), "first", 3) is None
    message = "item with key ('src', 2) arrived twice on one input of a join"
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        joiner.offer(("src", 2), "again", 3)
    # the group still waits for its other input, with the first value
    assert joiner.pending == 1
    assert joiner.offer(("src", 2), "other", 5) == (("src", 2), ("first", "other"))


def test_drain_returns_the_keys_of_the_incomplete_groups_and_empties_the_joiner() -> None:
    joiner = Joiner(PORTS, zip_mode=False, key_length=2)
    assert joiner.offer(("src", 0), "a", FIRST) is None
    assert joiner.offer(("src", 1), "a", FIRST) is None
    assert joiner.offer(("src", 1), "b", SECOND) is None
    assert joiner.offer(("src", 2), DROPPED, THIRD) is None
    assert joiner.offer(("src", 1), "c", THIRD) == (("src", 1), ("a", "b", "c"))
    assert joiner.pending == 2
    assert joiner.drain() == [("src", 0), ("src", 2)]
    assert joiner.pending == 0
    assert joiner.holds(("src", 0), FIRST) is False
    assert joiner.drain() == []
    # a key drained away starts a new group: no duplicate error
    assert joiner.offer(("src", 0), "a2", FIRST) is None
    assert joiner.pending == 1


def test_drain_names_a_zip_group_by_the_first_inputs_key_once_it_arrived() -> None:
    joiner = Joiner(PORTS, zip_mode=True, key_length=1)
    assert joiner.offer(("second", 0), "b", SECOND) is None
    assert joiner.offer(("third", 0), "c", THIRD) is None
    assert joiner.offer(("second", 1), "b", SECOND) is None
    assert joiner.offer(("first", 1), "a", FIRST) is None
    # position 0 has not heard from the first input: it is named by its first arrival
    assert joiner.drain() == [("second", 0), ("first", 1)]
    assert joiner.pending == 0


# Property: random interleavings of the arrivals of N keys over k inputs, some of them tombstones.


@st.composite
def interleavings(draw: st.DrawFn) -> tuple[bool, list[int], list[frozenset[int]], list[tuple[int, int]]]:
    """(zip_mode, producer of each input, inputs that drop each key, arrivals as (key, input))."""
    zip_mode = draw(st.booleans())
    width = draw(st.integers(min_value=1, max_value=4))
    producers = draw(st.lists(st.integers(min_value=0, max_value=30), min_size=width, max_size=width, unique=True))
    count = draw(st.integers(min_value=0, max_value=8))
    drops = [frozenset(draw(st.sets(st.integers(min_value=0, max_value=width - 1)))) for _ in range(count)]
    arrivals = draw(st.permutations([(n, i) for n in range(count) for i in range(width)]))
    return zip_mode, producers, drops, arrivals


def key_of(zip_mode: bool, n: int, input_position: int) -> tuple[Any, ...]:
    # in zip mode each input is an independent source; in lineage mode all derive from one
    return (f"source{input_position}", n) if zip_mode else ("source", n)


@settings(deadline=None)
@given(case=interleavings())
def test_every_key_is_released_once_whatever_the_interleaving(
    case: tuple[bool, list[int], list[frozenset[int]], list[tuple[int, int]]],
) -> None:
    zip_mode, producers, drops, arrivals = case
    width = len(producers)
    joiner = Joiner({p: i for i, p in enumerate(producers)}, zip_mode=zip_mode, key_length=1 if zip_mode else 2)
    arrived: Counter[int] = Counter()
    released: list[int] = []
    for n, i in arrivals:
        value = DROPPED if i in drops[n] else (n, i)
        out = joiner.offer(key_of(zip_mode, n, i), value, producers[i])
        arrived[n] += 1
        if arrived[n] < width:
            assert out is None
        else:
            expected = DISCARDED if drops[n] else tuple((n, j) for j in range(width))
            assert out == (key_of(zip_mode, n, 0), expected)
            released.append(n)
        assert joiner.pending == sum(1 for c in arrived.values() if c < width)
    assert sorted(released) == list(range(len(drops)))
    assert joiner.pending == 0
    assert joiner.drain() == []


@settings(deadline=None)
@given(case=interleavings(), data=st.data())
def test_drain_returns_exactly_the_groups_left_incomplete(
    case: tuple[bool, list[int], list[frozenset[int]], list[tuple[int, int]]], data: st.DataObject
) -> None:
    zip_mode, producers, drops, arrivals = case
    width = len(producers)
    cut = data.draw(st.integers(min_value=0, max_value=len(arrivals)))
    joiner = Joiner({p: i for i, p in enumerate(producers)}, zip_mode=zip_mode, key_length=1 if zip_mode else 2)
    arrived: dict[int, list[int]] = {}  # key -> inputs heard, in arrival order (dicts keep first arrival order)
    for n, i in arrivals[:cut]:
        joiner.offer(key_of(zip_mode, n, i), DROPPED if i in drops[n] else (n, i), producers[i])
        arrived.setdefault(n, []).append(i)
    incomplete = [(n, inputs) for n, inputs in arrived.items() if len(inputs) < width]
    assert joiner.pending == len(incomplete)
    expected = [key_of(zip_mode, n, 0 if 0 in inputs else inputs[0]) for n, inputs in incomplete]
    assert joiner.drain() == expected
    assert joiner.pending == 0
