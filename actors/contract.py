"""The shard contract: what a router sends a shard (``ShardBatch``), what the shard answers (``ShardResult``)
and the output topics a shard writes to. Defined once, beside the shards; the router, the verifier and the
benchmark lab import it from here. Plain dataclasses, no Ray or Kafka: they cross the Ray boundary pickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[str, bytes]]
"""Kafka record headers of one output record."""


@dataclass(slots=True)
class ShardBatch:
    """One call's worth of input for one shard, columnar so it pickles compactly.

    ``committed`` carries the router's committed watermarks (partition -> next offset) so the shard can
    drop first responses it stored for events that can no longer be replayed. ``fence_token`` names the
    router run that sent it (its last fence) and ``sequence`` its number among that run's calls to this
    shard: a shard runs only the current run's calls, in order, and a restarted shard none of the runs
    fenced at the instance before it (``clickcash.actors.calls``); empty: a caller that never fences,
    unchecked.
    """

    topic: str
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)
    fence_token: str = ""
    sequence: int = 0

    def __len__(self) -> int:
        return len(self.offsets)


@dataclass(frozen=True, slots=True)
class OutputTopics:
    orders: str
    payments: str
    dunning: str
    dlq: str


@dataclass(slots=True)
class ShardResult:
    """Outputs of one batch in input order (columnar), and what happened to its events."""

    topics: list[str] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    headers: list[Headers | None] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, topic: str, key: bytes | None, value: bytes, headers: Headers | None = None) -> None:
        self.topics.append(topic)
        self.keys.append(key)
        self.values.append(value)
        self.headers.append(headers)

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def __len__(self) -> int:
        return len(self.values)
