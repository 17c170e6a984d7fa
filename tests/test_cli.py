"""The `pipelines` command, through a real subprocess: exit codes, one-line errors, progress, summary."""

from __future__ import annotations

import itertools
import os
import pty
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli.progress import LEGEND

ROOT = Path(__file__).parent.parent
PIPELINES = [sys.executable, "-W", "error", "-c", "from pipelines.cli import console_main; console_main()"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PIPELINES, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)


def read_terminal(controller: int) -> bytes:
    """Everything written to a pseudo-terminal until its other side closes (at most 60 s of silence)."""
    shown = b""
    while select.select([controller], [], [], 60)[0]:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return shown


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CHAIN = """
nodes:
  source: {coro: "tests.cli_nodes:count", args: {n: 5}}
  double: {coro: "tests.cli_nodes:double"}
  show: {coro: "tests.cli_nodes:show"}
flow: "source -> double -> show"
"""


# JSON, and YAML too: nested 3,000 deep, which runs either parser out of stack.
DEEP_JSON = '{"nodes": {"a": {"coro": "tests.cli_nodes:count", "args": {"n": %s}}}, "graph": {"a": null}}' % (
    "[" * 3000 + "]" * 3000
)


def test_validate_a_good_file() -> None:
    proc = run_cli("validate", "demos/weblog/weblog.yaml")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "demos/weblog/weblog.yaml: ok (5 nodes)\n", "")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "unknown.yaml",
            CHAIN.replace("cli_nodes:double", "cli_nodes:triple"),
            "{file}: node 'double': coro_map could not resolve coro 'tests.cli_nodes:triple': "
            "LookupError(\"'tests.cli_nodes:triple': no attribute 'triple'\")",
        ),
        (
            "nomodule.yaml",
            CHAIN.replace("tests.cli_nodes:double", "tests.no_such_module:double"),
            "{file}: node 'double': coro_map could not resolve coro 'tests.no_such_module:double': "
            "LookupError(\"'tests.no_such_module:double': cannot import 'tests.no_such_module' "
            "(No module named 'tests.no_such_module')\")",
        ),
        (
            "notasync.yaml",
            CHAIN.replace("tests.cli_nodes:double", "os.path:join"),
            "{file}: node 'double': <function join at 0x> is a plain (blocking) function; give the node 'executor': "
            "'thread' (or 'process' for CPU-heavy work) so that it does not block the event loop",
        ),
        ("badyaml.yaml", "nodes: [1, 2\n", "{file}:2:1: invalid YAML: expected ',' or ']', but got '<stream end>'"),
        ("badjson.json", '{"nodes": }', "{file}:1:11: invalid JSON: Expecting value"),
        ("list.yaml", "- 1\n- 2\n", "{file}: expected a mapping with 'nodes' and 'graph' (or 'flow'), got list"),
        (
            "args.yaml",
            CHAIN.replace("{n: 5}", "{n: 5, m: 6}"),
            "{file}: node 'source': coro cannot be called as count(n: 'int') -> 'Any' with args {'n': 5, 'm': 6}: "
            "got an unexpected keyword argument 'm'",
        ),
        ("file.txt", "nodes: {}", "{file}: unknown file type '.txt' (expected .yaml, .yml or .json)"),
        (
            "nantimeout.yaml",
            CHAIN.replace('"tests.cli_nodes:double"}', '"tests.cli_nodes:double", properties: {timeout: .nan}}'),
            "{file}: node 'double': property 'timeout' must be a finite number of seconds > 0, or null, got nan",
        ),
        (
            "mixedretry.yaml",
            CHAIN.replace('"tests.cli_nodes:double"}', '"tests.cli_nodes:double", properties: {retry: {1: 2, x: 3}}}'),
            "{file}: node 'double': property 'retry': unknown retry field 'x' "
            "(expected backoff_factor, jitter, max_attempts, max_backoff, retry_on)",
        ),
        *(
            (
                f"deep.{suffix}",
                DEEP_JSON,
                "{file}: nested more than 100 levels deep (mappings and lists inside one another)",
            )
            for suffix in ("json", "yaml")
        ),
        (
            "loop.yaml",
            CHAIN.replace("{n: 5}", "{n: &n [*n]}"),
            "{file}: a value contains itself (a YAML anchor used inside its own definition)",
        ),
        (
            "longint.json",
            DEEP_JSON.replace("[" * 3000 + "]" * 3000, "1" * 5000),
            "{file}: invalid JSON: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 "
            "digits; use sys.set_int_max_str_digits() to increase the limit",
        ),
    ],
)
def test_validate_names_the_file_and_the_problem_in_one_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = write(tmp_path, name, text)
    proc = run_cli("validate", path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert re.sub(r"0x[0-9a-f]+", "0x", proc.stderr) == f"pipelines: {message.replace('{file}', path)}\n"


def test_a_missing_file(tmp_path: Path) -> None:
    proc = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert (proc.returncode, proc.stderr) == (
        2,
        f"pipelines: {tmp_path / 'nope.yaml'}: cannot read the file: No such file or directory\n",
    )


def test_a_flow_syntax_error_points_at_the_column(tmp_path: Path) -> None:
    path = write(tmp_path, "flow.yaml", CHAIN.replace('"source -> double -> show"', '"source -> -> show"'))
    proc = run_cli("validate", path)
    assert proc.returncode == 2
    first, source_line, caret = proc.stderr.splitlines()
    assert first.startswith(f"pipelines: {path} (flow):1:11: ")
    assert source_line == "    source -> -> show"
    assert caret == "              ^"


def test_a_flow_nested_too_deep_points_at_the_first_parenthesis_too_many(tmp_path: Path) -> None:
    flow = "(" * 250 + "source -> double -> show" + ")" * 250
    path = write(tmp_path, "flow.yaml", CHAIN.replace('"source -> double -> show"', f'"{flow}"'))
    proc = run_cli("validate", path)
    assert (proc.returncode, proc.stdout) == (2, "")
    first, source_line, caret = proc.stderr.splitlines()
    assert first == f"pipelines: {path} (flow):1:101: parentheses nested more than 100 deep"
    assert (source_line, caret) == (f"    {flow}", "    " + " " * 100 + "^")


def test_set_a_value_nested_too_deep_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "chain.yaml", CHAIN)
    proc = run_cli("run", path, "--set", "source.n=" + "[" * 3000 + "]" * 3000)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        f"pipelines: {path}: --set source.n: the value is nested more than 100 levels deep "
        "(mappings and lists inside one another)\n",
    )


