"""pipelines.policies: RetryPolicy's validation, its construction from a property value, its delays,
and how a node waits between attempts under it.

tests/test_errors.py already checks the delays 0.5, 1, 2, 3, 3 of backoff_factor 0.5 capped at 3,
unseeded jitter within its bounds, and the messages for max_attempts=0, backoff_factor=-1,
jitter=2 and retry_on=(KeyboardInterrupt,); this module covers the rest.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import Plumber, node
from pipelines.policies import RetryPolicy

from .backends import started, trio_twins

FIELDS = "backoff_factor, jitter, max_attempts, max_backoff, retry_on"


@pytest.fixture
def seeded_random() -> Iterator[int]:
    """Seed the global `random` (which the jitter draws from) and restore its state afterwards."""
    state = random.getstate()
    seed = 20240613
    random.seed(seed)
    try:
        yield seed
    finally:
        random.setstate(state)


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": -1}, "max_attempts must be an int >= 1, got -1"),
        ({"max_attempts": 2.0}, "max_attempts must be an int >= 1, got 2.0"),
        ({"max_attempts": "3"}, "max_attempts must be an int >= 1, got '3'"),
        ({"max_attempts": True}, "max_attempts must be an int >= 1, got True"),
        ({"max_attempts": None}, "max_attempts must be an int >= 1, got None"),
        ({"backoff_factor": -0.5}, "backoff_factor must be a finite number >= 0, got -0.5"),
        ({"backoff_factor": "0.1"}, "backoff_factor must be a finite number >= 0, got '0.1'"),
        ({"backoff_factor": False}, "backoff_factor must be a finite number >= 0, got False"),
        ({"max_backoff": -1}, "max_backoff must be a finite number >= 0, got -1"),
        ({"max_backoff": -0.001}, "max_backoff must be a finite number >= 0, got -0.001"),
        ({"max_backoff": "10"}, "max_backoff must be a finite number >= 0, got '10'"),
        ({"max_backoff": None}, "max_backoff must be a finite number >= 0, got None"),
        ({"max_backoff": True}, "max_backoff must be a finite number >= 0, got True"),
        ({"jitter": -0.1}, "jitter must be a number between 0 and 1, got -0.1"),
        ({"jitter": 1.5}, "jitter must be a number between 0 and 1, got 1.5"),
        ({"jitter": "0.5"}, "jitter must be a number between 0 and 1, got '0.5'"),
        ({"jitter": True}, "jitter must be a number between 0 and 1, got True"),
        ({"jitter": float("nan")}, "jitter must be a number between 0 and 1, got nan"),
        ({"retry_on": ()}, "retry_on must be a non-empty tuple of exception classes, got ()"),
        ({"retry_on": []}, "retry_on must be a non-empty tuple of exception classes, got []"),
        ({"retry_on": None}, "retry_on must be a non-empty tuple of exception classes, got None"),
        (
            {"retry_on": "ValueError"},
            "retry_on must be a non-empty tuple of exception classes, got 'ValueError'",
        ),
        (
            {"retry_on": ValueError("x")},
            "retry_on must be a non-empty tuple of exception classes, got ValueError('x')",
        ),
        ({"retry_on": (ValueError, 3)}, "retry_on must hold subclasses of Exception, got 3"),
        ({"retry_on": (ValueError, "TypeError")}, "retry_on must hold subclasses of Exception, got 'TypeError'"),
        ({"retry_on": (int,)}, "retry_on must hold subclasses of Exception, got <class 'int'>"),
        ({"retry_on": BaseException}, "retry_on must hold subclasses of Exception, got <class 'BaseException'>"),
        ({"retry_on": [SystemExit]}, "retry_on must hold subclasses of Exception, got <class 'SystemExit'>"),
    ],
)
def test_a_bad_value_is_refused_with_the_field_and_the_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=exactly(message)):
        RetryPolicy(**kwargs)


def test_the_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.backoff_factor, policy.max_backoff, policy.jitter, policy.retry_on) == (
        3,
        0.1,
        10.0,
        0.0,
        (Exception,),
    )


def test_the_bounds_of_each_field_are_accepted() -> None:
    policy = RetryPolicy(max_attempts=1, backoff_factor=0, max_backoff=0, jitter=1, retry_on=(Exception,))
    assert (policy.max_attempts, policy.backoff_factor, policy.max_backoff, policy.jitter) == (1, 0, 0, 1)
    assert RetryPolicy(jitter=0.0).jitter == 0.0


@pytest.mark.parametrize(
    ("retry_on", "stored"),
    [
        (ConnectionError, (ConnectionError,)),
        ([ConnectionError, TimeoutError], (ConnectionError, TimeoutError)),
        ((KeyError,), (KeyError,)),
    ],
    ids=["one-class", "list", "tuple"],
)
def test_retry_on_is_stored_as_a_tuple(retry_on: Any, stored: tuple[type[Exception], ...]) -> None:
    policy = RetryPolicy(retry_on=retry_on)
    assert policy.retry_on == stored
    assert type(policy.retry_on) is tuple
    assert policy == RetryPolicy(retry_on=stored)


def test_a_policy_is_frozen_and_hashable() -> None:
    policy = RetryPolicy(max_attempts=2)
    with pytest.raises(AttributeError):
        policy.max_attempts = 5  # type: ignore[misc]
    assert policy.max_attempts == 2
    assert {policy: "a"}[RetryPolicy(max_attempts=2)] == "a"


def test_from_value_of_an_int_is_the_number_of_attempts() -> None:
    assert RetryPolicy.from_value(4) == RetryPolicy(max_attempts=4)
    assert RetryPolicy.from_value(1) == RetryPolicy(max_attempts=1)


def test_from_value_of_a_dict_takes_its_fields() -> None:
    value = {"max_attempts": 5, "backoff_factor": 0, "max_backoff": 2.5, "jitter": 0.25, "retry_on": [OSError]}
    assert RetryPolicy.from_value(value) == RetryPolicy(
        max_attempts=5, backoff_factor=0, max_backoff=2.5, jitter=0.25, retry_on=(OSError,)
    )
    assert RetryPolicy.from_value({}) == RetryPolicy()


def test_from_value_passes_a_policy_through() -> None:
    policy = RetryPolicy(max_attempts=7, jitter=0.5)
    assert RetryPolicy.from_value(policy) is policy


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"attempts": 3}, f"unknown retry field 'attempts' (expected {FIELDS})"),
        # the first unknown field in sorted order is named
        ({"max_attempts": 2, "tries": 3, "delay": 1}, f"unknown retry field 'delay' (expected {FIELDS})"),
        ({"Max_Attempts": 2}, f"unknown retry field 'Max_Attempts' (expected {FIELDS})"),
        # keys of other types (YAML reads `1:` as an int) come after the names, in the order of their repr
        ({1: 2, "max_attempts": 3}, f"unknown retry field 1 (expected {FIELDS})"),
        ({1: 2, "tries": 3, None: 4, (1, "a"): 5}, f"unknown retry field 'tries' (expected {FIELDS})"),
        ({2.5: 1, 1: 2, None: 4}, f"unknown retry field 1 (expected {FIELDS})"),
    ],
)
def test_from_value_names_an_unknown_field(value: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=exactly(message)):
        RetryPolicy.from_value(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3", "retry must be a RetryPolicy, a dict or an int, got '3'"),
        (2.5, "retry must be a RetryPolicy, a dict or an int, got 2.5"),
        (True, "retry must be a RetryPolicy, a dict or an int, got True"),
        (None, "retry must be a RetryPolicy, a dict or an int, got None"),
        ([3], "retry must be a RetryPolicy, a dict or an int, got [3]"),
    ],
)
def test_from_value_refuses_another_type(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=exactly(message)):
        RetryPolicy.from_value(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "max_attempts must be an int >= 1, got 0"),
        ({"max_backoff": -2}, "max_backoff must be a finite number >= 0, got -2"),
        ({"retry_on": ()}, "retry_on must be a non-empty tuple of exception classes, got ()"),
    ],
)
def test_from_value_validates_what_it_builds(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=exactly(message)):
        RetryPolicy.from_value(value)


def test_the_default_delays_double_from_a_tenth_of_a_second_up_to_ten() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n) for n in range(1, 11)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]


def test_a_factor_above_the_cap_is_capped_from_the_first_attempt() -> None:
    policy = RetryPolicy(backoff_factor=5, max_backoff=2)
    assert [policy.delay(n) for n in range(1, 4)] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize(
    ("kwargs", "delays"),
    [
        ({"backoff_factor": 0}, [0.0, 0.0, 0.0]),
        ({"backoff_factor": 1, "max_backoff": 0}, [0.0, 0.0, 0.0]),
        ({"backoff_factor": 1, "max_backoff": 100}, [1.0, 2.0, 4.0]),
    ],
    ids=["no-factor", "no-backoff", "int-fields"],
)
def test_delays_are_floats(kwargs: dict[str, Any], delays: list[float]) -> None:
    policy = RetryPolicy(**kwargs)
    got = [policy.delay(n) for n in range(1, 4)]
    assert got == delays
    assert [type(d) for d in got] == [float, float, float]


def test_no_jitter_draws_no_random_number(seeded_random: int) -> None:
    state = random.getstate()
    assert [RetryPolicy(backoff_factor=1.0).delay(n) for n in range(1, 4)] == [1.0, 2.0, 4.0]
    assert random.getstate() == state


@pytest.mark.parametrize("jitter", [0.1, 0.5, 1.0])
def test_jitter_scales_the_delay_by_a_factor_drawn_from_its_bounds(seeded_random: int, jitter: float) -> None:
    policy = RetryPolicy(backoff_factor=1.0, max_backoff=8.0, jitter=jitter)
    reference = random.Random(seeded_random)
    attempts = [1 + i % 5 for i in range(500)]  # base delays 1, 2, 4, 8 (capped from 16), 8
    bases = [min(8.0, 2.0 ** (n - 1)) for n in attempts]
    delays = [policy.delay(n) for n in attempts]
    assert delays == [base * reference.uniform(1 - jitter, 1 + jitter) for base in bases]
    factors = [d / base for d, base in zip(delays, bases, strict=True)]
    assert all(1 - jitter <= f <= 1 + jitter for f in factors)
    # the factors spread over the whole range, on both sides of 1
    assert min(factors) < 1 - jitter * 0.9
    assert max(factors) > 1 + jitter * 0.9


def test_jitter_applies_after_the_cap(seeded_random: int) -> None:
    policy = RetryPolicy(backoff_factor=1.0, max_backoff=2.0, jitter=0.5)
    reference = random.Random(seeded_random)
    delays = [policy.delay(10) for _ in range(200)]
    assert delays == [2.0 * reference.uniform(0.5, 1.5) for _ in range(200)]
    assert all(1.0 <= d <= 3.0 for d in delays)
    assert max(delays) > 2.0  # a jittered delay may exceed max_backoff


def test_a_long_policy_caps_every_delay_instead_of_overflowing() -> None:
    policy = RetryPolicy(max_attempts=2000, backoff_factor=0.1, max_backoff=10)
    delays = [policy.delay(n) for n in range(1, 2000)]
    assert delays[:8] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0]
    assert delays[7:] == [10.0] * (1999 - 7)
    assert policy.delay(1025) == 10.0
    assert policy.delay(10**30) == 10.0  # an attempt number far beyond any float exponent


@pytest.mark.parametrize(
    ("kwargs", "delays"),
    [
        # the cap is reached exactly where the doubling meets it, however the logarithms round
        ({"backoff_factor": 0.1, "max_backoff": 0.8}, [0.1, 0.2, 0.4, 0.8, 0.8]),
        ({"backoff_factor": 3, "max_backoff": 12}, [3.0, 6.0, 12.0, 12.0, 12.0]),
        # the smallest factor and the largest cap: the exponent is compared, never 2 ** 2000 computed
        ({"backoff_factor": 5e-324, "max_backoff": 1.7976931348623157e308}, [5e-324, 1e-323, 2e-323, 4e-323, 8e-323]),
    ],
    ids=["tenths", "ints", "extremes"],
)
def test_the_cap_holds_at_its_boundary(kwargs: dict[str, Any], delays: list[float]) -> None:
    policy = RetryPolicy(max_attempts=3000, **kwargs)
    assert [policy.delay(n) for n in range(1, 6)] == delays
    assert policy.delay(2999) == float(kwargs["max_backoff"])


@pytest.mark.parametrize("name", ["backoff_factor", "max_backoff"])
@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), float("-inf"), 10**400], ids=["nan", "inf", "-inf", "huge-int"]
)
def test_a_number_that_is_not_finite_is_refused(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=exactly(f"{name} must be a finite number >= 0, got {value!r}")):
        RetryPolicy(**{name: value})


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), 10**400], ids=["inf", "-inf", "huge-int"])
def test_a_jitter_that_is_not_finite_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match=exactly(f"jitter must be a number between 0 and 1, got {value!r}")):
        RetryPolicy(jitter=value)


# Numbers of every kind a graph file or a caller could give: NaN, infinities, ints past the largest
# float, tiny and huge floats, negative ones, and values of other types.
ANY_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=100),
    st.integers(min_value=-(2**1100), max_value=2**1100),
    st.integers(min_value=2**1024 - 2**971, max_value=2**1024 - 2**969),  # either side of float's end
    st.integers(min_value=0, max_value=20),
    st.sampled_from([True, False, None, "1", 0, 1, 5e-324, 1.7976931348623157e308]),
)


def valid_number(value: Any, low: float, high: float) -> bool:
    """The rule a field's value must follow, written independently of RetryPolicy."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        number = float(value)
    except OverflowError:  # an int beyond the largest float
        return False
    return math.isfinite(number) and low <= value <= high


