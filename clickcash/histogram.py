"""Fixed-bucket latency histograms kept where the latency happens (router, shard) and exported as values.

Actors cannot share a Prometheus registry with the driver that serves the metrics, so each keeps plain
bucket counts and the driver's exporter reads them with the actor's stats. Buckets are cumulative-free
(one count per bucket, the last is +Inf); the exporter makes them cumulative. The bounds are fixed here so
every router and shard agrees and the driver can add their histograms bucket by bucket.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

END_TO_END_BOUNDS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
"""Record timestamp -> outputs committed. Wide on purpose: a campaign spike queues events for minutes."""

BATCH_BOUNDS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""One shard batch, one router round (consume -> outputs produced)."""

KAFKA_BOUNDS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Transaction commit call, and how long a transaction stayed open."""


@dataclass(slots=True)
class Histogram:
    bounds_s: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    """one count per bound (values <= bound, above the previous one) plus the +Inf bucket"""
    sum_s: float = 0.0

    def __post_init__(self) -> None:
        if list(self.bounds_s) != sorted(set(self.bounds_s)):
            raise ValueError(f"histogram bounds must be strictly increasing: {self.bounds_s}")
        if not self.counts:
            self.counts = [0] * (len(self.bounds_s) + 1)
        elif len(self.counts) != len(self.bounds_s) + 1:
            raise ValueError("counts must have one entry per bound plus +Inf")

    @property
    def count(self) -> int:
        return sum(self.counts)

    def observe(self, value_s: float) -> None:
        self.counts[bisect_left(self.bounds_s, value_s)] += 1
        self.sum_s += value_s

    def observe_ages(self, now_ms: float, stamps_ms: Iterable[int]) -> None:
        """Observe ``now - stamp`` per millisecond timestamp (negative ages from clock skew count as 0)."""
        bounds, counts = self.bounds_s, self.counts
        total = 0.0
        for stamp in stamps_ms:
            age_s = max(0.0, (now_ms - stamp) / 1000)
            counts[bisect_left(bounds, age_s)] += 1
            total += age_s
        self.sum_s += total

    def cumulative(self) -> list[int]:
        """Counts as Prometheus buckets: values <= each bound, the last one (+Inf) = count."""
        out, running = [], 0
        for c in self.counts:
            running += c
            out.append(running)
        return out

    def merge(self, other: Histogram) -> None:
        if other.bounds_s != self.bounds_s:
            raise ValueError("cannot merge histograms with different bounds")
        for i, c in enumerate(other.counts):
            self.counts[i] += c
        self.sum_s += other.sum_s

    def to_dict(self) -> dict[str, Any]:
        return {"bounds_s": list(self.bounds_s), "counts": list(self.counts), "sum_s": self.sum_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        return cls(tuple(float(b) for b in d["bounds_s"]), [int(c) for c in d["counts"]], float(d["sum_s"]))

    @classmethod
    def of(cls, bounds_s: Sequence[float]) -> Histogram:
        return cls(tuple(bounds_s))
