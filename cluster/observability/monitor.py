"""The driver's monitor: polls router and shard stats each second, measures consumer lag, runs the stall
watchdog, and publishes the result to the metrics endpoint, the control actor and the log.

It runs in the ``clickcash run`` driver next to the supervisor (:meth:`clickcash.cluster.app.App.run_until`),
and in
``clickcash status`` when no driver publishes (actors found by name). Stats calls never block the loop: each
actor has at most one stats call outstanding, and one that does not answer within a poll is reported as
unavailable with its last counters kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import ray

from clickcash.cluster.control import start_control_actor
from clickcash.cluster.observability.breakers import BreakerProbe, breaker_probe
from clickcash.cluster.observability.metric_defs import MetricsModel, PartitionLag, Poll, Topics
from clickcash.cluster.observability.metrics import MetricsServer
from clickcash.cluster.observability.status_view import build_status
from clickcash.cluster.observability.watchdog import PartitionProgress, StallWatchdog, outage_stalls
from clickcash.cluster.offsets import GroupOffsets
from clickcash.config.settings import Settings
from clickcash.errors import ConfigError, ServiceError
from clickcash.group_offsets import partition_lags
from clickcash.offset_retry import RetryBudget

log = logging.getLogger(__name__)

UNANSWERED_AFTER_S = 5.0


class StatsPoller:
    """``stats()`` of a list of actors, with at most one call outstanding per actor."""

    def __init__(self, kind: str, actors: Sequence[tuple[int, Any]]) -> None:
        self.kind = kind
        self.actors = list(actors)
        self._pending: dict[int, tuple[Any, float]] = {}
        self._last: dict[int, dict[str, Any]] = {}

    def track(self, actors: Sequence[tuple[int, Any]]) -> None:
        """Poll these actors from now on (a rescale added or removed some)."""
        self.actors = list(actors)
        current = {idx for idx, _ in self.actors}
        for idx in set(self._pending) - current:
            del self._pending[idx]
        for idx in set(self._last) - current:
            del self._last[idx]

    def poll(self, timeout_s: float) -> list[dict[str, Any]]:
        now = time.monotonic()
        for idx, actor in self.actors:
            if idx not in self._pending:
                self._pending[idx] = (actor.stats.remote(), now)
        refs = [ref for ref, _ in self._pending.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        ready_set = set(ready)
        out: list[dict[str, Any]] = []
        for idx, _ in self.actors:
            ref, sent = self._pending[idx]
            if ref in ready_set:
                del self._pending[idx]
                try:
                    self._last[idx] = dict(ray.get(ref))
                    out.append(self._last[idx])
                    continue
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError, ray.exceptions.RayError):
                    pass
            elif time.monotonic() - sent < UNANSWERED_AFTER_S and idx in self._last:
                out.append(self._last[idx])  # busy: the last answer stands for now
                continue
            stale = dict(self._last.get(idx, {}))
            stale.update({self.kind: idx, "unavailable": True})
            out.append(stale)
        return out


class LagProbe:
    """The consumer group's committed offsets and the input topic's end offsets: two Kafka requests, through
    :class:`clickcash.cluster.offsets.GroupOffsets` (a non-member consumer of the app's group; see there why
    not the
    admin client). A probe retries transient coordinator errors only briefly: the monitor asks again at its
    next poll, and publishes "lag unknown" meanwhile rather than stalling."""

    BUDGET = RetryBudget(budget_s=2.0)

    def __init__(self, settings: Settings) -> None:
        self._offsets = GroupOffsets(settings, budget=self.BUDGET, call_timeout_s=5.0)

    def read(self, timeout_s: float = 5.0) -> list[PartitionLag]:
        del timeout_s  # bounded by the probe's retry budget and call timeout
        try:
            ends = self._offsets.ends()
            committed = self._offsets.committed()
        except ServiceError as exc:
            log.warning("consumer lag unknown for now: %s", exc.message)
            return []
        lags = partition_lags(committed, ends)
        return [PartitionLag(p, committed.get(p), lag) for p, lag in sorted(lags.items())]

    def close(self) -> None:
        self._offsets.close()


class Monitor:
    """Polls, judges and publishes; :meth:`tick` is cheap to call often (it polls every interval)."""

    def __init__(
        self,
        settings: Settings,
        routers: Sequence[tuple[int, Any]],
        shards: Sequence[tuple[int, Any]],
        *,
        restarts: Any = None,
        serve: bool | None = None,
        control: bool = True,
        actors: Callable[[], tuple[Sequence[tuple[int, Any]], Sequence[tuple[int, Any]]]] | None = None,
        ledger: Any = None,
    ) -> None:
        """``actors``, when given, returns the current (routers, shards) at each poll; ``ledger`` is the
        campaign ledger actor (None: no ledger metrics)."""
        self.settings = settings
        m = settings.monitoring
        k = settings.kafka
        self._routers = StatsPoller("router", routers)
        self._shards = StatsPoller("shard", shards)
        self._ledger = StatsPoller("ledger", [(0, ledger)]) if ledger is not None else None
        self._lag = LagProbe(settings)
        self._restarts = restarts
        self._actors = actors
        self._model = MetricsModel(
            Topics(k.input_topic, k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic)
        )
        self._watchdog = StallWatchdog(m.stall_after_s)
        self._breakers: BreakerProbe | None = None
        """live breaker state from the shared PSP stats in Redis (created lazily, read every few seconds)"""
        self._serve = m.metrics_enabled if serve is None else serve
        self._want_control = control
        self.server: MetricsServer | None = None
        self.control: Any = None
        self.status: dict[str, Any] = {}
        self.stop_requested = False
        self._publish_ref: Any = None
        self._last_poll = 0.0
        self._reported_stalls: set[tuple[str, int]] = set()

    @property
    def metrics_url(self) -> str | None:
        if self.server is None:
            return None
        host = self.settings.monitoring.metrics_host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (display only)
        return f"http://{shown}:{self.server.port}/metrics"

    def start(self) -> Monitor:
        m = self.settings.monitoring
        if self._serve:
            try:
                self.server = MetricsServer(m.metrics_host, m.metrics_port).start()
            except OSError as exc:
                raise ConfigError(
                    f"cannot serve metrics on {m.metrics_host}:{m.metrics_port} ({exc}); set "
                    "monitoring.metrics_port (env CLICKCASH_MONITORING__METRICS_PORT) or "
                    "CLICKCASH_MONITORING__METRICS_ENABLED=false"
                ) from exc
            log.info("metrics on %s (also /healthz, /status)", self.metrics_url)
        if self._want_control:
            self.control = start_control_actor(self.settings.ray.namespace)
        return self

    def tick(self) -> None:
        if time.monotonic() - self._last_poll >= self.settings.monitoring.poll_interval_s:
            self.poll_once()
        self._check_stop()

    def poll_once(self, timeout_s: float = 1.0) -> dict[str, Any]:
        self._last_poll = time.monotonic()
        if self._actors is not None:
            current_routers, current_shards = self._actors()
            self._routers.track(current_routers)
            self._shards.track(current_shards)
        routers = self._routers.poll(timeout_s)
        shards = self._shards.poll(timeout_s)
        partitions = self._lag.read()
        now = time.monotonic()
        oldest: dict[int, float] = {}
        for r in routers:
            for shard, age in (r.get("oldest_inflight_age_s") or {}).items():
                oldest[int(shard)] = max(oldest.get(int(shard), 0.0), float(age))
        progress = {p.partition: PartitionProgress(p.committed, p.lag) for p in partitions}
        stalls = self._watchdog.observe(now, progress, oldest)
        stalls += outage_stalls(
            {
                int(r.get("router", i)): (
                    str(r.get("outage_service") or ""),
                    float(r.get("outage_for_s", 0.0)),
                )
                for i, r in enumerate(routers)
                if not r.get("unavailable")
            }
        )
        if self._breakers is None:
            self._breakers = breaker_probe(self.settings)
        breakers = self._breakers.open()
        restarts = int(self._restarts()) if callable(self._restarts) else 0
        ledger = self._ledger.poll(timeout_s)[0] if self._ledger is not None else None
        families = self._model.families(
            Poll(
                routers,
                shards,
                partitions,
                restarts,
                stalls,
                breakers,
                psps=self._breakers.psps,
                ledger=ledger,
            )
        )
        k = self.settings.kafka
        meta = {
            "namespace": self.settings.ray.namespace,
            "input_topic": k.input_topic,
            "group": k.group_id,
            "metrics_url": self.metrics_url,
        }
        self.status = build_status(
            at_s=time.time(),
            routers=routers,
            shards=shards,
            partitions=partitions,
            stalls=stalls,
            breakers_open=breakers,
            router_restarts=restarts,
            meta=meta,
            prev=self.status or None,
        )
        self._log_stalls(stalls)
        if self.server is not None:
            health = {
                "healthy": self.status["healthy"],
                "stalls": self.status["stalls"],
                "down": [f"router {r['router']}" for r in self.status["routers"] if not r["up"]]
                + [f"shard {s['shard']}" for s in self.status["shards"] if not s["up"]],
            }
            self.server.publish(families, health, self.status)
        if self.control is not None and self._publish_ref is None:
            self._publish_ref = self.control.publish.remote(self.status)
        return self.status

    def _check_stop(self) -> None:
        if self._publish_ref is None:
            return
        ready, _ = ray.wait([self._publish_ref], timeout=0)
        if ready:
            try:
                if ray.get(self._publish_ref) and not self.stop_requested:
                    log.warning("stop requested through %s; draining", "the control actor")
                    self.stop_requested = True
            except ray.exceptions.RayError as exc:
                log.warning("control actor unreachable: %s", exc)
            self._publish_ref = None

    def _log_stalls(self, stalls: Sequence[Any]) -> None:
        now = {(s.kind, s.id) for s in stalls}
        for s in stalls:
            if (s.kind, s.id) not in self._reported_stalls:
                log.warning("stall: %s", s.describe(), extra={"stall_kind": s.kind, f"{s.kind}_id": s.id})
        for kind, idx in self._reported_stalls - now:
            log.warning("%s %d makes progress again", kind, idx, extra={f"{kind}_id": idx})
        self._reported_stalls = now

    def close(self) -> None:
        self._lag.close()
        if self._breakers is not None:
            self._breakers.close()
            self._breakers = None
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.control is not None:
            ray.kill(self.control, no_restart=True)
            self.control = None
