"""Where a shard's CPU goes, per event and per stage: ``clickcash bench --stages``.

Runs :meth:`clickcash.actors.shard.Shard.apply` in this one process (no Ray, no Kafka) on the project's own
campaign
generator, first against the in-memory store, then against a real Redis (a redis-server this command starts
and stops by pid, unless ``--redis-url`` names one). A warm-up brings the customers' state to a steady size,
then the measured events run in batches of the shard's usual size while each stage's wall time is summed.

Stages are timed by wrapping the functions the batch path calls (a few hundred nanoseconds per call of
overhead, spread over the stages); ``apply glue`` is what is left of ``Shard.apply`` after the named stages,
``gc`` is the collector's pauses (from ``gc.callbacks``). Against Redis, ``store load`` and ``store commit``
include waiting for the server; the server's own CPU per event is read from ``INFO cpu`` and shown apart.
The figures are for regressions and relative changes on one machine, not absolute claims: run before and
after a change, interleaved, on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

import clickcash.actors._apply as apply_mod
import clickcash.actors.shard as shard_mod
from clickcash.actors.contract import OutputTopics, ShardBatch
from clickcash.actors.shard import Shard, tune_collector
from clickcash.actors.state.base import CustomerState, InMemoryStateStore, StateStore
from clickcash.actors.state.redis import RedisStateStore
from clickcash.cluster.local.redis_server import LocalRedis
from clickcash.config.domain import load_domain_config
from clickcash.config.settings import load_settings
from clickcash.loadtest.contenders.instructions import DEFAULT_EVENTS, run_instruction_count
from clickcash.loadtest.traffic.campaign import CampaignGenerator, loadtest_mix

_T0_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z: the record timestamps start here and advance 1 ms per event"""

STAGE_ORDER = (
    "decode + validate + fingerprint",
    "store load (idempotency, responses, state docs, counters)",
    "state decode",
    "check_order",
    "route_payment",
    "plan_dunning",
    "output encoding (emit)",
    "first-response encoding",
    "state encode",
    "store commit (claims, responses, state docs, counters)",
    "gc",
    "apply glue (rest of Shard.apply)",
)


@dataclass
class StageClock:
    """Summed wall seconds per stage; nested timing is avoided by wrapping only non-nesting functions.
    Collector pauses are counted under ``gc`` only, never in the stage they interrupted."""

    seconds: dict[str, float] = field(default_factory=dict)
    on: bool = False
    gc_s: float = 0.0
    """collector pauses so far (only ever grows)"""

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        seconds = self.seconds
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return fn(*args, **kwargs)
            t, paused = clock(), self.gc_s
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] = seconds.get(name, 0.0) + clock() - t - (self.gc_s - paused)

        return timed


class _TimedFirstResponse:
    """Stands in for the ``first_response`` module inside ``clickcash.actors.shard``: its ``encode`` there
    encodes the stored first responses (``decode`` replays them)."""

    def __init__(self, clock: StageClock) -> None:
        self.encode = clock.wrap("first-response encoding", shard_mod.first_response.encode)
        self.decode = shard_mod.first_response.decode
        self.FORMAT = shard_mod.first_response.FORMAT


@contextlib.contextmanager
def instrumented(clock: StageClock, store: StateStore) -> Iterator[None]:
    """Wrap the batch path's stages for the duration of the block (restored afterwards)."""
    patches: list[tuple[Any, str, Any]] = [
        (shard_mod, "decode_record", clock.wrap(STAGE_ORDER[0], shard_mod.decode_record)),
        (store, "load", clock.wrap(STAGE_ORDER[1], store.load)),
        (store, "commit", clock.wrap(STAGE_ORDER[9], store.commit)),
        (apply_mod, "check_order", clock.wrap("check_order", apply_mod.check_order)),
        (apply_mod, "route_payment", clock.wrap("route_payment", apply_mod.route_payment)),
        (apply_mod, "plan_dunning", clock.wrap("plan_dunning", apply_mod.plan_dunning)),
        (apply_mod.EventApplier, "emit", clock.wrap(STAGE_ORDER[6], apply_mod.EventApplier.emit)),
        (shard_mod, "first_response", _TimedFirstResponse(clock)),
    ]
    decode = CustomerState.__dict__["decode"]
    encode = CustomerState.__dict__["encode"]
    timed_decode = clock.wrap("state decode", decode.__func__)
    patches.append((CustomerState, "decode", classmethod(lambda cls, raw: timed_decode(cls, raw))))
    patches.append((CustomerState, "encode", clock.wrap("state encode", encode)))
    saved = [(obj, name, obj.__dict__[name] if name in vars(obj) else None) for obj, name, _ in patches]
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if not clock.on:
            return
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - gc_start[0]
            clock.gc_s += pause
            clock.seconds["gc"] = clock.seconds.get("gc", 0.0) + pause

    for obj, name, new in patches:
        setattr(obj, name, new)
    gc.callbacks.append(on_gc)
    try:
        yield
    finally:
        gc.callbacks.remove(on_gc)
        for obj, name, old in saved:
            if old is None:
                delattr(obj, name)
            else:
                setattr(obj, name, old)


