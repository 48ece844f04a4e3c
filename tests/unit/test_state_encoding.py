"""A customer document's bytes: ``CustomerState.encode`` writes exactly what pydantic's serializer writes.

The documents are stored, compared byte for byte by the state cache, and must not change between
versions, so the fast encoder is checked against pydantic's ``to_json`` on any text (non-ASCII, control
characters, quotes, backslashes) and any shape, and decoding its bytes gives the same state back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clickcash.actors.state.base import CustomerState, OpenDunning, OrderSummary, PendingStep

_text = st.text(st.characters(codec="utf-8"), max_size=12)
_ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)

_steps = st.builds(PendingStep, kind=_text, due_ms=_ints, channel=st.none() | _text)
_plans = st.builds(
    OpenDunning,
    declines=_ints,
    last_psp=st.none() | _text,
    last_decline_code=st.none() | _text,
    decline_class=_text,
    plan_id=_text,
    correlationid=st.none() | _text,
    campaignid=st.none() | _text,
    synthetic=st.booleans(),
    steps=st.lists(_steps, max_size=4),
    next_index=_ints,
    timer_partition=st.none() | _ints,
)
_orders = st.builds(OrderSummary, amount_cents=_ints, currency=_text, country=_text, network=_text)
_states = st.builds(
    CustomerState,
    timezone=_text,
    channels=st.lists(_text, max_size=3),
    payment_network=st.none() | _text,
    orders=st.dictionaries(_text, _orders, max_size=4),
    open_dunning=st.dictionaries(_text, _plans, max_size=3),
    campaign_units=st.dictionaries(_text, _ints, max_size=3),
    first_seen_ms=st.none() | _ints,
    customer_since_ms=st.none() | _ints,
    lifetime_value_cents=_ints,
    card_retries_ms=st.lists(_ints, max_size=5),
)


@given(_states)
def test_encode_writes_pydantics_bytes_and_decodes_back(state: CustomerState) -> None:
    doc = state.encode()
    assert doc == state.__pydantic_serializer__.to_json(state)
    assert CustomerState.decode(doc) == state


@given(_states, _text, _text)
def test_a_state_changed_in_place_still_encodes_as_pydantic_does(
    state: CustomerState, order_id: str, timezone: str
) -> None:
    """The shard mutates states between batches: assignments and new entries keep the field order."""
    state.timezone = timezone
    state.remember_order(order_id, OrderSummary(amount_cents=1, currency="EUR", country="DE", network="visa"))
    state.open_plan(order_id, OpenDunning(steps=[PendingStep(kind="retry", due_ms=5)]))
    state.first_seen_ms = 7
    assert state.encode() == state.__pydantic_serializer__.to_json(state)


def test_a_default_state_encodes_as_pydantic_does() -> None:
    state = CustomerState()
    assert state.encode() == state.__pydantic_serializer__.to_json(state)
