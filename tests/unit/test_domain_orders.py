"""Order guardrails of issue 3: catalogue price bands and the per-customer campaign quantity limit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from clickcash.actors.engines.orders import check_order, price_bounds_cents
from clickcash.config.domain import CatalogueEntry, DomainConfig, OrderRules, PriceBand, RegionRule
from clickcash.events import LineItem, OrderPlaced, PaymentMethod
from tests.unit._strategies import digits_of, pans

RULES = OrderRules(
    regions={"US": RegionRule(currencies=["USD"], networks=["visa"])},
    default_price=PriceBand(floor_unit_cents=50, ceiling_unit_cents=100_000),
    catalogue=[
        CatalogueEntry(pattern="GC-*", floor_unit_cents=1_000, ceiling_unit_cents=50_000),
        CatalogueEntry(sku="GC-SPECIAL", floor_unit_cents=500),  # exact beats the pattern above
        CatalogueEntry(pattern="TS-*", list_price_cents=2_500, max_discount_pct=40),
        CatalogueEntry(pattern="TS-X*", floor_unit_cents=1),  # shadowed: first pattern wins
    ],
    default_campaign_quantity_limit=10,
    campaign_quantity_limits={"doorbusters": 2},
)

SKUS = ["GC-1", "GC-SPECIAL", "TS-1", "TS-XL", "other", "sku-1"]


def _order(items: list[LineItem]) -> OrderPlaced:
    return OrderPlaced(
        order_id="o-1",
        customer_id="c-1",
        country="US",
        currency="USD",
        items=items,
        total_cents=sum(i.quantity * i.unit_price_cents for i in items),
        payment_method=PaymentMethod(type="card", network="visa", token="tok_ok"),
    )


def _expected_bounds(sku: str) -> tuple[int, int | None]:
    """The bands written out by hand from RULES (independent of the product's lookup)."""
    if sku == "GC-SPECIAL":
        return 500, None
    if sku.startswith("GC-"):
        return 1_000, 50_000
    if sku.startswith("TS-"):
        return 1_500, 2_500  # 2500 less 40 %
    return 50, 100_000


items = st.builds(
    LineItem,
    sku=st.sampled_from(SKUS),
    quantity=st.integers(min_value=1, max_value=3),
    unit_price_cents=st.integers(min_value=0, max_value=120_000),
)


@given(lines=st.lists(items, min_size=1, max_size=5))
def test_price_guardrails_reject_exactly_the_lines_outside_their_band(lines: list[LineItem]) -> None:
    reasons = check_order(_order(lines), RULES)
    below = [r.field for r in reasons if r.code == "unit_price_below_floor"]
    above = [r.field for r in reasons if r.code == "unit_price_above_ceiling"]
    want_below, want_above = [], []
    for n, item in enumerate(lines):
        floor, ceiling = _expected_bounds(item.sku)
        if item.unit_price_cents < floor:
            want_below.append(f"data.items.{n}.unit_price_cents")
        elif ceiling is not None and item.unit_price_cents > ceiling:
            want_above.append(f"data.items.{n}.unit_price_cents")
    assert below == want_below
    assert above == want_above


def test_price_band_examples() -> None:
    assert price_bounds_cents("TS-XL", RULES)[:2] == (1_500, 2_500)
    assert price_bounds_cents("GC-SPECIAL", RULES)[:2] == (500, None)
    assert price_bounds_cents("anything", RULES) == (50, 100_000, "default")
    codes = [
        r.code for r in check_order(_order([LineItem(sku="TS-1", quantity=1, unit_price_cents=1_499)]), RULES)
    ]
    assert codes == ["unit_price_below_floor"]
    assert check_order(_order([LineItem(sku="TS-1", quantity=1, unit_price_cents=1_500)]), RULES) == []


def test_discount_floor_rounds_up_so_the_discount_never_exceeds_the_maximum() -> None:
    entry = CatalogueEntry(sku="x", list_price_cents=999, max_discount_pct=33.3)
    floor, ceiling = entry.bounds_cents()
    assert ceiling == 999
    assert (999 - floor) / 999 <= 0.333
    assert (999 - (floor - 1)) / 999 > 0.333


@given(
    campaign=st.sampled_from([None, "doorbusters", "spring-sale"]),
    so_far=st.integers(min_value=0, max_value=15),
    quantities=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=4),
)
def test_campaign_quantity_limit_rejects_exactly_when_the_total_would_pass_it(
    campaign: str | None, so_far: int, quantities: list[int]
) -> None:
    order = _order([LineItem(sku="other", quantity=q, unit_price_cents=100) for q in quantities])
    reasons = check_order(order, RULES, campaign_id=campaign, quantity_so_far=so_far)
    limit = None if campaign is None else {"doorbusters": 2}.get(campaign, 10)
    hit = [r for r in reasons if r.code == "campaign_quantity_limit"]
    assert bool(hit) == (limit is not None and so_far + sum(quantities) > limit)
    if hit:
        assert hit[0].field == "data.items"
        assert str(limit) in (hit[0].detail or "")


