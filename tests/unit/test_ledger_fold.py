"""The campaign ledger's fold: exact totals, re-sent inputs not counted twice, snapshots that continue
exactly, the table, the snapshot contract and the bounded metrics."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import orjson
import pytest
from confluent_kafka import Message

from clickcash.campaign_snapshot import CampaignSnapshot, SnapshotEnvelope
from clickcash.cluster.ledger.fold import (
    INPUT_TYPES_COUNTED,
    MAX_OPEN_ORDERS_PER_CAMPAIGN,
    OPEN_ORDER_MAX_AGE_MS,
    CampaignTotals,
    Ledger,
    tenure_tier,
    value_tier,
)
from clickcash.cluster.ledger.metrics import OTHER, top_campaigns
from clickcash.cluster.ledger.table import render
from clickcash.cluster.observability.metric_defs import METRICS, Family, ledger_families
from clickcash.testing import FakeMessage, FakeRecord

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OUTPUTS = {"order.accepted", "order.rejected", "dunning.scheduled", "dunning.recovered", "dunning.exhausted"}


def _ev(
    i: str, t: str, s: float, data: dict[str, Any], camp: str | None = "c1", syn: bool = False
) -> dict[str, Any]:
    return {
        "event_id": i, "event_type": t, "time": T0 + timedelta(seconds=s), "campaign_id": camp,
        "data": data, "synthetic": syn, "is_input": t not in OUTPUTS,
    }  # fmt: skip


def _events() -> list[dict[str, Any]]:
    placed = {
        "order_id": "o1", "customer_id": "k1", "currency": "EUR", "total_cents": 12_000,
        "payment_method": {"network": "visa"},
    }  # fmt: skip
    return [
        _ev(
            "p0",
            "customer.preferences_updated",
            0,
            {"customer_id": "k1", "customer_since": "2026-11-20"},
            None,
        ),
        _ev("i1", "order.placed", 0, placed),
        _ev("o1a", "order.accepted", 2, {"order_id": "o1", "currency": "EUR", "total_cents": 12_000}),
        _ev(
            "i2",
            "payment.declined",
            60,
            {"order_id": "o1", "decline_code": "51", "currency": "EUR", "amount_cents": 1},
        ),
        _ev("o2", "dunning.scheduled", 61, {"order_id": "o1", "decline_class": "soft"}),
        _ev("i3", "payment.authorized", 3_661, {"order_id": "o1", "currency": "EUR", "amount_cents": 12_000}),
        _ev("o3", "dunning.recovered", 3_662, {"order_id": "o1", "reason": "paid"}),
        _ev("i4", "order.placed", 5, {**placed, "order_id": "o2", "total_cents": 100}),
        _ev(
            "o4", "order.rejected", 6, {"order_id": "o2", "reasons": [{"code": "velocity"}, {"code": "geo"}]}
        ),
        _ev("i5", "order.placed", 5, {**placed, "order_id": "s1"}, syn=True),
        _ev("i6", "order.placed", 5, {**placed, "order_id": "n1"}, camp=None),
    ]


def _fold_all(ledger: Ledger, events: list[dict[str, Any]]) -> None:
    for e in events:
        ledger.fold(**e)


def test_totals_per_campaign() -> None:
    ledger = Ledger()
    _fold_all(ledger, _events())
    c = ledger.campaigns["c1"]
    r = c.real
    assert (r.orders_placed, r.orders_accepted, r.orders_rejected) == (2, 1, 1)
    assert r.rejected_by_reason == {"velocity": 1, "geo": 1}
    assert r.accepted_cents_by_currency == {"EUR": 12_000}
    assert (r.payments_authorized, r.authorized_cents_by_currency) == (1, {"EUR": 12_000})
    assert (r.payments_declined, r.declined_by_class) == (1, {"soft": 1})
    assert (r.dunning_scheduled, r.dunning_recovered, r.dunning_exhausted) == (1, 1, 0)
    assert r.recovered_cents_by_currency == {"EUR": 12_000}
    assert r.cohorts["decline_class=soft"] == {"scheduled": 1, "recovered": 1}
    assert r.cohorts["network=visa"] == {"scheduled": 1, "recovered": 1}
    assert r.cohorts["value_tier=mid"] == {"scheduled": 1, "recovered": 1}
    assert r.cohorts["tenure_tier=new"] == {"scheduled": 1, "recovered": 1}
    assert c.synthetic.orders_placed == 1
    assert set(ledger.campaigns) == {"c1"}
    assert c.click_to_decision.count == 2
    assert c.decision_to_authorization.count == 1
    assert c.authorization_to_recovery.count == 1
    assert c.authorization_to_recovery.sum_s == 3_601
    # finished orders are forgotten: o1 recovered, o2 rejected; only the synthetic s1 is still open
    assert set(c.open_orders) == {"s1"}


def test_resent_inputs_are_not_counted_twice() -> None:
    once, twice = Ledger(), Ledger()
    _fold_all(once, _events())
    _fold_all(twice, _events())
    inputs = [e for e in _events() if e["is_input"] and e["campaign_id"]]
    assert all(not twice.fold(**e) for e in inputs)
    assert twice.campaigns["c1"].to_dict() == once.campaigns["c1"].to_dict()


def test_outputs_read_before_their_inputs_give_the_same_totals() -> None:
    events = _events()
    forward, backward = Ledger(), Ledger()
    _fold_all(forward, events)
    _fold_all(backward, [e for e in events if not e["is_input"]] + [e for e in events if e["is_input"]])
    f, b = forward.campaigns["c1"], backward.campaigns["c1"]
    assert b.real.to_dict()["orders_placed"] == f.real.orders_placed
    assert {k: v for k, v in b.real.to_dict().items() if k != "cohorts"} == {
        k: v for k, v in f.real.to_dict().items() if k != "cohorts"
    }
    assert "o2" not in b.open_orders, "a rejection read before its placement is closed by the placement"


def test_snapshot_restart_continues_exactly() -> None:
    events = _events()
    whole = Ledger()
    _fold_all(whole, events)
    first = Ledger()
    _fold_all(first, events[:5])
    snap = {
        k: CampaignTotals.from_dict(orjson.loads(orjson.dumps(v.to_dict())))
        for k, v in first.campaigns.items()
    }
    restarted = Ledger(snap)
    restarted.fold(**events[0])  # the customer's tenure is input state, re-read from the input topic
    _fold_all(restarted, events[5:])
    assert restarted.campaigns["c1"].to_dict() == whole.campaigns["c1"].to_dict()


def test_recent_input_ids_are_bounded() -> None:
    ledger = Ledger(recent_ids_per_campaign=100)
    for i in range(250):
        ledger.fold(
            **_ev(
                f"x{i}",
                "payment.declined",
                i,
                {"order_id": f"q{i}", "decline_code": "51", "currency": "EUR", "amount_cents": 5},
            )
        )
    c = ledger.campaigns["c1"]
    assert c.real.payments_declined == 250
    assert list(c.recent_input_ids) == [f"x{i}" for i in range(150, 250)]


def test_silent_open_orders_are_forgotten() -> None:
    ledger = Ledger()
    placed = {"order_id": "a", "customer_id": "k", "currency": "EUR", "total_cents": 1}
    ledger.fold(**_ev("i1", "order.placed", 0, placed))
    ledger.fold(**_ev("i2", "order.placed", OPEN_ORDER_MAX_AGE_MS / 1000 + 1, {**placed, "order_id": "b"}))
    assert set(ledger.campaigns["c1"].open_orders) == {"b"}


def test_open_orders_per_campaign_are_capped_least_recently_active_first() -> None:
    ledger = Ledger()
    n = MAX_OPEN_ORDERS_PER_CAMPAIGN + 50
    for i in range(n):
        placed = {"order_id": f"o{i}", "customer_id": f"k{i}", "currency": "EUR", "total_cents": 1}
        ledger.fold(**_ev(f"i{i}", "order.placed", i, placed))
    camp = ledger.campaigns["c1"]
    assert len(camp.open_orders) == MAX_OPEN_ORDERS_PER_CAMPAIGN
    assert next(iter(camp.open_orders)) == "o50" and "o49" not in camp.open_orders
    assert camp.real.orders_placed == n
    assert len(orjson.dumps(camp.to_dict())) < 1_048_576


def test_changed_campaigns_are_drained_once() -> None:
    ledger = Ledger()
    _fold_all(ledger, _events())
    assert [c.campaign_id for c in ledger.drain_changed()] == ["c1"]
    assert ledger.drain_changed() == []


def test_tiers() -> None:
    assert [value_tier(v) for v in (0, 4_999, 5_000, 49_999, 50_000)] == ["low", "low", "mid", "mid", "high"]
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert tenure_tier(None, at) == "unknown"
    assert tenure_tier(date(2026, 11, 30), at) == "new"
    assert tenure_tier(date(2026, 1, 1), at) == "established"
    assert tenure_tier(date(2020, 1, 1), at) == "loyal"


def test_table_lists_campaigns_by_volume_with_synthetic_rows_apart() -> None:
    ledger = Ledger()
    _fold_all(ledger, _events())
    ledger.fold(
        **_ev("x", "order.placed", 0, {"order_id": "z", "total_cents": 1, "currency": "USD"}, camp="c0")
    )
    lines = render(c.to_dict() for c in ledger.campaigns.values()).splitlines()
    assert lines[0].split()[:2] == ["campaign", "traffic"]
    assert [line.split()[:2] for line in lines[1:]] == [["c1", "real"], ["c1", "synthetic"], ["c0", "real"]]
    assert "120.00 EUR" in lines[1] and "100.0%" in lines[1]


def test_snapshot_event_matches_the_published_contract() -> None:
    from clickcash.cluster.ledger.loop import SNAPSHOT_NAMESPACE, is_synthetic, snapshot_event

    ledger = Ledger()
    _fold_all(ledger, _events())
    raw = snapshot_event(ledger.campaigns["c1"], T0)
    env = SnapshotEnvelope.model_validate_json(raw)
    assert (env.type, env.partitionkey, env.campaignid) == ("campaign.snapshot", "c1", "c1")
    data = CampaignSnapshot.model_validate(env.data)
    assert CampaignTotals.from_dict(data.model_dump()).to_dict() == ledger.campaigns["c1"].to_dict()
    assert env.id == SnapshotEnvelope.model_validate_json(snapshot_event(ledger.campaigns["c1"], T0)).id
    # encoded without a pydantic round trip: the same bytes the contract model dumps, and a uuid5 id
    body = orjson.dumps(
        CampaignSnapshot.model_validate(ledger.campaigns["c1"].to_dict()).model_dump(mode="json")
    )
    assert orjson.loads(raw)["data"] == orjson.loads(body)
    assert raw.count(body) == 1
    assert env.id == str(uuid.uuid5(SNAPSHOT_NAMESPACE, "c1\x00" + body.decode()))
    assert is_synthetic({}, [("ce_synthetic", b"true")]) and not is_synthetic({}, [("ce_type", b"true")])
    assert is_synthetic({"synthetic": True}, None) and not is_synthetic({"synthetic": "yes"}, None)


def _snap(cid: str, placed: int) -> dict[str, Any]:
    t = CampaignTotals(cid)
    t.real.orders_placed = placed
    t.real.cohorts = {"network=visa": {"scheduled": placed}}
    d = t.to_dict()
    d.pop("resume")
    return d


def test_metrics_name_the_top_campaigns_and_sum_the_rest() -> None:
    snaps = {f"c{i}": _snap(f"c{i}", i) for i in range(1, 6)}
    top = top_campaigns(snaps, 2)
    assert [r["campaign"] for r in top] == ["c5", "c4", OTHER]
    assert top[-1]["real"]["orders_placed"] == 1 + 2 + 3
    fam = {d.name: Family(d) for d in METRICS.values()}
    ledger_families(fam, {"running": True, "campaigns": 5, "transactions": 3, "top": top})
    placed = {
        s.labels["campaign"]: s.value
        for s in fam["clickcash_campaign_orders"].samples
        if s.labels["outcome"] == "placed" and s.labels["synthetic"] == "false"
    }
    assert placed == {"c5": 5, "c4": 4, OTHER: 6}
    cohort = [s for s in fam["clickcash_recovery_cohort"].samples if s.labels["synthetic"] == "false"]
    assert [(s.labels["dimension"], s.labels["cohort"], s.value) for s in cohort] == [("network", "visa", 15)]
    assert {s.labels["campaign"] for s in fam["clickcash_campaign_cycle_seconds"].histograms} == {
        "c5",
        "c4",
        OTHER,
    }


def test_a_recovery_read_before_its_order_is_valued_when_the_order_is_read() -> None:
    events = _events()
    forward, outputs_first = Ledger(), Ledger()
    _fold_all(forward, events)
    _fold_all(outputs_first, [e for e in events if not e["is_input"]] + [e for e in events if e["is_input"]])
    f, o = forward.campaigns["c1"].real, outputs_first.campaigns["c1"].real
    assert o.recovered_cents_by_currency == f.recovered_cents_by_currency == {"EUR": 12_000}


def _rec(
    topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
) -> FakeMessage:
    return FakeMessage(topic, 0, 0, FakeRecord(key, value, headers, 0))


def _hostile_inputs(placed: dict[str, Any], max_event_bytes: int) -> dict[str, tuple[bytes | None, bytes]]:
    """Inputs of a counted type and campaign that the shards dead-letter, by reason, and one they accept
    although its campaign attribute is spelled with a JSON escape."""
    key = placed["partitionkey"].encode()
    data = placed["data"]

    def rec(env: dict[str, Any], k: bytes | None = key) -> tuple[bytes | None, bytes]:
        return k, orjson.dumps(env)

    escaped = orjson.dumps({**placed, "id": "escaped"}).replace(b'"campaignid"', b'"campaign\\u0069d"')
    return {
        "other customer in data": rec({**placed, "data": {**data, "customer_id": "someone-else"}}),
        "key names another customer": rec(placed, b"someone-else"),
        "no key": rec(placed, None),
        "invalid data": rec({**placed, "data": {**data, "total_cents": -1}}),
        "unknown data field": rec({**placed, "data": {**data, "coupon": "x"}}),
        "invalid campaign id": rec({**placed, "campaignid": ""}),
        "no time": rec({k: v for k, v in placed.items() if k != "time"}),
        "card number": rec({**placed, "data": {**data, "merchant_segment": "4111111111111111"}}),
        "oversized": rec({**placed, "padding": "x" * max_event_bytes}),
        "type is a list": rec({**placed, "type": []}),
        "type is an object": rec({**placed, "type": {"a": 1}}),
        "type is a number": rec({**placed, "type": 7}),
        "valid, campaign attribute escaped": (key, escaped),
    }


def test_the_ledger_counts_an_input_only_when_the_shards_decoder_accepts_it() -> None:
    """The ledger's input path (cheap skips, then the shards' own ``decode_record``) on generated traffic with
    malformed records and re-sends, and on hostile records: an input is counted exactly when the shards
    decode it into an event of a counted type with a campaign, once per id; a record they dead-letter is
    read (``events_read``) and not counted, like any record the fold does not count."""
    from clickcash.actors import InputEvent, decode_record
    from clickcash.cluster.ledger.loop import LedgerLoop
    from clickcash.config.settings import load_settings
    from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix

    settings = load_settings()
    topic, limit = settings.kafka.input_topic, settings.pipeline.max_event_bytes
    gen = CampaignGenerator(CampaignMix(customers=200, duplicate_rate=0.02, malformed_rate=0.05), seed=3)
    records = [(e.key, e.value) for e in gen.events(3000)]
    placed = orjson.loads(next(v for _, v in records if b'"order.placed"' in v and b'"campaignid"' in v))
    hostile = _hostile_inputs({**placed, "id": "hostile"}, limit)
    records += hostile.values()
    loop, ledger = LedgerLoop(settings), Ledger()
    seen: set[tuple[str, str]] = set()
    dead = 0
    for key, value in records:
        shard = decode_record(topic, 0, 0, key, value, limit)
        wanted = False
        if not isinstance(shard, InputEvent):
            dead += 1
        elif shard.type in INPUT_TYPES_COUNTED and shard.campaignid is not None:
            wanted = (shard.campaignid, shard.id) not in seen
            seen.add((shard.campaignid, shard.id))
        read, counted = loop.stats.events_read, loop.stats.events_counted
        loop._fold(ledger, cast(Message, _rec(topic, key, value)))
        assert loop.stats.events_read == read + 1
        assert loop.stats.events_counted == counted + wanted, value[:300]
    assert loop.stats.events_counted == len(seen) > 1000 and dead > 100
    for name, (key, value) in hostile.items():
        valid = isinstance(decode_record(topic, 0, 0, key, value, limit), InputEvent)
        assert valid == name.startswith("valid"), name
    assert b"campaign\\u0069d" in hostile["valid, campaign attribute escaped"][1]
    assert (placed["campaignid"], "escaped") in seen


def test_an_input_is_synthetic_exactly_when_the_shards_decoder_says_so() -> None:
    """The shards mark a valid input's outputs synthetic by their decoder's verdict on its ``synthetic``
    attribute: the ledger counts the input on the same side as those outputs. A ``ce_synthetic`` header on
    a structured-mode input is no attribute: its outputs are real, and so is the input's count."""
    from clickcash.actors import InputEvent, decode_record
    from clickcash.cluster.ledger.loop import LedgerLoop
    from clickcash.config.settings import load_settings
    from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix

    settings = load_settings()
    topic = settings.kafka.input_topic
    gen = CampaignGenerator(CampaignMix(customers=5, malformed_rate=0, duplicate_rate=0), seed=1)
    placed = orjson.loads(next(e.value for e in gen.events(50) if b'"order.placed"' in e.value))
    key = placed["partitionkey"].encode()
    cases: list[tuple[Any, list[tuple[str, bytes]] | None, bool]] = [
        (True, None, True),
        ("yes", None, True),
        (None, [("ce_synthetic", b"true")], False),
        (False, None, False),
        (None, None, False),
    ]
    for i, (attribute, headers, synthetic) in enumerate(cases):
        value = orjson.dumps({**placed, "id": f"s{i}", "campaignid": f"camp{i}", "synthetic": attribute})
        shard = decode_record(topic, 0, 0, key, value, settings.pipeline.max_event_bytes)
        assert isinstance(shard, InputEvent)
        ledger = Ledger()
        LedgerLoop(settings)._fold(ledger, cast(Message, _rec(topic, key, value, headers)))
        camp = ledger.campaigns[f"camp{i}"]
        assert (camp.synthetic.orders_placed, camp.real.orders_placed) == ((1, 0) if synthetic else (0, 1))
        assert shard.synthetic == (attribute in (True, "yes"))


def test_the_folds_counts_are_the_published_contract_made_mutable() -> None:
    """One definition of a campaign's counts: the fold's working totals are the contract's own fields, in
    its order, and what it publishes validates against it unchanged; the contract itself stays frozen."""
    from pydantic import ValidationError

    from clickcash.campaign_snapshot import CampaignCounts
    from clickcash.cluster.ledger.fold import Counts

    c = Counts()
    c.orders_placed += 2
    c.rejected_by_reason["b"] = 1
    c.rejected_by_reason["a"] = 3
    c.cohorts.setdefault("network=visa", {})["scheduled"] = 1
    assert list(Counts.model_fields) == list(CampaignCounts.model_fields)
    assert list(c.to_dict()) == list(CampaignCounts.model_fields)
    assert list(c.to_dict()["rejected_by_reason"]) == ["a", "b"]
    assert CampaignCounts.model_validate(c.to_dict()).model_dump() == c.to_dict()
    assert Counts.from_dict(c.to_dict()) == c
    with pytest.raises(ValidationError):
        CampaignCounts().orders_placed = 1  # type: ignore[misc]
