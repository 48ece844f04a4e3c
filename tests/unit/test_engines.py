"""The pure engines: order guardrails, PSP routing and dunning, as properties over generated inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import assume, given
from hypothesis import strategies as st

from clickcash.actors.engines.dunning import classify_decline, plan_dunning
from clickcash.actors.engines.orders import check_order
from clickcash.actors.engines.psp_routing import RouteRequest, eligible, expected_fee_cents, route_payment
from clickcash.config.domain import DomainConfig, DunningPolicy, OrderRules, Psp, RegionRule
from clickcash.events import LineItem, OrderPlaced, PaymentDeclined, PaymentMethod
from tests.unit._strategies import VISA_TEST_PAN, digits_of, pans

NETWORKS = ["visa", "mastercard", "amex", "discover", "paypal", "applepay", "googlepay", "sepa"]
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "JP"]
CURRENCIES = ["USD", "GBP", "EUR", "JPY"]

RULES = OrderRules(
    max_quantity_per_line=50,
    max_order_total_cents=2_000_000,
    regions={
        "US": RegionRule(currencies=["USD"], networks=["visa", "mastercard", "amex", "paypal"]),
        "DE": RegionRule(currencies=["EUR"], networks=["visa", "mastercard", "sepa"]),
    },
)

# --- order guardrails ---------------------------------------------------------------------------------

line_items = st.builds(
    LineItem,
    sku=st.text(alphabet="abcdef-0123", min_size=1, max_size=8),
    quantity=st.integers(min_value=1, max_value=60),
    unit_price_cents=st.integers(min_value=0, max_value=100_000),
)
non_card_tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20).map(
    lambda s: "tok_" + s
)


@st.composite
def orders(draw: st.DrawFn, token: st.SearchStrategy[str] = non_card_tokens) -> OrderPlaced:
    items = draw(st.lists(line_items, min_size=1, max_size=6))
    line_total = sum(i.quantity * i.unit_price_cents for i in items)
    total = draw(st.one_of(st.just(line_total), st.integers(min_value=0, max_value=3_000_000)))
    return OrderPlaced(
        order_id="o-1",
        customer_id="c-1",
        country=draw(st.sampled_from(COUNTRIES)),
        currency=draw(st.sampled_from(CURRENCIES)),
        items=items,
        total_cents=total,
        payment_method=PaymentMethod(
            type="card",
            network=draw(st.sampled_from(NETWORKS)),
            token=draw(token),
        ),
    )


def _codes(order: OrderPlaced) -> list[str]:
    return [r.code for r in check_order(order, RULES)]


card_affixes = st.text(alphabet="abcxyz_:/", max_size=10)


@given(order=orders(), pan=pans(), prefix=card_affixes, suffix=card_affixes)
def test_an_order_whose_token_is_a_card_number_is_rejected_without_echoing_it(
    order: OrderPlaced, pan: str, prefix: str, suffix: str
) -> None:
    token = prefix + pan + suffix
    order = order.model_copy(
        update={"payment_method": order.payment_method.model_copy(update={"token": token})}
    )
    reasons = check_order(order, RULES)
    raw = [r for r in reasons if r.code == "raw_card_data"]
    assert len(raw) == 1
    assert raw[0].field == "data.payment_method.token"
    dumped = orjson.dumps([r.model_dump() for r in reasons]).decode()
    assert pan not in dumped
    assert digits_of(pan) not in digits_of(dumped)


@given(order=orders())
def test_a_token_is_never_mistaken_for_a_card_number(order: OrderPlaced) -> None:
    assert "raw_card_data" not in _codes(order)


def test_the_visa_test_pan_as_token_is_rejected() -> None:
    order = OrderPlaced(
        order_id="o-1",
        customer_id="c-1",
        country="US",
        currency="USD",
        items=[LineItem(sku="a", quantity=1, unit_price_cents=100)],
        total_cents=100,
        payment_method=PaymentMethod(type="card", network="visa", token=VISA_TEST_PAN),
    )
    assert _codes(order) == ["raw_card_data"]


@given(order=orders())
def test_total_mismatch_is_detected_exactly_when_lines_do_not_add_up(order: OrderPlaced) -> None:
    line_total = sum(i.quantity * i.unit_price_cents for i in order.items)
    reasons = [r for r in check_order(order, RULES) if r.code == "total_mismatch"]
    if line_total == order.total_cents:
        assert reasons == []
    else:
        assert len(reasons) == 1
        assert reasons[0].field == "data.total_cents"
        assert str(line_total) in (reasons[0].detail or "")


@given(order=orders())
def test_every_rule_is_reported_not_just_the_first(order: OrderPlaced) -> None:
    codes = _codes(order)
    region = RULES.regions.get(order.country)
    assert ("country_not_served" in codes) == (region is None)
    if region is not None:
        assert ("currency_not_allowed" in codes) == (order.currency not in region.currencies)
        assert ("payment_method_not_allowed" in codes) == (
            order.payment_method.network not in region.networks
        )
    assert ("total_above_limit" in codes) == (order.total_cents > RULES.max_order_total_cents)
    over = [n for n, i in enumerate(order.items) if i.quantity > RULES.max_quantity_per_line]
    fields = [r.field for r in check_order(order, RULES) if r.code == "quantity_above_limit"]
    assert fields == [f"data.items.{n}.quantity" for n in over]


@given(
    country=st.sampled_from(["US", "DE"]),
    data=st.data(),
    items=st.lists(
        st.builds(
            LineItem,
            sku=st.just("s"),
            quantity=st.integers(min_value=1, max_value=50),
            unit_price_cents=st.integers(min_value=0, max_value=5_000),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_an_order_within_the_rules_is_accepted(
    country: str, data: st.DataObject, items: list[LineItem]
) -> None:
    region = RULES.regions[country]
    order = OrderPlaced(
        order_id="o-1",
        customer_id="c-1",
        country=country,
        currency=data.draw(st.sampled_from(region.currencies)),
        items=items,
        total_cents=sum(i.quantity * i.unit_price_cents for i in items),
        payment_method=PaymentMethod(
            type="card",
            network=data.draw(st.sampled_from(region.networks)),
            token="tok_ok",
        ),
    )
    assert check_order(order, RULES) == []


# --- PSP routing ----------------------------------------------------------------------------------------

PSP_NAMES = ["stripe", "adyen", "braintree", "paypal", "checkout", "worldpay"]
small_subsets = st.lists(st.sampled_from(["US", "GB", "DE"]), unique=True, max_size=3)


@st.composite
def psp_tables(draw: st.DrawFn) -> list[Psp]:
    names = draw(st.lists(st.sampled_from(PSP_NAMES), unique=True, min_size=1, max_size=6))
    return [
        Psp(
            name=name,
            countries=draw(small_subsets),
            currencies=draw(st.lists(st.sampled_from(["USD", "GBP", "EUR"]), unique=True, max_size=3)),
            networks=draw(
                st.lists(st.sampled_from(["visa", "mastercard", "paypal"]), unique=True, max_size=3)
            ),
            priority=draw(st.integers(min_value=0, max_value=50)),
            fee_pct=draw(st.sampled_from([0.0, 1.5, 2.59, 2.9, 3.49])),
            fee_fixed_cents=draw(st.integers(min_value=0, max_value=60)),
        )
        for name in names
    ]


@st.composite
def route_cases(draw: st.DrawFn, ensure_eligible: bool = False) -> tuple[RouteRequest, list[Psp]]:
    psps = draw(psp_tables())
    request = RouteRequest(
        country=draw(st.sampled_from(["US", "GB", "DE"])),
        currency=draw(st.sampled_from(["USD", "GBP", "EUR"])),
        network=draw(st.sampled_from(["visa", "mastercard", "paypal"])),
        amount_cents=draw(st.integers(min_value=0, max_value=5_000_000)),
    )
    if ensure_eligible:
        # make the first one to three PSPs of the table eligible, so avoiding one often leaves another
        for i in range(min(len(psps), draw(st.integers(min_value=1, max_value=3)))):
            p = psps[i]
            psps[i] = p.model_copy(
                update={
                    "countries": sorted({*p.countries, request.country}),
                    "currencies": sorted({*p.currencies, request.currency}),
                    "networks": sorted({*p.networks, request.network}),
                }
            )
    # mostly avoid PSPs of the table (as after a real decline), sometimes one that is gone
    avoid = draw(st.lists(st.sampled_from([*(p.name for p in psps), "gone"]), unique=True, max_size=2))
    return (
        RouteRequest(
            request.country, request.currency, request.network, request.amount_cents, frozenset(avoid)
        ),
        psps,
    )


@given(case=route_cases())
def test_route_chooses_an_eligible_psp_whenever_one_exists(case: tuple[RouteRequest, list[Psp]]) -> None:
    request, psps = case
    eligible_names = {p.name for p in psps if eligible(p, request)}
    decision = route_payment(request, psps)
    if not eligible_names:
        assert decision is None
        return
    assert decision is not None
    assert decision.psp in eligible_names
    assert set(decision.fallbacks) <= eligible_names
    assert len(decision.fallbacks) == len(set(decision.fallbacks))
    assert decision.psp not in decision.fallbacks
    assert {decision.psp, *decision.fallbacks} == eligible_names
    assert [r.code for r in decision.reasons][:2] == ["eligible", "lowest_expected_fee"]


@given(case=route_cases(ensure_eligible=True))
def test_route_avoids_the_declining_psp_when_another_is_eligible(
    case: tuple[RouteRequest, list[Psp]],
) -> None:
    request, psps = case
    eligible_names = {p.name for p in psps if eligible(p, request)}
    assume(eligible_names - request.avoid)
    decision = route_payment(request, psps)
    assert decision is not None
    assert decision.psp not in request.avoid
    # avoided PSPs are the last resort, after every PSP that did not decline
    ranked = [decision.psp, *decision.fallbacks]
    not_avoided = [n for n in ranked if n not in request.avoid]
    assert ranked[: len(not_avoided)] == not_avoided
    if request.avoid & eligible_names:
        assert "avoided_after_decline" in [r.code for r in decision.reasons]


@given(case=route_cases(ensure_eligible=True))
def test_route_falls_back_to_an_avoided_psp_rather_than_none(case: tuple[RouteRequest, list[Psp]]) -> None:
    request, psps = case
    eligible_names = {p.name for p in psps if eligible(p, request)}
    request = RouteRequest(
        request.country, request.currency, request.network, request.amount_cents, frozenset(eligible_names)
    )
    decision = route_payment(request, psps)
    assert decision is not None
    assert decision.psp in eligible_names


@given(case=route_cases(ensure_eligible=True))
def test_route_ranks_by_expected_fee_then_priority(case: tuple[RouteRequest, list[Psp]]) -> None:
    request, psps = case
    decision = route_payment(request, psps)
    assume(decision is not None)
    assert decision is not None
    by_name = {p.name: p for p in psps}
    preferred = [n for n in [decision.psp, *decision.fallbacks] if n not in request.avoid] or [
        decision.psp,
        *decision.fallbacks,
    ]
    keys = [(expected_fee_cents(by_name[n], request.amount_cents), by_name[n].priority) for n in preferred]
    assert keys == sorted(keys)


def test_route_with_the_shipped_psps(domain: DomainConfig) -> None:
    decision = route_payment(RouteRequest("US", "USD", "visa", 10_000), domain.psps)
    assert decision is not None
    # adyen 1.5% + 25c = 175c, braintree 2.59% + 49c = 308c, stripe 2.9% + 30c = 320c
    assert decision.psp == "adyen"
    assert decision.fallbacks == ["braintree", "stripe"]
    after_decline = route_payment(
        RouteRequest("US", "USD", "visa", 10_000, frozenset({"adyen"})), domain.psps
    )
    assert after_decline is not None
    assert after_decline.psp == "braintree"
    assert after_decline.fallbacks == ["stripe", "adyen"]
    assert route_payment(RouteRequest("JP", "JPY", "visa", 10_000), domain.psps) is None


# --- dunning --------------------------------------------------------------------------------------------

CODES = ["04", "05", "14", "51", "54", "61", "91", "96", "timeout", "R1", "zz"]
CHANNELS = ["email", "sms", "push"]
offsets_h = st.lists(
    st.floats(min_value=0.01, max_value=24 * 60, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=6,
)


@st.composite
def policies(draw: st.DrawFn) -> DunningPolicy:
    hard = draw(st.lists(st.sampled_from(CODES), unique=True, max_size=5))
    technical = draw(st.lists(st.sampled_from([c for c in CODES if c not in hard]), unique=True, max_size=4))
    return DunningPolicy(
        hard_codes=hard,
        technical_codes=technical,
        soft_retry_offsets_h=draw(offsets_h),
        technical_retry_offsets_h=draw(offsets_h),
        reminder_channel=draw(st.sampled_from([*CHANNELS, "letter"])),
    )


aware_times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.sampled_from([UTC])
)


def _declined(code: str) -> PaymentDeclined:
    return PaymentDeclined(
        order_id="o-1",
        customer_id="c-1",
        attempt=1,
        psp="adyen",
        amount_cents=1000,
        currency="USD",
        decline_code=code,
    )


@given(
    policy=policies(),
    code=st.sampled_from(CODES),
    now=aware_times,
    channels=st.lists(st.sampled_from(CHANNELS), unique=True, max_size=3),
)
def test_dunning_plan_properties(
    policy: DunningPolicy, code: str, now: datetime, channels: list[str]
) -> None:
    plan = plan_dunning(_declined(code), policy, now, channels)
    kinds = [s.kind for s in plan.steps]
    assert plan.decline_class == classify_decline(code, policy)
    if code in policy.hard_codes:
        assert plan.decline_class == "hard"
        assert "retry" not in kinds
        assert kinds == (["reminder"] if channels else [])
    for step in plan.steps:
        if step.kind == "reminder":
            assert step.due_at >= now
        else:
            assert step.due_at > now
    for step in plan.steps:
        if step.kind != "reminder":
            continue
        assert channels, "a reminder needs a channel the customer allowed"
        assert step.channel in channels
        if policy.reminder_channel in channels:
            assert step.channel == policy.reminder_channel
    retries = [s.due_at for s in plan.steps if s.kind == "retry"]
    if plan.decline_class == "soft":
        assert len(retries) == len(policy.soft_retry_offsets_h)
        assert ("reminder" in kinds) == bool(channels)
    if plan.decline_class == "technical":
        assert len(retries) == len(policy.technical_retry_offsets_h)
    assert plan.next_wake() == min((s.due_at for s in plan.steps), default=None)


def test_soft_decline_with_the_shipped_policy(domain: DomainConfig) -> None:
    now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    plan = plan_dunning(_declined("51"), domain.dunning, now, ["sms", "email"])
    assert plan.decline_class == "soft"
    assert [(s.kind, s.due_at - now, s.channel) for s in plan.steps] == [
        ("reminder", timedelta(0), "email"),
        *[("retry", timedelta(hours=h), None) for h in (24, 72, 120, 168, 240)],
    ]


def test_hard_decline_with_the_shipped_policy_only_reminds(domain: DomainConfig) -> None:
    now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    plan = plan_dunning(_declined("54"), domain.dunning, now, ["push"])
    assert plan.decline_class == "hard"
    assert [(s.kind, s.due_at, s.channel) for s in plan.steps] == [("reminder", now, "push")]


def test_no_reminder_when_the_customer_allowed_no_channel(domain: DomainConfig) -> None:
    plan = plan_dunning(_declined("05"), domain.dunning, datetime(2026, 1, 1, tzinfo=UTC), [])
    assert plan.steps, "the soft decline is still retried"
    assert not [s for s in plan.steps if s.kind == "reminder"]


def test_classify_decline_follows_the_shipped_config(domain: DomainConfig) -> None:
    policy = domain.dunning
    for code in policy.hard_codes:
        assert classify_decline(code, policy) == "hard", code
    for code in policy.technical_codes:
        assert classify_decline(code, policy) == "technical", code
    for code in ("51", "05", "61", "65", "1A", "unknown"):
        assert code not in policy.hard_codes
        assert code not in policy.technical_codes
        assert classify_decline(code, policy) == "soft", code


@given(policy=policies(), code=st.sampled_from(CODES))
def test_classify_decline_per_policy(policy: DunningPolicy, code: str) -> None:
    expected = (
        "hard" if code in policy.hard_codes else "technical" if code in policy.technical_codes else "soft"
    )
    assert classify_decline(code, policy) == expected
