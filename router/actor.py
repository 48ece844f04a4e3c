"""The router as a Ray actor, and the Ray-backed shard pool it dispatches through.

The actor is threaded (``max_concurrency=4``) only so that ``stop`` and ``stats`` can be called while
``run`` loops; all Kafka work and all shard calls happen on the ``run`` thread, one caller per shard.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import ray
from ray.exceptions import RayError

from clickcash.actors.actor import shard_actor_name
from clickcash.actors.contract import ShardBatch, ShardResult
from clickcash.config.settings import Settings
from clickcash.errors import ServiceError, StaleShardCallError, remote_error_reason
from clickcash.logs import configure_logging
from clickcash.router._failures import FailureKind
from clickcash.router._router import Router, RouterStats, ShardFailedError
from clickcash.router._timers import RedisTimerIndex, TimerPump
from clickcash.router.parking import RedisParkingStore
from clickcash.router.topology import RedisTopologyStore


def classify_shard_error(exc: BaseException) -> tuple[FailureKind, str]:
    """What a failed shard call says about its records. A ``ServiceError`` raised in the shard (Redis
    unreachable, out of memory, timing out) is an outage: the records are not to blame. A refusal as
    stale (the shard restarted) is resolved by the fence and replay that follow, and is not counted
    against the records either. Anything else (an engine's exception, a state that cannot be decoded,
    a dead actor) is a processing failure, retried and then isolated."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ServiceError):
        return FailureKind.OUTAGE, cause.service
    if isinstance(cause, StaleShardCallError):
        return FailureKind.OUTAGE, "shard restart"
    return FailureKind.PROCESSING, ""


class RayShardPool:
    """The router's shards as Ray actors. Each fence starts a new run of calls under a fresh token, and
    each call carries the token and its number among the run's calls to its shard, so a shard refuses
    calls of a run fenced off since (this router died or fenced again) and calls that skip one
    (``clickcash.actors.calls``)."""

    def __init__(self, shards: Sequence[Any], router_index: int = 0, fence_timeout_s: float = 60.0) -> None:
        self._shards = list(shards)
        self._router_index = router_index
        self._token = ""
        self._sequences = [0] * len(self._shards)
        self._fence_timeout_s = fence_timeout_s
        self._outstanding: dict[Any, tuple[int, float]] = {}
        """shard call -> (shard, submitted at): what the stall watchdog and queue depth are judged on"""
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self._shards)

    def fence(self) -> None:
        token = uuid.uuid4().hex
        calls = [s.fence.remote(self._router_index, token) for s in self._shards]
        try:
            ray.get(calls, timeout=self._fence_timeout_s)
        except RayError as exc:  # died, restarting too long (GetTimeoutError), or raised
            raise ShardFailedError(f"fencing: {remote_error_reason(exc)}") from exc
        self._token = token
        self._sequences = [0] * len(self._shards)

    def submit(self, shard: int, batch: ShardBatch) -> Any:
        batch.fence_token = self._token
        batch.sequence = self._sequences[shard]
        self._sequences[shard] += 1
        ref = self._shards[shard].apply.remote(batch)
        with self._lock:
            self._outstanding[ref] = (shard, time.monotonic())
            grown = len(self._outstanding) > 8 * len(self._shards) * 64
        if grown:  # calls of rounds dropped by a rewind never reach results(): forget the finished ones
            self.pending_by_shard()
        return ref

    def wait(self, handles: Sequence[Any], timeout_s: float) -> bool:
        if not handles:  # a round whose records all belong to parked customers
            return True
        ready, _ = ray.wait(list(handles), num_returns=len(handles), timeout=timeout_s, fetch_local=True)
        return len(ready) == len(handles)

    def results(self, handles: Sequence[Any]) -> list[ShardResult]:
        try:
            return list(ray.get(list(handles)))
        except RayError as exc:  # the shard died, raised, or raised something Ray could not rebuild
            failed = ShardFailedError(remote_error_reason(exc))
            failed.kind, failed.service = classify_shard_error(exc)
            raise failed from exc
        finally:
            with self._lock:
                for h in handles:
                    self._outstanding.pop(h, None)

    def pending_by_shard(self) -> tuple[dict[int, int], dict[int, float]]:
        """Per shard: calls not finished yet, and the age of the oldest (seconds). Judged per call, so a
        round stuck on one hung shard does not make the shards that answered look stuck too."""
        with self._lock:
            calls = dict(self._outstanding)
        if not calls:
            return {}, {}
        ready, not_ready = ray.wait(list(calls), num_returns=len(calls), timeout=0, fetch_local=False)
        with self._lock:
            for ref in ready:
                self._outstanding.pop(ref, None)
        now = time.monotonic()
        depth: dict[int, int] = {}
        age: dict[int, float] = {}
        for ref in not_ready:
            shard, sent = calls[ref]
            depth[shard] = depth.get(shard, 0) + 1
            age[shard] = max(age.get(shard, 0.0), now - sent)
        return depth, age


