"""The clickcash contender: the app on local Ray with its default settings and its guarantees on.

Throughput: the app's consumer group reads the pre-produced input from the beginning; the clock runs from
the first consumed record (router stats, polled every 20 ms) to the moment the committed offsets reach the
input's end (outputs commit in the same transaction as the offsets, so that is the last output). CPU time of
every process is read at both ends, split into router, shard and Ray-system processes, and the app's RSS is
sampled throughout.

Optionally (``options.paced_s`` > 0), three paced runs follow on the same app, warm from the throughput
run (its state cache holds the customers it served, as a cluster's does in the middle of a campaign):
latency at 50 % of the measured peak and at the light fixed rate (as ``clickcash bench --rate``: send ->
committed output, p50/p99, but read by a reader assigned to the output partitions before the first send)
and memory at 70 % of the peak (RSS of the app's router and shard processes every second). Their input goes
to the throughput run's input topic once that is drained, with event ids of their own; each waits until
its input is committed before the next begins. A fresh app would measure its start (cold state cache,
first connections) instead of the pipeline the peak was measured on: its state cache alone grew the RSS by
~200 MiB over a 20 s run at 70 % of peak.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psutil
import ray

from clickcash.cluster.app import App
from clickcash.cluster.ray_runtime import colocated_niceness, init_ray
from clickcash.cluster.topics import ensure_topics
from clickcash.config.settings import Settings, load_settings
from clickcash.loadtest.contenders._common import (
    ContenderConfig,
    ContenderResult,
    contender_main,
    end_offsets,
    now,
    process_cpu_s,
    self_cpu_s,
)
from clickcash.loadtest.contenders._latency import LatencyReader
from clickcash.loadtest.contenders.results import LIGHT_RATE_PER_S, cpu_us_per_event, latency_summary
from clickcash.loadtest.traffic.campaign import CampaignGenerator, loadtest_mix
from clickcash.loadtest.traffic.campaign_run import produce_events, wait_drained

POLL_S = 0.02
"""how often the driver looks for the end of the throughput run once it is near (the end time's precision)"""
FAR_POLL_S = 0.25
"""how often it looks while the end is far: each look is a Ray call into every router (its ``stats``), which
cost the driver ~5 µs and the router a few more per input event when made every 20 ms throughout"""
NEAR_END_SHARE = 0.02
"""the end counts as near once fewer than this share of the input (at least ``NEAR_END_MIN`` records) is
left to commit"""
NEAR_END_MIN = 1_000


def poll_interval_s(committed: dict[int, int], end_offsets: dict[int, int]) -> float:
    """Seconds until the driver's next look at the committed offsets: rarely while much of the input is
    left, every ``POLL_S`` near its end, so the end time stays within ``POLL_S`` of the last commit."""
    left = sum(max(0, end - committed.get(p, 0)) for p, end in end_offsets.items())
    total = sum(end_offsets.values())
    return POLL_S if left <= max(NEAR_END_MIN, int(total * NEAR_END_SHARE)) else FAR_POLL_S


def app_settings(
    cfg: ContenderConfig, *, input_topic: str | None = None, prefix: str | None = None
) -> Settings:
    opts = cfg.options
    prefix = prefix or cfg.topic_prefix
    pipeline: dict[str, Any] = {}
    if opts.get("shards"):
        pipeline["shards"] = int(opts["shards"])
    if opts.get("routers"):
        pipeline["routers"] = int(opts["routers"])
    if opts.get("timer_poll_interval_ms"):
        pipeline["timer_poll_interval_ms"] = int(opts["timer_poll_interval_ms"])
    group = cfg.group_id if prefix == cfg.topic_prefix else f"{prefix}-group"
    return load_settings(
        kafka={
            "bootstrap_servers": cfg.bootstrap_servers,
            "input_topic": input_topic or cfg.input_topic,
            "orders_topic": f"{prefix}.orders",
            "payments_topic": f"{prefix}.payments",
            "dunning_topic": f"{prefix}.dunning",
            "dlq_topic": f"{prefix}.dlq",
            "campaigns_topic": f"{prefix}.campaigns",
            "group_id": group,
            "transactional_id_prefix": group,
        },
        redis={
            "url": cfg.redis_url,
            "key_prefix": cfg.redis_prefix if prefix == cfg.topic_prefix else prefix,
        },
        pipeline=pipeline,
        # the broker, Redis and (in the paced runs) the load generator share the cores, as in `demo`
        ray={
            "num_cpus": int(opts.get("num_cpus", 4)),
            "namespace": f"ns-{cfg.group_id}",
            **colocated_niceness(),
        },
    )


@dataclass
class AppProcesses:
    """The app's Ray worker processes, by role, and a background sampler of their RSS."""

    routers: list[int]
    shards: list[int]
    ledger: int | None = None
    """the campaign ledger's process (``ledger.enabled``): its own row of the CPU breakdown"""
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since sampling started, summed RSS in MiB of routers + shards)"""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def of(cls, app: App) -> AppProcesses:
        ledger = ray.get(app.ledger.stats.remote(), timeout=30) if app.ledger is not None else {}
        return cls(
            [int(s["pid"]) for s in app.router_stats() if "pid" in s],
            [int(s["pid"]) for s in app.shard_stats() if "pid" in s],
            int(ledger["pid"]) if "pid" in ledger else None,
        )

    def rss_mb(self) -> float:
        total = 0.0
        for pid in [*self.routers, *self.shards]:
            try:
                total += psutil.Process(pid).memory_info().rss / 2**20
            except psutil.Error:
                continue
        return total

    def start_sampling(self, interval_s: float) -> None:
        t0 = time.monotonic()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.rss_samples.append((round(time.monotonic() - t0, 2), round(self.rss_mb(), 1)))

        self.rss_samples.append((0.0, round(self.rss_mb(), 1)))
        self._thread = threading.Thread(target=loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop_sampling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def cpu_by_role(procs: AppProcesses, service_pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of this driver, the routers, the shards, the campaign ledger, every other Ray
    process and the shared services."""
    me = psutil.Process(os.getpid())
    out = {"router": 0.0, "shard": 0.0, "ledger": 0.0, "ray_system": 0.0, "driver": 0.0}
    for name, pid in service_pids.items():
        cpu = process_cpu_s(pid)
        if cpu is not None:
            out[f"{name} (service)"] = cpu
    t = me.cpu_times()
    out["driver"] = t.user + t.system
    for child in me.children(recursive=True):
        try:
            ct = child.cpu_times()
        except psutil.Error:
            continue
        role = (
            "router"
            if child.pid in procs.routers
            else "shard"
            if child.pid in procs.shards
            else "ledger"
            if child.pid == procs.ledger
            else "ray_system"
        )
        out[role] += ct.user + ct.system
    return out


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, anyone's work)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def _committed(app: App) -> dict[int, int]:
    merged: dict[int, int] = {}
    for s in app.router_stats():
        for p, o in (s.get("committed") or {}).items():
            merged[int(p)] = max(merged.get(int(p), 0), int(o))
    return merged


