"""Retry policy: how often a failing item is tried again, and how long to wait in between."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Try an item up to `max_attempts` times in all when it raises one of `retry_on`.

    Before attempt n+1 the node waits ``min(max_backoff, backoff_factor * 2 ** (n - 1))`` seconds,
    scaled by a random factor in ``[1 - jitter, 1 + jitter]``. There is no wait after the last
    attempt: the item then fails, and the node's `on_error` decides what happens to it. An
    exception outside `retry_on` fails the item at once.
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
            if not _is_number(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not _is_number(self.jitter) or not 0 <= self.jitter <= 1:
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
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(f"unknown retry field {unknown[0]!r} (expected {', '.join(sorted(known))})")
            return cls(**value)
        raise ValueError(f"retry must be a RetryPolicy, a dict or an int, got {value!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based) before the next one."""
        delay = float(min(self.max_backoff, self.backoff_factor * 2 ** (attempt - 1)))
        if self.jitter:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return delay


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
