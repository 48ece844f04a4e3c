"""Pure bookkeeping of the router: splitting a consumed batch per shard and tracking committable offsets.

No Kafka or Ray here: the router feeds it plain tuples, so its rules are unit-tested without services.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from clickcash.actors.contract import ShardBatch
from clickcash.router.assignment import shard_for

RawRecord = tuple[int, int, bytes | None, bytes | None, int]
"""(partition, offset, key, value, timestamp_ms) of one consumed record."""


def split_by_shard(
    topic: str, records: Iterable[RawRecord], shards: int, cache: dict[bytes, int] | None = None
) -> dict[int, ShardBatch]:
    """Group records by owning shard, keeping each shard's records in consumption order.

    Records without a key still go to a shard (shard 0): the shard dead-letters them, so the stream's
    outputs keep one writer and one path to the DLQ.
    """
    out: dict[int, ShardBatch] = {}
    for partition, offset, key, value, ts in records:
        if key is None:
            idx = 0
        elif cache is not None:
            idx = cache.get(key, -1)
            if idx < 0:
                idx = shard_for(key, shards)
                if len(cache) < 1_000_000:
                    cache[key] = idx
        else:
            idx = shard_for(key, shards)
        batch = out.get(idx)
        if batch is None:
            batch = out[idx] = ShardBatch(topic)
        batch.partitions.append(partition)
        batch.offsets.append(offset)
        batch.keys.append(key)
        batch.values.append(value)
        batch.timestamps_ms.append(ts)
    return out


@dataclass
class OffsetTracker:
    """Next offsets per partition whose outputs have been produced but not yet committed."""

    _pending: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)

    def produced(self, partitions: Sequence[int], offsets: Sequence[int]) -> None:
        pending = self._pending
        for p, o in zip(partitions, offsets, strict=True):
            if o + 1 > pending.get(p, -1):
                pending[p] = o + 1

    def pending(self) -> dict[int, int]:
        return dict(self._pending)

    def mark_committed(self) -> None:
        self.committed.update(self._pending)
        self._pending.clear()

    def discard(self, partitions: Iterable[int] | None = None) -> None:
        """Forget uncommitted progress (after an abort) for some or all partitions."""
        if partitions is None:
            self._pending.clear()
            return
        for p in partitions:
            self._pending.pop(p, None)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop all knowledge of partitions this router no longer owns."""
        for p in partitions:
            self._pending.pop(p, None)
            self.committed.pop(p, None)
