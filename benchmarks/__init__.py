"""Benchmarks for pipelines: every figure measured beside its reference in the same run.

Run ``python -m benchmarks`` (``--smoke`` for tiny sizes, ``--rounds K``, ``--only B1,B3``). The
machine is shared and noisy, so each figure is the median of alternating rounds, each on a fresh
event loop, and is given as a ratio to a reference measured in the same rounds. aiostream, pypeln
and uvloop are optional (the ``bench`` extra); a row whose package is missing says so.
"""
