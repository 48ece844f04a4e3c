"""Synthetic traffic is marked: a ``synthetic: true`` input's outputs and dead letters carry the attribute and
the ``ce_synthetic: true`` header; a real input's carry neither."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from clickcash.actors.contract import ShardBatch, ShardResult
from clickcash.config.domain import DomainConfig
from clickcash.events import SYNTHETIC_HEADER, InputEnvelope, OutputEnvelope
from clickcash.loadtest.traffic.campaign import CampaignGenerator, loadtest_mix
from tests.unit.test_shard import START, TOPICS, Rec, _fire, _only_timer, make_shard

BatchFactory = Callable[..., ShardBatch]


@pytest.fixture
def rec(cloud_event: Callable[..., bytes], event_data: Callable[..., dict[str, Any]]) -> Rec:
    return Rec(cloud_event, event_data)


def _synthetic(record: tuple[int, int, bytes, bytes]) -> tuple[int, int, bytes, bytes]:
    p, o, k, v = record
    return p, o, k, orjson.dumps({**orjson.loads(v), "synthetic": True})


def _rows(result: ShardResult) -> list[tuple[str, dict[str, bytes], bytes]]:
    return [
        (t, dict(h or []), v) for t, h, v in zip(result.topics, result.headers, result.values, strict=True)
    ]


def test_outputs_of_a_synthetic_input_carry_the_attribute_and_the_header(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    result = shard.apply(
        shard_batch(
            [
                _synthetic(rec("order.placed", order_id="o-1")),
                _synthetic(rec("payment.declined", order_id="o-1")),
            ]
        )
    )
    rows = _rows(result)
    assert {t for t, _, _ in rows} >= {TOPICS.orders, TOPICS.payments, TOPICS.dunning}
    for _, headers, value in rows:
        assert headers.get(SYNTHETIC_HEADER) == b"true"
        assert OutputEnvelope.model_validate_json(value).synthetic is True


def test_a_real_input_produces_no_synthetic_attribute_or_header(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    result = shard.apply(
        shard_batch([rec("order.placed", order_id="o-1"), rec("payment.declined", order_id="o-1")])
    )
    assert len(result) >= 3
    for _, headers, value in _rows(result):
        assert SYNTHETIC_HEADER not in headers
        assert "synthetic" not in orjson.loads(value)


def test_a_replayed_synthetic_output_keeps_its_header(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, store = make_shard(domain)
    records = [_synthetic(rec("order.placed", order_id="o-1")), rec("order.placed", "c-2", order_id="o-2")]
    first = shard.apply(shard_batch(records))
    other, _ = make_shard(domain, store=store)
    again = other.apply(shard_batch(records))
    assert again.counts.get("replayed") == 2
    assert _rows(again) == _rows(first)
    assert [SYNTHETIC_HEADER in h for _, h, _ in _rows(first)] == [True, True, False, False]


def test_dead_letters_of_synthetic_records_carry_the_header(
    domain: DomainConfig, shard_batch: BatchFactory
) -> None:
    bad: dict[str, Any] = {"specversion": "1.0", "id": "x", "type": "order.placed", "synthetic": True}
    shard, _ = make_shard(domain)
    result = shard.apply(
        shard_batch(
            [
                (0, 0, b"c-1", orjson.dumps(bad)),
                (0, 1, b"c-1", b"{broken"),
                (0, 2, b"c-1", orjson.dumps({**bad, "synthetic": False})),
            ]
        )
    )
    assert result.topics == [TOPICS.dlq] * 3
    assert [dict(h or []).get(SYNTHETIC_HEADER) for h in result.headers] == [b"true", None, None]


def test_generated_traffic_is_synthetic_end_to_end(domain: DomainConfig, shard_batch: BatchFactory) -> None:
    """Every event of the load-test generator says so, and so does everything the shard makes of it
    (malformed records that are not JSON objects cannot carry an attribute)."""
    gen = CampaignGenerator(loadtest_mix(customers=50, duplicate_rate=0.03, malformed_rate=0.05), seed=3)
    events = [gen.next_event(START) for _ in range(400)]
    for e in events:
        if e.kind != "malformed":
            assert InputEnvelope.model_validate_json(e.value).synthetic is True
    shard, _ = make_shard(domain)
    result = shard.apply(shard_batch([(0, i, e.key, e.value) for i, e in enumerate(events)]))
    marked = 0
    for topic, headers, value in _rows(result):
        if topic != TOPICS.dlq:
            assert headers.get(SYNTHETIC_HEADER) == b"true"
            assert orjson.loads(value)["synthetic"] is True
        elif headers.get(SYNTHETIC_HEADER) == b"true":
            marked += 1
        else:
            raw = value
            assert not raw.startswith(b"{") or b'"synthetic"' not in raw
    assert len(result) > 400 and marked > 0


def test_a_dunning_step_of_a_plan_opened_by_a_synthetic_decline_is_marked(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    """The router's timer command is not synthetic itself: the plan remembers its decline was."""
    shard, store = make_shard(domain, clock=lambda: START)
    shard.apply(
        shard_batch([_synthetic(rec("order.placed")), _synthetic(rec("payment.declined", decline_code="51"))])
    )
    fired = shard.apply(shard_batch([_fire(_only_timer(store), 10)]))
    rows = _rows(fired)
    assert [orjson.loads(v)["type"] for _, _, v in rows] == ["dunning.step_due"]
    assert rows[0][1].get(SYNTHETIC_HEADER) == b"true" and orjson.loads(rows[0][2])["synthetic"] is True
