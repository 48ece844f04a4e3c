"""The campaign generator: distributions, duplicates, malformed share, per-PSP outcomes, validity."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from clickcash.actors._decode import InputEvent, decode_record
from clickcash.events import DeadLetter
from clickcash.loadtest.traffic.campaign import (
    COUNTRIES,
    DEFAULT_PSPS,
    HARD_CODE_WEIGHTS,
    TECHNICAL_CODE_WEIGHTS,
    CampaignGenerator,
    CampaignMix,
    GeneratedEvent,
    PspProfile,
    loadtest_mix,
    weighted_choice,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
N = 20_000


def _events(mix: CampaignMix, n: int = N, seed: int = 3, **kw: Any) -> list[GeneratedEvent]:
    gen = CampaignGenerator(mix, seed=seed, run_id="lt", **kw)
    return [gen.next_event(NOW) for _ in range(n)]


def _within(observed: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    """Observed count within ``sigmas`` binomial standard deviations of n * p."""
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


@pytest.fixture(scope="module")
def stream() -> list[GeneratedEvent]:
    return _events(loadtest_mix(customers=5_000))


def _data(ev: GeneratedEvent) -> dict[str, Any]:
    return dict(orjson.loads(ev.value)["data"])


def test_same_seed_same_stream_and_legacy_mix_unchanged() -> None:
    a = _events(CampaignMix(), 2_000, seed=9)
    b = _events(CampaignMix(), 2_000, seed=9)
    assert [(e.key, e.value) for e in a] == [(e.key, e.value) for e in b]
    # the default mix keeps the simple outcome model the demo relies on: one attempt, any of three PSPs
    outcomes = [_data(e) for e in a if e.kind in ("payment.authorized", "payment.declined")]
    assert {d["attempt"] for d in outcomes} == {1}
    assert {d["psp"] for d in outcomes} <= {"stripe", "adyen", "braintree"}


def test_malformed_and_duplicate_shares(stream: list[GeneratedEvent]) -> None:
    mix = loadtest_mix()
    kinds = Counter(e.kind for e in stream)
    assert _within(kinds["malformed"], N, mix.malformed_rate)
    assert _within(kinds["duplicate"], N, mix.duplicate_rate)


def test_duplicates_resend_an_earlier_event_byte_for_byte(stream: list[GeneratedEvent]) -> None:
    seen: dict[str, bytes] = {}
    dups = 0
    for ev in stream:
        if ev.kind == "duplicate":
            assert ev.event_id is not None
            assert seen[ev.event_id] == ev.value
            dups += 1
        elif ev.event_id is not None:
            assert ev.event_id not in seen, "fresh events have unique ids"
            seen[ev.event_id] = ev.value
    assert dups > 0


def test_valid_events_pass_the_contract_and_malformed_ones_are_dead_lettered(
    stream: list[GeneratedEvent],
) -> None:
    for i, ev in enumerate(stream):
        decoded = decode_record("in", 0, i, ev.key, ev.value, 64 * 1024)
        if ev.kind == "malformed":
            assert isinstance(decoded, DeadLetter), ev.value
        else:
            assert isinstance(decoded, InputEvent), (ev.kind, decoded)
            assert decoded.customer_id == (ev.key or b"").decode()
            assert decoded.type == (ev.kind if ev.kind != "duplicate" else decoded.type)


def test_time_attribute_is_the_generation_time() -> None:
    gen = CampaignGenerator(loadtest_mix(malformed_rate=0, duplicate_rate=0), run_id="t")
    ev = gen.next_event(NOW)
    assert datetime.fromisoformat(orjson.loads(ev.value)["time"]) == NOW


def test_customers_are_zipf_skewed_hot_and_cold(stream: list[GeneratedEvent]) -> None:
    per_customer = Counter(e.key for e in stream if e.kind == "order.placed")
    orders = sum(per_customer.values())
    top10 = sum(n for _, n in per_customer.most_common(10))
    assert top10 / orders > 0.15, "a handful of hot customers carry a large share"
    assert statistics.median(per_customer.values()) <= 2, "most customers are cold"
    assert len(per_customer) > 1_000


def test_orders_have_believable_spreads(stream: list[GeneratedEvent]) -> None:
    orders = [_data(e) for e in stream if e.kind == "order.placed"]
    n = len(orders)
    countries = Counter(o["country"] for o in orders)
    for country, _currency, weight in COUNTRIES:
        assert _within(countries[country], n, weight), country
    assert {o["currency"] for o in orders} == {"USD", "GBP", "EUR"}
    wallets = sum(1 for o in orders if o["payment_method"]["type"] == "wallet")
    assert _within(wallets, n, 0.25)
    assert {o["payment_method"]["network"] for o in orders} >= {
        "visa",
        "mastercard",
        "amex",
        "paypal",
        "applepay",
    }
    sizes = Counter(len(o["items"]) for o in orders)
    assert min(sizes) == 1 and max(sizes) >= 5 and sizes[1] > sizes[3] > sizes[6]
    totals = [o["total_cents"] for o in orders]
    assert all(
        o["total_cents"] == sum(i["quantity"] * i["unit_price_cents"] for i in o["items"]) for o in orders
    )
    assert 2_000 < statistics.median(totals) < 20_000
    assert max(totals) > 10 * statistics.median(totals), "a long tail of large baskets"


def test_payment_outcomes_follow_their_order(stream: list[GeneratedEvent]) -> None:
    placed: set[str] = set()
    for ev in stream:
        if ev.kind == "order.placed":
            placed.add(_data(ev)["order_id"])
        elif ev.kind in ("payment.authorized", "payment.declined"):
            assert _data(ev)["order_id"] in placed


def test_per_psp_approval_rates_and_decline_classes() -> None:
    psps = (
        PspProfile("good", 0.5, 0.95, hard_share=0.2, technical_share=0.1),
        PspProfile("flaky", 0.5, 0.6, hard_share=0.2, technical_share=0.1),
    )
    stream = _events(loadtest_mix(customers=2_000, psps=psps, duplicate_rate=0, malformed_rate=0), 40_000)
    first = [(e.kind, _data(e)) for e in stream if e.kind.startswith("payment.") and _data(e)["attempt"] == 1]
    for p in psps:
        mine = [(k, d) for k, d in first if d["psp"] == p.name]
        approved = sum(1 for k, _ in mine if k == "payment.authorized")
        assert _within(approved, len(mine), p.approval_rate), p.name
    declines = [d["decline_code"] for k, d in first if k == "payment.declined"]
    hard = sum(1 for c in declines if c in dict(HARD_CODE_WEIGHTS))
    technical = sum(1 for c in declines if c in dict(TECHNICAL_CODE_WEIGHTS))
    assert _within(hard, len(declines), 0.2)
    assert _within(technical, len(declines), 0.1)


def test_paypal_payments_go_to_paypal_and_card_updates_recover(stream: list[GeneratedEvent]) -> None:
    orders = {_data(e)["order_id"]: _data(e) for e in stream if e.kind == "order.placed"}
    outcomes = [(e.kind, _data(e)) for e in stream if e.kind in ("payment.authorized", "payment.declined")]
    for _, d in outcomes:
        if orders[d["order_id"]]["payment_method"]["network"] == "paypal" and d["attempt"] == 1:
            assert d["psp"] == "paypal"
    declined = {d["order_id"] for k, d in outcomes if k == "payment.declined"}
    recovered = [d for k, d in outcomes if k == "payment.authorized" and d["attempt"] == 2]
    assert recovered, "some card updates are followed by a successful authorization"
    assert all(d["order_id"] in declined for d in recovered)
    updates = sum(1 for e in stream if e.kind == "payment_method.updated")
    assert _within(len(recovered), updates, loadtest_mix().recovery_rate)
    assert {p.name for p in DEFAULT_PSPS} >= {d["psp"] for _, d in outcomes}


def test_closed_loop_mix_generates_orders_only() -> None:
    kinds = Counter(e.kind for e in _events(loadtest_mix(payment_outcomes=False), 3_000))
    assert set(kinds) <= {"order.placed", "duplicate", "malformed"}


def test_generators_share_customers_but_not_event_ids() -> None:
    mix = loadtest_mix(customers=50, malformed_rate=0)
    a = CampaignGenerator(mix, seed=1, run_id="run-p1", customer_prefix="run")
    b = CampaignGenerator(mix, seed=2, run_id="run-p2", customer_prefix="run")
    ea = [a.next_event(NOW) for _ in range(500)]
    eb = [b.next_event(NOW) for _ in range(500)]
    assert {e.key for e in ea} & {e.key for e in eb}
    assert all((e.key or b"").startswith(b"run-c") for e in ea + eb)
    assert not {e.event_id for e in ea} & {e.event_id for e in eb}


def test_weighted_choice_follows_weights() -> None:
    import random

    rng = random.Random(1)
    counts = Counter(weighted_choice(rng, (("a", 0.7), ("b", 0.2), ("c", 0.1))) for _ in range(10_000))
    assert _within(counts["a"], 10_000, 0.7) and _within(counts["c"], 10_000, 0.1)


def test_prepared_events_are_the_generator_s_own_in_its_order_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A paced run prepares its events before its clock starts: the same events, in the same order, with
    at most ``PREPARED_EVENTS_MAX`` held and the rest generated as they are asked for."""
    import clickcash.loadtest.traffic.campaign as campaign

    class Counting(campaign.CampaignGenerator):
        calls = 0

        def next_event(self, now: datetime | None = None) -> campaign.GeneratedEvent:
            Counting.calls += 1
            return super().next_event(now)

    monkeypatch.setattr(campaign, "PREPARED_EVENTS_MAX", 5)
    mix = campaign.CampaignMix(customers=50)
    prepared = campaign.PreparedEvents(Counting(mix, seed=3, run_id="p"), 8)
    assert Counting.calls == 5, "generated up front, up to the bound"
    plain = campaign.CampaignGenerator(mix, seed=3, run_id="p")
    got = [prepared.next_event() for _ in range(12)]
    want = [plain.next_event() for _ in range(12)]
    assert [(e.key, e.event_id, e.kind) for e in got] == [(e.key, e.event_id, e.kind) for e in want]
    assert Counting.calls == 12, "past the prepared ones, one generated per event asked for"