class RouterActor:
    """Finds its shards by name, so a restarted router (or one started from another driver) needs no
    handles passed in."""

    def __init__(self, router_index: int, settings: Settings) -> None:
        self._index = router_index
        self._settings = settings
        configure_logging(
            settings.monitoring.log_format, settings.monitoring.log_level, router_id=router_index
        )
        self._stop = threading.Event()
        self._router: Router | None = None
        self._runs = 0

    def run(self) -> dict[str, Any]:
        """Run until :meth:`stop`; returns the final stats. Raises if the router fails for good.

        A stop is never cleared: one that arrives before this run starts (an app stopped while starting)
        ends it at once, where clearing it made the run go on and the stop wait for it in vain."""
        self._runs += 1
        if self._stop.is_set():
            return asdict(RouterStats(self._index))
        s = self._settings
        topology = RedisTopologyStore.from_url(
            s.redis.client_url(), s.redis.key_prefix, s.redis.socket_timeout_s
        )
        try:
            desired = topology.get()
        finally:
            topology.close()
        shards = self._shards(desired.shards if desired is not None else s.pipeline.shards)
        index = RedisTimerIndex.from_url(s.redis.client_url(), s.redis.key_prefix, s.redis.socket_timeout_s)
        pump = TimerPump(index, s.pipeline.timer_poll_interval_ms / 1000, signer=s.security.timer_mac())
        parking = RedisParkingStore.from_url(
            s.redis.client_url(), s.redis.key_prefix, s.redis.socket_timeout_s
        )
        self._router = Router(s, self._index, RayShardPool(shards, self._index), timers=pump, parking=parking)
        gc.collect()
        gc.freeze()  # the process's long-lived heap (Ray, clients, config) out of every later collection
        try:
            return asdict(self._router.run(self._stop))
        finally:
            parking.close()

    def _shards(self, count: int) -> list[Any]:
        ns = self._settings.ray.namespace
        return [ray.get_actor(shard_actor_name(i), namespace=ns) for i in range(count)]

    def rescale(self, shards: int) -> None:
        """Dispatch to shards ``0..shards-1`` from the next round boundary (after draining what is in
        flight); the supervisor has started any new shard actors before calling this."""
        if self._router is None:
            raise RuntimeError(f"router {self._index} is not running")
        self._router.request_rescale(RayShardPool(self._shards(shards), self._index))

    def stop(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            "router": self._index,
            "pid": os.getpid(),
            "run": self._runs,
            "running": False,
        }
        if self._router is not None:
            base.update(asdict(self._router.snapshot()))
            base["running"] = not self._stop.is_set()
            pool = getattr(self._router, "_pool", None)  # the current pool (a rescale replaces it)
            if isinstance(pool, RayShardPool):
                base["inflight_by_shard"], base["oldest_inflight_age_s"] = pool.pending_by_shard()
        return base


def router_actor_name(index: int) -> str:
    return f"router-{index}"


def start_router_actor(index: int, settings: Settings) -> Any:
    cls = ray.remote(RouterActor)
    return cls.options(
        name=router_actor_name(index),
        namespace=settings.ray.namespace,
        num_cpus=settings.pipeline.router_num_cpus,
        max_restarts=-1,
        max_task_retries=0,
        max_concurrency=4,
    ).remote(index, settings)
