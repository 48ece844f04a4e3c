"""The shard as a Ray actor: a thin, synchronous shell over :class:`actors.shard.Shard`.

Synchronous on purpose: Ray runs a sync actor's calls from one caller in submission order, which is what
keeps each customer's events in order. Restarts are Ray's (``max_restarts=-1``); retries are not
(``max_task_retries=0``): a failed call is recovered by the router rewinding and replaying, which keeps order.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import ray

from actors._redis_state import RedisStateStore
from actors.shard import OutputTopics, Shard, ShardResult
from clickcash._logging import configure_logging
from config.domain import load_domain_config
from config.settings import Settings
from router._dispatch import ShardBatch
from router._histogram import BATCH_BOUNDS_S, Histogram


def build_shard(shard_id: int, settings: Settings) -> Shard:
    """A shard wired to Redis and the domain config, as the actor and single-process tools use it."""
    k, p, r = settings.kafka, settings.pipeline, settings.redis
    store = RedisStateStore.from_url(
        r.client_url(),
        r.key_prefix,
        p.idempotency_retention_s,
        p.replay_response_ttl_s,
        r.socket_timeout_s,
    )
    return Shard(
        shard_id,
        OutputTopics(k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic),
        load_domain_config(settings.domain_file),
        store,
        max_event_bytes=p.max_event_bytes,
        psp_stats_refresh_ms=p.psp_stats_refresh_ms,
    )


class ShardActor:
    def __init__(self, shard_id: int, settings: Settings) -> None:
        configure_logging(settings.monitoring.log_format, settings.monitoring.log_level, shard_id=shard_id)
        self._shard = build_shard(shard_id, settings)
        self._batch_seconds = Histogram.of(BATCH_BOUNDS_S)
        self._events = 0
        # Ray, pydantic's schemas and the config live as long as the process: moved out of the collector's
        # reach, they are not traversed again by every full collection the batches' garbage triggers.
        gc.collect()
        gc.freeze()

    def apply(self, batch: ShardBatch) -> ShardResult:
        started = time.perf_counter()
        result = self._shard.apply(batch)
        self._batch_seconds.observe(time.perf_counter() - started)
        self._events += len(batch.offsets)
        return result

    def incarnation(self) -> str:
        """Which instance this is; a router fences with it after a failure (``StaleShardCallError``)."""
        return self._shard.incarnation

    def stats(self) -> dict[str, Any]:
        self._shard.dead_letter_log.flush()  # polled each second: a "suppressed" line is not held back
        return {
            "shard": self._shard.shard_id,
            "pid": os.getpid(),
            "incarnation": self._shard.incarnation,
            "node": ray.get_runtime_context().get_node_id(),
            "totals": dict(self._shard.totals),
            "stored_responses": self._shard.stored_responses(),
            "batches": self._shard.batches,
            "store_round_trips": self._shard.store_round_trips,
            "events": self._events,
            "batch_seconds": self._batch_seconds.to_dict(),
        }


def shard_actor_name(index: int) -> str:
    return f"shard-{index}"


def start_shard_actor(index: int, settings: Settings) -> Any:
    cls = ray.remote(ShardActor)
    return cls.options(
        name=shard_actor_name(index),
        namespace=settings.ray.namespace,
        num_cpus=settings.pipeline.shard_num_cpus,
        max_restarts=-1,
        max_task_retries=0,
        scheduling_strategy="SPREAD",
    ).remote(index, settings)
