"""Outputs are encoded by pydantic-core directly; the bytes must be those of the dict-then-orjson path
(stored first responses and consumers see the same bytes whichever encoded them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from pydantic import BaseModel

from clickcash.events import (
    DunningClosed,
    DunningScheduled,
    DunningStep,
    DunningStepDue,
    OrderAccepted,
    OrderRejected,
    Reason,
    RouteDecided,
)

TRICKY = ["plain", "ünïcödé €", "tab\tand\nnewline", 'quote" back\\slash', "\u2028\u2029", "🙂", "del\x7f"]


def _samples(text: str) -> list[BaseModel]:
    reasons = [
        Reason(code="scored", field=None, detail=text),
        Reason(code="x", field="data.items", detail=None),
    ]
    at = datetime(2026, 3, 2, 9, 30, 0, 123456, tzinfo=UTC)
    return [
        OrderAccepted(order_id="o-1", customer_id="c-1", total_cents=100, currency="USD", country="US"),
        OrderRejected(order_id="o-1", customer_id="c-1", reasons=reasons),
        RouteDecided(
            order_id="o-1",
            customer_id="c-1",
            attempt=2,
            psp="adyen",
            fallbacks=["stripe", text],
            amount_cents=0,
            currency="EUR",
            idempotency_key=f"o-1:{text}",
            reasons=reasons,
        ),
        DunningScheduled(
            order_id="o-1",
            customer_id="c-1",
            decline_code="51",
            decline_class="soft",
            steps=[
                DunningStep(kind="retry", due_at=at, channel=None),
                DunningStep(kind="reminder", due_at=at + timedelta(days=1), channel="email"),
                DunningStep(
                    kind="escalation", due_at=at.astimezone(timezone(timedelta(hours=2))), channel=text
                ),
            ],
        ),
        DunningStepDue(
            order_id="o-1", customer_id="c-1", plan_id="p", step_index=0, kind="retry", attempt=None
        ),
        DunningClosed(order_id="o-1", customer_id="c-1", reason=text),
    ]


@pytest.mark.parametrize("text", TRICKY)
def test_direct_encoding_is_byte_identical_to_dumping_the_dict(text: str) -> None:
    for model in _samples(text):
        assert model.__pydantic_serializer__.to_json(model) == orjson.dumps(model.model_dump(mode="json"))
