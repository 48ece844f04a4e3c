"""``clickcash compare``: clickcash side by side with a passthrough loop, a hand-rolled loop and Quix Streams.

One broker, one Redis, one pre-produced input; each contender in its own process, reading the input from
the beginning with its own consumer group, output topics and Redis key prefix. Each contender's committed
outputs are read back and checked for completeness before its rate counts. Writes
``reports/bench-<time>/results.json`` and ``results.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import psutil
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clickcash.cluster.local.pick_python import python_loop_s
from clickcash.cluster.outputs import COMMITTED_FETCH_WAIT_MS
from clickcash.config.settings import load_settings, redact_url
from clickcash.errors import ClickcashError, ConfigError, ServiceError
from clickcash.loadtest.contenders._common import (
    OUTPUT_ROLES,
    ContenderConfig,
    ContenderResult,
    end_offsets,
    kafka_client_config,
    process_cpu_s,
)
from clickcash.loadtest.contenders._latency import paced_run
from clickcash.loadtest.contenders.results import (
    LIGHT_RATE_PER_S,
    PYTHON_LOOP_STEPS,
    Completeness,
    InputManifest,
    OutputTally,
    bound_statement,
    check_full,
    check_passthrough,
    cpu_us_per_event,
    memory_growth_pct,
    peak_rss,
    ratios,
    render_markdown,
    same_outputs,
    targets,
)
from clickcash.loadtest.traffic.campaign import CampaignGenerator, loadtest_mix
from clickcash.loadtest.traffic.campaign_run import send_campaign
from clickcash.loadtest.traffic.warm_broker import WARM_TRANSACTIONS, warm_transactions
from clickcash.paths import checkout_root

REPO_ROOT = checkout_root() or Path.cwd()
QUIX_PYTHON = REPO_ROOT / ".cache" / "venv-quix" / "bin" / "python"
CONTENDERS = ("passthrough", "handrolled", "quix", "clickcash")
MODULES = {
    "passthrough": "clickcash.loadtest.contenders.passthrough",
    "handrolled": "clickcash.loadtest.contenders.handrolled",
    "quix": "clickcash.loadtest.contenders.quix",
    "clickcash": "clickcash.loadtest.contenders.clickcash_app",
    "profile": "clickcash.loadtest.contenders.profile",
}
SCALING = ((1, 1), (2, 1), (2, 2))
DEFERRED_TIMERS_MS = 600_000
"""timer poll interval of the extra clickcash runs (scaling): a fired dunning timer writes its command into
the input topic, which every later run reads; deferring the first poll past the run keeps the input the
same for every run (the default run goes last and fires its timers as usual)"""

Log = Callable[[str], None]


def _log(msg: str) -> None:
    print(msg, flush=True)


# --- input -------------------------------------------------------------------------------------------


def create_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    admin = AdminClient(kafka_client_config(bootstrap))
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics], operation_timeout=30
    )
    for topic, fut in futures.items():
        try:
            fut.result()
        except Exception as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise ServiceError("kafka", f"creating topic {topic}: {exc}") from exc


def pre_produce(
    bootstrap: str,
    topic: str,
    events: int,
    customers: int,
    *,
    seed: int = 7,
    run_id: str = "bench",
    log: Log = _log,
) -> InputManifest:
    """Produce ``events`` campaign events (the load tests' mix) and record what a complete run must show."""
    gen = CampaignGenerator(loadtest_mix(customers=customers), seed=seed, run_id=run_id)
    started = time.monotonic()
    _, kinds, orders, _ = send_campaign(
        {
            **kafka_client_config(bootstrap),
            "linger.ms": 20,
            "queue.buffering.max.messages": 500000,
            "compression.type": "none",
        },
        topic,
        gen,
        events,
        progress=lambda n: log(f"  produced {n:,}/{events:,} events ({time.monotonic() - started:.0f} s)"),
        progress_every=max(events // 10, 1000),
        flush_timeout_s=120,
    )
    return InputManifest(
        events, end_offsets(bootstrap, topic), dict(kinds), set(orders), kinds.get("malformed", 0)
    )


# --- outputs -----------------------------------------------------------------------------------------


def read_outputs(
    bootstrap: str,
    topics: list[str],
    *,
    idle_s: float = 5.0,
    until: dict[str, dict[int, int]] | None = None,
) -> OutputTally:
    """Tally every committed output of ``topics`` (read_committed, from the beginning); with ``until``
    (topic -> partition -> offset), only the records before those offsets: the outputs of clickcash's
    throughput run, not those of the paced runs that followed it on the same topics."""
    c = Consumer(
        {
            **kafka_client_config(bootstrap),
            "group.id": f"compare-check-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": COMMITTED_FETCH_WAIT_MS,
        }
    )
    tally = OutputTally()
    try:
        high: dict[tuple[str, int], int] = {}
        for t in topics:
            for p in c.list_topics(t, timeout=10).topics[t].partitions:
                high[(t, p)] = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                if until is not None and t in until:
                    high[(t, p)] = min(high[(t, p)], until[t].get(p, 0))
        tps = [TopicPartition(t, p, 0) for (t, p) in sorted(high)]
        c.assign(tps)
        last_new = time.monotonic()
        while True:
            msgs = c.consume(5000, 0.5)
            for m in msgs:
                if m.error() is not None:
                    continue
                if (cast(int, m.offset())) >= high.get((m.topic() or "", cast(int, m.partition())), 0):
                    continue  # past the end asked for
                headers = cast(dict[str, bytes], dict(m.headers() or []))
                if "ce_id" in headers:
                    cause = headers.get("ce_causationid")
                    tally.add(
                        headers["ce_id"].decode(),
                        headers.get("ce_type", b"passthrough").decode(),
                        cause.decode() if cause else None,
                    )
                else:
                    ev = orjson.loads(m.value() or b"{}")
                    tally.add(str(ev.get("id")), str(ev.get("type")), ev.get("causationid"))
            if msgs:
                last_new = time.monotonic()
            positions = {(tp.topic, tp.partition): tp.offset for tp in c.position(tps)}
            if all(positions.get(k, -1) >= h or h == 0 for k, h in high.items()):
                break
            if time.monotonic() - last_new > idle_s:
                break  # the rest is transaction markers
    finally:
        c.close()
    return tally


# --- running one contender ---------------------------------------------------------------------------


def idle_cpu_share(service_pids: dict[str, int], seconds: float = 5.0) -> dict[str, float]:
    """Share of a core each service uses with nothing to do (the broker's JVM and controller keep busy):
    a slow contender pays it for longer, which inflates its services' CPU per event."""
    before = {n: process_cpu_s(p) for n, p in service_pids.items()}
    time.sleep(seconds)
    out = {}
    for name, pid in service_pids.items():
        start, end = before[name], process_cpu_s(pid)
        if start is not None and end is not None:
            out[name] = round((end - start) / seconds, 3)
    return out


def run_contender(
    kind: str,
    cfg: ContenderConfig,
    out_dir: Path,
    *,
    python: str,
    timeout_s: float,
    log: Log = _log,
) -> ContenderResult:
    """Run one contender process to completion and return what it reported."""
    cfg_path = out_dir / f"{cfg.name}.config.json"
    cfg.write(cfg_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(out_dir / f"{cfg.name}.log", "w") as out:
        proc = subprocess.Popen(
            [python, "-m", MODULES[kind], str(cfg_path)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        try:
            for line in proc.stdout:
                log(line.rstrip())
                if time.monotonic() > deadline:
                    break
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
                raise ClickcashError(f"{cfg.name} did not finish in {timeout_s:.0f} s")
    if proc.returncode != 0:
        tail = (out_dir / f"{cfg.name}.log").read_text().splitlines()[-15:]
        raise ClickcashError(f"{cfg.name} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return ContenderResult.from_json(json.loads(Path(cfg.result_path).read_text()))


ENDLESS_OFFSET = 2**62
"""end offset of a paced run's input: the contender never reaches it and is stopped after the measurement"""


def paced_latency(
    kind: str,
    name: str,
    tag: str,
    run_id: str,
    bootstrap: str,
    redis_url: str,
    partitions: int,
    out_dir: Path,
    *,
    python: str,
    rate_per_s: float,
    seconds: float,
    customers: int,
    timeout_s: float,
) -> dict[str, Any]:
    """One contender process on a fresh input topic and fresh outputs: warm-up, then ``seconds`` of input
    at ``rate_per_s``; send -> committed output latency of every output."""
    full = f"{name}-{tag}"
    input_topic = f"bench.{run_id}-{full}.events"
    manifest = InputManifest(0, {p: ENDLESS_OFFSET for p in range(partitions)}, {}, set(), 0)
    cfg = contender_config(full, kind, run_id, bootstrap, redis_url, input_topic, manifest, out_dir)
    outputs = output_topics(cfg, kind)
    create_topics(bootstrap, [input_topic, *outputs], partitions)
    cfg_path = out_dir / f"{full}.config.json"
    cfg.write(cfg_path)
    return paced_run(
        [python, "-m", MODULES[kind], str(cfg_path)],
        {**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        out_dir / f"{full}.log",
        bootstrap=bootstrap,
        input_topic=input_topic,
        output_topics=outputs,
        group=cfg.group_id,
        events=max(1000, int(rate_per_s * seconds)),
        rate_per_s=rate_per_s,
        customers=customers,
        timeout_s=timeout_s,
        log=_log,
    )


def contender_config(
    name: str,
    kind: str,
    run_id: str,
    bootstrap: str,
    redis_url: str,
    input_topic: str,
    manifest: InputManifest,
    out_dir: Path,
    **options: Any,
) -> ContenderConfig:
    tag = f"{run_id}-{name}"
    return ContenderConfig(
        name=name,
        bootstrap_servers=bootstrap,
        redis_url=redis_url,
        input_topic=input_topic,
        end_offsets=manifest.end_offsets,
        topic_prefix=f"bench.{tag}",
        group_id=f"bench-{tag}",
        redis_prefix=f"bench:{tag}",
        result_path=str(out_dir / f"{name}.result.json"),
        options=options,
    )


def output_topics(cfg: ContenderConfig, kind: str) -> list[str]:
    return [cfg.topic("out")] if kind == "passthrough" else [cfg.topic(r) for r in OUTPUT_ROLES]


# --- the whole comparison ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "python_loop_s": round(python_loop_s(PYTHON_LOOP_STEPS), 3),
    }


def compare(
    args: argparse.Namespace, bootstrap: str, redis_url: str, service_pids: dict[str, int]
) -> dict[str, Any]:
    started = datetime.now(UTC)
    run_id = f"{started:%m%d%H%M%S}-{uuid.uuid4().hex[:4]}"
    out_dir = Path(args.out or REPO_ROOT / "reports" / f"bench-{started:%Y%m%d-%H%M%S}")
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = [c.strip() for c in args.contenders.split(",") if c.strip()]
    for c in wanted:
        if c not in CONTENDERS:
            raise ClickcashError(f"unknown contender {c!r}; known: {', '.join(CONTENDERS)}")
    quix_python = Path(args.quix_python)
    if "quix" in wanted and not quix_python.exists():
        raise ClickcashError(
            f"Quix Streams' virtualenv is missing ({quix_python}): run `make bench-deps` first"
        )
    input_topic = f"bench.{run_id}.events"
    create_topics(bootstrap, [input_topic], args.partitions)
    _log(f"pre-producing {args.events:,} events ({args.customers:,} customers) into {input_topic} ...")
    manifest = pre_produce(bootstrap, input_topic, args.events, args.customers, seed=args.seed, run_id=run_id)
    _log(
        f"input: {manifest.events:,} records, {len(manifest.order_event_ids):,} orders, "
        f"{manifest.malformed:,} malformed, by kind {manifest.by_kind}"
    )

    if args.warm_transactions > 0:
        # a freshly started broker compiles its transaction path (offsets in a transaction, commit markers)
        # while the first transactional contender runs, and bills that contender for it; a broker in
        # service is long warm (docs/benchmark.md#broker-and-driver)
        _log(f"warming the broker's transaction path ({args.warm_transactions:,} transactions) ...")
        warm_transactions(
            load_settings(kafka={"bootstrap_servers": bootstrap, "input_topic": input_topic}),
            args.warm_transactions,
            log=_log,
        )
    idle = idle_cpu_share(service_pids)
    if idle:
        _log(f"services at idle (share of one core): {idle}")
    plan: list[tuple[str, str, dict[str, Any]]] = []
    for kind in wanted:
        opts: dict[str, Any] = {"service_pids": service_pids}
        if kind == "clickcash":
            opts.update(
                num_cpus=args.num_cpus,
                paced_s=args.paced_s,
                soak_s=args.paced_s if args.soak_s is None else args.soak_s,
                customers=args.customers,
            )
        plan.append((kind, kind, opts))
    extra: list[tuple[str, str, dict[str, Any]]] = []
    if args.scaling:
        for shards, routers in SCALING:
            extra.append(
                (
                    "clickcash",
                    f"clickcash-{shards}s{routers}r",
                    {
                        "num_cpus": args.num_cpus,
                        "shards": shards,
                        "routers": routers,
                        "paced_s": 0,
                        "timer_poll_interval_ms": DEFERRED_TIMERS_MS,
                        "service_pids": service_pids,
                    },
                )
            )
    if args.profile:
        extra.append(("profile", "clickcash-1process", {"profile": False}))
        extra.append(("profile", "clickcash-profile", {"profile_html": str(out_dir / "profile.html")}))
    # the extra runs go before the default clickcash run: its timer commands must not reach them
    at = next((i for i, (kind, _, _) in enumerate(plan) if kind == "clickcash"), len(plan))
    plan[at:at] = extra

    contenders: dict[str, Any] = {}
    completeness: dict[str, Completeness] = {}
    for kind, name, opts in plan:
        cfg = contender_config(
            name, kind, run_id, bootstrap, redis_url, input_topic, manifest, out_dir, **opts
        )
        create_topics(bootstrap, output_topics(cfg, kind), args.partitions)
        load1 = os.getloadavg()[0]
        _log(f"running {name} (load average before: {load1:.2f}) ...")
        python = str(quix_python) if kind == "quix" else sys.executable
        result = run_contender(kind, cfg, out_dir, python=python, timeout_s=args.timeout)
        _log(
            f"  {name}: {result.events:,} events in {result.elapsed_s:.2f} s = "
            f"{result.events_per_s:,.0f} events/s; checking its outputs ..."
        )
        ends = result.extra.get("output_ends")
        tally = read_outputs(
            bootstrap,
            output_topics(cfg, kind),
            until=None if ends is None else {t: {int(p): o for p, o in v.items()} for t, v in ends.items()},
        )
        comp = check_passthrough(manifest, tally) if kind == "passthrough" else check_full(manifest, tally)
        completeness[name] = comp
        _log(f"  outputs complete: {'yes' if comp.ok else 'NO: ' + '; '.join(comp.problems)}")
        entry = result.to_json()
        entry["cpu_us_per_event"] = cpu_us_per_event(result.extra.get("cpu_s", {}), result.events)
        entry["load_average_before"] = round(load1, 2)
        entry["completeness"] = {"ok": comp.ok, "problems": comp.problems, **comp.figures}
        if kind == "clickcash":
            entry["latency"] = {
                "at_50pct": result.extra.get("latency_at_50pct"),
                "at_light": result.extra.get("latency_at_light"),
            }
        elif kind in CONTENDERS and args.paced_s > 0:
            entry["latency"] = {}
            for tag, rate in (("at_50pct", 0.5 * result.events_per_s), ("at_light", LIGHT_RATE_PER_S)):
                _log(f"  {name}: latency {tag.replace('_', ' ')} ...")
                entry["latency"][tag] = paced_latency(
                    kind,
                    name,
                    tag.replace("_", ""),
                    run_id,
                    bootstrap,
                    redis_url,
                    args.partitions,
                    out_dir,
                    python=python,
                    rate_per_s=rate,
                    seconds=args.paced_s,
                    customers=args.customers,
                    timeout_s=args.timeout,
                )
        contenders[name] = entry
    return build_report(args, started, manifest, contenders, completeness, out_dir, idle)


def ledger_cost(ledger: dict[str, Any] | None, events: int) -> dict[str, Any] | None:
    """The campaign ledger's whole CPU for the throughput run (until it had read everything), per input
    event: its row in the by-process table holds only the part spent while the routers ran."""
    if not ledger or events <= 0:
        return None
    return {**ledger, "cpu_us_per_event": round(float(ledger["cpu_s"]) / events * 1e6, 1)}


def build_report(
    args: argparse.Namespace,
    started: datetime,
    manifest: InputManifest,
    contenders: dict[str, Any],
    completeness: dict[str, Completeness],
    out_dir: Path,
    services_idle: dict[str, float] | None = None,
) -> dict[str, Any]:
    main = {n: c for n, c in contenders.items() if n in CONTENDERS}
    rates = {n: float(c["events_per_s"]) for n, c in main.items() if c["completeness"]["ok"]}
    cc = contenders.get("clickcash")
    lat = mem = light = None
    p99 = growth = None
    peak_rss_mb = None
    cpu_us: dict[str, float] = {}
    bound = None
    if cc is not None:
        extra = cc["extra"]
        lat = extra.get("latency_at_50pct")
        light = extra.get("latency_at_light")
        mem = extra.get("memory_at_70pct")
        p99 = lat["latency_ms"].get("p99") if lat else None
        growth = memory_growth_pct(mem["rss_samples_mb"]) if mem else None
        samples = list(extra.get("rss_samples_mb", []))
        for phase in (lat, mem):
            if phase:
                samples += phase["rss_samples_mb"]
        peak_rss_mb = round(peak_rss(samples), 1)
        cpu_us = cc["cpu_us_per_event"]
        bound = bound_statement(
            cpu_us, cc["events_per_s"], os.cpu_count() or 2, extra.get("machine_busy_share")
        )
    prof = contenders.get("clickcash-profile")
    scaling = {
        f"{c['extra'].get('shards')} x {c['extra'].get('routers')}": c["events_per_s"]
        for n, c in contenders.items()
        if n.startswith("clickcash") and "shards" in c["extra"] and "routers" in c["extra"]
    }
    report: dict[str, Any] = {
        "run": {
            "started": started.isoformat(timespec="seconds"),
            "events": manifest.events,
            "partitions": args.partitions,
            "customers": args.customers,
            "machine": machine(),
            "note": "Kafka, Redis, the orchestrator and the contender share the machine's cores; other "
            "work on the machine shows in each contender's load_average_before.",
        },
        "input": manifest.to_json(),
        "services_idle_cpu_share": services_idle or {},
        "contenders": contenders,
        "ratios": ratios(rates),
        "same_outputs_across_full_contenders": same_outputs(
            {n: c for n, c in completeness.items() if n != "passthrough"}
        ),
        "latency_at_50pct": lat,
        "latency_at_light": light,
        "memory_at_70pct": None if mem is None else {**mem, "rss_growth_pct": growth},
        "peak_rss_mb": peak_rss_mb,
        "cpu_us_per_event": cpu_us,
        "ledger": ledger_cost(cc["extra"].get("ledger"), int(cc["events"])) if cc is not None else None,
        "profile_us_per_event": prof["extra"].get("stage_us_per_event") if prof else None,
        "scaling": scaling or None,
        "bound": bound,
        "targets": [t.__dict__ for t in targets(rates, p99, growth, light)],
    }
    (out_dir / "results.json").write_text(json.dumps(report, indent=2, default=str))
    md = render_markdown(report)
    (out_dir / "results.md").write_text(md)
    report["out_dir"] = str(out_dir)
    return report


def cmd_compare(args: argparse.Namespace) -> int:
    stack = None
    try:
        if args.redis_url and redact_url(args.redis_url) != args.redis_url:
            # argv is visible to every local user (ps) and the URL is written into the run's files
            raise ConfigError(
                "--redis-url must not carry credentials: set CLICKCASH_REDIS__USERNAME and "
                "CLICKCASH_REDIS__PASSWORD (or CLICKCASH_SECRETS_DIR) instead"
            )
        if args.bootstrap and args.redis_url:
            bootstrap, redis_url, pids = args.bootstrap, args.redis_url, {}
        else:
            from clickcash.cluster.local.stack import LocalStack

            _log("starting local Kafka and Redis ...")
            stack = LocalStack("compare", log=_log)
            ep = stack.start()
            bootstrap, redis_url = ep.bootstrap_servers, ep.redis_url
            pids = {f"kafka-{i}": p for i, p in enumerate(stack.kafka.pids) if p is not None}
            if stack.redis.pid is not None:
                pids["redis"] = stack.redis.pid
        report = compare(args, bootstrap, redis_url, pids)
        _log("")
        _log((Path(report["out_dir"]) / "results.md").read_text())
        _log(f"report: {report['out_dir']}/results.json, results.md")
        complete = all(c["completeness"]["ok"] for c in report["contenders"].values())
        return 0 if complete else 1
    finally:
        if stack is not None:
            _log("stopping local Kafka and Redis ...")
            stack.stop()


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="throughput/latency side by side: passthrough, hand-rolled loop, Quix Streams, clickcash",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--events", type=int, default=500_000, help="pre-produced input events")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--customers", type=int, default=10_000, help="customers (Zipf-skewed)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated, run in this order")
    p.add_argument(
        "--scaling", action="store_true", help="also run clickcash with 1x1, 2x1, 2x2 shards x routers"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also run clickcash's router and shards in one process, no Ray: plain and under pyinstrument",
    )
    p.add_argument(
        "--paced-s",
        type=float,
        default=20.0,
        help="seconds of each paced run: every contender's latency at 50%% of its peak and at 200 events/s, "
        "clickcash's memory at 70%% of peak; 0 skips them",
    )
    p.add_argument(
        "--soak-s",
        type=float,
        help="seconds of the memory run at 70%% of peak (default: --paced-s); 600 is a 10-minute soak",
    )
    p.add_argument("--num-cpus", type=int, default=4, help="CPUs local Ray may schedule on")
    p.add_argument(
        "--warm-transactions",
        type=int,
        default=WARM_TRANSACTIONS,
        help="transactions run against a scratch topic before the first contender, so that no contender pays "
        "for a fresh broker compiling its transaction path; 0: a cold broker",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds one contender may take")
    p.add_argument("--quix-python", default=str(QUIX_PYTHON), help="python of the Quix Streams virtualenv")
    p.add_argument("--bootstrap", help="use this Kafka instead of starting one (with --redis-url)")
    p.add_argument("--redis-url", help="use this Redis instead of starting one (with --bootstrap)")
    p.add_argument("--out", help="report folder (default: reports/bench-<time>)")
    p.set_defaults(func=cmd_compare)
