"""The shard as a Ray actor: a thin, synchronous shell over :class:`clickcash.actors.shard.Shard`.

Synchronous on purpose: Ray runs a sync actor's calls from one caller in submission order, which is what
keeps each customer's events in order. Restarts are Ray's (``max_restarts=-1``); retries are not
(``max_task_retries=0``): a failed call is recovered by the router rewinding and replaying, which keeps order.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import ray

from clickcash.actors.calls import CallGate
from clickcash.actors.contract import OutputTopics, ShardBatch, ShardResult
from clickcash.actors.shard import Shard, tune_collector
from clickcash.actors.state.redis import RedisStateStore
from clickcash.config.domain import load_domain_config
from clickcash.config.settings import Settings
from clickcash.errors import ClickcashError, StaleShardCallError
from clickcash.events import ERASURE_EVENT_TYPE
from clickcash.histogram import BATCH_BOUNDS_S, Histogram
from clickcash.logs import configure_logging

log = logging.getLogger(__name__)


def build_shard(shard_id: int, settings: Settings) -> Shard:
    """A shard wired to Redis and the domain config, as the actor and single-process tools use it."""
    k, p, r = settings.kafka, settings.pipeline, settings.redis
    store = RedisStateStore.from_url(
        r.client_url(),
        r.key_prefix,
        p.idempotency_retention_s,
        p.replay_response_ttl_s,
        r.socket_timeout_s,
        p.customer_ttl_s,
    )
    return Shard(
        shard_id,
        OutputTopics(k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic),
        load_domain_config(settings.domain_file),
        store,
        max_event_bytes=p.max_event_bytes,
        psp_stats_refresh_ms=p.psp_stats_refresh_ms,
        state_cache_customers=p.state_cache_customers,
        max_message_bytes=k.max_message_bytes,
        timer_mac=settings.security.timer_mac(),
        erasure_mac=settings.security.erasure_mac(),
    )


class ShardActor:
    def __init__(self, shard_id: int, settings: Settings) -> None:
        configure_logging(settings.monitoring.log_format, settings.monitoring.log_level, shard_id=shard_id)
        self._shard = build_shard(shard_id, settings)
        self._batch_seconds = Histogram.of(BATCH_BOUNDS_S)
        self._events = 0
        self._calls = CallGate()
        """which calls run: the current router runs' calls, in order (``clickcash.actors.calls``)"""
        self._faulty = frozenset(
            c.strip().encode() for c in settings.pipeline.fault_inject_customer_ids.split(",") if c.strip()
        )
        """customers whose batches raise, as a bug in an engine would (tests only; off by default)"""
        tune_collector()

    def apply(self, batch: ShardBatch) -> ShardResult:
        refusal = self._calls.admit(batch.fence_token, batch.sequence)
        if refusal is not None:
            if refusal.stale:
                # one warning per router run: its later calls are refused for the same cause
                log.log(
                    logging.WARNING if refusal.first_of_run else logging.DEBUG,
                    "shard %d: refused a batch of partitions %s: %s%s",
                    self._shard.shard_id,
                    sorted(set(batch.partitions)),
                    refusal.reason,
                    "; later calls of its run are refused without a warning" if refusal.first_of_run else "",
                )
            raise StaleShardCallError(f"shard {self._shard.shard_id}: batch refused: {refusal.reason}")
        started = time.perf_counter()
        try:
            if self._faulty and _faulty_records(self._faulty, batch):
                raise InjectedFaultError(
                    f"shard {self._shard.shard_id}: injected fault for a customer in "
                    "pipeline.fault_inject_customer_ids (tests only)"
                )
            result = self._shard.apply(batch)
        except Exception:
            self._calls.failed(batch.fence_token)
            raise
        self._batch_seconds.observe(time.perf_counter() - started)
        self._events += len(batch.offsets)
        return result

    def fence(self, router: int, token: str) -> str:
        """Router ``router`` starts a new run of calls under ``token``: its earlier token's calls are refused
        from now on, and so are calls that skip a number (``clickcash.actors.calls``). The router fences
        before its first round and after dropping every round in flight, so whatever comes after it is
        the replay, in order. A restarted instance knows no token until its router fences it again, so
        the calls sent to the instance before it are refused (``StaleShardCallError``). Returns this
        instance's incarnation (a restart is a new one)."""
        self._calls.fence(router, token)
        return self._shard.incarnation

    def stats(self) -> dict[str, Any]:
        self._shard.dead_letter_log.flush()  # polled each second: a "suppressed" line is not held back
        return {
            "shard": self._shard.shard_id,
            "pid": os.getpid(),
            "incarnation": self._shard.incarnation,
            "refused_calls": self._calls.refused,
            "node": ray.get_runtime_context().get_node_id(),
            "totals": dict(self._shard.totals),
            "stored_responses": self._shard.stored_responses(),
            "batches": self._shard.batches,
            "store_round_trips": self._shard.store_round_trips,
            "events": self._events,
            "batch_seconds": self._batch_seconds.to_dict(),
        }


def _faulty_records(faulty: frozenset[bytes], batch: ShardBatch) -> bool:
    """Whether the batch holds a record of a faulty customer that an engine would process: an erasure
    command runs no engine, so the stand-in for an engine's bug lets it through (a parked customer can be
    erased before the bug is fixed)."""
    erasure = ERASURE_EVENT_TYPE.encode()
    return any(
        k in faulty and (v is None or erasure not in v) for k, v in zip(batch.keys, batch.values, strict=True)
    )


class InjectedFaultError(ClickcashError):
    """The test-only fault of ``pipeline.fault_inject_customer_ids``: stands for an engine's bug."""


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