@settings(max_examples=300, deadline=None)
@given(
    max_attempts=st.one_of(st.integers(min_value=-2, max_value=2100), st.sampled_from([2.0, True, None])),
    backoff_factor=ANY_NUMBER,
    max_backoff=ANY_NUMBER,
    jitter=ANY_NUMBER,
)
def test_any_numbers_build_a_policy_with_finite_capped_delays_or_raise_naming_the_field(
    max_attempts: Any, backoff_factor: Any, max_backoff: Any, jitter: Any
) -> None:
    kwargs = {"max_attempts": max_attempts, "backoff_factor": backoff_factor, "max_backoff": max_backoff}
    kwargs["jitter"] = jitter
    valid = {
        "max_attempts": isinstance(max_attempts, int) and not isinstance(max_attempts, bool) and max_attempts >= 1,
        "backoff_factor": valid_number(backoff_factor, 0, math.inf),
        "max_backoff": valid_number(max_backoff, 0, math.inf),
        "jitter": valid_number(jitter, 0, 1),
    }
    try:
        policy = RetryPolicy(**kwargs)
    except ValueError as exc:
        message = str(exc)
        field = message.split(" ", 1)[0]
        assert not valid[field]
        assert message.endswith(f", got {kwargs[field]!r}")
        assert "\n" not in message
        return
    assert all(valid.values())
    cap = Fraction(max_backoff)
    bound = float(max_backoff) * (1 + jitter) * (1 + 1e-12)
    for n in [*range(1, max_attempts + 1), 10**6, 10**30]:
        delay = policy.delay(n)
        assert type(delay) is float
        assert math.isfinite(delay)
        assert 0 <= delay <= bound
        if not jitter:  # exactly the documented formula, computed with exact fractions
            if n <= max_attempts:
                assert delay == float(min(cap, Fraction(backoff_factor) * 2 ** (n - 1)))
            else:  # 2 ** (n - 1) is past every float: the cap, unless there is no backoff at all
                assert delay == (float(cap) if backoff_factor else 0.0)


