"""The names of a run's Redis keys (described in pipelines.distributed.session)."""

from __future__ import annotations

__all__ = ["RunKeys", "redacted"]


class RunKeys:
    """The names of a run's keys."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.prefix = f"pipelines:{{{run_id}}}:"
        self.run = self.prefix + "run"
        self.alive = self.prefix + "alive"
        self.instances = self.prefix + "instances"
        self.done = self.prefix + "done"
        self.stats = self.prefix + "stats"

    def stream(self, edge: str) -> str:
        return f"{self.prefix}in:{edge}"

    @staticmethod
    def graph(digest: str) -> str:
        return f"pipelines:graph:{digest}"


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}://{user + ':' if user else ''}***@{host}"