def test_run_prints_the_summary_and_exits_0(tmp_path: Path) -> None:
    proc = run_cli("run", write(tmp_path, "chain.yaml", CHAIN))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sorted(lines[:5]) == ["0", "2", "4", "6", "8"]
    assert lines[5].split() == [
        "node",
        "in",
        "out",
        "done",
        "failed",
        "retried",
        "skipped",
        "dropped",
        "blocked",
        "s",
        "items/s",
    ]
    assert lines[7].split()[:8] == ["source", "-", "5", "-", "0", "0", "0", "0"]
    assert lines[8].split()[:8] == ["double", "5", "5", "5", "0", "0", "0", "0"]
    assert lines[9].split()[:8] == ["show", "5", "0", "5", "0", "0", "0", "0"]
    assert lines[10:13] == list(LEGEND)
    assert re.fullmatch(r"completed in \d+\.\d\ds", lines[13])
    assert proc.stderr == ""


def test_run_fuse_runs_the_chain_in_one_task_and_says_so(tmp_path: Path) -> None:
    proc = run_cli("run", write(tmp_path, "chain.yaml", CHAIN), "--fuse")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:5] == ["0", "2", "4", "6", "8"]  # fused, the items keep their order
    assert lines[7].split()[:8] == ["source", "-", "5", "-", "0", "0", "0", "0"]
    assert lines[8].split()[:8] == ["double", "5", "5", "5", "0", "0", "0", "0"]
    assert lines[9].split()[:8] == ["show", "5", "0", "5", "0", "0", "0", "0"]
    assert lines[10:14] == [*LEGEND, "fused: source -> double -> show (each item through all of them in one task)"]
    assert re.fullmatch(r"completed in \d+\.\d\ds", lines[14])
    assert proc.stderr == ""


