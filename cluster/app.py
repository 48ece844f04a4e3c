"""The clickcash application on Ray: named shard and router actors, supervised from the driver."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from clickcash.actors.actor import start_shard_actor
from clickcash.cluster.access import check_connection
from clickcash.cluster.ledger.actor import start_ledger_actor
from clickcash.cluster.observability.monitor import Monitor
from clickcash.config.settings import Settings
from clickcash.errors import ClickcashError, ConfigError, ServiceError, remote_error_reason
from clickcash.logs import configure_logging
from clickcash.router.actor import start_router_actor
from clickcash.router.topology import RedisTopologyStore, Topology, plan_rescale

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
        self._topology = RedisTopologyStore.from_url(
            settings.redis.client_url(), settings.redis.key_prefix, settings.redis.socket_timeout_s
        )
        self._topology_checked = 0.0
        self._rescaling = False
        self.ledger: Any = None
        """the campaign ledger actor (``ledger.enabled``), supervised like the routers"""
        self._ledger_run: Any = None

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
        # a wrong password or an untrusted certificate: one clear error now, not routers retrying forever
        check_connection(self.settings.kafka)
        self.shards = [start_shard_actor(i, self.settings) for i in range(p.shards)]
        ray.get([s.stats.remote() for s in self.shards])
        self._topology.set(Topology(p.shards, p.routers))
        self.routers = [start_router_actor(i, self.settings) for i in range(p.routers)]
        for i, r in enumerate(self.routers):
            self._runs[i] = r.run.remote()
        if self.settings.ledger.enabled:
            self.ledger = start_ledger_actor(self.settings)
            self._ledger_run = self.ledger.run.remote()

    @property
    def topology(self) -> Topology:
        return Topology(len(self.shards), len(self.routers))

    def _check_cpus(self, shards: int, routers: int) -> None:
        p = self.settings.pipeline
        need = shards * p.shard_num_cpus + routers * p.router_num_cpus
        have = float(ray.cluster_resources().get("CPU", 0))
        if have + 1e-9 < need:
            raise ConfigError(
                f"{shards} shards x pipeline.shard_num_cpus {p.shard_num_cpus:g} + {routers} routers x "
                f"pipeline.router_num_cpus {p.router_num_cpus:g} need {need:g} Ray CPUs; the cluster has "
                f"{have:g}"
            )

    def reconcile(self) -> None:
        """Bring the actors to the desired topology in Redis (``clickcash scale`` writes it)."""
        desired = self._topology.get()
        if desired is None or desired == self.topology or self._rescaling:
            return
        try:
            self.rescale(desired)
        except ConfigError as exc:
            log.error("cannot scale to %s: %s; staying at %s", desired, exc, self.topology)
            self._topology.set(self.topology)

    def rescale(self, desired: Topology, timeout_s: float = 300.0) -> None:
        """Change the shard and router counts while processing, losing, duplicating and reordering
        nothing: new shards start first, every router drains and switches at a round boundary (see
        ``clickcash.router.topology``), and only then are removed shards stopped; removed routers drain,
        commit
        and leave the group, and their partitions move to the others."""
        plan = plan_rescale(self.topology, desired)
        if plan.empty:
            return
        self._check_cpus(desired.shards, desired.routers)
        self._rescaling = True
        try:
            self._topology.set(desired)
            log.info("rescaling %s -> %s", self.topology, desired)
            new_shards = [start_shard_actor(i, self.settings) for i in plan.start_shards]
            ray.get([s.stats.remote() for s in new_shards])
            self.shards.extend(new_shards)
            if plan.switch_routers_to is not None:
                self._switch_routers(plan.switch_routers_to, timeout_s)
            for i in sorted(plan.stop_shards, reverse=True):
                ray.kill(self.shards.pop(i), no_restart=True)
            for i in plan.start_routers:
                self.routers.append(start_router_actor(i, self.settings))
                self._runs[i] = self.routers[i].run.remote()
            for i in sorted(plan.stop_routers, reverse=True):
                self._stop_router(i, timeout_s)
        finally:
            self._rescaling = False

    def _switch_routers(self, shards: int, timeout_s: float) -> None:
        """Ask each router to switch and wait until all of them dispatch to ``shards`` shards (a router
        restarted meanwhile reads the new count from the topology when it starts)."""
        deadline = time.monotonic() + timeout_s
        asked: set[int] = set()
        while time.monotonic() < deadline:
            stats = self.router_stats()
            if all(s.get("running") and s.get("shards") == shards for s in stats):
                return
            for i, s in enumerate(stats):
                if s.get("running") and s.get("shards") != shards and i not in asked:
                    try:
                        ray.get(self.routers[i].rescale.remote(shards), timeout=30)
                        asked.add(i)
                    except (RayActorError, RayTaskError, ray.exceptions.GetTimeoutError) as exc:
                        log.warning("router %d did not take the rescale yet: %s", i, exc)
            self.supervise(0.2)
        raise ClickcashError(f"routers did not switch to {shards} shards within {timeout_s:g} s")

    def _stop_router(self, index: int, timeout_s: float) -> None:
        router = self.routers.pop(index)
        run = self._runs.pop(index)
        router.stop.remote()
        try:
            ray.get(run, timeout=timeout_s)
        except (RayActorError, RayTaskError, ray.exceptions.GetTimeoutError) as exc:
            log.warning("router %d did not drain cleanly (%s); its partitions replay elsewhere", index, exc)
        ray.kill(router, no_restart=True)

    def supervise(self, timeout_s: float = 1.0) -> None:
        """Wait up to ``timeout_s`` for a router run to end; restart any that ended by failure; follow
        the desired topology (checked once a second)."""
        if not self._rescaling and time.monotonic() - self._topology_checked >= 1.0:
            self._topology_checked = time.monotonic()
            try:
                self.reconcile()
            except ServiceError as exc:
                # the topology lives in Redis: during an outage the app keeps running as it is (the routers
                # wait the outage out) and follows the topology again once Redis answers
                log.warning("cannot read the desired topology (%s); checking again in 1 s", exc)
        self._supervise_ledger()
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
            except ray.exceptions.RayError as exc:  # whatever ended it, even an unreadable error
                log.warning("router %d failed (%s); restarting", idx, remote_error_reason(exc))
            self.restarts += 1
            time.sleep(0.5)
            self._runs[idx] = self.routers[idx].run.remote()

    def _supervise_ledger(self) -> None:
        """Run the ledger again when its run ended (a Kafka failure, or its process died and Ray restarted
        the actor): it restores from its committed snapshots and offsets."""
        if self._ledger_run is None:
            return
        done, _ = ray.wait([self._ledger_run], timeout=0)
        if not done:
            return
        try:
            ray.get(self._ledger_run)
            log.warning("campaign ledger returned without being stopped; restarting it")
        except ray.exceptions.RayError as exc:
            log.warning("campaign ledger failed (%s); restarting", remote_error_reason(exc))
        self._ledger_run = self.ledger.run.remote()

    def run_until(self, done: Callable[[], bool], on_tick: Callable[[], None] | None = None) -> None:
        """Supervise until ``done()`` or a stop request (``clickcash stop``); meanwhile the monitor polls
        the actors each second and serves ``/metrics`` and ``/healthz`` (``monitoring.*`` settings)."""
        m = self.settings.monitoring
        configure_logging(m.log_format, m.log_level)
        monitor = self.monitor()
        try:
            while not done() and not monitor.stop_requested:
                self.supervise(0.5)
                monitor.tick()
                if on_tick:
                    on_tick()
        finally:
            monitor.close()

    def monitor(self, *, serve: bool | None = None, control: bool = True) -> Monitor:
        """A started monitor of this app (metrics endpoint unless ``serve`` is False, control actor)."""
        return Monitor(
            self.settings,
            list(enumerate(self.routers)),
            list(enumerate(self.shards)),
            restarts=lambda: self.restarts,
            serve=serve,
            control=control,
            actors=lambda: (list(enumerate(self.routers)), list(enumerate(self.shards))),
            ledger=self.ledger,
        ).start()

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
        if self.ledger is not None:
            self.ledger.stop.remote()
        final: list[dict[str, Any]] = []
        try:
            final = list(ray.get(list(self._runs.values()), timeout=timeout_s))
        except ray.exceptions.RayError as exc:
            raise ClickcashError(f"routers did not drain cleanly: {exc}") from exc
        finally:
            if self._ledger_run is not None:
                try:  # its open transaction aborts if it does not finish: the snapshots stay consistent
                    ray.get(self._ledger_run, timeout=timeout_s)
                except ray.exceptions.RayError as exc:
                    log.warning("campaign ledger did not stop cleanly: %s", remote_error_reason(exc))
                self._ledger_run = None
            for a in [*self.routers, *self.shards, *([self.ledger] if self.ledger is not None else [])]:
                ray.kill(a, no_restart=True)
            self._runs.clear()
            self.ledger = None
        return final
