"""``check_order`` walks an order's lines once; its reasons are exactly those of the rule-by-rule reading.

The reference below is the guardrail written one rule at a time (card-number token, line total, order
total, each line's quantity, each line's unit price, the campaign limit, the region), in the order the
reasons are published. Random orders with lines across the shipped catalogue's price bands, quantities
around the line limit, wrong totals and campaign histories must give the same reasons, in the same order.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clickcash.actors.engines.orders import (
    campaign_quantity_limit,
    check_order,
    order_quantity,
    price_bounds_cents,
)
from clickcash.config.domain import OrderRules, load_domain_config
from clickcash.events import OrderPlaced, Reason, looks_like_card_number

RULES = load_domain_config().orders


def _reference(
    order: OrderPlaced, rules: OrderRules, campaign_id: str | None, quantity_so_far: int
) -> list[Reason]:
    reasons: list[Reason] = []
    if looks_like_card_number(order.payment_method.token):
        reasons.append(
            Reason(
                code="raw_card_data",
                field="data.payment_method.token",
                detail="payment method must be a token, not a card number",
            )
        )
    line_total = sum(i.quantity * i.unit_price_cents for i in order.items)
    if line_total != order.total_cents:
        reasons.append(
            Reason(
                code="total_mismatch",
                field="data.total_cents",
                detail=f"lines sum to {line_total}, total_cents is {order.total_cents}",
            )
        )
    if order.total_cents > rules.max_order_total_cents:
        reasons.append(
            Reason(
                code="total_above_limit",
                field="data.total_cents",
                detail=f"limit is {rules.max_order_total_cents}",
            )
        )
    for n, item in enumerate(order.items):
        if item.quantity > rules.max_quantity_per_line:
            reasons.append(
                Reason(
                    code="quantity_above_limit",
                    field=f"data.items.{n}.quantity",
                    detail=f"limit is {rules.max_quantity_per_line}",
                )
            )
    for n, item in enumerate(order.items):
        floor, ceiling, source = price_bounds_cents(item.sku, rules)
        if looks_like_card_number(item.sku):
            source = "default" if source == "default" else "catalogue"
        field = f"data.items.{n}.unit_price_cents"
        if item.unit_price_cents < floor:
            reasons.append(
                Reason(
                    code="unit_price_below_floor",
                    field=field,
                    detail=f"{item.unit_price_cents} is below the floor {floor} ({source})",
                )
            )
        elif ceiling is not None and item.unit_price_cents > ceiling:
            reasons.append(
                Reason(
                    code="unit_price_above_ceiling",
                    field=field,
                    detail=f"{item.unit_price_cents} is above the ceiling {ceiling} ({source})",
                )
            )
    limit = campaign_quantity_limit(campaign_id, rules)
    if limit is not None:
        wanted = order_quantity(order)
        if max(quantity_so_far, 0) + wanted > limit:
            reasons.append(
                Reason(
                    code="campaign_quantity_limit",
                    field="data.items",
                    detail=f"campaign {campaign_id} allows {limit} units per customer; "
                    f"{quantity_so_far} already bought, this order adds {wanted}",
                )
            )
    region = rules.regions.get(order.country)
    if region is None:
        reasons.append(Reason(code="country_not_served", field="data.country", detail=order.country))
    else:
        if order.currency not in region.currencies:
            reasons.append(
                Reason(
                    code="currency_not_allowed",
                    field="data.currency",
                    detail=f"{order.currency} not allowed in {order.country}",
                )
            )
        if order.payment_method.network not in region.networks:
            reasons.append(
                Reason(
                    code="payment_method_not_allowed",
                    field="data.payment_method.network",
                    detail=f"{order.payment_method.network} not allowed in {order.country}",
                )
            )
    return reasons


_SKUS = ["PRO-ANNUAL", "GC-50", "TSHIRT-RED", "TV-OLED-55", "sku-1", "4111111111111111"]


@st.composite
def orders(draw: st.DrawFn) -> OrderPlaced:
    prices = [0, 49, 50, 1000, 1499, 2500, 2501, 4950, 9999, 10**6]
    lines = draw(
        st.lists(
            st.tuples(
                st.sampled_from(_SKUS), st.integers(min_value=1, max_value=60), st.sampled_from(prices)
            ),
            min_size=1,
            max_size=5,
        )
    )
    items = [{"sku": sku, "quantity": q, "unit_price_cents": p} for sku, q, p in lines]
    total = sum(q * p for _, q, p in lines)
    data: dict[str, Any] = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "country": draw(st.sampled_from(["US", "DE", "GB", "JP"])),
        "currency": draw(st.sampled_from(["USD", "EUR", "GBP"])),
        "items": items,
        "total_cents": draw(st.sampled_from([total, total + 1, max(total - 1, 0), 3_000_000])),
        "payment_method": {
            "type": "card",
            "network": draw(st.sampled_from(["visa", "amex", "sepa"])),
            "token": draw(st.sampled_from(["tok_1", "4111 1111 1111 1111"])),
        },
    }
    return OrderPlaced.model_validate(data)


@settings(max_examples=300)
@given(
    order=orders(),
    campaign=st.sampled_from([None, "spring-sale", "black-friday-doorbusters"]),
    so_far=st.integers(min_value=-1, max_value=60),
)
def test_one_pass_gives_the_reasons_of_the_rule_by_rule_reading(
    order: OrderPlaced, campaign: str | None, so_far: int
) -> None:
    assert check_order(order, RULES, campaign_id=campaign, quantity_so_far=so_far) == _reference(
        order, RULES, campaign, so_far
    )
