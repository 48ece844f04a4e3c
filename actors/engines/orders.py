"""Order guardrails: is a placed order acceptable? A pure function of the order, the rules and the
customer's campaign history (passed in; the shard keeps it in state).

Reason codes (stable, for the customer-facing service): ``raw_card_data``, ``total_mismatch``,
``total_above_limit``, ``quantity_above_limit``, ``unit_price_below_floor``, ``unit_price_above_ceiling``,
``campaign_quantity_limit``, ``country_not_served``, ``currency_not_allowed``, ``payment_method_not_allowed``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from clickcash.config.domain import CatalogueEntry, OrderRules
from clickcash.events import LineItem, OrderPlaced, Reason, looks_like_card_number


def price_bounds_cents(sku: str, rules: OrderRules) -> tuple[int, int | None, str]:
    """(floor, ceiling, source) of the unit price allowed for ``sku``.

    An exact catalogue entry wins over a pattern (a SKU-specific price is more deliberate than a family
    rule); among patterns the first in the file wins; otherwise the default band applies. ``source``
    names the rule for the reason detail.
    """
    entry = _catalogue_entry(sku, rules.catalogue)
    if entry is None:
        return rules.default_price.floor_unit_cents, rules.default_price.ceiling_unit_cents, "default"
    floor, ceiling = entry.bounds_cents()
    return floor, ceiling, f"catalogue {entry.sku or entry.pattern}"


_PRICE_RULES_MAX = 100_000
"""SKUs whose price rule is remembered per rules object; SKUs are client input, so the memo is bounded
(cleared when full: it only saves work, it never changes an answer)."""
_price_rules: dict[int, tuple[OrderRules, dict[str, tuple[int, int | None, str]]]] = {}


def _price_memo(rules: OrderRules) -> dict[str, tuple[int, int | None, str]]:
    """The SKU -> price rule memo of ``rules`` (see ``_price_rule``)."""
    memo = _price_rules.get(id(rules))
    if memo is None or memo[0] is not rules:
        if len(_price_rules) >= 16:  # rules objects come and go in tests and reloads; keep a few
            _price_rules.clear()
        memo = (rules, {})
        _price_rules[id(rules)] = memo
    return memo[1]


def _price_rule(sku: str, rules: OrderRules) -> tuple[int, int | None, str]:
    """``price_bounds_cents`` with the source as a reason may show it, remembered per SKU: the catalogue
    scan (exact SKUs, then ``fnmatch`` patterns) and the card-number check ran for every line of every
    order, while a campaign's orders repeat a small set of SKUs. Rules are frozen, so an answer holds as
    long as its rules object does (the memo is keyed by that object, and checked to be it)."""
    known = _price_memo(rules)
    rule = known.get(sku)
    if rule is None:
        floor, ceiling, source = price_bounds_cents(sku, rules)
        # SKUs are the merchant's identifiers, not card data, but they are client input: never echo one
        # that looks like a card number.
        if looks_like_card_number(sku):
            source = "default" if source == "default" else "catalogue"
        if len(known) >= _PRICE_RULES_MAX:
            known.clear()
        rule = known[sku] = (floor, ceiling, source)
    return rule


def _catalogue_entry(sku: str, catalogue: list[CatalogueEntry]) -> CatalogueEntry | None:
    for entry in catalogue:
        if entry.sku == sku:
            return entry
    for entry in catalogue:
        if entry.pattern is not None and fnmatchcase(sku, entry.pattern):
            return entry
    return None


def campaign_quantity_limit(campaign_id: str | None, rules: OrderRules) -> int | None:
    """Units one customer may buy in ``campaign_id`` (``None``: unlimited, or no campaign)."""
    if campaign_id is None:
        return None
    return rules.campaign_quantity_limits.get(campaign_id, rules.default_campaign_quantity_limit)


def order_quantity(order: OrderPlaced) -> int:
    """Units in the order: what the shard adds to the customer's campaign total once it is accepted."""
    return sum(i.quantity for i in order.items)


def check_order(
    order: OrderPlaced,
    rules: OrderRules,
    *,
    campaign_id: str | None = None,
    quantity_so_far: int = 0,
) -> list[Reason]:
    """Return every reason to reject ``order``; an empty list means accept.

    All reasons are collected, not just the first, so the customer-facing service can fix them in one go.
    A token that looks like a card number is reported without echoing it.

    ``quantity_so_far`` is how many units this customer already had accepted in ``campaign_id``; the
    order is rejected when it would take them over the campaign's limit. Without a campaign there is no
    campaign limit.
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
    # one pass over the lines; the reasons keep their order: total, quantities, then prices
    line_total = 0
    units = 0
    quantity_reasons: list[Reason] = []
    price_reasons: list[Reason] = []
    max_quantity = rules.max_quantity_per_line
    known = _price_memo(rules)
    for n, item in enumerate(order.items):
        quantity, unit_price = item.quantity, item.unit_price_cents
        line_total += quantity * unit_price
        units += quantity
        if quantity > max_quantity:
            quantity_reasons.append(
                Reason(
                    code="quantity_above_limit",
                    field=f"data.items.{n}.quantity",
                    detail=f"limit is {max_quantity}",
                )
            )
        rule = known.get(item.sku)
        floor, ceiling, _ = rule if rule is not None else _price_rule(item.sku, rules)
        if unit_price < floor or (ceiling is not None and unit_price > ceiling):
            price_reasons.extend(_price_reasons(n, item, rules))
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
    reasons.extend(quantity_reasons)
    reasons.extend(price_reasons)
    limit = campaign_quantity_limit(campaign_id, rules)
    if limit is not None:
        wanted = units
        if max(quantity_so_far, 0) + wanted > limit:
            reasons.append(
                Reason(
                    code="campaign_quantity_limit",
                    field="data.items",
                    detail=f"campaign {campaign_id} allows {limit} units per customer; "
                    f"{quantity_so_far} already bought, this order adds {wanted}",
                )
            )
    reasons.extend(_region_reasons(order, rules))
    return reasons


def _price_reasons(n: int, item: LineItem, rules: OrderRules) -> list[Reason]:
    floor, ceiling, source = _price_rule(item.sku, rules)
    field = f"data.items.{n}.unit_price_cents"
    if item.unit_price_cents < floor:
        return [
            Reason(
                code="unit_price_below_floor",
                field=field,
                detail=f"{item.unit_price_cents} is below the floor {floor} ({source})",
            )
        ]
    if ceiling is not None and item.unit_price_cents > ceiling:
        return [
            Reason(
                code="unit_price_above_ceiling",
                field=field,
                detail=f"{item.unit_price_cents} is above the ceiling {ceiling} ({source})",
            )
        ]
    return []


def _region_reasons(order: OrderPlaced, rules: OrderRules) -> list[Reason]:
    region = rules.regions.get(order.country)
    if region is None:
        return [Reason(code="country_not_served", field="data.country", detail=order.country)]
    reasons: list[Reason] = []
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