def test_campaign_limit_is_inclusive() -> None:
    order = _order([LineItem(sku="other", quantity=1, unit_price_cents=100)])
    assert check_order(order, RULES, campaign_id="doorbusters", quantity_so_far=1) == []
    codes = [r.code for r in check_order(order, RULES, campaign_id="doorbusters", quantity_so_far=2)]
    assert codes == ["campaign_quantity_limit"]


def test_rules_without_guardrails_accept_any_price_and_quantity() -> None:
    plain = OrderRules(regions=RULES.regions)
    order = _order([LineItem(sku="free", quantity=5, unit_price_cents=0)])
    assert check_order(order, plain, campaign_id="any", quantity_so_far=10**6) == []


@given(pan=pans(separators=False))
def test_a_card_number_as_sku_is_not_echoed(pan: str) -> None:
    order = _order([LineItem(sku=pan, quantity=1, unit_price_cents=0)])
    reasons = check_order(order, RULES)
    assert "unit_price_below_floor" in [r.code for r in reasons]
    assert digits_of(pan) not in digits_of("".join(r.model_dump_json() for r in reasons))


@given(lines=st.lists(items, min_size=1, max_size=5), so_far=st.integers(min_value=0, max_value=12))
def test_check_order_is_deterministic(lines: list[LineItem], so_far: int) -> None:
    order = _order(lines)
    first = check_order(order, RULES, campaign_id="c", quantity_so_far=so_far)
    assert first == check_order(order, RULES, campaign_id="c", quantity_so_far=so_far)


def test_shipped_rules_accept_the_usual_test_orders_and_guard_the_catalogue(domain: DomainConfig) -> None:
    rules = domain.orders
    ok = _order([LineItem(sku="sku-1", quantity=2, unit_price_cents=5_000)])
    assert check_order(ok, rules, campaign_id="spring-sale", quantity_so_far=0) == []
    cheap_tv = _order([LineItem(sku="TV-55", quantity=1, unit_price_cents=999)])
    assert [r.code for r in check_order(cheap_tv, rules)] == ["unit_price_below_floor"]
    doorbuster = _order([LineItem(sku="sku-1", quantity=3, unit_price_cents=5_000)])
    codes = [r.code for r in check_order(doorbuster, rules, campaign_id="black-friday-doorbusters")]
    assert codes == ["campaign_quantity_limit"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sku": "a", "pattern": "a*", "floor_unit_cents": 1}, "exactly one of sku or pattern"),
        ({"sku": "a", "list_price_cents": 100}, "go together"),
        ({"sku": "a"}, "give floor_unit_cents"),
        ({"sku": "a", "floor_unit_cents": 10, "ceiling_unit_cents": 5}, "above ceiling"),
        ({"sku": "a", "list_price_cents": 100, "max_discount_pct": 10, "floor_unit_cents": 200}, "above"),
        ({"sku": "a", "floor_unit_cents": 1, "colour": "red"}, "Extra inputs"),
    ],
)
def test_bad_catalogue_entries_are_rejected_clearly(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CatalogueEntry.model_validate(kwargs)


def test_duplicate_catalogue_skus_are_rejected() -> None:
    with pytest.raises(ValidationError, match="duplicate sku"):
        OrderRules(
            regions={},
            catalogue=[
                CatalogueEntry(sku="a", floor_unit_cents=1),
                CatalogueEntry(sku="a", floor_unit_cents=2),
            ],
        )