def throughput(
    cfg: ContenderConfig, settings: Settings, app: App, log: Any
) -> tuple[ContenderResult, AppProcesses]:
    procs = AppProcesses.of(app)
    procs.start_sampling(0.5)
    services = dict(cfg.options.get("service_pids", {}))
    cpu0: dict[str, float] | None = None
    first: float | None = None
    while first is None:
        stats = app.router_stats()
        if sum(int(s.get("consumed", 0)) for s in stats) > 0:
            first = now()
            cpu0 = cpu_by_role(procs, services)
            busy0 = machine_busy_s()
            break
        time.sleep(POLL_S)
    deadline = time.monotonic() + float(cfg.options.get("timeout_s", 1800))
    next_log = time.monotonic() + 5
    while True:
        committed = _committed(app)
        if all(committed.get(p, 0) >= end for p, end in cfg.end_offsets.items()):
            last = now()
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"clickcash did not finish in time (committed {committed})")
        if time.monotonic() > next_log:
            next_log = time.monotonic() + 5
            log(f"    clickcash: committed {sum(committed.values()):,}/{cfg.events:,}")
        app.supervise(poll_interval_s(committed, cfg.end_offsets))
    cpu1 = cpu_by_role(procs, services)
    busy1 = machine_busy_s()
    procs.stop_sampling()
    router_stats = app.router_stats()
    shard_stats = app.shard_stats()
    ledger = ledger_catch_up(app, procs, deadline)
    assert cpu0 is not None
    cpu = {k: round(cpu1[k] - cpu0[k], 3) for k in cpu1}
    if ledger is not None:
        ledger["cpu_s"] = round(ledger.pop("cpu_s_so_far") - cpu0["ledger"], 3)
    counts: dict[str, int] = {}
    for s in shard_stats:
        for k, v in (s.get("totals") or {}).items():
            counts[k] = counts.get(k, 0) + int(v)
    result = ContenderResult(
        cfg.name,
        cfg.events,
        first,
        last,
        0.0,
        max((r for _, r in procs.rss_samples), default=0.0),
        {
            "guarantee": "exactly-once (Kafka transactions, Redis idempotency)",
            "shards": settings.pipeline.shards,
            "routers": settings.pipeline.routers,
            "cpu_s": cpu,
            "machine_busy_share": round((busy1 - busy0) / max(last - first, 1e-9) / (os.cpu_count() or 1), 3),
            "transactions": _total(router_stats, "transactions"),
            "redis_round_trips": sum(int(s.get("store_round_trips", 0)) for s in shard_stats),
            "shard_batches": _total(shard_stats, "batches"),
            "counts": counts,
            "rss_samples_mb": procs.rss_samples,
            "ledger": ledger,
        },
    )
    return result, procs


