"""The cases of the suite, in the order the table lists them."""

from __future__ import annotations

from .backends import B15
from .distributed import B8
from .fanout import B2
from .harness import Case
from .io_bound import B4
from .join import B3
from .journal import B9
from .linear import B1, B7
from .live_feed import B13
from .memory import B5
from .observability import B11
from .scale import B6
from .streaming import B12
from .strong import B14
from .web_load import B10

__all__ = ["CASES"]

CASES: dict[str, Case] = {case.id: case for case in (B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15)}
