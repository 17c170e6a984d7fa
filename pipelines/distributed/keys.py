"""The names of a run's Redis keys (described in pipelines.distributed.session).

A node's name goes into Redis percent-encoded (`encode_name`): every byte but ASCII letters,
digits and ``_.-~`` becomes ``%XX``, so that any name the core accepts (with a TAB, a space, ``:``,
``<-``, ``{``, any unicode) makes one key and one field of its own: a TAB never splits a field
``node<TAB>worker``, and a node named ``x<-y`` never meets the stream of zip join x's input from y.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

__all__ = ["RunKeys", "decode_name", "encode_name", "instance_field", "redacted", "split_instance_field"]


def encode_name(name: str) -> str:
    """A node's name as it goes into a Redis key, a TAB-separated field or a script's argument."""
    return quote(name, safe="")


def decode_name(text: str) -> str:
    """The node's name `encode_name` gave `text` for."""
    return unquote(text)


def instance_field(node: str, worker: str) -> str:
    """The field of one instance of `node` in a run's `instances` and `stats` hashes."""
    return f"{encode_name(node)}\t{worker}"


def split_instance_field(field: str) -> tuple[str, str]:
    """The node and the worker of an `instance_field`."""
    node, _, worker = field.partition("\t")
    return decode_name(node), worker


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

    def stream(self, node: str, producer: str | None = None) -> str:
        """The input stream of `node`; of a zip join, its input from `producer`."""
        edge = encode_name(node) if producer is None else f"{encode_name(node)}<-{encode_name(producer)}"
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
