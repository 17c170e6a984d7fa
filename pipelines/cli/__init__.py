"""The `pipelines` command: run, validate and draw graph files.

    pipelines run FILE [--set node.arg=value ...]   run it, with live progress and a summary
    pipelines run FILE --journal PATH                the same, durable: run again to resume after a crash
    pipelines run FILE --journal PATH --rerun-failed resume, and rerun the items that failed or were skipped
    pipelines run FILE --redis URL                   run the sources; the other nodes run in workers
    pipelines worker FILE --redis URL [--nodes a,b]  run nodes of a distributed run (pipelines.distributed)
    pipelines validate FILE                          exit 0, or 2 with one line saying what is wrong
    pipelines draw FILE --format mermaid|dot|ascii   print the graph
    pipelines serve FILE [--host H] [--port P]       run it with the live dashboard and control API
    pipelines journal PATH                           the runs a journal holds, their state, items finished
    pipelines --version                              the installed distribution and its version

Exit codes: 0 success, 1 the run failed, 2 the file or the command line is wrong (a missing
extra, a Redis that cannot be reached), 130 the run was cancelled (a second Ctrl-C). Errors are
one clear line on stderr, never a traceback; a reader of stdout that leaves early (`| head`)
ends the output quietly. `coro` names in the file are 'package.module:function' references,
imported from the current directory and the Python path.
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
from importlib import metadata
from typing import Any

from ..errors import GraphError, PipelineCancelled, RedisUnavailable
from ..files import load_graph, set_args
from ..graph import DEFAULT_QUEUE_SIZE
from ..journal import Journal, JournalError
from ..plumber import Plumber
from ..program import run_until_signalled
from ..registry import Registry
from ..stats import RunResult
from .extras import DISTRIBUTION, ExtraMissing, needs
from .observe import MetricsUnavailable, check_metrics, with_metrics
from .progress import (
    format_progress_line,
    format_summary,
    rich_progress_table,
    show,
    stop_writing_stdout,
    write_line,
)

__all__ = ["build_parser", "console_main", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
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
    except (JournalError, ExtraMissing, RedisUnavailable) as exc:
        _error(str(exc))
        return EXIT_USAGE
    if args.command == "validate":
        show(f"{args.file}: ok ({len(plumber.nodes)} nodes)")
        return EXIT_OK
    if args.command == "draw":
        from .. import drawing

        render = {"mermaid": drawing.to_mermaid, "dot": drawing.to_dot, "ascii": drawing.to_ascii}[args.format]
        show(render(plumber))
        return EXIT_OK
    if args.command == "serve":
        from .serve import serve

        try:
            return serve(plumber, host=args.host, port=args.port, token=args.token, label=args.file)
        except ExtraMissing as exc:
            _error(str(exc))
            return EXIT_USAGE
    return _run(plumber, args)


# The defaults of RedisTransport, shown in the help (a test checks that they agree).
_REDIS_TUNING: tuple[tuple[str, type, Any, str], ...] = (
    ("--batch", int, 100, "entries read from or sent to Redis in one call"),
    (
        "--claim-idle",
        float,
        30.0,
        "seconds after which an item left unacknowledged by a process that stopped is claimed by another "
        "instance of its node; longer than any item takes",
    ),
    ("--max-deliveries", int, 5, "an item delivered more often than this fails with DeliveryError"),
    ("--heartbeat", float, 1.0, "seconds between two heartbeats of each process"),
    ("--dead-after", float, 10.0, "seconds of silence after which a process is taken for dead"),
)


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: every subcommand, and every option's help and default."""
    parser = argparse.ArgumentParser(prog="pipelines", description="Run, validate and draw pipeline graph files.")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    graph_file = "a .yaml, .yml or .json graph file"

    run, worker = _add_run(commands, graph_file), _add_worker(commands, graph_file)
    for observed in (run, worker):
        _add_metrics(observed)
    validate = commands.add_parser("validate", help="check a graph file without running it")
    validate.add_argument("file", help=graph_file)
    draw = commands.add_parser("draw", help="print the graph of a file")
    draw.add_argument("file", help=graph_file)
    draw.add_argument(
        "--format", choices=("mermaid", "dot", "ascii"), default="ascii", help="how to draw it (default: %(default)s)"
    )

    serve = _add_serve(commands, graph_file)
    for distributed in (run, worker, serve):
        _add_redis_tuning(distributed)
    journal = commands.add_parser("journal", help="show the runs of a journal file")
    journal.add_argument("path", help="the journal's SQLite file (run --journal PATH)")
    return parser


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser], graph_file: str) -> argparse.ArgumentParser:
    """`pipelines run`: a graph file, in this process or with --redis."""
    run = commands.add_parser("run", help="run a graph file, with live progress and a summary")
    run.add_argument("file", help=graph_file)
    _add_set_and_queue_size(run)
    _add_progress(run)
    run.add_argument(
        "--journal",
        metavar="PATH",
        default=None,
        help="record the run in this SQLite journal; after a crash the same command resumes it "
        "(default: none, the run is not durable)",
    )
    run.add_argument(
        "--new-run", action="store_true", help="with --journal: start a new run instead of resuming the last one"
    )
    run.add_argument(
        "--rerun-failed",
        action="store_true",
        help="with --journal: on resume, rerun the items that failed, were skipped or were routed to an error "
        "node in the last run, even if it completed, except where a node's 'recovery' property says 'keep' "
        "(default: off, only the failures that failed the run are rerun)",
    )
    run.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="carry every edge over this Redis; the sources run here, the other nodes in `pipelines worker` "
        "processes (default: none, every node runs in this process)",
    )
    run.add_argument(
        "--fuse",
        action="store_true",
        help="handle each linear run of plain nodes in one task: faster for nodes that do not wait on I/O, "
        "with no concurrency between them (default: off, every node runs in its own task)",
    )
    return run