def bench_batches(events: int, batch_size: int, customers: int, seed: int, offset0: int) -> list[ShardBatch]:
    """``events`` of the campaign generator as one partition's shard batches of ``batch_size``, each
    carrying the watermark of the one before (the same events for the same arguments)."""
    gen = CampaignGenerator(loadtest_mix(customers=customers), seed=seed, run_id=f"stages{seed}")
    out: list[ShardBatch] = []
    batch = ShardBatch("clickcash.events")
    for i, ev in enumerate(gen.events(events)):
        batch.partitions.append(0)
        batch.offsets.append(offset0 + i)
        batch.keys.append(ev.key)
        batch.values.append(ev.value)
        batch.timestamps_ms.append(_T0_MS + offset0 + i)
        if len(batch) == batch_size:
            out.append(batch)
            # as the router does: a batch carries the watermark of the round before, committed by then
            batch = ShardBatch("clickcash.events", committed={0: offset0 + i + 1})
    if len(batch):
        out.append(batch)
    return out


@dataclass(frozen=True)
class StageReport:
    store: str
    events: int
    rounds: int
    total_us: float
    cpu_us: float
    stages_us: dict[str, float]
    redis_server_us: float | None
    cache_hit_ratio: float

    def render(self) -> str:
        """Wall µs per stage, and the same scaled by this process's CPU over its wall time: on a shared
        machine other processes' turns inflate wall time evenly, so the scaled column estimates CPU (it
        also scales down real waits for Redis, which the wall column keeps)."""
        scale = self.cpu_us / self.total_us if self.total_us > 0 else 1.0
        lines = [
            f"{self.store}: {self.events:,} measured events, µs per event (median of {self.rounds} rounds; "
            f"state cache hits {self.cache_hit_ratio:.0%})",
            f"  {'stage':<60} {'wall':>7} {'~CPU':>7}",
        ]
        for name in STAGE_ORDER:
            us = self.stages_us.get(name, 0.0)
            lines.append(f"  {name:<60} {us:7.1f} {us * scale:7.1f}")
        lines.append(f"  {'total (Shard.apply)':<60} {self.total_us:7.1f} {self.cpu_us:7.1f}")
        if self.redis_server_us is not None:
            lines.append(f"  {'redis-server CPU (INFO cpu)':<60} {'':7} {self.redis_server_us:7.1f}")
        return "\n".join(lines)


def _redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def bench_shard(store: StateStore) -> Shard:
    """A shard as the app builds one from the default settings and domain, on ``store``."""
    settings = load_settings()
    k = settings.kafka
    return Shard(
        0,
        OutputTopics(k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic),
        load_domain_config(settings.domain_file),
        store,
        max_event_bytes=settings.pipeline.max_event_bytes,
        psp_stats_refresh_ms=settings.pipeline.psp_stats_refresh_ms,
        state_cache_customers=settings.pipeline.state_cache_customers,
    )