LEDGER_IDLE_POLLS = 4
"""the ledger counts as caught up when its records read stayed the same over this many 0.5 s polls"""


def ledger_catch_up(app: App, procs: AppProcesses, deadline: float) -> dict[str, Any] | None:
    """After the routers' last commit: wait until the campaign ledger has read everything (its count of
    records read stops moving) and return its CPU so far (``cpu_s_so_far``, seconds), records read and the
    seconds it trailed the routers. The throughput window's ``ledger`` row holds only its share while the
    routers ran; this is its whole cost for the run. None without a ledger."""
    if app.ledger is None or procs.ledger is None:
        return None
    started = time.monotonic()
    read, idle = -1, 0
    while idle < LEDGER_IDLE_POLLS and time.monotonic() < deadline:
        stats = ray.get(app.ledger.stats.remote(), timeout=30)
        now_read = int(stats.get("events_read", 0))
        idle = idle + 1 if now_read == read else 0
        read = now_read
        app.supervise(0.5)
    return {
        "cpu_s_so_far": process_cpu_s(procs.ledger) or 0.0,
        "records_read": read,
        "trailed_s": round(time.monotonic() - started - LEDGER_IDLE_POLLS * 0.5, 1),
        "transactions": int(stats.get("transactions", 0)),
        "snapshots": int(stats.get("snapshots", 0)),
    }


def paced_latency(
    settings: Settings, events: int, rate_per_s: float, mix: Any, *, seed: int = 13, timeout_s: float = 900
) -> dict[str, Any]:
    """Send ``events`` at ``rate_per_s`` and measure send -> committed output for every output."""
    k = settings.kafka
    reader = LatencyReader(
        k.bootstrap_servers, [k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic]
    )
    reader.start()
    try:
        gen = CampaignGenerator(mix, seed=seed, run_id=f"p{uuid.uuid4().hex[:8]}")
        sent_at, _kinds, orders, t0 = produce_events(settings, gen, events, rate_per_s=rate_per_s)
        produce_s = time.time() - t0
        wait_drained(settings, timeout_s)
        drain_s = time.time() - t0 - produce_s
        time.sleep(1.0)
    finally:
        reader.stop()
    ids = Counter(i for c, i in reader.output_ids if c is not None and c in sent_at)
    decided = {c for c, t, _ in reader.seen if t in ("order.accepted", "order.rejected")}
    return {
        "events": events,
        "produce_s": round(produce_s, 2),
        # seconds from the last send until every input was committed: a backlog shows here
        "drain_s": round(drain_s, 2),
        **latency_summary(sent_at, reader.seen),
        "duplicate_output_ids": sum(n - 1 for n in ids.values() if n > 1),
        "orders_without_decision": sum(1 for o in orders if o not in decided),
    }