def _add_worker(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], graph_file: str
) -> argparse.ArgumentParser:
    """`pipelines worker`: nodes of a distributed run."""
    worker = commands.add_parser("worker", help="run nodes of a graph file's distributed run (see run --redis)")
    worker.add_argument("file", help=graph_file + ", the same as the run's")
    worker.add_argument("--redis", metavar="URL", required=True, help="the Redis the run uses (required)")
    worker.add_argument(
        "--nodes",
        metavar="A,B",
        default=None,
        help="comma-separated nodes to run here (default: every node but the sources)",
    )
    worker.add_argument(
        "--run", metavar="ID", default=None, help="join this run (default: wait for the next run of this graph)"
    )
    _add_set_and_queue_size(worker, same_as_run=True)
    _add_progress(worker)
    return worker


def _add_serve(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], graph_file: str
) -> argparse.ArgumentParser:
    """`pipelines serve`: a graph file with the dashboard and the control API."""
    serve = commands.add_parser("serve", help="run a graph file with the live dashboard and the control API")
    serve.add_argument("file", help=graph_file)
    _add_set_and_queue_size(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port to bind, 0 for any free one (default: %(default)s)")
    serve.add_argument(
        "--token",
        default=None,
        help="token every control call and dashboard connection must give (default: none on 127.0.0.1; "
        "made up and printed when bound to another address)",
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="as run --redis: this process runs the sources and the dashboard shows every worker's counts "
        "(default: none, every node runs in this process)",
    )
    return serve


def _add_metrics(command: argparse.ArgumentParser) -> None:
    """--metrics-port and --metrics-host."""
    command.add_argument(
        "--metrics-port", type=int, default=None, metavar="N", help="serve Prometheus metrics (default: off)"
    )
    command.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address for --metrics-port (default: %(default)s)",
    )


def _add_redis_tuning(command: argparse.ArgumentParser) -> None:
    """The options that tune a distributed run (pipelines.distributed.RedisTransport)."""
    tuning = command.add_argument_group("with --redis (see pipelines.distributed.RedisTransport)")
    for flag, kind, default, text in _REDIS_TUNING:
        metavar = "N" if kind is int else "SECONDS"
        tuning.add_argument(flag, type=kind, default=default, metavar=metavar, help=text + " (default: %(default)s)")


