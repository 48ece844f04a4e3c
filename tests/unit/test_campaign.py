"""The campaign traffic generator: deterministic, with the configured mix, and valid where it means to be."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from clickcash.actors._decode import InputEvent, decode_record
from clickcash.events import DeadLetter
from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix, GeneratedEvent, loadtest_mix

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
N = 20_000


def generate(mix: CampaignMix, n: int, seed: int = 7, run_id: str = "run") -> list[GeneratedEvent]:
    gen = CampaignGenerator(mix, seed=seed, run_id=run_id)
    return [gen.next_event(NOW) for _ in range(n)]


MIXES = {
    "default": CampaignMix(),
    "noisy": CampaignMix(duplicate_rate=0.05, malformed_rate=0.02),
    "loadtest": loadtest_mix(),
    "abuse": loadtest_mix("abuse"),
}


@pytest.fixture(scope="module")
def traffic() -> dict[str, list[GeneratedEvent]]:
    return {name: generate(mix, N, seed=3) for name, mix in MIXES.items()}


def test_same_seed_same_traffic() -> None:
    assert generate(CampaignMix(), 2_000, seed=42) == generate(CampaignMix(), 2_000, seed=42)
    assert generate(loadtest_mix(), 2_000, seed=42) == generate(loadtest_mix(), 2_000, seed=42)


def test_another_seed_other_traffic() -> None:
    assert [e.value for e in generate(CampaignMix(), 200, seed=1)] != [
        e.value for e in generate(CampaignMix(), 200, seed=2)
    ]


def test_events_iterator_is_deterministic_apart_from_the_wall_clock() -> None:
    def strip_time(events: list[GeneratedEvent]) -> list[tuple[bytes | None, str, object]]:
        out = []
        for e in events:
            body = orjson.loads(e.value) if e.kind != "malformed" else e.value
            if isinstance(body, dict):
                body.pop("time", None)
            out.append((e.key, e.kind, body))
        return out

    one = list(CampaignGenerator(CampaignMix(), seed=5).events(1_000))
    two = list(CampaignGenerator(CampaignMix(), seed=5).events(1_000))
    assert strip_time(one) == strip_time(two)


def _share_ok(observed: int, n: int, rate: float) -> bool:
    sd = (n * rate * (1 - rate)) ** 0.5
    return abs(observed - n * rate) <= 5 * sd + 2


@pytest.mark.parametrize("name", sorted(MIXES))
def test_duplicate_and_malformed_shares_match_the_configured_rates(
    name: str, traffic: dict[str, list[GeneratedEvent]]
) -> None:
    mix, events = MIXES[name], traffic[name]
    kinds = Counter(e.kind for e in events)
    assert _share_ok(kinds["malformed"], N, mix.malformed_rate), (kinds["malformed"], N * mix.malformed_rate)
    assert _share_ok(kinds["duplicate"], N, mix.duplicate_rate), (kinds["duplicate"], N * mix.duplicate_rate)


def test_zero_rates_give_no_duplicates_or_malformed_records() -> None:
    kinds = Counter(e.kind for e in generate(CampaignMix(duplicate_rate=0, malformed_rate=0), 5_000))
    assert kinds["duplicate"] == 0
    assert kinds["malformed"] == 0


@pytest.mark.parametrize("name", sorted(MIXES))
def test_duplicates_are_exact_resends_of_earlier_events(
    name: str, traffic: dict[str, list[GeneratedEvent]]
) -> None:
    seen: dict[str, GeneratedEvent] = {}
    for e in traffic[name]:
        if e.kind == "duplicate":
            assert e.event_id in seen
            original = seen[e.event_id]
            assert (e.key, e.value) == (original.key, original.value)
        elif e.kind != "malformed":
            assert e.event_id is not None
            assert e.event_id not in seen, "only duplicates re-use an event id"
            seen[e.event_id] = e


@pytest.mark.parametrize("name", sorted(MIXES))
def test_customers_are_skewed(name: str, traffic: dict[str, list[GeneratedEvent]]) -> None:
    per_customer = Counter(e.key for e in traffic[name])
    top = max(1, MIXES[name].customers // 100)
    top_share = sum(c for _, c in per_customer.most_common(top)) / N
    assert top_share > 0.15, f"the top 1% of customers got only {top_share:.1%} of events"
    # and yet most customers are seen: a long tail, not a handful of keys
    assert len(per_customer) > min(MIXES[name].customers, N) * 0.05


@pytest.mark.parametrize("name", sorted(MIXES))
def test_every_event_decodes_cleanly_and_every_malformed_one_is_dead_lettered(
    name: str, traffic: dict[str, list[GeneratedEvent]]
) -> None:
    types: Counter[str] = Counter()
    for offset, e in enumerate(traffic[name]):
        out = decode_record("clickcash.events", 0, offset, e.key, e.value, 64 * 1024)
        if e.kind == "malformed":
            assert isinstance(out, DeadLetter), f"malformed record decoded: {e.value!r}"
            continue
        assert isinstance(out, InputEvent), f"{e.kind} event did not decode: {out!r}"
        assert out.id == e.event_id
        assert e.key == out.customer_id.encode()
        if e.kind != "duplicate":
            assert out.type == e.kind
        types[out.type] += 1
    assert set(types) >= {"order.placed", "payment.authorized", "payment.declined", "payment_method.updated"}


def test_generated_orders_add_up_and_carry_the_campaign(traffic: dict[str, list[GeneratedEvent]]) -> None:
    units: Counter[str] = Counter()
    for e in traffic["default"]:
        if e.kind != "order.placed":
            continue
        body = orjson.loads(e.value)
        data = body["data"]
        if "campaignid" in body:
            assert body["campaignid"] == "spring-sale"
            units[data["customer_id"]] += sum(i["quantity"] for i in data["items"])
        else:  # a regular purchase of a customer past the campaign budget
            assert units[data["customer_id"]] > 0
        assert data["total_cents"] == sum(i["quantity"] * i["unit_price_cents"] for i in data["items"])
        assert not data["payment_method"]["token"].isdigit()


def test_customer_prefix_shares_customers_but_not_event_ids() -> None:
    a = CampaignGenerator(CampaignMix(), seed=1, run_id="gen-a", customer_prefix="pop")
    b = CampaignGenerator(CampaignMix(), seed=1, run_id="gen-b", customer_prefix="pop")
    ea = [a.next_event(NOW) for _ in range(300)]
    eb = [b.next_event(NOW) for _ in range(300)]
    assert {e.key for e in ea if e.key} & {e.key for e in eb if e.key}
    assert all(e.key is None or e.key.startswith(b"pop-") for e in ea + eb)
    assert not {e.event_id for e in ea if e.event_id} & {e.event_id for e in eb if e.event_id}


def test_campaign_orders_stay_within_each_customers_budget(traffic: dict[str, list[GeneratedEvent]]) -> None:
    budget = MIXES["default"].units_per_customer
    assert budget is not None
    units: Counter[str] = Counter()
    for e in traffic["default"]:
        body = orjson.loads(e.value) if e.kind == "order.placed" else {}
        if "campaignid" in body:
            units[body["data"]["customer_id"]] += sum(i["quantity"] for i in body["data"]["items"])
    assert max(units.values()) <= budget


def test_the_abuse_mix_puts_every_order_in_the_campaign(traffic: dict[str, list[GeneratedEvent]]) -> None:
    orders = [orjson.loads(e.value) for e in traffic["abuse"] if e.kind == "order.placed"]
    assert orders and all(o["campaignid"] == "spring-sale" for o in orders)
    assert MIXES["abuse"].name == "abuse" and MIXES["loadtest"].name == "campaign"


def test_an_unknown_mix_name_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="campaign, abuse"):
        loadtest_mix("spiky")
