"""``clickcash``: one console command with subcommands for the local stack, the app and its tools."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clickcash._cli_help import finish_help
from clickcash.errors import ClickcashError, ConfigError, ServiceError


def _version() -> str:
    """The installed distribution's version (one source of truth: pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clickcash")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _log(msg: str) -> None:
    print(msg, flush=True)


def _settings(args: argparse.Namespace, endpoints: Any = None, **extra: Any) -> Any:
    from clickcash.config.settings import load_settings

    overrides: dict[str, Any] = {}
    if endpoints is not None:
        overrides["kafka"] = {"bootstrap_servers": endpoints.bootstrap_servers}
        overrides["redis"] = {"url": endpoints.redis_url}
    pipeline = {}
    if getattr(args, "shards", None):
        pipeline["shards"] = args.shards
    if getattr(args, "routers", None):
        pipeline["routers"] = args.routers
    if pipeline:
        overrides["pipeline"] = pipeline
    if getattr(args, "address", None):
        overrides["ray"] = {"address": None if args.address == "local" else args.address}
    for k, v in extra.items():
        overrides.setdefault(k, {}).update(v)
    return load_settings(**overrides)


def _start_stack(name: str, *, secure: bool = False) -> tuple[Any, Any]:
    """Start a local Kafka + Redis; a failure to start (no Java, no redis-server, a broker not ready in time)
    is one ``ServiceError`` line pointing at the services' logs, whose tails the original error carries."""
    from clickcash.cluster.local.stack import CACHE_DIR, LocalStack

    stack = LocalStack(name, secure=secure, log=_log)
    try:
        return stack, stack.start()
    except (RuntimeError, TimeoutError, OSError) as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ServiceError(
            "local services", f"{first} (the services' logs are under {CACHE_DIR / 'run'})"
        ) from exc


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the embedded stack, run the app on local Ray, push a campaign through it flat out, then a short
    paced phase for the latency a customer sees at a light load; report both, stop. The app's own log
    records go to a file (path printed), counted at the end, so the console shows only progress and report."""
    import ray

    from clickcash.cluster.app import App
    from clickcash.cluster.local.stack import CACHE_DIR, LocalStack, running_services
    from clickcash.cluster.observability.app_logs import AppLog
    from clickcash.cluster.ray_runtime import colocated_niceness, init_ray
    from clickcash.cluster.topics import ensure_topics
    from clickcash.loadtest.traffic.campaign import named_mix
    from clickcash.loadtest.traffic.campaign_run import run_campaign
    from clickcash.loadtest.traffic.warm_broker import warm_transactions

    stack: LocalStack | None = None
    app: App | None = None
    endpoints = running_services()
    group = f"clickcash-{args.command}-{int(time.time())}"
    app_log = AppLog(CACHE_DIR / "logs" / f"{group}.log")
    app_log.capture_driver()
    try:
        if endpoints is None:
            _log("starting local Kafka and Redis ...")
            stack, endpoints = _start_stack("demo")
        else:
            _log(f"using running services: kafka {endpoints.bootstrap_servers}, redis {endpoints.redis_url}")
        settings = _settings(
            args,
            endpoints,
            kafka={"group_id": group},
            redis={"key_prefix": group},
            ray={"num_cpus": args.num_cpus, **colocated_niceness()},
        )
        ensure_topics(settings, partitions=args.partitions)
        # a fresh broker's transaction path is cold (docs/performance-latency.md): warmed meanwhile
        warm = threading.Thread(target=warm_transactions, args=(settings,), kwargs={"log": _log}, daemon=True)
        warm.start()
        _log(
            f"starting Ray ({args.num_cpus} CPUs) and the app: {settings.pipeline.shards} shards, "
            f"{settings.pipeline.routers} router(s); the app's log records go to {app_log.path}"
        )
        init_ray(settings, log_to_driver=False)
        app = App(settings)
        app.start()
        _log("warming the broker's transaction path ...")
        warm.join()
        # a campaign's worth of shoppers, some busier than others (`--mix abuse`: hot customers buy without
        # end and most orders are rejected)
        mix = named_mix(args.mix, customers=20_000, zipf_s=0.7)
        if args.warmup:
            _log(f"warming up with {args.warmup:,} events (group join, transactions, connections) ...")
            run_campaign(settings, args.warmup, mix=mix, seed=1, log=lambda _m: None)
        pace = f"at {args.rate:,.0f} events/s" if args.rate else "flat out"
        _log(
            f"pushing {args.events:,} campaign events ({args.mix} mix) {pace} "
            f"through {settings.kafka.input_topic} ..."
        )
        report = run_campaign(settings, args.events, mix=mix, rate_per_s=args.rate, log=_log)
        paced = None
        if args.paced_events and args.paced_rate:
            _log(
                f"then {args.paced_events:,} events paced at {args.paced_rate:,.0f} events/s, "
                "for the latency at a light load ..."
            )
            paced = run_campaign(
                settings, args.paced_events, mix=mix, seed=2, rate_per_s=args.paced_rate, log=lambda _m: None
            )
        _log("")
        _log(f"== {pace}: {args.events:,} events ==")
        _log(report.render(mix=args.mix, paced=bool(args.rate)))
        if paced is not None:
            _log("")
            _log(f"== paced at {args.paced_rate:,.0f} events/s: {args.paced_events:,} events ==")
            _log(paced.render_latency())
        if getattr(args, "memory", False):
            import redis

            from clickcash.cluster.memory import measure

            client = redis.Redis.from_url(settings.redis.client_url())
            try:
                events = args.warmup + args.events + (args.paced_events if paced is not None else 0)
                _log("")
                _log(measure(client, settings.redis.key_prefix).render(events))
            finally:
                client.close()
        if args.json:
            out = {**report.__dict__, "mix": args.mix, "paced": paced.__dict__ if paced else None}
            Path(args.json).write_text(json.dumps(out, indent=2))
        runs = [report] if paced is None else [report, paced]
        ok = all(r.duplicate_output_ids == 0 and r.orders_without_decision == 0 for r in runs)
        return 0 if ok else 1
    finally:
        if app is not None:
            _log("stopping the app (draining and committing) ...")
            try:
                app.stop()
            except ClickcashError as exc:
                _log(f"warning: {exc}")
        summary = app_log.finish()
        if ray.is_initialized():
            ray.shutdown()
        if stack is not None:
            _log("stopping local Kafka and Redis ...")
            stack.stop()
        _log(summary.render(app_log.path))


def cmd_services(args: argparse.Namespace) -> int:
    from clickcash.cluster.local.stack import STATE_FILE, running_services, stop_services

    if args.action == "start":
        ep = running_services()
        if ep is not None and bool(ep.secure_dir) != args.secure:
            _log("services are already running " + ("secured" if ep.secure_dir else "unsecured"))
            return 1
        if ep is None:
            stack, _ = _start_stack("services", secure=args.secure)
            ep = stack.detach()
        _log(f"kafka: {ep.bootstrap_servers}\nredis: {ep.redis_url}\npids: {list(ep.pids)}")
        if ep.secure_dir:
            _log(
                f"secured: CA {ep.secure_dir}/ca.pem; a role's settings: "
                f"`set -a; . {ep.secure_dir}/<role>.env; set +a` (docs/security.md)"
            )
        _log(
            f"(recorded in {STATE_FILE}; `clickcash run --local` uses them, "
            "`clickcash services stop` stops them)"
        )
        return 0
    if args.action == "stop":
        if not stop_services(log=_log):
            _log("no recorded services")
        return 0
    ep = running_services()
    _log("not running" if ep is None else json.dumps(ep.__dict__))
    return 0 if ep else 1


def cmd_run(args: argparse.Namespace) -> int:
    """Run the app in the foreground until Ctrl-C or SIGTERM, then drain, commit and stop."""
    from clickcash.cluster.app import App
    from clickcash.cluster.local.stack import running_services
    from clickcash.cluster.ray_runtime import forget_local_address, init_ray, publish_local_address
    from clickcash.cluster.topics import ensure_topics

    endpoints = None
    if args.local:
        endpoints = running_services()
        if endpoints is None:
            raise ClickcashError("no local services running: start them with `clickcash services start`")
    settings = _settings(args, endpoints)
    if settings.ray.address is not None and settings.security.uses_local_stack_key():
        raise ConfigError(
            "security.timer_command_keys (env CLICKCASH_SECURITY__TIMER_COMMAND_KEYS) holds the published "
            "local-stack key: anyone could sign dunning timer commands. Set your own secret key(s) to run "
            "against a Ray cluster (a JSON list, first signs, all verify; see docs/data-protection.md)"
        )
    if settings.ray.address is not None and settings.security.uses_local_stack_erasure_key():
        raise ConfigError(
            "security.erasure_command_keys (env CLICKCASH_SECURITY__ERASURE_COMMAND_KEYS) holds the "
            "published local-stack key: anyone could erase customers. Set your own secret key(s) to run "
            "against a Ray cluster (a JSON list, first signs, all verify; see docs/data-protection.md)"
        )
    if args.create_topics:
        ensure_topics(settings, partitions=args.partitions)
    init_ray(settings)
    if settings.ray.address is None:
        publish_local_address()
    app = App(settings)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        _log(f"\nreceived {signal.Signals(signum).name}: draining in-flight work ...")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    app.start()
    _log(
        f"clickcash running: {settings.pipeline.shards} shards, {settings.pipeline.routers} router(s), "
        f"input {settings.kafka.input_topic} on {settings.kafka.bootstrap_servers}. Ctrl-C to stop."
    )
    last = 0.0

    def tick() -> None:
        nonlocal last
        if time.monotonic() - last < 5:
            return
        last = time.monotonic()
        stats = app.router_stats()
        consumed = sum(s.get("consumed", 0) for s in stats)
        produced = sum(s.get("produced", 0) for s in stats)
        _log(
            f"{app.topology.shards} shards  consumed {consumed:,}  produced {produced:,}  transactions "
            f"{sum(s.get('transactions', 0) for s in stats):,}  router restarts {app.restarts}"
        )

    try:
        app.run_until(stop.is_set, tick)
        final = app.stop()
    finally:
        if settings.ray.address is None:
            forget_local_address()
    _log(
        "stopped cleanly: "
        + ", ".join(
            f"router {s['router_index']} consumed {s['consumed']:,} produced {s['produced']:,}" for s in final
        )
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a deployment's committed outputs against its input (run once the input has drained)."""
    from clickcash.cluster.local.stack import running_services
    from clickcash.cluster.offsets import group_lag
    from clickcash.cluster.verify import verify

    endpoints = running_services() if args.local else None
    settings = _settings(args, endpoints)
    lag = group_lag(settings)
    if lag != 0:
        _log(f"note: the consumer group lags the input by {lag} records; only what it committed is checked")
    report = verify(settings, log=_log)
    _log(report.render())
    return 0 if report.ok else 1


