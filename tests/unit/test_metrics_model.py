"""Metric families from stats snapshots, counters across restarts, histograms, and the exposition."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from clickcash.cluster.observability.metric_defs import (
    METRICS,
    CounterCarry,
    MetricsModel,
    PartitionLag,
    Poll,
    Topics,
    exported_names,
)
from clickcash.cluster.observability.metrics import MetricsServer
from clickcash.cluster.observability.watchdog import Stall
from clickcash.events import INPUT_TYPES
from clickcash.histogram import BATCH_BOUNDS_S, END_TO_END_BOUNDS_S, Histogram

TOPICS = Topics("in", "orders", "payments", "dunning", "dlq")


def _router(**over: Any) -> dict[str, Any]:
    e2e = Histogram.of(END_TO_END_BOUNDS_S)
    e2e.observe_ages(10_000, [9_990, 9_000, 4_000])
    stats: dict[str, Any] = {
        "router": 0,
        "pid": 100,
        "run": 1,
        "running": True,
        "consumed": 10,
        "produced": 9,
        "transactions": 3,
        "aborts": 0,
        "rewinds": 0,
        "timers_fired": 1,
        "inflight_rounds": 1,
        "counts": {
            "processed": 7,
            "duplicate": 1,
            "dead_letter.malformed_json": 2,
            "order.accepted": 4,
            "order.rejected": 1,
            "payment.route_decided": 4,
            "route_decided:stripe": 3,
            "route_decided:adyen": 1,
            "breaker_open:adyen": 2,
            "dunning.scheduled": 1,
            "outcome_unattributed": 5,
        },
        "produced_by_topic": {"orders": 5, "payments": 4, "dlq": 2},
        "inflight_by_shard": {0: 1, 2: 1},
        "oldest_inflight_age_s": {0: 0.5, 2: 0.5},
        "histograms": {"end_to_end": e2e.to_dict()},
    }
    stats.update(over)
    return stats


def _shard(idx: int, **over: Any) -> dict[str, Any]:
    h = Histogram.of(BATCH_BOUNDS_S)
    h.observe(0.02)
    return {"shard": idx, "pid": 200 + idx, "node": f"node-{idx % 2}", "batches": 1, "events": 5,
            "batch_seconds": h.to_dict(), **over}  # fmt: skip


def _samples(poll: Poll, model: MetricsModel | None = None) -> dict[tuple[str, frozenset[Any]], float]:
    out = {}
    for fam in (model or MetricsModel(TOPICS)).families(poll):
        for s in fam.samples:
            out[(fam.d.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_counts_map_to_bounded_families() -> None:
    poll = Poll([_router()], [_shard(0), _shard(1)], [PartitionLag(0, 40, 3)])
    s = _samples(poll)
    assert _value(s, "clickcash_events_in_total", topic="in") == 10
    assert (
        _value(s, "clickcash_events_out_total", topic="orders", type="order.accepted", synthetic="false") == 4
    )
    assert (
        _value(
            s, "clickcash_events_out_total", topic="payments", type="payment.route_decided", synthetic="false"
        )
        == 4
    )
    assert (
        _value(s, "clickcash_events_out_total", topic="dlq", type="clickcash.dead_letter", synthetic="false")
        == 2
    )
    assert (
        _value(s, "clickcash_events_out_total", topic="in", type="dunning.timer_fired", synthetic="false")
        == 1
    )
    assert _value(s, "clickcash_records_produced_total", topic="payments") == 4
    assert _value(s, "clickcash_events_handled_total", outcome="dead_lettered") == 2
    assert _value(s, "clickcash_dead_letters_total", reason="malformed_json") == 2
    assert _value(s, "clickcash_idempotency_hits_total", kind="duplicate") == 1
    assert _value(s, "clickcash_psp_decisions_total", psp="stripe") == 3
    assert _value(s, "clickcash_psp_route_reasons_total", psp="adyen", reason="breaker_open") == 2
    assert _value(s, "clickcash_dunning_plans_scheduled_total") == 1
    assert _value(s, "clickcash_shard_queue_depth", shard="0") == 1
    assert _value(s, "clickcash_shard_queue_depth", shard="1") == 0
    assert _value(s, "clickcash_consumer_lag_records", partition="0") == 3
    assert _value(s, "clickcash_shard_node_info", shard="1", node="node-1") == 1
    assert _value(s, "clickcash_healthy") == 1
    label_names = {k for _, labels in s for k, _ in labels}
    assert label_names <= {"topic", "type", "outcome", "reason", "kind", "psp", "shard", "node", "router",
                           "partition", "synthetic"}  # fmt: skip
    assert {name for name, _ in s} <= set(METRICS)


def test_a_restarted_router_does_not_make_counters_go_back() -> None:
    model = MetricsModel(TOPICS)
    _samples(Poll([_router(consumed=100)], []), model)
    after = _samples(Poll([_router(consumed=5, pid=101)], []), model)
    assert _value(after, "clickcash_events_in_total", topic="in") == 105
    # an unanswered poll keeps the last totals instead of dropping to zero
    gone = _samples(Poll([{"router": 0, "unavailable": True}], []), model)
    assert _value(gone, "clickcash_events_in_total", topic="in") == 105
    assert _value(gone, "clickcash_router_up", router="0") == 0
    assert _value(gone, "clickcash_healthy") == 0


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 50)), min_size=1, max_size=30))
def test_carried_counters_are_monotonic(steps: list[tuple[bool, int]]) -> None:
    carry, pid, value, exported = CounterCarry(), 0, 0, 0.0
    for restart, grow in steps:
        if restart:
            pid, value = pid + 1, 0
        value += grow
        now = carry.update("router-0", pid, {("consumed",): value})[("consumed",)]
        assert now >= exported
        exported = now


def test_stalls_and_breakers_show_in_gauges() -> None:
    poll = Poll(
        [_router()],
        [_shard(0), _shard(1)],
        [PartitionLag(0, 40, 3), PartitionLag(1, 10, 0)],
        stalls=[Stall("partition", 0, 90, "x"), Stall("shard", 1, 90, "y")],
        breakers_open=["adyen"],
    )
    s = _samples(poll)
    assert _value(s, "clickcash_partition_stalled", partition="0") == 1
    assert _value(s, "clickcash_partition_stalled", partition="1") == 0
    assert _value(s, "clickcash_shard_stalled", shard="1") == 1
    assert _value(s, "clickcash_psp_breaker_open", psp="adyen") == 1
    assert _value(s, "clickcash_psp_breaker_open", psp="stripe") == 0
    assert _value(s, "clickcash_healthy") == 0


def test_histogram_buckets_are_cumulative_and_bounds_inclusive() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.1, 0.5, 1.0, 5.0):
        h.observe(v)
    assert h.counts == [1, 2, 1]
    assert h.cumulative() == [1, 3, 4]
    h.merge(Histogram.from_dict(h.to_dict()))
    assert h.count == 8
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))
    assert END_TO_END_BOUNDS_S[-1] >= 300, "spikes queue for minutes: the buckets must reach that far"


def test_exposition_parses_and_names_follow_prometheus_conventions() -> None:
    server = MetricsServer("127.0.0.1", 0).start()
    try:
        families = MetricsModel(TOPICS).families(Poll([_router()], [_shard(0)], [PartitionLag(0, 1, 0)]))
        server.publish(families, {"healthy": True}, {})
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    finally:
        server.close()
    parsed = {s.name: s for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert set(parsed) <= exported_names()
    assert parsed["clickcash_end_to_end_latency_seconds_count"].value == 3
    for d in METRICS.values():
        assert d.name.startswith("clickcash_")
        assert (d.kind == "counter") == d.name.endswith("_total"), d.name
        if d.kind == "histogram":
            assert d.name.endswith("_seconds"), d.name


def test_a_router_removed_by_a_rescale_keeps_its_counts_in_the_totals() -> None:
    model = MetricsModel(TOPICS)
    _samples(Poll([_router(consumed=100), _router(router=1, pid=300, consumed=40)], []), model)
    after = _samples(Poll([_router(consumed=150)], []), model)
    assert _value(after, "clickcash_events_in_total", topic="in") == 190
    assert ("clickcash_router_up", frozenset({("router", "1")})) not in after


def test_input_events_per_type_are_bounded_and_sum_to_the_inputs() -> None:
    counts = {"in:order.placed": 6, "in:payment.declined": 2, "in:invalid": 1, "in:surprise.type": 1}
    s = _samples(Poll([_router(counts={**_router()["counts"], **counts})], []))
    assert _value(s, "clickcash_input_events_total", type="order.placed", synthetic="false") == 6
    assert _value(s, "clickcash_input_events_total", type="payment.declined", synthetic="false") == 2
    assert (
        _value(s, "clickcash_input_events_total", type="invalid", synthetic="false") == 2
    )  # unknown types count as invalid
    assert _value(s, "clickcash_input_events_total", type="dunning.timer_fired", synthetic="false") == 0
    per_type: dict[str, float] = {}
    for (name, labels), v in s.items():
        if name == "clickcash_input_events_total":
            per_type[dict(labels)["type"]] = per_type.get(dict(labels)["type"], 0) + v
    assert sum(per_type.values()) == 10 == _value(s, "clickcash_events_in_total", topic="in")
    assert len(per_type) == len(INPUT_TYPES) + 1  # every input type and "invalid"
    # in:<type> keys are not mistaken for routing reasons about a PSP
    assert not any(name == "clickcash_psp_route_reasons_total" and dict(labels).get("reason") == "in"
                   for name, labels in s)  # fmt: skip


def test_every_configured_psp_has_a_breaker_gauge() -> None:
    s = _samples(
        Poll([_router()], [], breakers_open=["paypal"], psps=["adyen", "paypal", "stripe", "braintree"])
    )
    assert _value(s, "clickcash_psp_breaker_open", psp="paypal") == 1
    assert _value(s, "clickcash_psp_breaker_open", psp="braintree") == 0
    assert _value(s, "clickcash_psp_breaker_open", psp="adyen") == 0


def test_parked_customers_isolation_and_outages_show_in_gauges() -> None:
    poll = Poll(
        [
            _router(router=0, parked_customers=2, round_cap=8, failed_rounds=5, counts={"parked_records": 7}),
            _router(router=1, pid=101, parked_customers=1, outage_service="redis", outage_for_s=12.5),
            {"router": 2, "unavailable": True},
        ],
        [],
    )
    s = _samples(poll)
    assert _value(s, "clickcash_parked_customers") == 3
    assert _value(s, "clickcash_router_isolating", router="0") == 1
    assert _value(s, "clickcash_router_isolating", router="1") == 0
    assert _value(s, "clickcash_router_outage_seconds", router="1") == 12.5
    assert _value(s, "clickcash_failed_rounds_total") == 5
    assert _value(s, "clickcash_parked_records_total") == 7


def test_synthetic_traffic_is_counted_apart_with_a_fixed_label_set() -> None:
    counts = {
        "in:order.placed": 6,
        "synthetic|in:order.placed": 4,
        "order.accepted": 5,
        "synthetic|order.accepted": 3,
        "dead_letter.malformed_json": 2,
        "synthetic|clickcash.dead_letter": 1,
    }
    s = _samples(Poll([_router(counts=counts)], []))
    assert _value(s, "clickcash_input_events_total", type="order.placed", synthetic="true") == 4
    assert _value(s, "clickcash_input_events_total", type="order.placed", synthetic="false") == 2
    assert _value(s, "clickcash_input_events_total", type="payment.declined", synthetic="true") == 0
    assert (
        _value(s, "clickcash_events_out_total", topic="orders", type="order.accepted", synthetic="true") == 3
    )
    assert (
        _value(s, "clickcash_events_out_total", topic="orders", type="order.accepted", synthetic="false") == 2
    )
    assert (
        _value(s, "clickcash_events_out_total", topic="dlq", type="clickcash.dead_letter", synthetic="true")
        == 1
    )
    assert {dict(labels).get("synthetic") for name, labels in s if name.endswith("events_out_total")} == {
        "true",
        "false",
    }
    # synthetic|... keys are neither output types of their own nor routing reasons
    assert not any(dict(labels).get("type", "").startswith("synthetic") for _, labels in s)
    assert not any(name == "clickcash_psp_route_reasons_total" for name, _ in s)