def measure(
    store: StateStore,
    *,
    warmup: int,
    events: int,
    batch_size: int,
    customers: int,
    seed: int,
    redis_client: redis.Redis | None = None,
    label: str = "",
    rounds: int = 5,
) -> StageReport:
    """Warm the store's customers with ``warmup`` events, then time ``events`` more, stage by stage.

    The measured events run in ``rounds`` parts; each figure is the median over the parts, so a burst of
    another process's work on a shared machine moves it less."""
    shard = bench_shard(store)
    batches = bench_batches(warmup + events, batch_size, customers, seed, 0)
    split = warmup // batch_size
    measured = batches[split:]
    per_round = max(1, len(measured) // rounds)
    clock = StageClock()
    threshold = gc.get_threshold()
    tune_collector()  # as the shard actor does
    totals: list[tuple[float, float, float | None, dict[str, float]]] = []
    try:
        with instrumented(clock, store):
            for b in batches[:split]:
                shard.apply(b)
            for r in range(0, len(measured), per_round):
                chunk = measured[r : r + per_round]
                n = sum(len(b) for b in chunk)
                clock.seconds.clear()
                server0 = _redis_cpu_s(redis_client) if redis_client is not None else 0.0
                cpu0 = time.process_time()
                clock.on = True
                t0 = time.perf_counter()
                for b in chunk:
                    shard.apply(b)
                wall = time.perf_counter() - t0
                clock.on = False
                cpu = time.process_time() - cpu0
                server = _redis_cpu_s(redis_client) - server0 if redis_client is not None else None
                per = 1e6 / max(n, 1)
                stages = {name: sec * per for name, sec in clock.seconds.items()}
                stages[STAGE_ORDER[-1]] = wall * per - sum(stages.values())
                totals.append((wall * per, cpu * per, server * per if server is not None else None, stages))
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    servers = [t[2] for t in totals if t[2] is not None]
    return StageReport(
        label,
        sum(len(b) for b in measured),
        len(totals),
        statistics.median(t[0] for t in totals),
        statistics.median(t[1] for t in totals),
        {name: statistics.median(t[3].get(name, 0.0) for t in totals) for name in STAGE_ORDER},
        statistics.median(servers) if servers else None,
        shard.state_cache.hits / max(shard.state_cache.hits + shard.state_cache.misses, 1),
    )


def _parser_options(parser: str) -> dict[str, Any]:
    """redis-py picks hiredis's C reply parser when it is installed; ``python`` forces the pure one."""
    if parser == "python":
        from redis._parsers import _RESP2Parser

        return {"parser_class": _RESP2Parser}
    return {}


def run_stages(args: argparse.Namespace) -> int:
    if args.instructions is not None:
        return run_instruction_count(args)
    common: dict[str, Any] = {
        "warmup": args.warmup,
        "events": args.events,
        "batch_size": args.batch,
        "customers": args.customers,
        "seed": args.seed,
    }
    # the generator's malformed records are dead-lettered on purpose: their rate-limited warnings are noise
    logging.getLogger(shard_mod.__name__).setLevel(logging.ERROR)
    print(
        f"shard batch path in one process: {args.customers:,} customers, {args.batch}-event batches, "
        f"warm-up {args.warmup:,} events"
    )
    print(measure(InMemoryStateStore(), label="in-memory store", **common).render())
    with contextlib.ExitStack() as stack:
        url = args.redis_url
        if not url:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clickcash-stages-")))
            server = stack.enter_context(LocalRedis(work, appendonly=False, log=lambda _m: None))
            url = server.url
        client = redis.Redis.from_url(url, **_parser_options(args.redis_parser))
        stack.callback(client.close)
        prefix = f"stages:{time.time_ns()}"
        store = RedisStateStore(client, prefix, retention_s=86_400, response_ttl_s=3_600)
        print(measure(store, redis_client=client, label=f"redis ({url})", **common).render())
    return 0


def add_stage_arguments(bench: argparse.ArgumentParser) -> None:
    """``clickcash bench --stages``: the options of the in-process stage breakdown."""
    bench.add_argument(
        "--stages",
        action="store_true",
        help="instead of the end-to-end run: the shard's batch path in one process, µs per event per stage, "
        "against the in-memory store and a real Redis",
    )
    bench.add_argument("--customers", type=int, default=10_000, help="--stages: customers in the mix")
    bench.add_argument("--batch", type=int, default=500, help="--stages: events per shard batch")
    bench.add_argument("--seed", type=int, default=7, help="--stages: generator seed")
    bench.add_argument(
        "--instructions",
        type=int,
        nargs="?",
        const=DEFAULT_EVENTS,
        default=None,
        metavar="EVENTS",
        help="instead of timing stages (implies --stages), count the instructions per event of the batch "
        f"path (in-memory store) under valgrind over EVENTS measured events (default {DEFAULT_EVENTS:,}): "
        "a figure other processes on the machine do not move",
    )
    bench.add_argument(
        "--redis-url", default=None, help="--stages: use this Redis instead of starting a redis-server"
    )
    bench.add_argument(
        "--redis-parser",
        choices=["default", "python"],
        default="default",
        help="--stages: redis-py's reply parser (default: hiredis when installed)",
    )
