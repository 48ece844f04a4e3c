"""One bad record never stops the stream: an engine fault parks one customer while everyone else flows,
a replay after the fix releases it as if it had never been parked, and a Redis outage is waited out.

Real Kafka, Redis and Ray. The engine fault is the test-only hook ``pipeline.fault_inject_customer_ids``
(a shard raises on every batch holding that customer, as an engine with a bug would).
"""

from __future__ import annotations

import time
from pathlib import Path

from clickcash.cluster.observability.watchdog import outage_stalls
from clickcash.cluster.ops.parked import request
from clickcash.cluster.outputs import OutputReader
from clickcash.cluster.verify import verify
from clickcash.config.settings import Settings
from tests.integration._fixtures import domain_without_breakers, faulty_customer, parking_store, say, workload
from tests.integration._harness import SettingsFactory, produce, running_app, wait_for_drain
from tests.integration.conftest import Services


def _fault_settings(make_settings: SettingsFactory, faulty: str, tmp_path: Path) -> Settings:
    return make_settings(
        domain_file=domain_without_breakers(tmp_path),
        partitions=4,
        pipeline={
            "shards": 2,
            "round_max_attempts": 2,
            "round_retry_backoff_ms": 50,
            "round_retry_backoff_max_ms": 200,
            "timer_poll_interval_ms": 200,
            "fault_inject_customer_ids": faulty,
        },
        kafka={"consume_batch_max": 500},
    )


def _without_fault(settings: Settings) -> Settings:
    fixed = settings.pipeline.model_copy(update={"fault_inject_customer_ids": ""})
    return settings.model_copy(update={"pipeline": fixed})


def test_an_engine_fault_parks_one_customer_and_a_replay_after_the_fix_releases_it_exactly(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    records = workload(201, 3_000, 1_500)
    faulty = faulty_customer(records)
    settings = _fault_settings(make_settings, faulty, tmp_path)
    produce(settings, records)
    with running_app(settings) as app:
        wait_for_drain(settings, app, timeout_s=300)
        routers = app.router_stats()
    assert sum(int(r.get("parked", 0)) for r in routers) == 1, routers
    assert sum(int(r.get("failed_rounds", 0)) for r in routers) >= 2

    store = parking_store(settings)
    try:
        parked = store.load()
        assert list(parked) == [faulty.encode()]
        held = store.records(faulty.encode())
        first = parked[faulty.encode()]
        of_faulty = [(p, o) for p, o, *_ in held]
        assert of_faulty == sorted(of_faulty) and of_faulty[0] == (first.partition, first.offset)
        assert "injected fault" in first.reason

        # everyone else: exactly once, in order; the parked customer's held records are accounted for
        report = verify(settings, log=say)
        say(report.render())
        assert report.ok, report.render()
        assert report.parked_customers == 1 and report.parked_records == len(held)

        # the fix: shards without the fault; the operator replays the customer
        fixed = _without_fault(settings)
        with running_app(fixed) as app:
            outcome = request(store, faulty.encode(), "replay", wait_s=120, sleep=app.supervise)
            assert outcome == f"replay: {len(held)} records released", outcome
            wait_for_drain(fixed, app, timeout_s=120)
        assert store.load() == {}
        assert store.records(faulty.encode()) == []
    finally:
        store.close()

    # the same outputs, ids and order as a run that never had the fault
    report = verify(fixed, log=say)
    say(report.render())
    assert report.ok, report.render()
    assert report.parked_customers == 0 and report.parked_records == 0


def test_a_dropped_customer_gets_one_dead_letter_per_parked_record(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    records = workload(202, 1_500, 800)
    faulty = faulty_customer(records)
    settings = _fault_settings(make_settings, faulty, tmp_path)
    produce(settings, records)
    store = parking_store(settings)
    try:
        with running_app(settings) as app:
            wait_for_drain(settings, app, timeout_s=300)
            held = store.records(faulty.encode())
            assert held, "the faulty customer must be parked"
            outcome = request(store, faulty.encode(), "drop", wait_s=120, sleep=app.supervise)
            assert outcome == f"drop: {len(held)} records released", outcome
        assert store.load() == {}
    finally:
        store.close()
    report = verify(settings, log=say)
    say(report.render())
    assert report.ok, report.render()
    reader = OutputReader(settings)
    try:
        reader.read_until(lambda _: False, timeout_s=5, idle_s=3)
        dropped = [
            r
            for r in reader.records
            if r.topic == settings.kafka.dlq_topic
            and b"parked_dropped" in r.headers.get("clickcash_reason", b"")
        ]
    finally:
        reader.close()
    assert len(dropped) == len(held)


def test_redis_down_for_20_s_under_load_is_waited_out_reported_and_loses_nothing(
    make_settings: SettingsFactory, services: Services
) -> None:
    assert services.stack is not None, "needs the session's local Redis (CLICKCASH_TEST_REDIS_URL unset)"
    settings = make_settings(partitions=4, pipeline={"shards": 2}, kafka={"consume_batch_max": 500})
    records = workload(203, 6_000, 300)
    produce(settings, records[:3_000])
    with running_app(settings) as app:
        deadline = time.monotonic() + 120
        while sum(int(r.get("consumed", 0)) for r in app.router_stats()) < 1_000:
            app.supervise(0.2)
            assert time.monotonic() < deadline, "the app did not start consuming"
        before = app.router_stats()
        services.stack.redis.stop()
        say("redis stopped")
        reported: set[str] = set()
        try:
            produce(settings, records[3_000:])  # the input keeps coming while Redis is down
            down_until = time.monotonic() + 20
            while time.monotonic() < down_until:
                app.supervise(0.5)
                stats = app.router_stats()
                outages = {
                    int(r["router"]): (str(r.get("outage_service") or ""), float(r.get("outage_for_s", 0.0)))
                    for r in stats
                    if not r.get("unavailable")
                }
                reported |= {s.describe() for s in outage_stalls(outages)}
            during = app.router_stats()
        finally:
            services.stack.redis.start()
            say("redis started again")
        assert any("redis unavailable" in r for r in reported), reported
        failed = sum(int(r.get("failed_rounds", 0)) for r in during) - sum(
            int(r.get("failed_rounds", 0)) for r in before
        )
        # backoff doubling from 200 ms to a 10 s cap: about 7 attempts in 20 s, not a busy loop
        assert 1 <= failed <= 20, failed
        assert sum(int(r.get("parked", 0)) for r in during) == 0, "an outage must never park anyone"
        wait_for_drain(settings, app, timeout_s=300)
    report = verify(settings, log=say)
    say(report.render())
    assert report.ok, report.render()
    assert report.parked_customers == 0
    assert report.inputs - report.timer_commands == len(records)
