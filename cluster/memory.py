"""What clickcash keeps in Redis, measured: ``MEMORY USAGE`` of every key under the prefix, by key class.

Run after a benchmark (``clickcash bench --memory``) to get the memory per customer (the customer state
documents divided by their number) and per million events (every key the run left, divided by the events it
processed, times a million). Idempotency records dominate the second figure while they are retained.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import redis

from clickcash.actors import keyspace


@dataclass(frozen=True)
class MemoryReport:
    bytes_by_class: dict[str, int] = field(default_factory=dict)
    keys_by_class: dict[str, int] = field(default_factory=dict)
    used_memory_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_class.values())

    def bytes_per_customer(self) -> float:
        n = self.keys_by_class.get("customer", 0)
        return self.bytes_by_class.get("customer", 0) / n if n else 0.0

    def bytes_per_million_events(self, events: int) -> float:
        return self.total_bytes / events * 1_000_000 if events else 0.0

    def render(self, events: int) -> str:
        lines = [f"{'key class':<16} {'keys':>10} {'bytes':>14}"]
        for name in sorted(self.bytes_by_class):
            lines.append(f"{name:<16} {self.keys_by_class[name]:>10,} {self.bytes_by_class[name]:>14,}")
        lines.append(
            f"memory per customer: {self.bytes_per_customer():,.0f} B (state document); per million events: "
            f"{self.bytes_per_million_events(events) / 2**20:,.1f} MiB (all keys, {events:,} events); "
            f"Redis used_memory {self.used_memory_bytes / 2**20:,.1f} MiB"
        )
        return "\n".join(lines)


def measure(client: redis.Redis, prefix: str) -> MemoryReport:
    """Scan every key under ``prefix`` and add up ``MEMORY USAGE`` per key class (pipelined)."""
    size: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    batch: list[bytes] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for k in batch:
            pipe.memory_usage(k, samples=0)
        for k, used in zip(batch, pipe.execute(), strict=True):
            name = keyspace.classify(prefix, k.decode(errors="replace")) or "other"
            size[name] += int(used or 0)
            count[name] += 1
        batch.clear()

    for key in client.scan_iter(match=keyspace.all_keys(prefix), count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    info = client.info("memory")
    return MemoryReport(dict(size), dict(count), int(info.get("used_memory", 0)))
