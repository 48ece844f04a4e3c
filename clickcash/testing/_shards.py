"""An in-process shard pool: the router's :class:`~clickcash.router._router.ShardPool` over plain
:class:`~clickcash.actors.shard.Shard` objects with the in-memory state store, called synchronously.

A call runs when it is submitted, so its result is ready at once; a shard that raises fails the round the
way a Ray actor's error does (``ShardFailedError``), and :attr:`InProcessShardPool.fail_when` makes a
shard raise for chosen batches (an engine bug, a poison record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from clickcash.actors.contract import OutputTopics, ShardBatch, ShardResult
from clickcash.actors.shard import Shard
from clickcash.actors.state.base import InMemoryStateStore
from clickcash.config.domain import DomainConfig, load_domain_config
from clickcash.config.settings import Settings
from clickcash.router._router import ShardFailedError


@dataclass(slots=True)
class _Call:
    result: ShardResult | None
    error: BaseException | None


class InProcessShardPool:
    """``size`` shards in this process sharing one :class:`InMemoryStateStore` (as the real shards share
    Redis)."""

    def __init__(
        self,
        settings: Settings,
        size: int | None = None,
        *,
        domain: DomainConfig | None = None,
        store: InMemoryStateStore | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        k = settings.kafka
        self.store = store if store is not None else InMemoryStateStore()
        topics = OutputTopics(k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic)
        domain = domain if domain is not None else load_domain_config(settings.domain_file)
        self.shards = [
            Shard(
                i,
                topics,
                domain,
                self.store,
                max_event_bytes=settings.pipeline.max_event_bytes,
                clock=clock,
                timer_mac=settings.security.timer_mac(),
            )
            for i in range(size if size is not None else settings.pipeline.shards)
        ]
        self.fail_when: Callable[[int, ShardBatch], str | None] | None = None
        """(shard, batch) -> a failure reason to raise instead of applying the batch, or None"""
        self.calls = 0
        self.fences = 0

    @property
    def size(self) -> int:
        return len(self.shards)

    def fence(self) -> None:
        self.fences += 1

    def submit(self, shard: int, batch: ShardBatch) -> _Call:
        self.calls += 1
        reason = self.fail_when(shard, batch) if self.fail_when is not None else None
        if reason is not None:
            return _Call(None, ShardFailedError(reason))
        try:
            return _Call(self.shards[shard].apply(batch), None)
        except Exception as exc:  # a shard's exception fails the round, as a Ray actor's would
            return _Call(None, ShardFailedError(f"shard {shard}: {type(exc).__name__}: {exc}"))

    def wait(self, handles: Sequence[_Call], timeout_s: float) -> bool:
        return True

    def results(self, handles: Sequence[_Call]) -> list[ShardResult]:
        out: list[ShardResult] = []
        for call in handles:
            if call.error is not None:
                raise call.error
            assert call.result is not None
            out.append(call.result)
        return out


def fail_customer(customers: Iterable[bytes]) -> Callable[[int, ShardBatch], str | None]:
    """A :attr:`InProcessShardPool.fail_when` that fails every batch holding one of ``customers``."""
    bad = frozenset(customers)

    def check(shard: int, batch: ShardBatch) -> str | None:
        hit = next((k for k in batch.keys if k in bad), None)
        return None if hit is None else f"engine failed on customer {hit.decode(errors='replace')}"

    return check
