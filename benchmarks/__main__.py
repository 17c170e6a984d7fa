"""python -m benchmarks [--smoke] [--rounds K] [--only B1,B3] [--loop uvloop]: measure, then print the table."""

from __future__ import annotations

import argparse
import sys
import time

from .cases import CASES
from .harness import LOOPS, Config, use_loop
from .report import Row, format_table, machine_line


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every case runs")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per figure (default 5)")
    parser.add_argument("--only", default="", help=f"comma-separated cases to run, of {','.join(CASES)}")
    parser.add_argument(
        "--loop", default="asyncio", choices=LOOPS, help="the event loop of every row that names none (default asyncio)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.only = [part.strip().upper() for part in args.only.split(",") if part.strip()] or list(CASES)
    unknown = [case for case in args.only if case not in CASES]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; the cases are {', '.join(CASES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = Config(rounds=args.rounds, smoke=args.smoke)
    use_loop(args.loop)
    rows: list[Row] = []
    for case_id in args.only:
        case = CASES[case_id]
        started = time.perf_counter()
        print(f"{case.id} ...", end=" ", file=sys.stderr, flush=True)
        case_rows = case.run(config)
        labels = tuple(row.label for row in case_rows)
        if labels != case.labels:
            raise AssertionError(f"{case.id} printed rows {labels}, declared {case.labels}")
        rows += case_rows
        print(f"{time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    print(machine_line(config.rounds))
    print()
    print(format_table(rows))
    print()
    for case_id in args.only:
        print(f"{case_id}: {CASES[case_id].title}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
