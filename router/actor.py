"""The router as a Ray actor, and the Ray-backed shard pool it dispatches through.

The actor is threaded (``max_concurrency=4``) only so that ``stop`` and ``stats`` can be called while
``run`` loops; all Kafka work and all shard calls happen on the ``run`` thread, one caller per shard.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors.actor import shard_actor_name
from actors.shard import ShardResult
from config.settings import Settings
from router._dispatch import ShardBatch
from router._router import Router, ShardFailedError
from router._timers import RedisTimerIndex, TimerPump


class RayShardPool:
    def __init__(self, shards: Sequence[Any]) -> None:
        self._shards = list(shards)

    @property
    def size(self) -> int:
        return len(self._shards)

    def submit(self, shard: int, batch: ShardBatch) -> Any:
        return self._shards[shard].apply.remote(batch)

    def wait(self, handles: Sequence[Any], timeout_s: float) -> bool:
        ready, _ = ray.wait(list(handles), num_returns=len(handles), timeout=timeout_s, fetch_local=True)
        return len(ready) == len(handles)

    def results(self, handles: Sequence[Any]) -> list[ShardResult]:
        try:
            return list(ray.get(list(handles)))
        except (RayActorError, RayTaskError) as exc:
            raise ShardFailedError(str(exc).splitlines()[0]) from exc


class RouterActor:
    """Finds its shards by name, so a restarted router (or one started from another driver) needs no
    handles passed in."""

    def __init__(self, router_index: int, settings: Settings) -> None:
        self._index = router_index
        self._settings = settings
        self._stop = threading.Event()
        self._router: Router | None = None

    def run(self) -> dict[str, Any]:
        """Run until :meth:`stop`; returns the final stats. Raises if the router fails for good."""
        self._stop.clear()
        s = self._settings
        shards = [
            ray.get_actor(shard_actor_name(i), namespace=s.ray.namespace) for i in range(s.pipeline.shards)
        ]
        index = RedisTimerIndex.from_url(
            s.redis.url.get_secret_value(), s.redis.key_prefix, s.redis.socket_timeout_s
        )
        pump = TimerPump(index, s.pipeline.timer_poll_interval_ms / 1000)
        self._router = Router(s, self._index, RayShardPool(shards), timers=pump)
        return asdict(self._router.run(self._stop))

    def stop(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, Any]:
        base: dict[str, Any] = {"router": self._index, "pid": os.getpid(), "running": False}
        if self._router is not None:
            base.update(asdict(self._router.snapshot()))
            base["running"] = not self._stop.is_set()
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
