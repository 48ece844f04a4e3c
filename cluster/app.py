"""The clickcash application on Ray: named shard and router actors, supervised from the driver."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors.actor import start_shard_actor
from clickcash._errors import ClickcashError, ConfigError
from config.settings import Settings
from router.actor import start_router_actor

log = logging.getLogger(__name__)


class App:
    """Starts ``pipeline.shards`` shard actors and ``pipeline.routers`` router actors, keeps the routers
    running (re-invoking ``run`` after a router process dies and Ray restarts it), and stops them cleanly.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.shards: list[Any] = []
        self.routers: list[Any] = []
        self._runs: dict[int, Any] = {}
        self.restarts = 0

    def start(self) -> None:
        p = self.settings.pipeline
        have = float(ray.cluster_resources().get("CPU", 0))
        if have + 1e-9 < p.required_cpus():
            raise ConfigError(
                f"the actors need {p.required_cpus():g} Ray CPUs (pipeline.shards {p.shards} x "
                f"pipeline.shard_num_cpus {p.shard_num_cpus:g} + pipeline.routers {p.routers} x "
                f"pipeline.router_num_cpus {p.router_num_cpus:g}) but the Ray cluster has {have:g}; "
                "lower those settings or add CPUs (ray.num_cpus for a local instance)"
            )
        self.shards = [start_shard_actor(i, self.settings) for i in range(p.shards)]
        ray.get([s.stats.remote() for s in self.shards])
        self.routers = [start_router_actor(i, self.settings) for i in range(p.routers)]
        for i, r in enumerate(self.routers):
            self._runs[i] = r.run.remote()

    def supervise(self, timeout_s: float = 1.0) -> None:
        """Wait up to ``timeout_s`` for a router run to end; restart any that ended by failure."""
        refs = list(self._runs.values())
        if not refs:
            time.sleep(timeout_s)
            return
        done, _ = ray.wait(refs, num_returns=1, timeout=timeout_s)
        for ref in done:
            idx = next(i for i, r in self._runs.items() if r == ref)
            try:
                ray.get(ref)
                log.warning("router %d returned without being stopped; restarting it", idx)
            except (RayActorError, RayTaskError) as exc:
                log.warning("router %d failed (%s); restarting", idx, str(exc).splitlines()[0])
            self.restarts += 1
            time.sleep(0.5)
            self._runs[idx] = self.routers[idx].run.remote()

    def run_until(self, done: Callable[[], bool], on_tick: Callable[[], None] | None = None) -> None:
        while not done():
            self.supervise(0.5)
            if on_tick:
                on_tick()

    def router_stats(self) -> list[dict[str, Any]]:
        return self._stats(self.routers, "router")

    def shard_stats(self) -> list[dict[str, Any]]:
        return self._stats(self.shards, "shard")

    @staticmethod
    def _stats(actors: list[Any], kind: str) -> list[dict[str, Any]]:
        """Stats of each actor; one that is dead or restarting reports ``unavailable`` instead."""
        out = []
        for i, actor in enumerate(actors):
            try:
                out.append(dict(ray.get(actor.stats.remote(), timeout=30)))
            except (RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
                out.append({kind: i, "unavailable": True})
        return out

    def stop(self, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        """Ask every router to drain and commit, wait for it, then remove the actors."""
        for r in self.routers:
            r.stop.remote()
        final: list[dict[str, Any]] = []
        try:
            final = list(ray.get(list(self._runs.values()), timeout=timeout_s))
        except (RayActorError, RayTaskError, ray.exceptions.GetTimeoutError) as exc:
            raise ClickcashError(f"routers did not drain cleanly: {exc}") from exc
        finally:
            for a in [*self.routers, *self.shards]:
                ray.kill(a, no_restart=True)
            self._runs.clear()
        return final
