"""The hot outputs' ``data`` written without models is byte for byte the models' own JSON."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clickcash.actors import _output_json as output_json
from clickcash.events import OrderAccepted, Reason, RouteDecided

_ids = st.text(
    st.characters(codec="utf-8", min_codepoint=0x20, exclude_characters="\x7f"), min_size=1, max_size=20
)
_text = st.text(st.characters(codec="utf-8"), max_size=20)
_cents = st.integers(min_value=0, max_value=10**12)
_codes = st.from_regex(r"^[A-Z]{3}$", fullmatch=True)
_countries = st.from_regex(r"^[A-Z]{2}$", fullmatch=True)
_reasons = st.builds(Reason, code=_text, field=st.none() | _text, detail=st.none() | _text)


@given(_ids, _ids, _cents, _codes, _countries)
def test_order_accepted_is_the_models_json(
    order_id: str, customer_id: str, total: int, currency: str, country: str
) -> None:
    model = OrderAccepted(
        order_id=order_id, customer_id=customer_id, total_cents=total, currency=currency, country=country
    )
    fast = output_json.order_accepted(order_id, customer_id, total, currency, country)
    assert fast == model.__pydantic_serializer__.to_json(model)


@given(
    _ids,
    _ids,
    st.integers(min_value=1, max_value=100),
    _ids,
    st.lists(_text, max_size=4),
    _cents,
    _codes,
    _text,
    st.lists(_reasons, max_size=4),
)
def test_route_decided_is_the_models_json(
    order_id: str,
    customer_id: str,
    attempt: int,
    psp: str,
    fallbacks: list[str],
    amount: int,
    currency: str,
    key: str,
    reasons: list[Reason],
) -> None:
    model = RouteDecided(
        order_id=order_id,
        customer_id=customer_id,
        attempt=attempt,
        psp=psp,
        fallbacks=fallbacks,
        amount_cents=amount,
        currency=currency,
        idempotency_key=key,
        reasons=reasons,
    )
    fast = output_json.route_decided(
        order_id, customer_id, attempt, psp, fallbacks, amount, currency, key, reasons
    )
    assert fast == model.__pydantic_serializer__.to_json(model)
