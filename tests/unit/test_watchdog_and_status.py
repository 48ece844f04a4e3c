"""The stall watchdog, the status view built from stats snapshots, and the JSON log lines."""

from __future__ import annotations

import io
import logging
from typing import Any

import orjson

from clickcash.cluster.observability.metric_defs import PartitionLag
from clickcash.cluster.observability.status_view import build_status, render
from clickcash.cluster.observability.watchdog import PartitionProgress, StallWatchdog, stalled_shards
from clickcash.logs import configure_logging, log_context


def test_a_partition_with_lag_and_no_commit_stalls_after_the_threshold() -> None:
    dog = StallWatchdog(stall_after_s=60)
    stuck = {0: PartitionProgress(committed=100, lag=50)}
    assert dog.observe(0, stuck, {}) == []
    assert dog.observe(59, stuck, {}) == []
    (stall,) = dog.observe(61, stuck, {})
    assert (stall.kind, stall.id) == ("partition", 0)
    assert "lag 50" in stall.describe()
    # progress resets the clock
    assert dog.observe(62, {0: PartitionProgress(committed=120, lag=30)}, {}) == []
    assert dog.observe(100, {0: PartitionProgress(committed=120, lag=30)}, {}) == []


def test_an_idle_partition_or_unknown_lag_never_stalls() -> None:
    dog = StallWatchdog(stall_after_s=10)
    for t in range(0, 100, 5):
        assert dog.observe(t, {0: PartitionProgress(100, 0), 1: PartitionProgress(None, None)}, {}) == []


def test_a_partition_that_never_committed_stalls_when_it_has_work() -> None:
    dog = StallWatchdog(stall_after_s=10)
    dog.observe(0, {3: PartitionProgress(None, 7)}, {})
    (stall,) = dog.observe(11, {3: PartitionProgress(None, 7)}, {})
    assert "nothing committed yet" in stall.detail


def test_a_shard_stalls_when_its_oldest_batch_is_too_old() -> None:
    assert stalled_shards({0: 5.0, 1: 61.0}, 60) == [stalled_shards({1: 61.0}, 60)[0]]
    dog = StallWatchdog(stall_after_s=60)
    assert [(s.kind, s.id) for s in dog.observe(0, {}, {2: 75.0})] == [("shard", 2)]


def _router(consumed: int, **over: Any) -> dict[str, Any]:
    return {"router": 0, "running": True, "consumed": consumed, "produced": consumed, "transactions": 2,
            "inflight_rounds": 1, "assigned": [0, 1], "inflight_by_shard": {1: 2},
            "oldest_inflight_age_s": {1: 0.4}, **over}  # fmt: skip


def test_status_has_rates_from_the_previous_snapshot_and_renders() -> None:
    meta = {"namespace": "ns", "input_topic": "in", "group": "g", "metrics_url": "http://h:9464/metrics"}
    shards = [{"shard": 0, "node": "a" * 56, "events": 100}, {"shard": 1, "node": "b" * 56, "events": 50}]
    first = build_status(
        at_s=100.0,
        routers=[_router(1000)],
        shards=shards,
        partitions=[PartitionLag(0, 500, 10), PartitionLag(1, 500, 0)],
        stalls=[],
        breakers_open=[],
        router_restarts=0,
        meta=meta,
    )
    assert first["routers"][0]["events_per_s"] is None
    second = build_status(
        at_s=102.0,
        routers=[_router(3000)],
        shards=[{**shards[0], "events": 1100}, {**shards[1], "unavailable": True, "events": 50}],
        partitions=[PartitionLag(0, 1500, 0), PartitionLag(1, 500, 0)],
        stalls=[],
        breakers_open=["adyen"],
        router_restarts=1,
        meta=meta,
        prev=first,
    )
    assert second["routers"][0]["events_per_s"] == 1000
    assert second["shards"][0]["events_per_s"] == 500
    assert second["shards"][1]["queue_depth"] == 2
    assert second["partitions"][0]["events_per_s"] == 500
    assert second["healthy"] is False  # shard 1 did not answer
    text = render(second)
    assert "UNHEALTHY" in text and "adyen" in text and "1,000" in text
    assert orjson.loads(orjson.dumps(second)) == second


def test_json_log_lines_carry_process_and_event_context() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    root.handlers = [logging.StreamHandler(stream)]
    try:
        configure_logging("json", "INFO", shard_id=3)
        log = logging.getLogger("clickcash.test")
        with log_context(correlation_id="corr-1", event_id="ev-1"):
            log.warning("state changed under a batch", extra={"partition": 2})
        log.debug("not at INFO")
    finally:
        root.handlers, level = saved
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    rec = orjson.loads(line)
    assert rec["msg"] == "state changed under a batch"
    assert (rec["level"], rec["shard_id"], rec["partition"]) == ("WARNING", 3, 2)
    assert (rec["correlation_id"], rec["event_id"]) == ("corr-1", "ev-1")


def test_a_router_waiting_for_a_service_is_reported_at_once_with_the_service() -> None:
    from clickcash.cluster.observability.watchdog import outage_stalls

    stalls = outage_stalls({0: ("redis", 3.0), 1: ("", 0.0)})
    assert [(s.kind, s.id) for s in stalls] == [("router", 0)]
    assert "redis unavailable" in stalls[0].describe()
