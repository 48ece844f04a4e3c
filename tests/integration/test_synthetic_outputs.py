"""Synthetic traffic on the real stack: a load-test generator run's outputs and dead letters all carry the
``ce_synthetic: true`` header and attribute, and a real event's outputs carry neither."""

from __future__ import annotations

import orjson

from clickcash.events import SYNTHETIC_HEADER
from clickcash.loadtest.traffic.campaign import CampaignGenerator, loadtest_mix
from tests.integration._harness import (
    SettingsFactory,
    event,
    order,
    produce,
    read_outputs,
    running_app,
    wait_for_drain,
)


def test_every_output_and_dead_letter_of_generated_traffic_is_marked(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=2, pipeline={"shards": 2})
    gen = CampaignGenerator(loadtest_mix(customers=100, duplicate_rate=0.02, malformed_rate=0.04), seed=5)
    generated = [(e.key, e.value, e.kind) for e in gen.events(1500)]
    real_customer = "real-customer-1"
    real = event("real-1", "order.placed", real_customer, order("real-order-1", real_customer))
    produce(settings, [(k, v) for k, v, _ in generated] + [(real_customer.encode(), real)])
    with running_app(settings) as app:
        wait_for_drain(settings, app)
    outputs = read_outputs(settings, idle_s=2.0)

    real_outputs = [o for o in outputs if o.causationid == "real-1"]
    assert {o.type for o in real_outputs} >= {"order.accepted"}
    for o in real_outputs:
        assert SYNTHETIC_HEADER not in o.headers
        assert o.event is not None and "synthetic" not in o.event

    dead = [o for o in outputs if o.event is None]
    marked_dead = [o for o in dead if o.headers.get(SYNTHETIC_HEADER) == b"true"]
    # bad records that are JSON objects say synthetic; the others (broken JSON, bad UTF-8) cannot
    object_dead = [o for o in dead if o.value.startswith(b"{") and _is_object(o.value)]
    assert object_dead and marked_dead == object_dead
    for o in outputs:
        if o.event is not None and o.causationid != "real-1":
            assert o.headers.get(SYNTHETIC_HEADER) == b"true", o.type
            assert o.event["synthetic"] is True
    assert len([o for o in outputs if o.event is not None]) > 1000


def _is_object(value: bytes) -> bool:
    try:
        return isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False
