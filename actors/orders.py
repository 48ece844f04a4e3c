"""Order guardrails: is a placed order acceptable? A pure function of the order and the rules."""

from __future__ import annotations

from clickcash.events import OrderPlaced, Reason, looks_like_card_number
from config.domain import OrderRules


def check_order(order: OrderPlaced, rules: OrderRules) -> list[Reason]:
    """Return every reason to reject ``order``; an empty list means accept.

    All reasons are collected, not just the first, so the customer-facing service can fix them in one go.
    A token that looks like a card number is reported without echoing it.
    """
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