def cmd_bench(args: argparse.Namespace) -> int:
    """The end-to-end benchmark, or with ``--stages`` (or ``--instructions``) the shard's batch path."""
    if args.stages or args.instructions is not None:
        from clickcash.loadtest.contenders.stages import run_stages

        return run_stages(args)
    return cmd_demo(args)


def cmd_schemas(args: argparse.Namespace) -> int:
    from clickcash.schemas import write_schemas

    for path in write_schemas(Path(args.out)):
        _log(f"wrote {path}")
    return 0


def _schemas_dir() -> Path:
    from clickcash.paths import checkout_root

    root = checkout_root()
    return root / "config" / "schemas" if root is not None else Path("schemas")


def build_parser() -> argparse.ArgumentParser:
    from clickcash.loadtest.traffic.campaign import MIX_NAMES

    p = argparse.ArgumentParser(prog="clickcash", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a campaign through the app on the embedded local stack")
    demo.add_argument("--events", type=int, default=20_000)
    demo.add_argument(
        "--rate", type=float, default=None, help="events/s to produce at (default: as fast as possible)"
    )
    demo.add_argument("--shards", type=int, default=4)
    demo.add_argument("--routers", type=int, default=1)
    demo.add_argument("--partitions", type=int, default=8)
    demo.add_argument(
        "--num-cpus", type=int, default=4, help="CPUs Ray may schedule on (actors use fractions)"
    )
    demo.add_argument("--json", help="also write the report as JSON to this file")
    demo.add_argument("--warmup", type=int, default=0, help="events to push first, not measured")
    demo.add_argument(
        "--mix", choices=MIX_NAMES, default="campaign", help="traffic mix (abuse: most rejected)"
    )
    demo.add_argument(
        "--paced-events",
        type=int,
        default=2_000,
        help="events of the paced phase after the flat-out one (0: none)",
    )
    demo.add_argument("--paced-rate", type=float, default=200.0, help="events/s of the paced phase")
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser(
        "bench",
        help="benchmark: end-to-end events/s and p50/p99 latency on the embedded stack (after a warm-up)",
    )
    bench.add_argument("--events", type=int, default=100_000)
    bench.add_argument(
        "--rate", type=float, default=None, help="paced input rate for latency (default: flat out)"
    )
    bench.add_argument("--shards", type=int, default=4)
    bench.add_argument("--routers", type=int, default=1)
    bench.add_argument("--partitions", type=int, default=8)
    bench.add_argument("--num-cpus", type=int, default=4)
    bench.add_argument("--warmup", type=int, default=5_000)
    bench.add_argument("--json", help="write the report as JSON to this file")
    bench.add_argument(
        "--memory",
        action="store_true",
        help="after the run, report Redis memory per customer and per 1M events",
    )
    bench.add_argument(
        "--mix", choices=MIX_NAMES, default="campaign", help="traffic mix (abuse: most rejected)"
    )
    from clickcash.loadtest.contenders.stages import add_stage_arguments

    add_stage_arguments(bench)
    bench.set_defaults(func=cmd_bench, paced_events=0, paced_rate=0.0)

    svc = sub.add_parser("services", help="start/stop/status of the local Kafka and Redis")
    svc.add_argument("action", choices=["start", "stop", "status"], help="what to do with the services")
    svc.add_argument(
        "--secure",
        action="store_true",
        help="SASL_SSL + ACLs on Kafka, TLS + ACL users on Redis, one principal per role (docs/security.md)",
    )
    svc.set_defaults(func=cmd_services)

    run = sub.add_parser("run", help="run the app in the foreground (Ctrl-C drains and commits)")
    run.add_argument("--local", action="store_true", help="use the services from `clickcash services start`")
    run.add_argument("--address", help="Ray address (ray://host:10001, auto) or 'local'")
    run.add_argument("--shards", type=int)
    run.add_argument("--routers", type=int)
    run.add_argument("--create-topics", action="store_true")
    run.add_argument("--partitions", type=int, default=8)
    run.set_defaults(func=cmd_run)

    ver = sub.add_parser(
        "verify",
        help="compare the committed outputs with what the input should produce (loss, duplicates, order)",
    )
    ver.add_argument("--local", action="store_true", help="use the services from `clickcash services start`")
    ver.set_defaults(func=cmd_verify)

    from clickcash.loadtest.locust_run.cli import add_loadtest_parser

    add_loadtest_parser(sub)
    from clickcash.cluster.ops.scaling import add_scale_parser

    add_scale_parser(sub)
    from clickcash.cluster.ops.status import add_ops_parser

    add_ops_parser(sub)
    from clickcash.cluster.ops.parked import add_parked_parser

    add_parked_parser(sub)
    from clickcash.cluster.ops.forget import add_forget_parser

    add_forget_parser(sub)
    from clickcash.loadtest.contenders.compare import add_compare_parser

    add_compare_parser(sub)
    from clickcash.cluster.ops.security import add_security_parser

    add_security_parser(sub)
    from clickcash.cluster.ledger.cli import add_campaigns_parser

    add_campaigns_parser(sub)

    sch = sub.add_parser("schemas", help="write the event contract as JSON Schema files")
    sch.add_argument(
        "--out",
        default=str(_schemas_dir()),
        help="folder for the JSON Schema files (the checkout's config/schemas, else ./schemas)",
    )
    sch.set_defaults(func=cmd_schemas)
    finish_help(p)
    return p


EXIT_OK = 0
"""the command did what it was asked and its checks passed"""
EXIT_CHECK_FAILED = 1
"""the command ran to the end but its checks failed (lost or duplicate outputs, a failed verify or SLO)"""
EXIT_CONFIG = 2
"""a setting, config file or command-line option is wrong (argparse's own usage errors are 2 too)"""
EXIT_SERVICE = 3
"""a service it talks to (Kafka, Redis, Ray) is unreachable or failing, after its retries"""
EXIT_RUN_FAILED = 4
"""the run could not complete for another stated reason (e.g. the input did not drain in time)"""
EXIT_INTERRUPTED = 130
"""Ctrl-C"""

_SERVICE_MODULES = {"confluent_kafka": "kafka", "cimpl": "kafka", "redis": "redis", "ray": "ray"}


def _service_of(exc: BaseException) -> str | None:
    """The service whose client library raised ``exc`` when it escaped untranslated, else None."""
    root = type(exc).__module__.split(".")[0]
    return _SERVICE_MODULES.get(root)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; every expected failure is one line on stderr and a documented exit code
    (docs/exit-codes.md), never a traceback. A traceback means a bug."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"clickcash: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ServiceError as exc:
        print(f"clickcash: {exc.service} error: {exc.message}", file=sys.stderr)
        return EXIT_SERVICE
    except ClickcashError as exc:
        print(f"clickcash: error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print("clickcash: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        service = _service_of(exc)
        if service is None:
            raise
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"clickcash: {service} error: {type(exc).__name__}: {text}; check that {service} is running "
            "and reachable (`clickcash services status` for the local Kafka and Redis)",
            file=sys.stderr,
        )
        return EXIT_SERVICE


if __name__ == "__main__":
    sys.exit(main())
