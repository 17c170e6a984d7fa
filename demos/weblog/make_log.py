"""Writes access.log, the sample web-server log the weblog demo reads (deterministic: seed 7).

python demos/weblog/make_log.py
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

PATHS = [
    "/",
    "/index.html",
    "/about",
    "/api/items",
    "/api/items/42",
    "/api/login",
    "/static/app.js",
    "/static/style.css",
    "/favicon.ico",
    "/search",
    "/admin",
    "/docs/intro",
]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Googlebot/2.1", "python-requests/2.32"]


def main(lines: int = 3000) -> None:
    rng = random.Random(7)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for i in range(lines):
        ip = f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        when = (start + timedelta(seconds=i * 7)).strftime("%d/%b/%Y:%H:%M:%S +0000")
        path = rng.choice(PATHS)
        status = rng.choices([200, 301, 304, 404, 500], weights=[70, 5, 10, 12, 3])[0]
        size = rng.randrange(200, 50_000) if status == 200 else 0
        out.append(f'{ip} - - [{when}] "GET {path} HTTP/1.1" {status} {size} "-" "{rng.choice(AGENTS)}"')
        if i % 500 == 499:
            out.append("this line is not a log record")  # the parser must skip these, and count them
    Path(__file__).with_name("access.log").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