@pytest.mark.parametrize("generator", [False, True], ids=["function", "async-generator"])
async def test_zero_backoff_still_lets_other_tasks_run_between_attempts(generator: bool) -> None:
    """A node failing without ever awaiting, retried 1,000 times with no backoff, must not hold the
    loop: another task gets a turn between every two attempts."""
    policy = RetryPolicy(max_attempts=1001, backoff_factor=0)
    turns = 0  # how often the other task has run
    seen: list[int] = []  # the value of `turns` at each attempt
    results: list[Any] = []
    stop = anyio.Event()

    async def other_task() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await anyio.lowlevel.checkpoint()

    def attempt() -> None:
        seen.append(turns)
        if len(seen) <= 1000:
            raise ConnectionError("not yet")

    @node
    async def one() -> Any:
        yield "x"

    @node(retry=policy)
    async def flaky(x: str) -> str:
        attempt()
        return x

    @node(retry=policy)
    async def flaky_expanding(x: str) -> Any:
        attempt()
        yield x

    @node
    async def keep(x: str) -> None:
        results.append(x)

    middle = flaky_expanding if generator else flaky
    graph = {
        "nodes": {"one": {"coro": one}, "middle": {"coro": middle}, "keep": {"coro": keep}},
        "graph": {"one": ["middle"], "middle": ["keep"], "keep": None},
    }
    ticking = started(other_task)
    try:
        result = await Plumber(graph).run()
    finally:
        stop.set()
        await ticking
    assert results == ["x"]
    assert (result["middle"].retried, len(seen)) == (1000, 1001)
    assert all(later > earlier for earlier, later in itertools.pairwise(seen))


globals().update(
    trio_twins(
        globals(),
        asyncio_only={
            "test_zero_backoff_still_lets_other_tasks_run_between_attempts": "it counts turns in asyncio's FIFO "
            "order; trio runs the tasks of one turn in any order (its version: tests/test_trio_runtime.py)",
        },
    )
)
