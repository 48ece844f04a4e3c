"""``clickcash loadtest`` end to end: a short headless spike against the real stack with the app running; the
report's numbers must equal an independent count of the topics."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

from clickcash.config.settings import Settings
from clickcash.loadtest.locust_run._spec import KIND_HEADER
from clickcash.loadtest.locust_run.cli import add_loadtest_parser
from clickcash.loadtest.locust_run.run import run_loadtest
from tests.integration._harness import SettingsFactory, read_outputs, running_app

SPIKE = [
    "--shape=spike",
    "--rate=40",
    "--peak-x=5",
    "--baseline-s=5",
    "--ramp-s=3",
    "--hold-s=6",
    "--decay-s=3",
    "--recovery-s=5",
    "--customers=500",
    "--duplicate-rate=0.03",
    "--malformed-rate=0.02",
    "--drain-timeout=90",
]


def _args(extra: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_loadtest_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["loadtest", *extra])


def _inputs(settings: Settings) -> list[tuple[str | None, bytes]]:
    """(loadtest-kind header, value) of every record of the test's input topic (None: not generated)."""
    topic = settings.kafka.input_topic
    c = Consumer(
        {**settings.kafka.client_config(), "group.id": "loadtest-recount", "enable.auto.commit": False}
    )
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p, high in ends.items() if high > 0])
        remaining = {p for p, high in ends.items() if high > 0}
        out = []
        deadline = time.monotonic() + 60
        while remaining:
            assert time.monotonic() < deadline, f"input partitions {remaining} not read to their end"
            for m in c.consume(1000, 0.5):
                if m.error() is not None:
                    continue
                kind = dict(m.headers() or []).get(KIND_HEADER)
                out.append((kind.decode() if isinstance(kind, bytes) else None, m.value() or b""))
            # the app's timer commands are transactional: a partition may end with a commit marker, which
            # is never delivered, so the consumer's position (not the last record) says when it is read
            for tp in c.position([TopicPartition(topic, p) for p in remaining]):
                if tp.offset >= ends[tp.partition]:
                    remaining.discard(tp.partition)
        return out
    finally:
        c.close()


def test_spike_report_matches_the_topics(make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = make_settings(partitions=4, pipeline={"shards": 2})
    folder = tmp_path / "report"
    with running_app(settings) as app:
        result = run_loadtest(
            _args(SPIKE),
            settings,
            folder,
            run_id="ltit",
            tick=lambda: app.supervise(0.5),
            log=lambda m: print(m, flush=True),
        )
    summary = result.summary

    # the independent count: every record of this test's topics, read again from the start
    records = _inputs(settings)
    inputs = [(kind, v) for kind, v in records if kind is not None]
    app_generated = Counter(orjson.loads(v)["type"] for kind, v in records if kind is None)
    outputs = read_outputs(settings, idle_s=2.0)
    by_kind = Counter(kind for kind, _ in inputs)
    by_type = Counter(o.type for o in {o.id: o for o in outputs}.values())
    ids = Counter(o.id for o in outputs)
    placed = {orjson.loads(v)["id"] for kind, v in inputs if kind == "order.placed"}
    decided = {o.causationid for o in outputs if o.type in ("order.accepted", "order.rejected")}

    assert summary["inputs"]["total"] == len(inputs) > 1_000
    assert summary["inputs"]["by_kind"] == dict(by_kind)
    assert summary["inputs"]["app_generated"] == dict(app_generated)
    assert by_kind["duplicate"] > 0 and by_kind["malformed"] > 0
    assert summary["outputs"]["total"] == len(ids)
    assert summary["outputs"]["by_type"] == dict(by_type)
    assert summary["outputs"]["by_type"]["clickcash.dead_letter"] == by_kind["malformed"]
    assert summary["checks"]["lost_orders"] == len(placed - decided) == 0
    assert summary["checks"]["duplicate_outputs"] == sum(n - 1 for n in ids.values()) == 0
    assert summary["checks"]["malformed_without_dead_letter"] == 0
    assert summary["checks"]["unmatched_outputs"] == 0
    assert summary["verification"]["matches"], summary["verification"]["differences"]
    assert summary["locust"] == {"requests": len(inputs), "failures": 0}
    assert result.ok

    # the shape was followed: about the scheduled number of events, each phase measured
    assert abs(len(inputs) - summary["target_events"]) <= 0.1 * summary["target_events"]
    assert [p["name"] for p in summary["phases"]] == ["baseline", "ramp", "peak", "decay", "recovery"]
    for name, stats in summary["latency_ms"]["by_phase"].items():
        assert stats["count"] > 0 and 0 < stats["p50"] <= stats["p95"] <= stats["p99"], name
    assert summary["lag"]["peak_lag"] >= 0 and summary["lag"]["seconds_to_drain"] is not None
    assert summary["rates"]["peak_sustained_input_10s"] > 2 * 40

    # the report folder
    assert json.loads((folder / "summary.json").read_text())["run_id"] == "ltit"
    assert (folder / "plot.png").stat().st_size > 10_000
    assert (folder / "locust_stats.csv").exists() and (folder / "timeline.csv").exists()
    html = (folder / "locust_report.html").read_text()
    assert "clickcash-loadtest" in html and "data:image/png;base64," in html
