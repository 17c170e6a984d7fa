"""Pools for nodes whose function is plain and blocking: threads for I/O, processes for CPU work."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from .properties import NodeProperties

__all__ = ["open_pool"]


def open_pool(node: str, properties: NodeProperties) -> Executor | None:
    """The pool of a node with an `executor` property (None without one), sized `max_workers`.

    Processes start from a fork server where the platform has one (a clean process that forks
    each worker, so they do not inherit the threads of the event loop's process), else they are
    spawned; either way the function and its items must be picklable, which means the function
    is defined at the top level of an importable module.
    """
    if properties.executor == "thread":
        return ThreadPoolExecutor(properties.max_workers, thread_name_prefix=f"pipelines:{node}")
    if properties.executor == "process":
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        return ProcessPoolExecutor(properties.max_workers, mp_context=multiprocessing.get_context(method))
    return None
