"""Operating the app on a real (two-node, local) Ray cluster: placement, the metrics endpoint, and
``clickcash run`` / ``status`` / ``stop`` as separate drivers, as a platform engineer would use them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import psutil
import ray
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, SecretStr

from clickcash.cluster.local._procs import free_port
from clickcash.cluster.local._ray_nodes import LocalRayCluster
from clickcash.cluster.observability.metric_defs import INPUT_TYPE_LABELS, exported_names
from clickcash.cluster.offsets import group_lag
from clickcash.config.domain import load_domain_config
from clickcash.config.settings import ENV_PREFIX, Settings
from clickcash.events import TIMER_SOURCE
from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix
from tests.integration._harness import (
    SettingsFactory,
    produce,
    read_outputs,
    running_app,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _campaign(n: int, customers: int, seed: int) -> list[tuple[bytes | None, bytes]]:
    gen = CampaignGenerator(CampaignMix(customers=customers), seed=seed, run_id=f"ops{seed}")
    return [(e.key, e.value) for e in gen.events(n)]


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The series of ``name`` summed by ``label`` (over its other labels, e.g. ``synthetic``)."""
    out: dict[str, float] = {}
    for k, v in samples.items():
        if k[0] == name:
            value = dict(k[1])[label]
            out[value] = out.get(value, 0.0) + v
    return out


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _wait_drained(settings: Settings, tick: Any = None, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while group_lag(settings) != 0:
        assert time.monotonic() < deadline, f"input not drained: lag {group_lag(settings)}"
        if tick is not None:
            tick()
        else:
            time.sleep(0.5)


def _is_timer_command(value: bytes) -> bool:
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and body.get("source") == TIMER_SOURCE


def _input_values(settings: Settings) -> list[bytes]:
    """Every record of the input topic (read_committed): what was produced, plus the timer commands."""
    topic = settings.kafka.input_topic
    c = Consumer(
        {**settings.kafka.client_config(), "group.id": "ops-reader", "isolation.level": "read_committed"}
    )
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        values: list[bytes] = []
        remaining = {p for p, end in ends.items() if end > 0}
        while remaining:
            values += [m.value() or b"" for m in c.consume(1000, 1.0) if m.error() is None]
            for tp in c.position([TopicPartition(topic, p) for p in remaining]):
                if tp.offset >= ends[tp.partition]:
                    remaining.discard(tp.partition)
        return values
    finally:
        c.close()


def test_shards_are_placed_on_both_nodes(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=2, pipeline={"shards": 4})
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(alive) >= 2, "the integration session runs a two-node Ray cluster"
    with running_app(settings) as app:
        nodes = {s["shard"]: s["node"] for s in app.shard_stats()}
    assert set(nodes.values()) == alive, f"shards not spread over every node: {nodes}"


def test_metrics_endpoint_counts_match_what_was_processed(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        partitions=4,
        pipeline={"shards": 4},
        monitoring={"metrics_host": "127.0.0.1", "metrics_port": 0},
    )
    records = _campaign(3000, customers=400, seed=11)
    with running_app(settings) as app:
        monitor = app.monitor(control=False)
        try:
            produce(settings, records)

            def tick() -> None:
                app.supervise(0.2)
                monitor.tick()

            _wait_drained(settings, tick)
            time.sleep(1.0)  # timer commands written while draining are consumed too
            _wait_drained(settings, tick)
            monitor.poll_once()
            assert monitor.metrics_url is not None
            samples = _scrape(monitor.metrics_url)
            health_url = monitor.metrics_url.replace("/metrics", "/healthz")
            assert _http_status(health_url) == 200
        finally:
            monitor.close()
    outputs = read_outputs(settings, idle_s=2.0)
    in_topic = _input_values(settings)
    timer_commands = sum(1 for v in in_topic if _is_timer_command(v))
    consumed = len(in_topic)
    assert consumed == len(records) + timer_commands

    # names: every series is a documented clickcash metric, and the core ones are all there
    names = {name for name, _ in samples}
    assert names <= exported_names(), names - exported_names()
    wanted = {
        "clickcash_events_in_total",
        "clickcash_input_events_total",
        "clickcash_psp_breaker_open",
        "clickcash_events_out_total",
        "clickcash_records_produced_total",
        "clickcash_events_handled_total",
        "clickcash_dead_letters_total",
        "clickcash_idempotency_hits_total",
        "clickcash_psp_decisions_total",
        "clickcash_dunning_plans_scheduled_total",
        "clickcash_transactions_total",
        "clickcash_end_to_end_latency_seconds_bucket",
        "clickcash_kafka_commit_seconds_count",
        "clickcash_kafka_transaction_seconds_count",
        "clickcash_shard_batch_seconds_bucket",
        "clickcash_shard_queue_depth",
        "clickcash_consumer_lag_records",
        "clickcash_partition_committed_offset",
        "clickcash_healthy",
    }
    assert wanted <= names, wanted - names
    assert all(not k.startswith("customer") for _, labels in samples for k, _ in labels)

    # counts: what was consumed, handled and written, against the topics themselves
    topic = settings.kafka.input_topic
    assert _get(samples, "clickcash_events_in_total", topic=topic) == consumed
    handled = _by(samples, "clickcash_events_handled_total", "outcome")
    assert handled["processed"] + handled["duplicate"] + handled["dead_lettered"] == consumed
    assert handled["replayed"] == 0
    assert _get(samples, "clickcash_end_to_end_latency_seconds_count") == consumed
    assert _get(samples, "clickcash_end_to_end_latency_seconds_bucket", le="+Inf") == consumed
    assert sum(_by(samples, "clickcash_shard_events_total", "shard").values()) == consumed
    assert _get(samples, "clickcash_dunning_timer_commands_total") == timer_commands

    by_topic_type = Counter((o.topic, o.type) for o in outputs)
    out: dict[tuple[str, str], float] = {}
    for k, v in samples.items():
        if k[0] == "clickcash_events_out_total" and v > 0:
            labels = dict(k[1])
            out[(labels["topic"], labels["type"])] = out.get((labels["topic"], labels["type"]), 0.0) + v
    assert out.pop((topic, "dunning.timer_fired"), 0) == timer_commands
    assert out == dict(by_topic_type)
    produced = _by(samples, "clickcash_records_produced_total", "topic")
    assert produced == dict(Counter(o.topic for o in outputs))

    dlq = [o for o in outputs if o.topic == settings.kafka.dlq_topic]
    dlq_reasons = Counter(orjson.loads(o.headers["clickcash_reason"])["code"] for o in dlq)
    assert _by(samples, "clickcash_dead_letters_total", "reason") == dict(dlq_reasons)
    assert handled["dead_lettered"] == sum(dlq_reasons.values())
    hits = _by(samples, "clickcash_idempotency_hits_total", "kind")
    assert hits["duplicate"] == handled["duplicate"] > 0
    assert hits["conflict"] == dlq_reasons.get("duplicate_conflict", 0)

    # inputs per type: bounded labels, summing to what was consumed; "invalid" is what failed decoding
    inputs = _by(samples, "clickcash_input_events_total", "type")
    assert set(inputs) == set(INPUT_TYPE_LABELS)
    assert sum(inputs.values()) == consumed
    assert inputs["invalid"] == handled["dead_lettered"] - dlq_reasons.get("duplicate_conflict", 0)
    assert inputs["dunning.timer_fired"] == timer_commands
    assert inputs["order.placed"] > 0
    # one breaker gauge per configured PSP (live state from the shared PSP stats)
    psps = {p.name for p in load_domain_config(settings.domain_file).psps}
    assert set(_by(samples, "clickcash_psp_breaker_open", "psp")) == psps

    routes = Counter(o.event["data"]["psp"] for o in outputs if o.type == "payment.route_decided" and o.event)
    assert _by(samples, "clickcash_psp_decisions_total", "psp") == dict(routes)
    scheduled = sum(1 for o in outputs if o.type == "dunning.scheduled")
    assert _get(samples, "clickcash_dunning_plans_scheduled_total") == scheduled

    assert set(_by(samples, "clickcash_consumer_lag_records", "partition").values()) == {0}
    assert len(_by(samples, "clickcash_partition_committed_offset", "partition")) == 4
    assert _get(samples, "clickcash_transactions_total") > 0
    assert _get(samples, "clickcash_healthy") == 1
    assert set(_by(samples, "clickcash_shard_stalled", "shard").values()) == {0}


def _settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the ``CLICKCASH_*`` environment a deployment would set."""
    env: dict[str, str] = {}
    for section in type(settings).model_fields:
        value = getattr(settings, section)
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                v = getattr(value, name)
                if v is not None:
                    v = v.get_secret_value() if isinstance(v, SecretStr) else v
                    # maps (client_properties, principals) and lists (timer_command_keys) are JSON there
                    # are JSON in the environment
                    if isinstance(v, tuple | list):
                        v = [x.get_secret_value() if isinstance(x, SecretStr) else x for x in v]
                    v = orjson.dumps(v).decode() if isinstance(v, dict | list) else v
                    env[f"{ENV_PREFIX}{section}__{name}".upper()] = str(v)
        else:
            env[f"{ENV_PREFIX}{section}".upper()] = str(value)
    return env


def _clickcash(
    args: list[str], env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    cli = str(Path(sys.executable).with_name("clickcash"))
    return subprocess.run(
        [cli, *args], env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def test_run_status_and_stop_as_separate_drivers(
    make_settings: SettingsFactory, ray_cluster: LocalRayCluster | None, tmp_path: Path
) -> None:
    settings = make_settings(partitions=4, pipeline={"shards": 4})
    address = ray_cluster.address if ray_cluster else os.environ["CLICKCASH_TEST_RAY_ADDRESS"]
    port = free_port()
    env = {
        **os.environ,
        **_settings_env(settings),
        "CLICKCASH_MONITORING__METRICS_HOST": "127.0.0.1",
        "CLICKCASH_MONITORING__METRICS_PORT": str(port),
        # a run against a Ray cluster refuses the local stack's published timer- and erasure-command keys
        "CLICKCASH_SECURITY__TIMER_COMMAND_KEYS": orjson.dumps([uuid.uuid4().hex]).decode(),
        "CLICKCASH_SECURITY__ERASURE_COMMAND_KEYS": orjson.dumps([uuid.uuid4().hex]).decode(),
    }
    cli = str(Path(sys.executable).with_name("clickcash"))
    out_path, err_path = tmp_path / "run.out", tmp_path / "run.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        run = subprocess.Popen([cli, "run", "--address", address], env=env, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while _http_status(f"http://127.0.0.1:{port}/healthz") != 200:
            assert run.poll() is None, f"clickcash run exited: {err_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"never healthy: {err_path.read_text()[-3000:]}"
            time.sleep(0.5)
        records = _campaign(1500, customers=200, seed=12)
        produce(settings, records)
        _wait_drained(settings)

        # The routers keep appending dunning timer commands to the input as steps fall due, so a drained
        # input can show a few records of lag for a moment: wait for a view where it is caught up again.
        deadline = time.monotonic() + 60
        while True:
            status = _clickcash(["status", "--json", "--address", address], env)
            assert status.returncode == 0, status.stderr[-3000:]
            view = orjson.loads(status.stdout)
            if all(p["lag"] == 0 for p in view["partitions"]) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert view["healthy"] is True
        assert [r["running"] for r in view["routers"]] == [True]
        assert view["routers"][0]["consumed"] >= len(records)
        assert len({s["node"] for s in view["shards"]}) >= 2, "shards on both nodes"
        assert sum(s["events"] for s in view["shards"]) >= len(records)
        assert [p["lag"] for p in view["partitions"]] == [0, 0, 0, 0]
        assert view["metrics_url"] == f"http://127.0.0.1:{port}/metrics"
        text = _clickcash(["status", "--address", address], env)
        assert text.returncode == 0 and "healthy" in text.stdout, text.stdout
        print(text.stdout)

        stop = _clickcash(["stop", "--address", address], env, timeout_s=240)
        assert stop.returncode == 0, stop.stderr[-3000:]
        assert "stopped" in stop.stdout
        assert run.wait(120) == 0
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(60)
    assert "stopped cleanly" in out_path.read_text()
    logs = [orjson.loads(line) for line in err_path.read_text().splitlines() if line.startswith("{")]
    assert any(
        rec.get("logger") == "clickcash.cluster.observability.monitor" and "metrics on" in rec["msg"]
        for rec in logs
    ), logs
    gone = _clickcash(["status", "--address", address], env)
    assert gone.returncode == 3 and "no clickcash app" in gone.stderr  # EXIT_SERVICE


def test_a_stuck_shard_is_reported_stalled_in_metrics_status_and_health(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(
        partitions=2,
        pipeline={"shards": 2},
        monitoring={"metrics_host": "127.0.0.1", "metrics_port": 0, "stall_after_s": 2},
    )
    with running_app(settings) as app:
        monitor = app.monitor(control=False)
        stuck: psutil.Process | None = None
        try:
            assert monitor.metrics_url is not None
            health_url = monitor.metrics_url.replace("/metrics", "/healthz")

            def tick() -> None:
                app.supervise(0.2)
                monitor.tick()

            produce(settings, _campaign(300, customers=60, seed=13))
            _wait_drained(settings, tick)
            monitor.poll_once()
            assert _http_status(health_url) == 200

            stuck = psutil.Process(app.shard_stats()[1]["pid"])
            stuck.suspend()  # the shard's process stops mid-stream: its batches never complete
            produce(settings, _campaign(300, customers=60, seed=14))
            deadline = time.monotonic() + 120
            while _get(_scrape(monitor.metrics_url), "clickcash_shard_stalled", shard="1") != 1:
                assert time.monotonic() < deadline, monitor.status
                tick()
            samples = _scrape(monitor.metrics_url)
            assert _get(samples, "clickcash_shard_stalled", shard="0") == 0
            assert _get(samples, "clickcash_healthy") == 0
            assert _http_status(health_url) == 503
            assert monitor.status["shards"][1]["stalled"] is True
            assert any(s.startswith("shard 1 stalled") for s in monitor.status["stalls"])

            stuck.resume()
            stuck = None
            _wait_drained(settings, tick)
            deadline = time.monotonic() + 60
            while _http_status(health_url) != 200:
                assert time.monotonic() < deadline, monitor.status
                tick()
            assert set(_by(_scrape(monitor.metrics_url), "clickcash_shard_stalled", "shard").values()) == {0}
        finally:
            if stuck is not None:
                stuck.resume()
            monitor.close()
