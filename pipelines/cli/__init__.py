"""The `pipelines` command: run, validate and draw graph files.

    pipelines run FILE [--set node.arg=value ...]   run it, with live progress and a summary
    pipelines run FILE --journal PATH                the same, durable: run again to resume after a crash
    pipelines run FILE --redis URL                   run the sources; the other nodes run in workers
    pipelines worker FILE --redis URL [--nodes a,b]  run nodes of a distributed run (pipelines.distributed)
    pipelines validate FILE                          exit 0, or 2 with one line saying what is wrong
    pipelines draw FILE --format mermaid|dot|ascii   print the graph
    pipelines serve FILE [--host H] [--port P]       run it with the live dashboard and control API
    pipelines journal PATH                           the runs a journal holds, their state, items finished

Exit codes: 0 success, 1 the run failed, 2 the file or the command line is wrong, 130 the run was
cancelled (a second Ctrl-C). Errors are one clear line on stderr, never a traceback. `coro` names
in the file are 'package.module:function' references, imported from the current directory and
the Python path.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any

from ..errors import GraphError, PipelineCancelled
from ..files import load_graph, set_args
from ..journal import Journal, JournalError
from ..plumber import Plumber
from ..program import run_until_signalled
from ..registry import Registry
from ..stats import RunResult
from .observe import MetricsUnavailable, check_metrics, with_metrics
from .progress import format_progress_line, format_summary, rich_progress_table, write_line

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args = _parser().parse_args(argv)
    _show_library_logs()
    try:
        return _command(args)
    except KeyboardInterrupt:  # before the run has its own handlers: while importing the file's modules
        _error("interrupted")
        return EXIT_CANCELLED


def _command(args: argparse.Namespace) -> int:
    # 'package.module:function' references resolve from where the command runs, as `python -m` does.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if args.command == "journal":
        return _show_journal(args.path)
    try:
        plumber = _build(args)
    except GraphError as exc:
        _error(_name_the_file(args.file, str(exc)))
        return EXIT_USAGE
    except JournalError as exc:
        _error(str(exc))
        return EXIT_USAGE
    if args.command == "validate":
        print(f"{args.file}: ok ({len(plumber.nodes)} nodes)")
        return EXIT_OK
    if args.command == "draw":
        from .. import drawing

        render = {"mermaid": drawing.to_mermaid, "dot": drawing.to_dot, "ascii": drawing.to_ascii}[args.format]
        print(render(plumber))
        return EXIT_OK
    if args.command == "serve":
        from .serve import serve

        return serve(plumber, host=args.host, port=args.port, token=args.token, label=args.file)
    return _run(plumber, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipelines", description="Run, validate and draw pipeline graph files.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a graph file, with live progress and a summary")
    run.add_argument("file", help="a .yaml, .yml or .json graph file")
    run.add_argument("--set", action="append", default=[], metavar="NODE.ARG=VALUE", help="override a node's arg")
    run.add_argument("--queue-size", type=int, default=None, help="default bound of every edge (100)")
    run.add_argument("--interval", type=float, default=None, help="seconds between progress updates")
    run.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the event loop to run on")
    run.add_argument("--journal", metavar="PATH", help="an SQLite journal: the run resumes from it after a crash")
    run.add_argument("--new-run", action="store_true", help="with --journal: start a new run, not resume the last")
    run.add_argument("--redis", metavar="URL", help="carry every edge over this Redis; nodes run in workers")
    worker = commands.add_parser("worker", help="run nodes of a graph file's distributed run (see run --redis)")
    worker.add_argument("file")
    worker.add_argument("--redis", metavar="URL", required=True, help="the Redis the run uses")
    worker.add_argument("--nodes", default=None, help="comma-separated nodes to run here (default: all but sources)")
    worker.add_argument("--run", default=None, metavar="ID", help="join this run (default: wait for the next one)")
    worker.add_argument("--set", action="append", default=[], metavar="NODE.ARG=VALUE", help="as given to run")
    worker.add_argument("--queue-size", type=int, default=None, help="as given to run")
    worker.add_argument("--interval", type=float, default=None, help="seconds between progress updates")
    worker.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the event loop to run on")
    for observed in (run, worker):
        observed.add_argument(
            "--metrics-port", type=int, default=None, metavar="N", help="serve Prometheus metrics (default: off)"
        )
        observed.add_argument(
            "--metrics-host", default="127.0.0.1", metavar="HOST", help="address for --metrics-port (default 127.0.0.1)"
        )
    validate = commands.add_parser("validate", help="check a graph file without running it")
    validate.add_argument("file")
    draw = commands.add_parser("draw", help="print the graph of a file")
    draw.add_argument("file")
    draw.add_argument("--format", choices=("mermaid", "dot", "ascii"), default="ascii")
    serve = commands.add_parser("serve", help="run a graph file with the live dashboard and the control API")
    serve.add_argument("file")
    serve.add_argument("--set", action="append", default=[], metavar="NODE.ARG=VALUE", help="override a node's arg")
    serve.add_argument("--queue-size", type=int, default=None, help="default bound of every edge (100)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to bind (default 8080; 0 picks a free one)")
    serve.add_argument("--token", default=None, help="token for control calls (made up when bound beyond loopback)")
    serve.add_argument("--redis", metavar="URL", help="as run --redis: the dashboard shows every worker's counts")
    for distributed in (run, worker, serve):
        tuning = distributed.add_argument_group("with --redis (see pipelines.distributed.RedisTransport)")
        for flag, kind in (("--batch", int), ("--claim-idle", float), ("--max-deliveries", int)):
            tuning.add_argument(flag, type=kind, default=None)
        for flag in ("--heartbeat", "--dead-after"):
            tuning.add_argument(flag, type=float, default=None)
    journal = commands.add_parser("journal", help="show the runs of a journal file")
    journal.add_argument("path")
    return parser


def _build(args: argparse.Namespace) -> Plumber:
    graph = load_graph(args.file)
    if getattr(args, "set", None):
        graph = set_args(graph, args.set)
    extra: dict[str, Any] = {}
    if getattr(args, "queue_size", None) is not None:
        extra["queue_size"] = args.queue_size
    if getattr(args, "journal", None):
        if getattr(args, "redis", None):
            raise GraphError("--journal and --redis cannot be used together: a distributed run is not journaled")
        extra["journal"] = Journal(args.journal, new_run=args.new_run)
    elif getattr(args, "new_run", False):
        raise GraphError("--new-run needs --journal PATH")
    if getattr(args, "redis", None):
        from ..distributed.cli import distributed_plumber

        return distributed_plumber(args, graph, extra)
    return Plumber(graph, Registry(imports=True), **extra)


def _run(plumber: Plumber, args: argparse.Namespace) -> int:
    loop_factory = None
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            _error("--loop uvloop needs uvloop: pip install 'aiopipelines[uvloop]'")
            return EXIT_USAGE
        loop_factory = uvloop.new_event_loop
    journal = plumber.journal
    if journal is not None and journal.already_completed:
        print(f"{journal.path}: run {journal.run_id} already completed; nothing to do (--new-run starts another)")
        return EXIT_OK
    if journal is not None and journal.resumed:
        _error(f"{journal.path}: resuming run {journal.run_id}: {journal.done_before} source items were done")
    interactive = sys.stderr.isatty()
    interval = args.interval if args.interval is not None else (0.25 if interactive else 2.0)
    work: Callable[[], Coroutine[Any, Any, RunResult]] = partial(_run_with_progress, plumber, interactive, interval)
    if args.metrics_port is not None:
        try:
            check_metrics()
        except MetricsUnavailable as exc:
            _error(str(exc))
            return EXIT_USAGE
        work = partial(with_metrics, plumber, args.metrics_host, args.metrics_port, work)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        try:
            result = runner.run(work())
        except MetricsUnavailable as exc:
            _error(str(exc))
            return EXIT_USAGE
        except PipelineCancelled as exc:
            _error(f"run cancelled: {exc}")
            print(format_summary(plumber.stats()))
            _leave_now_if_pools_are_busy(EXIT_CANCELLED)
            return EXIT_CANCELLED
        except BaseException as exc:  # whatever a node raised: one line, never a traceback
            notes = "; ".join(getattr(exc, "__notes__", ()))
            _error(f"run failed: {type(exc).__name__}: {exc}" + (f" ({notes})" if notes else ""))
            print(format_summary(plumber.stats()))
            _leave_now_if_pools_are_busy(EXIT_FAILED)
            return EXIT_FAILED
    print(format_summary(result.stats))
    print(f"{result.state} in {result.elapsed:.2f}s")
    return EXIT_OK


async def _run_with_progress(plumber: Plumber, interactive: bool, interval: float) -> RunResult:
    sinks = [p.name for p in plumber.nodes if not p.liason_queues[1] and p.input_queue is not None]
    running = asyncio.ensure_future(run_until_signalled(plumber))
    started = asyncio.get_running_loop().time()

    def elapsed() -> float:
        return asyncio.get_running_loop().time() - started

    if interactive:
        try:
            from rich.console import Console
            from rich.live import Live
        except ImportError:
            interactive = False  # the plain lines below; `pip install 'aiopipelines[cli]'` brings rich
    if interactive:
        with Live(console=Console(stderr=True), auto_refresh=False, transient=True) as live:
            while not running.done():
                live.update(rich_progress_table(plumber.stats(), sinks, elapsed()), refresh=True)
                await asyncio.wait([running], timeout=interval)
    else:
        while not running.done():
            await asyncio.wait([running], timeout=interval)
            if not running.done():
                write_line(sys.stderr, "pipelines: " + format_progress_line(plumber.stats(), sinks, elapsed()))
    return await running


class _NotTheFailure(logging.Filter):
    """The command reports a failed run itself, in one line: drop the library's record of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "pipelines.plumber" and record.getMessage().startswith("run failed"))


def _show_library_logs() -> None:
    """The command is an application: show the library's warnings and errors, one line each."""
    logger = logging.getLogger("pipelines")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("pipelines: %(message)s"))
        handler.addFilter(_NotTheFailure())
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def _show_journal(path: str) -> int:
    from ..journal.inspect import format_journal
    from ..journal.store import read_journal_file

    try:
        stored = read_journal_file(path)
    except JournalError as exc:
        _error(str(exc))
        return EXIT_USAGE
    if stored is None:
        _error(f"{path}: no such journal (the file does not exist, or is empty)")
        return EXIT_USAGE
    print(format_journal(stored))
    return EXIT_OK


def _leave_now_if_pools_are_busy(code: int) -> None:
    """After a failed or cancelled run, exit now rather than wait for blocking calls still in threads."""
    if any(t.name.startswith("pipelines:") and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _name_the_file(path: str, message: str) -> str:
    return message if message.startswith(path) else f"{path}: {message}"


def _error(message: str) -> None:
    write_line(sys.stderr, f"pipelines: {message}")


def console_main() -> None:
    """Entry point of the console script."""
    sys.exit(main())
