"""Retry policy: how often a failing item is tried again, and how long to wait in between."""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["RetryPolicy", "is_finite_number"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Try an item up to `max_attempts` times in all when it raises one of `retry_on`.

    Before attempt n+1 the node waits ``min(max_backoff, backoff_factor * 2 ** (n - 1))`` seconds,
    scaled by a random factor in ``[1 - jitter, 1 + jitter]``. There is no wait after the last
    attempt: the item then fails, and the node's `on_error` decides what happens to it. An
    exception outside `retry_on` fails the item at once.

    Every number is checked when the policy is built: `backoff_factor` and `max_backoff` are finite
    numbers >= 0, `jitter` a number between 0 and 1; anything else raises ValueError naming the
    field and the value. So every delay is a finite number of seconds, whatever the attempt.
    """

    max_attempts: int = 3
    backoff_factor: float = 0.1
    max_backoff: float = 10.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        for name in ("backoff_factor", "max_backoff"):
            value = getattr(self, name)
            if not is_finite_number(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not is_finite_number(self.jitter) or not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be a number between 0 and 1, got {self.jitter!r}")
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        if not isinstance(retry_on, (tuple, list)) or not retry_on:
            raise ValueError(f"retry_on must be a non-empty tuple of exception classes, got {self.retry_on!r}")
        for cls in retry_on:
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                raise ValueError(f"retry_on must hold subclasses of Exception, got {cls!r}")
        object.__setattr__(self, "retry_on", tuple(retry_on))

    @classmethod
    def from_value(cls, value: RetryPolicy | Mapping[str, Any] | int) -> RetryPolicy:
        """Build a policy from a RetryPolicy, a dict of its fields, or an int of attempts."""
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(max_attempts=value)
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known, key=_names_first)
            if unknown:
                raise ValueError(f"unknown retry field {unknown[0]!r} (expected {', '.join(sorted(known))})")
            return cls(**value)
        raise ValueError(f"retry must be a RetryPolicy, a dict or an int, got {value!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based) before the next one."""
        cap = float(self.max_backoff)
        factor = float(self.backoff_factor)
        exponent = attempt - 1
        if cap == 0 or factor == 0:
            delay = 0.0
        # Compare exponents before computing: 2 ** exponent overflows a float long before an attempt
        # number runs out, and the capped delays are the common case of a long policy anyway.
        elif exponent >= math.log2(cap) - math.log2(factor):
            delay = cap
        else:
            # Below the cap up to rounding of the logarithms, which min() absorbs (and the except,
            # for a cap within that rounding of the largest float).
            try:
                delay = min(cap, math.ldexp(factor, exponent))
            except OverflowError:
                delay = cap
        if self.jitter:
            # A cap near the largest float could round up to infinity once scaled: stay finite.
            delay = min(delay * random.uniform(1 - self.jitter, 1 + self.jitter), sys.float_info.max)
        return delay


def _names_first(key: object) -> tuple[bool, str]:
    """Sort key for a user's dict keys (YAML reads `1:` as an int): names in order, then the others
    by repr, so a str is never compared with an int."""
    return (True, repr(key)) if not isinstance(key, str) else (False, key)


def is_finite_number(value: object) -> bool:
    """An int or float (not a bool) that is a finite float: not NaN, not infinite, not too large an int."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the largest float
        return False