def paced(
    app: App,
    settings: Settings,
    rate_per_s: float,
    seconds: float,
    *,
    customers: int,
    service_pids: dict[str, int],
    tag: str,
    log: Any,
) -> dict[str, Any]:
    """``seconds`` of input at ``rate_per_s`` into the running ``app``, measured until it is committed:
    latency, CPU per event by process (``service_pids``: the shared services' processes, by name) and
    events per shard call."""
    mix = loadtest_mix(customers=customers)
    procs = AppProcesses.of(app)
    procs.start_sampling(1.0)
    events = max(1000, int(rate_per_s * seconds))
    log(f"    clickcash {tag}: {events:,} events at {rate_per_s:,.0f}/s ({seconds:,.0f} s)")
    transactions0 = _total(app.router_stats(), "transactions")
    cpu0, batches0 = cpu_by_role(procs, service_pids), _total(app.shard_stats(), "batches")
    try:
        measured = paced_latency(settings, events, rate_per_s, mix)
        cpu1, batches1 = cpu_by_role(procs, service_pids), _total(app.shard_stats(), "batches")
    finally:
        procs.stop_sampling()
    return {
        "rate_per_s": round(rate_per_s, 1),
        **measured,
        "transactions": _total(app.router_stats(), "transactions") - transactions0,
        # what the pipeline spent on this paced run (sending, draining, the last second's wait; the driver
        # row holds the load generator and the latency reader), and how full its shard calls were: at a
        # paced rate the calls are smaller than flat out, and each call and transaction has a fixed cost
        "cpu_us_per_event": cpu_us_per_event({k: cpu1[k] - cpu0[k] for k in cpu1}, events),
        "events_per_shard_call": round(events / max(batches1 - batches0, 1), 1),
        "rss_samples_mb": procs.rss_samples,
    }


def _total(stats: list[dict[str, Any]], key: str) -> int:
    """``key`` summed over the actors' stats (routers' or shards')."""
    return sum(int(s.get(key, 0)) for s in stats)


def run(cfg: ContenderConfig) -> ContenderResult:
    def log(msg: str) -> None:
        print(msg, flush=True)

    settings = app_settings(cfg)
    # the campaign ledger's compacted topic (the input and output topics exist already): without it the
    # ledger's first transaction fails and it never gets past its first batch
    ensure_topics(settings, partitions=len(cfg.end_offsets))
    init_ray(settings)
    try:
        app = App(settings)
        app.start()
        try:
            result, _ = throughput(cfg, settings, app, log)
            # the paced runs below write to the same output topics: the completeness check reads up to here
            k = settings.kafka
            result.extra["output_ends"] = {
                t: end_offsets(k.bootstrap_servers, t)
                for t in (k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic)
            }
            paced_s = float(cfg.options.get("paced_s", 0))
            if paced_s > 0:
                peak = result.events_per_s
                soak_s = float(cfg.options.get("soak_s", paced_s))
                for key, tag, rate, seconds in (
                    ("latency_at_50pct", "p50pct", 0.5 * peak, paced_s),
                    ("latency_at_light", "light", LIGHT_RATE_PER_S, paced_s),
                    ("memory_at_70pct", "p70pct", 0.7 * peak, soak_s),
                ):
                    result.extra[key] = paced(
                        app,
                        settings,
                        rate,
                        seconds,
                        customers=int(cfg.options.get("customers", 10_000)),
                        service_pids=dict(cfg.options.get("service_pids", {})),
                        tag=tag,
                        log=log,
                    )
        finally:
            app.stop()
        result.process_cpu_s = self_cpu_s()
    finally:
        ray.shutdown()
    return result


if __name__ == "__main__":
    sys.exit(contender_main(run, sys.argv[1:]))