@pytest.mark.parametrize("flag", ["--journal", "--redis"])
def test_run_fuse_with_a_journal_or_redis_is_one_line(tmp_path: Path, flag: str) -> None:
    path = write(tmp_path, "chain.yaml", CHAIN)
    journal = tmp_path / "run.db"
    value = str(journal) if flag == "--journal" else "redis://127.0.0.1:1/0"
    proc = run_cli("run", path, "--fuse", flag, value)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"pipelines: {path}: --fuse and {flag} cannot be used together: the items of such a run carry their "
        "keys, and no node fuses\n"
    )
    assert not journal.exists()  # refused before anything was opened


def test_set_overrides_an_arg_and_refuses_an_unknown_node(tmp_path: Path) -> None:
    path = write(tmp_path, "chain.yaml", CHAIN)
    proc = run_cli("run", path, "--set", "source.n=2")
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()[:2]) == ["0", "2"]
    proc = run_cli("run", path, "--set", "sauce.n=2")
    assert (proc.returncode, proc.stderr) == (
        2,
        f"pipelines: {path}: --set 'sauce.n=2': no node 'sauce' (nodes: source, double, show)\n",
    )


def test_a_failing_run_exits_1_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "fail.yaml", CHAIN.replace("cli_nodes:double", "cli_nodes:fails_on_three"))
    proc = run_cli("run", path)
    assert proc.returncode == 1
    assert proc.stderr == (
        "pipelines: run failed: ValueError: three is not allowed (pipelines: node 'double' failed on item 3)\n"
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    assert ["node", "in", "out"] in [line.split()[:3] for line in proc.stdout.splitlines()]  # the summary too


def test_progress_lines_when_not_a_terminal(tmp_path: Path) -> None:
    proc = run_cli(
        "run",
        "demos/weblog/weblog.yaml",
        "--set",
        f"report.path={tmp_path / 'r.txt'}",
        "--set",
        "locate.latency=0.01",
        "--interval",
        "0.2",
    )
    assert proc.returncode == 0, proc.stderr
    progress = proc.stderr.splitlines()
    assert progress
    for line in progress:
        assert re.fullmatch(
            r"pipelines: +\d+\.\ds  sinks \d+ items \([\d,]+/s\)( \| \w+: \d+ in flight, "
            r"queue \d+/\d+( \+\d+ taken)?)+",
            line,
        ), line


def test_a_live_display_on_a_terminal(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [
            *PIPELINES,
            "run",
            "demos/weblog/weblog.yaml",
            "--set",
            f"report.path={tmp_path / 'r.txt'}",
            "--set",
            "locate.latency=0.01",
        ],
        stdout=subprocess.PIPE,
        stderr=terminal,
        cwd=ROOT,
        text=True,
    )
    os.close(terminal)
    shown = read_terminal(controller)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    screen = shown.decode(errors="replace")
    assert "items through the sinks" in screen
    assert "in flight" in screen
    assert "completed in" in out


def test_the_weblog_demo_writes_its_report(tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    proc = run_cli("run", "demos/weblog/weblog.yaml", "--set", f"report.path={report}")
    assert proc.returncode == 0, proc.stderr
    text = report.read_text().splitlines()
    assert text[:3] == ["requests: 3000", "clients: 2983", "bytes: 52786266"]
    assert text[4:10] == ["per status:", "  200: 2101", "  301: 145", "  304: 284", "  404: 392", "  500: 78"]
    parse_row = next(line for line in proc.stdout.splitlines() if line.startswith("parse"))
    assert parse_row.split()[:8] == ["parse", "3006", "3000", "3000", "0", "0", "0", "6"]


ENDLESS = """
nodes:
  source: {coro: "tests.cli_nodes:endless"}
  sink: {coro: "tests.cli_nodes:stuck_after", args: {limit: LIMIT}}
graph: {source: [sink], sink: null}
"""


def start(path: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*PIPELINES, "run", path, "--interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert proc.stderr is not None
    while True:  # wait until items flow: a progress line with some items through the sinks
        line = proc.stderr.readline()
        assert line, "the run ended before any progress"
        if re.search(r"sinks [1-9]\d* items", line):
            return proc


def test_first_ctrl_c_drains(tmp_path: Path) -> None:
    proc = start(write(tmp_path, "endless.yaml", ENDLESS.replace("LIMIT", "1000000000")))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGINT: stopping the sources and draining; send it again to cancel" in err
    assert re.search(r"^stopped in \d+\.\d\ds$", out, re.M)


def test_second_ctrl_c_cancels(tmp_path: Path) -> None:
    proc = start(write(tmp_path, "stuck.yaml", ENDLESS.replace("LIMIT", "3")))
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    while "send it again to cancel" not in proc.stderr.readline():
        pass
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "pipelines: run cancelled: the run was cancelled with " in err
    assert "Traceback" not in err


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "pipelines"
    proc = subprocess.run(
        [str(script), "validate", "demos/weblog/weblog.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, "demos/weblog/weblog.yaml: ok (5 nodes)\n")


def test_draw_prints_the_graph() -> None:
    proc = run_cli("draw", "demos/weblog/weblog.yaml", "--format", "ascii")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split() == ["0", "read", "-->", "parse"]
    assert "(join of anonymize, locate)" in proc.stdout
    for fmt, first in (("mermaid", "flowchart LR"), ("dot", "digraph pipeline {")):
        proc = run_cli("draw", "demos/weblog/weblog.yaml", "--format", fmt)
        assert (proc.returncode, proc.stdout.splitlines()[0]) == (0, first)


def test_ctrl_c_from_a_terminal_reaches_the_pool_workers_too_and_still_drains(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            *PIPELINES,
            "run",
            "demos/weblog/weblog.yaml",
            "--set",
            f"report.path={tmp_path / 'r.txt'}",
            "--set",
            "locate.latency=0.05",
            "--interval",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    while not re.search(r"sinks [1-9]\d* items", proc.stderr.readline()):
        pass
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert re.search(r"^stopped in \d+\.\d\ds$", out, re.M)
    assert "Traceback" not in err


POOLED = """
nodes:
  source: {coro: "tests.cli_nodes:count", args: {n: 5}}
  block: {coro: "tests.cli_nodes:block", properties: {executor: EXECUTOR, max_workers: 2}}
  sink: {coro: "tests.cli_nodes:drop"}
flow: "source -> block -> sink"
"""


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_cancelled_run_does_not_wait_for_blocking_calls_in_its_pool(tmp_path: Path, executor: str) -> None:
    path = write(tmp_path, "pooled.yaml", POOLED.replace("EXECUTOR", executor))
    proc = subprocess.Popen(
        [*PIPELINES, "run", path, "--interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert proc.stderr is not None
    while not re.search(r"block: [1-9]\d* in flight", proc.stderr.readline()):  # the pool has work
        pass
    proc.send_signal(signal.SIGINT)
    while "send it again to cancel" not in proc.stderr.readline():
        pass
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)  # the calls would take 120 s
    assert proc.returncode == 130
    assert "pipelines: run cancelled" in err


def test_a_node_raising_system_exit_fails_the_run_in_one_line(tmp_path: Path) -> None:
    proc = run_cli("run", write(tmp_path, "exits.yaml", CHAIN.replace("cli_nodes:double", "cli_nodes:exits")))
    assert proc.returncode == 1
    assert proc.stderr == (
        "pipelines: run failed: PipelineError: node 'double': the coroutine raised SystemExit(3) "
        "(pipelines: node 'double' failed on item 0)\n"
    )


def test_ctrl_c_while_the_file_imports_its_modules(tmp_path: Path) -> None:
    path = write(tmp_path, "slow.yaml", CHAIN.replace("tests.cli_nodes:double", "tests.slow_import_nodes:f"))
    proc = subprocess.Popen(
        [*PIPELINES, "validate", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True
    )
    assert proc.stderr is not None
    assert proc.stderr.readline() == "importing\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (130, "pipelines: interrupted\n")


def test_set_on_a_malformed_graph_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "intnode.yaml", "nodes: {a: 1}\ngraph: {a: null}\n")
    proc = run_cli("run", path, "--set", "a.x=1")
    assert (proc.returncode, proc.stderr) == (
        2,
        f"pipelines: {path}: --set: 'nodes' must be a mapping of node names to mappings (coro, args, properties)\n",
    )


def test_without_rich_a_terminal_gets_plain_lines(tmp_path: Path) -> None:
    (tmp_path / "rich").mkdir()
    (tmp_path / "rich" / "__init__.py").write_text("raise ImportError('rich hidden by the test')\n")
    controller, terminal = pty.openpty()
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen(
        [
            *PIPELINES,
            "run",
            "demos/weblog/weblog.yaml",
            "--set",
            f"report.path={tmp_path}/r",
            "--set",
            "locate.latency=0.01",
            "--interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=terminal,
        cwd=ROOT,
        text=True,
        env=env,
    )
    os.close(terminal)
    shown = read_terminal(controller)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "completed in" in out
    assert re.search(r"pipelines: +\d+\.\ds  sinks \d+ items", shown.decode())


def test_version_prints_the_distribution_and_its_version() -> None:
    import tomllib
    from importlib import metadata

    proc = run_cli("--version")
    version = metadata.version("aiopipelines")
    assert version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"aiopipelines {version}\n", "")


def test_draw_into_a_reader_that_stops_early_ends_quietly(tmp_path: Path) -> None:
    # Far more than a pipe holds, so that the command is still writing when `head` leaves.
    names = [f"stage_{i:03d}_" + "x" * 400 for i in range(300)]
    lines = ["nodes:", '  source: {coro: "tests.cli_nodes:count", args: {n: 1}}']
    lines += [f'  {name}: {{coro: "tests.cli_nodes:double"}}' for name in names]
    lines += ["graph:", f"  source: [{names[0]}]"]
    lines += [f"  {a}: [{b}]" for a, b in itertools.pairwise(names)] + [f"  {names[-1]}: null"]
    path = write(tmp_path, "long.yaml", "\n".join(lines) + "\n")
    draw = subprocess.Popen(
        [*PIPELINES, "draw", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True
    )
    assert draw.stdout is not None
    head = subprocess.Popen(["head", "-1"], stdin=draw.stdout, stdout=subprocess.PIPE, text=True)
    draw.stdout.close()  # only head reads it now: when head exits, the pipe has no reader
    first, _ = head.communicate(timeout=120)
    _, err = draw.communicate(timeout=120)
    assert (head.returncode, first.split()[:3]) == (0, ["0", "source", "-->"])
    assert (draw.returncode, err) == (0, "")


def test_every_option_of_run_worker_and_serve_says_what_it_does_and_its_default() -> None:
    import argparse

    from pipelines.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    checked = []
    for name in ("run", "worker", "serve"):
        command = commands.choices[name]
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = f"{name} {action.option_strings[-1] if action.option_strings else action.dest}"
            text = (action.help or "") % {"default": action.default}
            assert text.strip(), f"{flag} has no help"
            if not action.option_strings:
                continue  # the file: no default
            if action.required or isinstance(action, argparse._StoreTrueAction) or action.default == []:
                continue  # no default to show: required, an on/off flag, or a repeatable one
            if action.default is None:
                assert "(default: " in text, f"{flag} does not say what happens when it is not given: {text!r}"
            else:
                assert f"(default: {action.default})" in text, f"{flag} does not show its default: {text!r}"
            checked.append(flag)
    # Defaults of every kind were checked: values, choices, none (said in words), the tuning flags.
    expected = {"run --queue-size", "run --loop", "run --journal", "worker --nodes", "serve --port", "serve --token"}
    expected |= {f"{name} --{flag}" for name in ("run", "worker", "serve") for flag in ("batch", "dead-after")}
    assert expected <= set(checked)


def test_the_redis_tuning_defaults_shown_are_those_of_the_transport() -> None:
    import inspect

    from pipelines.cli import build_parser
    from pipelines.distributed import RedisTransport

    defaults = build_parser().parse_args(["worker", "f.yaml", "--redis", "redis://x"])
    signature = inspect.signature(RedisTransport)
    for name in ("batch", "claim_idle", "max_deliveries", "heartbeat", "dead_after"):
        assert getattr(defaults, name) == signature.parameters[name].default, name


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (
            ("cli_nodes:double", "cli_nodes:triple_unmarked"),
            "node 'double': coro triple_unmarked(x: 'int') -> 'int' takes one item, but a node's function is called "
            "as f(processor, q_elt, **args) (the original signature, q_elt a tuple) unless it is marked with @node: "
            "put @node above `async def triple_unmarked` (from pipelines import node), or give the node "
            "'properties': {'style': 'item'}",
        ),
        (
            ("cli_nodes:count", "cli_nodes:count_unmarked"),
            "node 'source': coro count_unmarked(n: 'int') -> 'Any' is an async generator taking only its args, but "
            "a source's function is called as f(processor, output_q, **args) (the original signature) unless it is "
            "marked with @node: put @node above `async def count_unmarked` (from pipelines import node), or give "
            "the node 'properties': {'style': 'item'}",
        ),
        (
            ("cli_nodes:double", "cli_nodes:halve_unmarked"),
            "node 'double': <function halve_unmarked at 0x> is a plain (blocking) function; give the node "
            "'executor': 'thread' (or 'process' for CPU-heavy work) so that it does not block the event loop "
            "(it is then called as halve_unmarked(item)); or, if it never blocks, make it `async def` and put "
            "@node above it (from pipelines import node)",
        ),
    ],
)
def test_a_function_of_one_item_without_node_gets_the_fix(
    tmp_path: Path, replace: tuple[str, str], message: str
) -> None:
    path = write(tmp_path, "unmarked.yaml", CHAIN.replace(*replace))
    proc = run_cli("validate", path)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert re.sub(r"0x[0-9a-f]+", "0x", proc.stderr) == f"pipelines: {path}: {message}\n"


def test_the_fix_the_hint_gives_works(tmp_path: Path) -> None:
    fixed = CHAIN.replace('"tests.cli_nodes:double"}', '"tests.cli_nodes:triple_unmarked", properties: {style: item}}')
    proc = run_cli("run", write(tmp_path, "fixed.yaml", fixed))
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()[:5]) == ["0", "12", "3", "6", "9"]


DIAMOND = """
nodes:
  source: {coro: "tests.cli_nodes:count", args: {n: 6}}
  even: {coro: "tests.cli_nodes:keep_even"}
  left: {coro: "tests.cli_nodes:double"}
  right: {coro: "tests.cli_nodes:double"}
  add: {coro: "tests.cli_nodes:show_pair"}
flow: "source -> even -> (left || right) |-> add"
"""


def test_the_summary_says_how_a_source_and_a_join_count(tmp_path: Path) -> None:
    proc = run_cli("run", write(tmp_path, "diamond.yaml", DIAMOND))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sorted(lines[:3]) == ["0", "16", "8"]  # 0, 2 and 4, doubled on each side and added
    rows = [line.split()[:8] for line in lines[5:10]]
    assert rows == [
        ["source", "-", "6", "-", "0", "0", "0", "0"],
        ["even", "6", "3", "3", "0", "0", "0", "3"],
        ["left", "3", "3", "3", "0", "0", "0", "0"],
        ["right", "3", "3", "3", "0", "0", "0", "0"],
        ["add", "6", "0", "3", "0", "0", "0", "3"],  # 3 pairs, and the 3 items even dropped
    ]
    assert lines[10:] == [
        *LEGEND,
        "add joins left and right: its in counts pairs (one item from each), and dropped the pairs an input dropped",
        lines[-1],
    ]
    assert re.fullmatch(r"completed in \d+\.\d\ds", lines[-1])


def command_blocks() -> list[tuple[str, str, str]]:
    """(line, command, what it prints) for each run block of wiki/Command-line.md."""
    lines = (ROOT / "wiki" / "Command-line.md").read_text().splitlines()
    found = []
    for n, line in enumerate(lines):
        if line != "```text" or not lines[n + 1].startswith("$ pipelines "):
            continue
        if lines[n - 1].startswith("<!-- not run:"):
            continue
        end = lines.index("```", n + 1)
        found.append((f"Command-line.md:{n + 1}", lines[n + 1][2:], "".join(f"{x}\n" for x in lines[n + 2 : end])))
    return found


@pytest.mark.parametrize(("where", "command", "shown"), command_blocks(), ids=[b[0] for b in command_blocks()])
def test_the_command_line_page_shows_what_the_commands_print(where: str, command: str, shown: str) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),  # this checkout's code, whichever the installed script points at
    }
    proc = subprocess.run(
        ["bash", "-c", f"{command} 2>&1"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, check=False
    )
    assert proc.stdout == shown, where


def test_the_command_line_page_runs_its_blocks() -> None:
    assert len(command_blocks()) == 4
