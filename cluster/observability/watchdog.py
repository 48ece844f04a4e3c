"""Stall watchdog: which partitions and shards have work and make no progress. Pure: no Ray, Kafka or Redis.

A *partition* stalls when it has consumer lag and its committed offset has not moved for ``stall_after_s``
(whatever the reason: a stuck router, a fenced producer, a poison batch replayed forever). A *shard* stalls
when a call to it has not finished for ``stall_after_s`` (a hung actor, a Redis call that never returns).
The routers judge each call on its own (``RayShardPool.pending_by_shard``), so the shards that answered in
a round stuck behind a hung one are not flagged. The driver feeds one observation per poll; ``clickcash
status``, the metrics and ``/healthz`` all report the same verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PartitionProgress:
    committed: int | None
    """the group's committed offset (next to read); None before the first commit"""
    lag: int | None
    """records past the committed offset; None when unknown (Kafka unreachable)"""


@dataclass(frozen=True)
class Stall:
    kind: Literal["partition", "shard", "router"]
    id: int
    for_s: float
    detail: str

    def describe(self) -> str:
        return f"{self.kind} {self.id} stalled for {self.for_s:.0f} s: {self.detail}"


def stalled_shards(oldest_inflight_age_s: Mapping[int, float], stall_after_s: float) -> list[Stall]:
    """Shards whose oldest in-flight batch is older than ``stall_after_s`` (from the routers' snapshots)."""
    return [
        Stall("shard", shard, age, f"a batch has been in flight for {age:.0f} s")
        for shard, age in sorted(oldest_inflight_age_s.items())
        if age >= stall_after_s
    ]


def outage_stalls(outages: Mapping[int, tuple[str, float]]) -> list[Stall]:
    """Routers waiting for an unavailable service (router -> (service, seconds)), from their snapshots:
    reported at once, not after ``stall_after_s``: the router knows it cannot progress, and says why."""
    return [
        Stall("router", idx, for_s, f"{service} unavailable; retrying with capped backoff, nothing is lost")
        for idx, (service, for_s) in sorted(outages.items())
        if service
    ]


class StallWatchdog:
    """Remembers, per partition, when its committed offset last moved or it last had no work."""

    def __init__(self, stall_after_s: float) -> None:
        self.stall_after_s = stall_after_s
        self._since: dict[int, tuple[int | None, float]] = {}
        """partition -> (committed offset, time it was last seen moving or idle)"""

    def observe(
        self,
        now_s: float,
        partitions: Mapping[int, PartitionProgress],
        oldest_inflight_age_s: Mapping[int, float],
    ) -> list[Stall]:
        stalls: list[Stall] = []
        for p, prog in sorted(partitions.items()):
            last = self._since.get(p)
            has_work = prog.lag is not None and prog.lag > 0
            if last is None or not has_work or last[0] != prog.committed:
                self._since[p] = (prog.committed, now_s)
                continue
            waited = now_s - last[1]
            if waited >= self.stall_after_s:
                at = "nothing committed yet" if prog.committed is None else f"offset {prog.committed}"
                stalls.append(Stall("partition", p, waited, f"lag {prog.lag} and no commit past {at}"))
        for gone in set(self._since) - set(partitions):
            del self._since[gone]
        return stalls + stalled_shards(oldest_inflight_age_s, self.stall_after_s)
