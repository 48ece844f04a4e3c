"""The core pipeline on real Kafka, Redis and Ray: contract, per-customer order, idempotency, bad input,
batching and backpressure."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

import orjson
import ray
import redis

from clickcash.actors.state.base import timer_key
from clickcash.cluster.outputs import OutputReader
from clickcash.events import OUTPUT_TYPES, TIMER_SOURCE, OutputEnvelope, OutputRole, output_id
from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix
from tests.integration._harness import (
    SettingsFactory,
    declined,
    event,
    input_events,
    order,
    produce,
    read_outputs,
    running_app,
    wait_for_drain,
)


def _campaign(n: int, customers: int, seed: int = 3) -> list[tuple[bytes | None, bytes]]:
    gen = CampaignGenerator(CampaignMix(customers=customers), seed=seed, run_id=f"t{seed}")
    return [(e.key, e.value) for e in gen.events(n)]


def test_campaign_outputs_follow_the_contract_in_per_customer_order(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=3, pipeline={"shards": 5})
    records = _campaign(4000, customers=300)
    produce(settings, records)
    with running_app(settings) as app:
        wait_for_drain(settings, app)
        shard_stats = app.shard_stats()
    outputs = read_outputs(settings, idle_s=2.0)
    # what the topic holds: the produced records plus the dunning timer commands the router wrote
    read_back = input_events(settings)
    positions = {eid: (e.partition, e.offset) for eid, e in read_back.items()}

    # shards > partitions, and every shard did work in parallel with the others
    busy = [s for s in shard_stats if s["totals"].get("processed", 0) > 0]
    assert len(busy) == 5

    # every output is a CloudEvent with a deterministic id, keyed by customer, causation carried
    inputs = {eid: e.event for eid, e in read_back.items() if "data" in e.event}
    structured = [o for o in outputs if o.event is not None]
    ids = Counter(o.id for o in outputs)
    assert max(ids.values()) == 1, "an output id appeared twice"
    # a timer command acts for its plan: attribution comes from the decline that opened the plan
    plan_opened_by = {
        output_id(eid, OutputRole.DUNNING): ev
        for eid, ev in inputs.items()
        if ev["type"] == "payment.declined"
    }
    for o in structured:
        assert o.event is not None
        OutputEnvelope.model_validate(o.event)
        OUTPUT_TYPES[o.type].model_validate(o.event["data"])
        src = inputs[o.causationid or ""]
        if src["source"] == TIMER_SOURCE:
            src = {**plan_opened_by[src["data"]["plan_id"]], "partitionkey": src["partitionkey"]}
        assert o.key == src["partitionkey"].encode()
        assert o.event["partitionkey"] == src["partitionkey"]
        assert o.event["correlationid"] == src["correlationid"]
        assert o.event.get("campaignid") == src.get("campaignid")  # none for a regular (non-campaign) order
    decisions = [o for o in structured if o.type in ("order.accepted", "order.rejected")]
    assert all(o.id == output_id(o.causationid or "", "order-decision") for o in decisions)

    # exactly one decision per distinct valid order.placed, one first route per accepted order
    produced = {orjson.loads(v)["id"] for _, v in records if v.startswith(b"{") and b'"data"' in v}
    assert produced <= set(inputs)
    placed = {eid for eid, ev in inputs.items() if ev["type"] == "order.placed"}
    decided = Counter(o.causationid for o in decisions)
    assert set(decided) == placed and max(decided.values()) == 1
    accepted = {o.event["data"]["order_id"] for o in decisions if o.type == "order.accepted" and o.event}
    first_routes = Counter(
        o.event["data"]["order_id"]
        for o in structured
        if o.type == "payment.route_decided" and o.event and o.event["data"]["attempt"] == 1
    )
    assert set(first_routes) == accepted and max(first_routes.values()) == 1

    # per customer and output topic, outputs appear in the order of their inputs
    by_stream: dict[tuple[str, bytes | None], list[tuple[int, int]]] = defaultdict(list)
    for o in sorted(outputs, key=lambda r: (r.topic, r.partition, r.offset)):
        if o.causationid in positions:
            by_stream[(o.topic, o.key)].append(positions[o.causationid])
    assert by_stream
    for stream, seq in by_stream.items():
        assert seq == sorted(seq), f"outputs out of input order for {stream}"


def test_duplicates_produce_nothing_and_conflicts_go_to_the_dlq(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        partitions=2, pipeline={"shards": 3, "idempotency_retention_s": 3600, "replay_response_ttl_s": 600}
    )
    first = [
        (b"c1", event("e1", "order.placed", "c1", order("o1", "c1"))),
        (b"c2", event("e2", "order.placed", "c2", order("o2", "c2"))),
    ]
    produce(settings, first)
    with running_app(settings) as app:
        wait_for_drain(settings, app)
        resend = [
            first[0],  # the same event again: a duplicate
            (b"c2", event("e2", "order.placed", "c2", order("o2", "c2", quantity=3))),  # same id, new payload
            (b"c1", event("e3", "order.placed", "c1", order("o3", "c1"))),
        ]
        produce(settings, resend)
        wait_for_drain(settings, app)
    outputs = read_outputs(settings, expected=7)
    by_cause = Counter(o.causationid for o in outputs if o.event is not None)
    assert by_cause == {"e1": 2, "e2": 2, "e3": 2}
    dlq = [o for o in outputs if o.topic == settings.kafka.dlq_topic]
    assert len(dlq) == 1
    reason = orjson.loads(dlq[0].headers["clickcash_reason"])
    assert reason["code"] == "duplicate_conflict"
    assert dlq[0].causationid == "e2"
    assert dlq[0].value == resend[1][1]

    r = redis.Redis.from_url(settings.redis.url.get_secret_value())
    ttl = r.ttl(f"{settings.redis.key_prefix}:idem:e1")
    r.close()
    assert 3000 < ttl <= 3600, f"idempotency key TTL {ttl} does not follow the configured retention"


def test_bad_input_goes_to_the_dlq_and_the_stream_moves_on(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=1, pipeline={"shards": 2, "max_event_bytes": 2048})
    good = lambda i: (b"c9", event(f"g{i}", "order.placed", "c9", order(f"go{i}", "c9")))  # noqa: E731
    bad_field = order("bo", "c9")
    bad_field["items"][0]["quantity"] = "many"
    missing = order("bm", "c9")
    del missing["currency"]
    records: list[tuple[bytes | None, bytes]] = [
        good(0),
        (b"c9", b"{not json"),
        good(1),
        (b"c9", b"\xff\xfe\x00garbage"),
        (b"c9", event("b1", "order.placed", "c9", bad_field)),
        (b"c9", event("b2", "order.placed", "c9", missing)),
        (b"c9", event("b3", "coupon.redeemed", "c9", {"customer_id": "c9"})),
        (None, event("b4", "order.placed", "c9", order("bk", "c9"))),
        (b"other", event("b5", "order.placed", "c9", order("bx", "c9"))),
        (
            b"c9",
            event(
                "b6",
                "order.placed",
                "c9",
                order(
                    "big",
                    "c9",
                    items=[{"sku": f"sku-{i}", "quantity": 1, "unit_price_cents": 1} for i in range(100)],
                    total_cents=100,
                ),
            ),
        ),
        (b"c9", b'"just a string"'),
        good(2),
    ]
    produce(settings, records)
    with running_app(settings) as app:
        wait_for_drain(settings, app)
    outputs = read_outputs(settings, expected=3 * 2 + 9)
    dlq = sorted(
        (o for o in outputs if o.topic == settings.kafka.dlq_topic),
        key=lambda o: int(o.headers["clickcash_source_offset"]),
    )
    reasons = [orjson.loads(o.headers["clickcash_reason"]) for o in dlq]
    assert [r["code"] for r in reasons] == [
        "malformed_json",
        "not_utf8",
        "invalid_field",
        "invalid_field",
        "unknown_type",
        "missing_key",
        "key_mismatch",
        "oversized",
        "not_an_object",
    ]
    assert reasons[2]["field"] == "data.items.0.quantity"
    assert reasons[3]["field"] == "data.currency"
    for o, r in zip(dlq, reasons, strict=True):
        assert o.headers["clickcash_source_topic"].decode() == settings.kafka.input_topic
        assert int(o.headers["clickcash_source_offset"]) == r["offset"]
        assert o.value == records[r["offset"]][1], "the DLQ must carry the original bytes"
    decided = {o.causationid for o in outputs if o.type == "order.accepted"}
    assert decided == {"g0", "g1", "g2"}, "valid events after bad ones must still be processed"


def test_batching_one_shard_call_per_batch_and_two_redis_round_trips(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=2, pipeline={"shards": 2}, kafka={"consume_batch_max": 1000})
    n = 6000
    produce(settings, _campaign(n, customers=500, seed=5))
    with running_app(settings) as app:
        wait_for_drain(settings, app)
        shards = app.shard_stats()
        routers = app.router_stats()
    batches = sum(s["batches"] for s in shards)
    round_trips = sum(s["store_round_trips"] for s in shards)
    # the input also carries the dunning timer commands this router fired (the latest may still be
    # on their way back when the stats are read)
    assert n <= routers[0]["consumed"] <= n + routers[0]["timers_fired"]
    # input was all there before the start: batches are large, never one call per event
    assert batches <= 2 * (n // 100), f"{batches} shard calls for {n} events"
    assert round_trips <= 2 * batches + 2, f"{round_trips} Redis round trips for {batches} batches"


def test_backpressure_bounds_inflight_work_while_input_runs_ahead(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        partitions=2,
        pipeline={"shards": 2, "max_inflight_batches_per_shard": 2},
        kafka={"consume_batch_max": 200},
    )
    produce(settings, _campaign(8000, customers=400, seed=9))
    with running_app(settings) as app:
        wait_for_drain(settings, app)
        stats = app.router_stats()[0]
    assert 8000 <= stats["consumed"] <= 8000 + stats["timers_fired"]
    assert 1 <= stats["max_inflight_rounds"] <= 2


def test_router_crash_loses_nothing_and_duplicates_nothing(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=3, pipeline={"shards": 3}, kafka={"consume_batch_max": 300})
    records = _campaign(9000, customers=600, seed=11)
    # a third up front, the rest arriving at 2,000/s while the router dies: a pipeline that had already
    # committed everything when the kill landed would test nothing (and its restart could go unnoticed by
    # the time the lag read 0)
    produce(settings, records[:3000])
    with running_app(settings) as app:
        arriving = threading.Thread(target=produce, args=(settings, records[3000:]), kwargs={"per_s": 2000})
        arriving.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            app.supervise(0.1)
            if app.router_stats()[0].get("transactions", 0) >= 2:
                break
        ray.kill(app.routers[0], no_restart=False)  # the process dies mid-stream; Ray restarts it
        deadline = time.monotonic() + 60
        while app.restarts < 1 and time.monotonic() < deadline:
            app.supervise(0.2)
        assert app.restarts >= 1, "the app runs the restarted router again"
        arriving.join()
        wait_for_drain(settings, app)
    outputs = read_outputs(settings, idle_s=3.0)
    ids = Counter(o.id for o in outputs)
    assert max(ids.values()) == 1, "a crash must not duplicate committed outputs"
    placed = {orjson.loads(v)["id"] for _, v in records if b'"order.placed"' in v and v.startswith(b"{")}
    placed = {p for p in placed if p.startswith("t11-")}
    decided = {o.causationid for o in outputs if o.type in ("order.accepted", "order.rejected")}
    assert placed <= decided, f"{len(placed - decided)} orders lost their decision"


def test_graceful_restart_resumes_from_committed_offsets(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=2, pipeline={"shards": 2})
    first = [
        (f"c{i % 60}".encode(), event(f"a{i}", "order.placed", f"c{i % 60}", order(f"oa{i}", f"c{i % 60}")))
        for i in range(300)
    ]
    second = [
        (f"c{i % 60}".encode(), event(f"b{i}", "order.placed", f"c{i % 60}", order(f"ob{i}", f"c{i % 60}")))
        for i in range(300)
    ]
    produce(settings, first)
    with running_app(settings) as app:
        wait_for_drain(settings, app)
    produce(settings, second)
    with running_app(settings) as app:
        wait_for_drain(settings, app)
        assert app.router_stats()[0]["consumed"] == 300, "a restart must resume, not re-read"
    outputs = read_outputs(settings, expected=1200)
    assert len(outputs) == 1200, "each of the 600 orders yields exactly one decision and one route"
    assert Counter(o.causationid for o in outputs) == {
        e: 2 for e in [f"a{i}" for i in range(300)] + [f"b{i}" for i in range(300)]
    }


def test_dunning_is_scheduled_and_recovered(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=1, pipeline={"shards": 1})
    authorized = {k: v for k, v in declined("od", "c5").items() if k != "decline_code"} | {"attempt": 2}
    produce(
        settings,
        [
            (b"c5", event("d1", "order.placed", "c5", order("od", "c5"))),
            (b"c5", event("d2", "payment.declined", "c5", declined("od", "c5", code="51"))),
            (b"c5", event("d3", "payment.authorized", "c5", authorized)),
        ],
    )
    with running_app(settings) as app:
        wait_for_drain(settings, app)
    outputs = read_outputs(settings, expected=5)
    assert [
        o.type for o in sorted(outputs, key=lambda o: (o.topic, o.offset)) if o.topic.endswith("dunning")
    ] == [
        "dunning.scheduled",
        "dunning.recovered",
    ]


def _daytime_zone() -> str:
    """An Etc/GMT zone where it is now early afternoon, so no reminder is pushed out of quiet hours."""
    utc_hour = datetime.now(UTC).hour
    offset = (13 - utc_hour + 12) % 24 - 12  # local = UTC + offset, in -12..11
    return "Etc/GMT" + (f"-{offset}" if offset > 0 else f"+{-offset}" if offset < 0 else "")


def test_a_dunning_step_fires_once_and_payment_cancels_the_rest(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=2, pipeline={"shards": 2, "timer_poll_interval_ms": 200})
    prefs = {"customer_id": "c7", "timezone": _daytime_zone(), "channels": ["email"]}
    produce(
        settings,
        [
            (b"c7", event("p1", "customer.preferences_updated", "c7", prefs)),
            (b"c7", event("t1", "order.placed", "c7", order("ot", "c7"))),
            (b"c7", event("t2", "payment.declined", "c7", declined("ot", "c7", code="51"))),
        ],
    )
    reader = OutputReader(settings)
    try:
        with running_app(settings) as app:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(
                r.type == "dunning.step_due" for r in reader.records
            ):
                app.supervise(0.2)
                reader.poll(0.05)
            due = [r for r in reader.records if r.type == "dunning.step_due"]
            assert len(due) == 1, "the immediate reminder step must fire (once) through the timer"
            assert due[0].event is not None and due[0].event["data"]["kind"] == "reminder"
            assert due[0].causationid is not None and due[0].causationid.startswith("timer:")
            authorized = {k: v for k, v in declined("ot", "c7").items() if k != "decline_code"}
            produce(
                settings, [(b"c7", event("t3", "payment.authorized", "c7", {**authorized, "attempt": 2}))]
            )
            wait_for_drain(settings, app)
            time.sleep(1.0)  # a few more timer polls: nothing may fire after the payment
            wait_for_drain(settings, app)
        reader.read_until(lambda _: False, timeout_s=3, idle_s=2)
    finally:
        reader.close()
    dunning = [
        r.type
        for r in sorted(reader.records, key=lambda r: r.offset)
        if r.topic == settings.kafka.dunning_topic
    ]
    assert dunning == ["dunning.scheduled", "dunning.step_due", "dunning.recovered"]
    r = redis.Redis.from_url(settings.redis.url.get_secret_value())
    try:
        left = sum(r.zcard(timer_key(settings.redis.key_prefix, p)) for p in range(2))
    finally:
        r.close()
    assert left == 0, "a paid plan must leave no timer behind"
