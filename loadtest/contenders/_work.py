"""clickcash's own batch path applied one event at a time: the work of the hand-rolled and Quix contenders.

Each event goes through :meth:`clickcash.actors.shard.Shard.apply` as a batch of one, so validation,
idempotency,
the domain engines and the outputs are clickcash's, byte for byte, and each event costs its own Redis round
trips (one MGET to load, one Lua call to commit): the straightforward way to write it without batching.
"""

from __future__ import annotations

from clickcash.actors.contract import OutputTopics, ShardBatch, ShardResult
from clickcash.actors.shard import Shard
from clickcash.actors.state.redis import RedisStateStore
from clickcash.config.domain import load_domain_config
from clickcash.config.settings import PipelineSettings
from clickcash.loadtest.contenders._common import ContenderConfig, redis_client_url


class PerEventProcessor:
    def __init__(self, cfg: ContenderConfig) -> None:
        defaults = PipelineSettings()
        store = RedisStateStore.from_url(
            redis_client_url(cfg.redis_url),
            cfg.redis_prefix,
            defaults.idempotency_retention_s,
            defaults.replay_response_ttl_s,
        )
        topics = OutputTopics(
            cfg.topic("orders"), cfg.topic("payments"), cfg.topic("dunning"), cfg.topic("dlq")
        )
        self.shard = Shard(0, topics, load_domain_config(), store, max_event_bytes=defaults.max_event_bytes)
        self._release: dict[int, int] = {}

    def committed(self, next_offsets: dict[int, int]) -> None:
        """Offsets committed with the outputs: stored first responses before them can go (passed once, with
        the next event, so the shard's bookkeeping is not rescanned for every event)."""
        self._release = dict(next_offsets)

    def process(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, ts_ms: int
    ) -> ShardResult:
        batch = ShardBatch(topic, [partition], [offset], [key], [value], [ts_ms], committed=self._release)
        self._release = {}
        return self.shard.apply(batch)

    @property
    def redis_round_trips(self) -> int:
        return self.shard.store_round_trips
