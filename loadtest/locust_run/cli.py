"""``clickcash loadtest``: a headless (or web UI) Locust run against the running stack, with its report.

Wired into ``clickcash/cli.py`` by :func:`add_loadtest_parser`. By default it loads the services of
``clickcash services start``; ``--bootstrap`` or ``CLICKCASH_KAFKA__BOOTSTRAP_SERVERS`` (and the other
``CLICKCASH_*`` settings) point it elsewhere. It does not start the app unless given ``--with-app``.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from clickcash.errors import ClickcashError
from clickcash.loadtest.locust_run.options import (
    ALL_OPTIONS,
    RUN_OPTIONS,
    add_options,
    apply_config,
    new_run_id,
)

DESCRIPTION = """\
Will a campaign launch hold? Publishes campaign traffic (orders, payment outcomes, card updates, re-sent
duplicates, malformed records; hot and cold customers) with Locust following a shape, measures
send -> committed-output latency and consumer lag, and writes a report folder: Locust's HTML and CSV,
plot.png (rates, lag, p50/p99 latency with the phases marked), summary.md/summary.json (peak sustained
rate, p50/p95/p99 per phase, peak lag and seconds to drain it, lost and duplicate counts) and an
independent recount of the topics.
"""


def _log(msg: str) -> None:
    print(msg, flush=True)


def add_loadtest_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loadtest",
        help="Locust load test (steady/step/spike) against the running stack, with an end-to-end report",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", help="TOML file of options (keys as the long options, e.g. peak_x = 10)")
    add_options(p, tuple(o for o in ALL_OPTIONS if o not in RUN_OPTIONS))
    g = p.add_argument_group("target")
    g.add_argument("--bootstrap", help="Kafka bootstrap servers (default: `clickcash services start`'s)")
    g.add_argument("--group", help="the app's consumer group, whose lag is measured (default: settings)")
    g.add_argument("--create-topics", action="store_true", help="create missing topics first")
    g.add_argument("--partitions", type=int, default=8, help="partitions of topics it creates")
    g = p.add_argument_group("app (only with --with-app)")
    g.add_argument(
        "--with-app",
        action="store_true",
        help="start the app on local Ray for the run (a fresh consumer group starting at the topic's end), "
        "stop it after",
    )
    g.add_argument("--shards", type=int, default=4)
    g.add_argument("--routers", type=int, default=1)
    g.add_argument("--num-cpus", type=int, default=4, help="CPUs local Ray may schedule on")
    g = p.add_argument_group("closed loop (with --closed-loop: simulated PSPs answer payment.route_decided)")
    g.add_argument("--psp-approval", default="", help="approval rate per PSP, e.g. adyen=0.9,stripe=0.85")
    g.add_argument("--psp-latency-ms", default="", help="median answer latency: 300, or adyen=250,stripe=400")
    g.add_argument("--psp-outage", default="", help="outages: adyen@30+20 = adyen down from 30 s for 20 s")
    g = p.add_argument_group("locust and report")
    g.add_argument("--processes", type=int, default=1, help="Locust worker processes on this machine")
    g.add_argument(
        "--expect-workers",
        type=int,
        default=0,
        help="run Locust as master and wait for this many remote workers "
        "(`locust -f loadtest/locust_run/locustfile.py --worker --master-host HOST`)",
    )
    g.add_argument("--web", action="store_true", help="Locust web UI instead of headless (start it there)")
    g.add_argument("--web-port", type=int, default=8089)
    g.add_argument("--out", help="report folder (default: reports/loadtest-<time>-<shape>)")
    g.add_argument(
        "--drain-timeout", type=float, default=120.0, help="seconds to wait for lag 0 after the load"
    )
    g.add_argument("--no-verify", action="store_true", help="skip the independent recount of the topics")
    g = p.add_argument_group("pre-launch check (--preflight: GO / NO-GO per SLO, exit 0 / 1)")
    g.add_argument(
        "--preflight",
        action="store_true",
        help="a short synthetic spike at --campaign-peak instead of a Locust run, judged against the SLOs",
    )
    g.add_argument("--campaign-peak", type=float, help="the campaign's expected peak, events/s")
    g.add_argument("--preflight-seconds", type=float, default=10.0, help="how long the spike lasts")
    g.add_argument(
        "--slo-p99-latency-ms", type=float, default=1_000.0, help="latency SLO: p99 send -> output"
    )
    g.add_argument("--slo-dead-letter-ratio", type=float, default=0.005, help="dead-letter SLO: per input")
    g.add_argument("--slo-freshness-s", type=float, default=60.0, help="freshness SLO: seconds to drain")
    g.add_argument(
        "--slo-parked-customers", type=int, default=0, help="parked SLO: customers the spike may park"
    )
    p.set_defaults(func=cmd_loadtest, closed_loop=False)


def resolve_settings(args: argparse.Namespace, run_id: str) -> Any:
    from clickcash.cluster.local.stack import running_services
    from clickcash.config.settings import load_settings

    overrides: dict[str, dict[str, Any]] = {"kafka": {}, "redis": {}, "pipeline": {}, "ray": {}}
    if args.bootstrap:
        overrides["kafka"]["bootstrap_servers"] = args.bootstrap
    elif "CLICKCASH_KAFKA__BOOTSTRAP_SERVERS" not in os.environ:
        ep = running_services()
        if ep is None:
            raise ClickcashError(
                "no Kafka to load: start the local services (`clickcash services start`), "
                "pass --bootstrap, or set CLICKCASH_KAFKA__BOOTSTRAP_SERVERS"
            )
        overrides["kafka"]["bootstrap_servers"] = ep.bootstrap_servers
        overrides["redis"]["url"] = ep.redis_url
    if args.group:
        overrides["kafka"]["group_id"] = args.group
    if args.with_app:
        group = args.group or f"clickcash-loadtest-{run_id}"
        overrides["kafka"]["group_id"] = group
        overrides["redis"]["key_prefix"] = group[:64]
        # a load test leaves an idempotency record per event in Redis: keep them an hour, not 7 days
        overrides["pipeline"].update(
            shards=args.shards, routers=args.routers, idempotency_retention_s=3600, replay_response_ttl_s=3600
        )
        overrides["ray"]["num_cpus"] = args.num_cpus
    return load_settings(**{k: v for k, v in overrides.items() if v})


def start_at_end(settings: Any) -> None:
    """Commit a fresh group's offsets at the input topic's end, so the app skips earlier runs' events.

    On a fresh broker this is the first offsets request, which makes the broker create its offsets topic;
    :class:`clickcash.cluster.offsets.GroupOffsets` waits that out (NOT_COORDINATOR for a few seconds) within
    its
    retry budget."""
    from clickcash.cluster.offsets import GroupOffsets

    with GroupOffsets(settings) as offsets:
        offsets.start_at_end()


def cmd_loadtest(args: argparse.Namespace) -> int:
    from clickcash.cluster.topics import ensure_topics
    from clickcash.loadtest.locust_run.run import run_loadtest

    if args.config:
        try:
            apply_config(args, Path(args.config))
        except (OSError, ValueError) as exc:
            raise ClickcashError(f"--config: {exc}") from exc
    run_id = new_run_id()
    settings = resolve_settings(args, run_id)
    if args.preflight:
        return _preflight(args, settings)
    folder = Path(args.out or f"reports/loadtest-{datetime.now():%Y%m%d-%H%M%S}-{args.shape}")
    _log(f"kafka {settings.kafka.bootstrap_servers}, input {settings.kafka.input_topic}")
    if args.create_topics or args.with_app:
        ensure_topics(settings, partitions=args.partitions)
    app = None
    app_log = None
    if args.with_app:
        from clickcash.cluster.observability.app_logs import AppLog

        app_log = AppLog(folder / "app.log")
        app_log.capture_driver()
    try:
        if args.with_app:
            _log(f"the app's log records go to {folder / 'app.log'}")
            app = _start_app(settings)
        result = run_loadtest(
            args,
            settings,
            folder,
            run_id=run_id,
            tick=(lambda: app.supervise(0.5)) if app is not None else None,
            log=_log,
            verify_counts=not args.no_verify,
        )
        return 0 if result.ok else 1
    finally:
        if app is not None:
            _stop_app(app, app_log)
        elif app_log is not None:
            _log(app_log.finish().render(app_log.path))


def _preflight(args: argparse.Namespace, settings: Any) -> int:
    """The spike, then the decision (:mod:`clickcash.loadtest.preflight`); the app runs elsewhere unless
    --with-app."""
    from clickcash.loadtest.preflight import PreflightFigures, SloThresholds, decide, go, render
    from clickcash.loadtest.traffic.campaign import CampaignMix
    from clickcash.loadtest.traffic.campaign_run import run_campaign

    peak = args.campaign_peak
    if peak is None or peak <= 0 or args.preflight_seconds <= 0:
        raise ClickcashError(
            "--preflight needs --campaign-peak N (events/s, > 0) and --preflight-seconds > 0"
        )
    slo = SloThresholds(
        p99_latency_ms=args.slo_p99_latency_ms,
        dead_letter_ratio=args.slo_dead_letter_ratio,
        freshness_s=args.slo_freshness_s,
        parked_customers=args.slo_parked_customers,
    )
    events = max(1, int(peak * args.preflight_seconds))
    _log(f"kafka {settings.kafka.bootstrap_servers}: {events:,} synthetic events at {peak:,.0f}/s")
    app = _start_app(settings) if args.with_app else None
    try:
        parked_before = _parked_customers(settings)
        # a warm-up the decision does not see: the first batches of an app that has been idle pay for
        # connections and caches once, which a live deployment already has behind it
        run_campaign(
            settings,
            max(1, int(peak)),
            mix=CampaignMix(malformed_rate=0.0),
            rate_per_s=peak,
            timeout_s=args.drain_timeout,
            log=lambda _m: None,
        )
        # well-formed traffic only: the dead-letter SLO judges what the deployment does with real input
        report = run_campaign(
            settings,
            events,
            mix=CampaignMix(malformed_rate=0.0),
            rate_per_s=peak,
            timeout_s=args.preflight_seconds + args.drain_timeout,
            log=lambda _m: None,
        )
        parked_by_spike = len(_parked_customers(settings) - parked_before)
    finally:
        if app is not None:
            _stop_app(app, None)
    figures = PreflightFigures(
        events=events,
        p99_latency_ms=report.latency_ms.get("p99"),
        dead_letters=sum(report.dead_letters_by_reason.values()),
        drain_s=max(0.0, report.elapsed_s - report.produce_s),
        parked_customers=parked_by_spike,
    )
    verdicts = decide(figures, slo)
    _log(render(verdicts, peak))
    return 0 if go(verdicts) else 1


def _parked_customers(settings: Any) -> set[bytes]:
    """The customers parked now by a failure (the deployment's parking store in Redis); customers held
    by a paused campaign are an operator's choice, not a finding."""
    from clickcash.router import paused_campaign
    from clickcash.router.parking import RedisParkingStore

    r = settings.redis
    store = RedisParkingStore.from_url(r.url.get_secret_value(), r.key_prefix, r.socket_timeout_s)
    try:
        return {c for c, p in store.load().items() if paused_campaign(p.reason) is None}
    finally:
        store.close()


def _start_app(settings: Any) -> Any:
    from clickcash.cluster.app import App
    from clickcash.cluster.ray_runtime import init_ray

    start_at_end(settings)
    _log(
        f"starting Ray ({settings.ray.num_cpus} CPUs) and the app: {settings.pipeline.shards} shards, "
        f"{settings.pipeline.routers} router(s), group {settings.kafka.group_id}"
    )
    init_ray(settings, log_to_driver=False)
    app = App(settings)
    app.start()
    k = settings.kafka
    from confluent_kafka.admin import AdminClient

    partitions = len(
        AdminClient(k.client_config()).list_topics(k.input_topic, timeout=10).topics[k.input_topic].partitions
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        app.supervise(0.5)
        if sum(len(s.get("assigned", [])) for s in app.router_stats()) >= partitions:
            return app
    raise ClickcashError("the app's routers were not assigned the input partitions within 60 s")


def _stop_app(app: Any, app_log: Any) -> None:
    import ray

    _log("stopping the app (draining and committing) ...")
    try:
        app.stop()
    except ClickcashError as exc:
        _log(f"warning: {exc}")
    if app_log is not None:
        _log(app_log.finish().render(app_log.path))
    if ray.is_initialized():
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    """``python -m clickcash.loadtest.locust_run.cli ...``: the same as ``clickcash loadtest ...``."""
    import logging
    import sys

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m clickcash.loadtest.locust_run.cli")
    add_loadtest_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["loadtest", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except ClickcashError as exc:
        print(f"loadtest: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
