"""The nodes of the weblog demo: read a web-server log, parse it, enrich it, report per status and path.

    read -> parse -> (anonymize || locate) |-> report

- `read_lines` (source) reads the log a block of lines at a time, off the event loop;
- `parse` turns a line into a record, or drops it (None) when it is not a log line;
- `anonymize` replaces the client address by a salted PBKDF2 digest: CPU-heavy, so it runs in a
  process pool (a plain function with 'executor': 'process');
- `locate` looks the address up in a (simulated) remote service: 2 ms of I/O each, so many workers;
- `report` joins the two results of each record (by lineage: they meet whatever their timing),
  counts requests per status and path, clients and regions, and writes the report in its teardown.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from pipelines import node

LINE = re.compile(
    r'(?P<ip>\S+) \S+ \S+ \[(?P<when>[^]]+)\] "(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) (?P<size>\d+)'
)
REGIONS = ("eu-west", "eu-north", "us-east", "ap-south")


@node
async def read_lines(path: str, block: int = 500) -> Any:
    """Yield the lines of `path`, opening it and reading `block` lines at a time in a thread."""
    log = await asyncio.to_thread(open, path, encoding="utf-8")
    try:
        while True:
            lines = await asyncio.to_thread(lambda: [line for _, line in zip(range(block), log, strict=False)])
            if not lines:
                return
            for line in lines:
                yield line.rstrip("\n")
    finally:
        log.close()


@node
async def parse(line: str) -> dict[str, Any] | None:
    """A record of the line, or None (dropped, and counted) when it is not a log line."""
    match = LINE.match(line)
    if match is None:
        return None
    return {"ip": match["ip"], "path": match["path"], "status": int(match["status"]), "size": int(match["size"])}


def anonymize(record: dict[str, Any], salt: str = "weblog-demo", rounds: int = 2000) -> str:
    """A stable pseudonym of the client: CPU-bound on purpose (PBKDF2), run in a process pool."""
    return hashlib.pbkdf2_hmac("sha256", record["ip"].encode(), salt.encode(), rounds).hex()[:12]


@node
async def locate(record: dict[str, Any], latency: float = 0.002) -> dict[str, Any]:
    """The record with its region, from a simulated remote lookup taking `latency` seconds."""
    await asyncio.sleep(latency)
    return {**record, "region": REGIONS[zlib.crc32(record["ip"].encode()) % len(REGIONS)]}


async def open_report(processor: Any) -> None:
    processor.tally = {"status": Counter(), "path": Counter(), "region": Counter(), "clients": set(), "bytes": 0}


async def report(processor: Any, q_elt: tuple[str, dict[str, Any]], path: str = "weblog-report.txt") -> None:
    client, record = q_elt
    processor.report_path = path  # for write_report, which gets only the processor
    tally = processor.tally
    tally["status"][record["status"]] += 1
    tally["path"][(record["status"], record["path"])] += 1
    tally["region"][record["region"]] += 1
    tally["clients"].add(client)
    tally["bytes"] += record["size"]


async def write_report(processor: Any) -> None:
    tally = processor.tally
    total = sum(tally["status"].values())
    lines = [f"requests: {total}", f"clients: {len(tally['clients'])}", f"bytes: {tally['bytes']}", "", "per status:"]
    lines += [f"  {status}: {count}" for status, count in sorted(tally["status"].items())]
    lines += ["", "per region:"] + [f"  {region}: {count}" for region, count in sorted(tally["region"].items())]
    lines += ["", "top paths per status:"]
    for status in sorted(tally["status"]):
        top = sorted(((c, p) for (s, p), c in tally["path"].items() if s == status), reverse=True)[:3]
        lines.append(f"  {status}: " + ", ".join(f"{p} ({c})" for c, p in top))
    target = Path(getattr(processor, "report_path", "weblog-report.txt"))
    await asyncio.to_thread(target.write_text, "\n".join(lines) + "\n")
