"""Pools for nodes whose function is plain and blocking: threads for I/O, processes for CPU work."""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from .properties import DEFAULT_MAX_WORKERS, NodeProperties

__all__ = ["close_pool", "open_pool"]


def _ignore_interrupts() -> None:
    # A terminal sends Ctrl-C to the whole process group: the run decides what it means
    # (drain, then cancel), so the pool's workers must not die of it on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_fork_server_ignoring_interrupts() -> None:
    """Start the fork server with SIGINT ignored, so that every worker it forks starts ignoring it.

    Python keeps an inherited SIG_IGN for SIGINT, and the fork server hands its own handlers to
    its children; the initializer alone would leave a window while a new worker imports modules.
    """
    from multiprocessing import forkserver

    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: the initializer still covers the workers
        return
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def open_pool(node: str, properties: NodeProperties) -> Executor | None:
    """The pool of a node with an `executor` property (None without one), sized `max_workers`.

    Processes start from a fork server where the platform has one (a clean process that forks
    each worker, so they do not inherit the threads of the event loop's process), else they are
    spawned; either way the function and its items must be picklable, which means the function
    is defined at the top level of an importable module. Workers ignore SIGINT.
    """
    if properties.executor == "thread":
        return ThreadPoolExecutor(properties.max_workers or DEFAULT_MAX_WORKERS, thread_name_prefix=f"pipelines:{node}")
    if properties.executor == "process":
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        if method == "forkserver":
            _start_fork_server_ignoring_interrupts()
        return ProcessPoolExecutor(
            properties.max_workers or DEFAULT_MAX_WORKERS,
            mp_context=multiprocessing.get_context(method),
            initializer=_ignore_interrupts,
        )
    return None


def close_pool(pool: Executor, *, finished: bool) -> None:
    """Shut a node's pool down without waiting; when the run did not finish, stop what still runs.

    Worker processes are terminated. A thread cannot be stopped: one still inside a blocking call
    finishes it, and the interpreter waits for it before the process exits.
    """
    # No public call stops running workers before Python 3.14 (terminate_workers); take them
    # before shutdown(), which forgets them.
    processes = (
        list((getattr(pool, "_processes", None) or {}).values()) if isinstance(pool, ProcessPoolExecutor) else []
    )
    pool.shutdown(wait=False, cancel_futures=True)
    if not finished:
        for process in processes:
            process.terminate()
