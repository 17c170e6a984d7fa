"""The nodes of the weblog demo: read a web-server log, parse it, enrich it, report per status and path.

    read -> parse -> (anonymize || locate) |-> report

- `read_lines` (source) reads the log a block of lines at a time, off the event loop;
- `parse` turns a line into a record, or drops it (None) when it is not a log line;
- `anonymize` replaces the client address by a salted PBKDF2 digest: CPU-heavy, so it runs in a
  process pool (a plain function with 'executor': 'process');
- `locate` looks the address up in a (simulated) remote service: 2 ms of I/O each, so many workers;
- `report` joins the two results of each record (by lineage: they meet whatever their timing),
  counts requests per status and path, clients and regions into its declared state (`Tally`), and
  writes the report in its teardown. With ``--journal`` the state is snapshotted with the items
  folded into it, so a run killed any number of times and resumed writes the same report.
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


class Tally:
    """The report's state: what it counts. Declared as the node's state, so that a run with a journal
    keeps it across a crash: `dump` gives it as JSON data for the journal's snapshot, `load` puts a
    snapshot back."""

    def __init__(self) -> None:
        self.status: Counter[int] = Counter()
        self.paths: Counter[tuple[int, str]] = Counter()
        self.regions: Counter[str] = Counter()
        self.clients: set[str] = set()
        self.bytes = 0

    def add(self, client: str, record: dict[str, Any]) -> None:
        self.status[record["status"]] += 1
        self.paths[(record["status"], record["path"])] += 1
        self.regions[record["region"]] += 1
        self.clients.add(client)
        self.bytes += record["size"]

    def dump(self) -> dict[str, Any]:
        return {
            "status": [[status, count] for status, count in self.status.items()],
            "paths": [[status, path, count] for (status, path), count in self.paths.items()],
            "regions": dict(self.regions),
            "clients": list(self.clients),
            "bytes": self.bytes,
        }

    def load(self, data: dict[str, Any]) -> None:
        self.status = Counter({status: count for status, count in data["status"]})
        self.paths = Counter({(status, path): count for status, path, count in data["paths"]})
        self.regions = Counter(data["regions"])
        self.clients = set(data["clients"])
        self.bytes = data["bytes"]


async def report(
    processor: Any, q_elt: tuple[str, dict[str, Any]], state: Tally, path: str = "weblog-report.txt"
) -> None:
    """Fold one joined pair (pseudonym, located record) into the tally; the teardown writes the report."""
    client, record = q_elt
    state.add(client, record)


async def write_report(processor: Any, state: Tally) -> None:
    total = sum(state.status.values())
    lines = [f"requests: {total}", f"clients: {len(state.clients)}", f"bytes: {state.bytes}", "", "per status:"]
    lines += [f"  {status}: {count}" for status, count in sorted(state.status.items())]
    lines += ["", "per region:"] + [f"  {region}: {count}" for region, count in sorted(state.regions.items())]
    lines += ["", "top paths per status:"]
    for status in sorted(state.status):
        top = sorted(((c, p) for (s, p), c in state.paths.items() if s == status), reverse=True)[:3]
        lines.append(f"  {status}: " + ", ".join(f"{p} ({c})" for c, p in top))
    target = Path(processor.spec.args.get("path", "weblog-report.txt"))
    await asyncio.to_thread(target.write_text, "\n".join(lines) + "\n")
