"""The original import path of `Processor` and `InputProcessor`.

A `Processor` is one node of the graph (pipelines.driver: its wiring, its counters, its task);
an `InputProcessor` is a node without inputs (pipelines.sources: a source, and the `output_q` it
puts into). Code written for the original library imports both from here.
"""

from __future__ import annotations

from .driver import Processor
from .sources import InputProcessor

__all__ = ["InputProcessor", "Processor"]