def _add_set_and_queue_size(command: argparse.ArgumentParser, *, same_as_run: bool = False) -> None:
    command.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.ARG=VALUE",
        help="override an arg of a node, the value read as YAML; may be repeated"
        + (" (give the run's, so that the graph is the same)" if same_as_run else ""),
    )
    command.add_argument(
        "--queue-size",
        type=int,
        metavar="N",
        default=DEFAULT_QUEUE_SIZE,
        help="the bound of every edge whose node does not set its own (default: %(default)s)",
    )


def _add_progress(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        default=None,
        help="seconds between progress updates (default: 0.25 on a terminal, 2 otherwise)",
    )
    command.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop to run on (default: %(default)s)",
    )


class _Version(argparse.Action):
    """--version: the installed distribution's name and version, read from its metadata when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        try:
            version = f"{DISTRIBUTION} {metadata.version(DISTRIBUTION)}"
        except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
            version = f"{DISTRIBUTION} (not installed: no version)"
        show(version)
        parser.exit()


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
        extra["journal"] = Journal(args.journal, new_run=args.new_run, rerun_failed=args.rerun_failed)
    elif getattr(args, "new_run", False):
        raise GraphError("--new-run needs --journal PATH")
    elif getattr(args, "rerun_failed", False):
        raise GraphError("--rerun-failed needs --journal PATH")
    if getattr(args, "fuse", False):
        for flag in ("journal", "redis"):
            if getattr(args, flag, None):
                raise GraphError(
                    f"--fuse and --{flag} cannot be used together: the items of such a run carry "
                    "their keys, and no node fuses"
                )
        extra["fuse"] = True
    if getattr(args, "redis", None):
        with needs("redis", "--redis"):
            from ..distributed.cli import distributed_plumber

        return distributed_plumber(args, graph, extra)
    return Plumber(graph, Registry(imports=True), **extra)


def _run(plumber: Plumber, args: argparse.Namespace) -> int:
    loop_factory = None
    if args.loop == "uvloop":
        try:
            with needs("uvloop", "--loop uvloop"):
                import uvloop
        except ExtraMissing as exc:
            _error(str(exc))
            return EXIT_USAGE
        loop_factory = uvloop.new_event_loop
    journal = plumber.journal
    if journal is not None and journal.already_completed:
        show(f"{journal.path}: run {journal.run_id} already completed; nothing to do (--new-run starts another)")
        return EXIT_OK
    if journal is not None and journal.resumed:
        rerun = f"; rerunning {len(journal.rerun)} that did not succeed" if journal.rerun else ""
        _error(f"{journal.path}: resuming run {journal.run_id}: {journal.done_before} source items were done{rerun}")
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
            show(format_summary(plumber.stats(), plumber.spec, plumber.fused))
            _leave_now_if_pools_are_busy(EXIT_CANCELLED)
            return EXIT_CANCELLED
        except BaseException as exc:  # whatever a node raised: one line, never a traceback
            notes = "; ".join(getattr(exc, "__notes__", ()))
            _error(f"run failed: {type(exc).__name__}: {exc}" + (f" ({notes})" if notes else ""))
            show(format_summary(plumber.stats(), plumber.spec, plumber.fused))
            _leave_now_if_pools_are_busy(EXIT_FAILED)
            return EXIT_FAILED
    show(format_summary(result.stats, plumber.spec, plumber.fused))
    show(f"{result.state} in {result.elapsed:.2f}s")
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
    show(format_journal(stored))
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
    try:
        code = main()
        sys.stdout.flush()  # here, where a reader that has gone can be told apart from a failure
    except BrokenPipeError:  # stdout's reader left early (`| head`): what it read was what it wanted
        stop_writing_stdout()
        code = EXIT_OK
    sys.exit(code)
