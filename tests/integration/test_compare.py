"""``clickcash compare`` on real Kafka and Redis: the passthrough and hand-rolled contenders do all the work.

A few thousand campaign events are pre-produced once; each contender runs in its own process, as in the
comparison, and its committed outputs are checked: the passthrough forwards every record once, and the
hand-rolled loop's outputs are exactly clickcash's reference outputs (the verifier's sequential replay), in
per-customer order, with every order decided once and every malformed record dead-lettered.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from clickcash.cluster.verify import verify
from clickcash.config.settings import load_settings
from clickcash.loadtest.contenders._common import end_offsets
from clickcash.loadtest.contenders.clickcash_app import paced
from clickcash.loadtest.contenders.compare import (
    contender_config,
    create_topics,
    output_topics,
    paced_latency,
    pre_produce,
    read_outputs,
    run_contender,
)
from clickcash.loadtest.contenders.results import check_full, check_passthrough
from clickcash.loadtest.traffic.campaign_run import run_campaign
from tests.integration._harness import SettingsFactory, running_app, wait_for_drain
from tests.integration.conftest import Services

EVENTS = 3000
PARTITIONS = 4


def test_passthrough_and_handrolled_outputs_are_complete(services: Services, tmp_path: Path) -> None:
    run_id = f"cmp{uuid.uuid4().hex[:8]}"
    bootstrap = services.bootstrap_servers
    input_topic = f"bench.{run_id}.events"
    create_topics(bootstrap, [input_topic], PARTITIONS)
    manifest = pre_produce(bootstrap, input_topic, EVENTS, 300, run_id=run_id, log=lambda _m: None)
    assert sum(manifest.end_offsets.values()) == EVENTS
    assert manifest.order_event_ids and manifest.malformed > 0

    passthrough = contender_config(
        "passthrough", "passthrough", run_id, bootstrap, services.redis_url, input_topic, manifest, tmp_path
    )
    create_topics(bootstrap, output_topics(passthrough, "passthrough"), PARTITIONS)
    result = run_contender("passthrough", passthrough, tmp_path, python=sys.executable, timeout_s=300)
    assert result.events == EVENTS
    verdict = check_passthrough(manifest, read_outputs(bootstrap, output_topics(passthrough, "passthrough")))
    assert verdict.ok, verdict.problems

    handrolled = contender_config(
        "handrolled", "handrolled", run_id, bootstrap, services.redis_url, input_topic, manifest, tmp_path
    )
    create_topics(bootstrap, output_topics(handrolled, "handrolled"), PARTITIONS)
    result = run_contender("handrolled", handrolled, tmp_path, python=sys.executable, timeout_s=300)
    assert result.events == EVENTS
    assert result.extra["redis_round_trips"] >= EVENTS  # one event at a time: its own load (and commit)
    tally = read_outputs(bootstrap, output_topics(handrolled, "handrolled"))
    verdict = check_full(manifest, tally)
    assert verdict.ok, verdict.problems
    assert verdict.figures["orders_decided"] == len(manifest.order_event_ids)
    assert verdict.figures["dead_letters"] == manifest.malformed

    settings = load_settings(
        kafka={
            "bootstrap_servers": bootstrap,
            "input_topic": input_topic,
            "orders_topic": handrolled.topic("orders"),
            "payments_topic": handrolled.topic("payments"),
            "dunning_topic": handrolled.topic("dunning"),
            "dlq_topic": handrolled.topic("dlq"),
            "group_id": handrolled.group_id,
        },
        # the verifier reads the parking store (nothing parked here) next to the contender's keys
        redis={"url": services.redis_url, "key_prefix": handrolled.redis_prefix},
    )
    report = verify(settings, settle_s=1.0, log=lambda _m: None)
    assert report.ok, report.render()
    assert report.actual == report.expected == tally.records


def test_a_contender_process_is_timed_send_to_committed_output_at_a_paced_rate(
    services: Services, tmp_path: Path
) -> None:
    """The harness behind the latency columns: a contender on an endless input, warmed up, paced, stopped."""
    run_id = f"lat{uuid.uuid4().hex[:8]}"
    phase = paced_latency(
        "passthrough",
        "passthrough",
        "light",
        run_id,
        services.bootstrap_servers,
        services.redis_url,
        PARTITIONS,
        tmp_path,
        python=sys.executable,
        rate_per_s=200.0,
        seconds=2.0,
        customers=100,
        timeout_s=120,
    )
    assert phase["events"] == 1000 and phase["rate_per_s"] == 200.0
    # every valid event comes back once (malformed records are not JSON, so not matched to a send)
    assert 900 <= phase["outputs_seen"] <= 1000
    q = phase["latency_ms"]
    assert 0 < q["p50"] <= q["p99"] <= q["max"]
    log = (tmp_path / "passthrough-light.log").read_text()
    assert "Traceback" not in log, log[-2000:]


def test_a_paced_run_goes_into_the_running_app_and_reports_latency_cpu_and_call_sizes(
    make_settings: SettingsFactory,
) -> None:
    """clickcash's paced runs in ``compare``: input into the app the throughput run warmed, measured until it
    is committed, with every order decided once and the app's CPU per event by process; the completeness
    check of the throughput run reads its output topics only up to where that run ended."""
    settings = make_settings(partitions=PARTITIONS)
    k = settings.kafka
    topics = [k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic]
    with running_app(settings) as app:
        run_campaign(settings, 300, seed=3, log=lambda _m: None)  # the "throughput run"
        wait_for_drain(settings, app, timeout_s=120)
        ends = {t: end_offsets(k.bootstrap_servers, t) for t in topics}
        before = read_outputs(k.bootstrap_servers, topics, idle_s=2.0)
        phase = paced(
            app, settings, 200.0, 2.0, customers=100, service_pids={}, tag="light", log=lambda _m: None
        )
    assert phase["events"] == 1000 and phase["rate_per_s"] == 200.0
    assert phase["duplicate_output_ids"] == 0 and phase["orders_without_decision"] == 0
    # every input answered: valid events by their outputs, malformed ones by their dead letters
    assert phase["outputs_seen"] >= 1000
    q = phase["latency_ms"]
    assert 0 < q["p50"] <= q["p99"] <= q["max"]
    cpu = phase["cpu_us_per_event"]
    assert cpu["router"] > 0 and cpu["shard"] > 0
    assert phase["events_per_shard_call"] >= 1 and phase["transactions"] >= 1
    assert len(phase["rss_samples_mb"]) >= 2

    after = read_outputs(k.bootstrap_servers, topics, idle_s=2.0)
    upto_ends = read_outputs(k.bootstrap_servers, topics, idle_s=2.0, until=ends)
    assert before.records >= 300 and after.records >= before.records + 1000
    assert upto_ends.records == before.records and upto_ends.ids == before.ids
