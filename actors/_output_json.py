"""The ``data`` of the shard's most frequent outputs as JSON bytes, without building a model first.

Every accepted order writes ``order.accepted`` and ``payment.route_decided``. Building their pydantic
models validated values that are already valid (they come from a validated input and the validated
config) and cost more than the rest of the output's encoding: here the same bytes are written by orjson
from a dict laid out in the models' field order (``OrderAccepted``, ``RouteDecided``, ``Reason`` in
``clickcash.events``; orjson and pydantic-core write strings and integers the same way). The models stay
the contract: ``clickcash schemas`` publishes them, and ``tests/unit/test_output_json.py`` checks these
bytes are the models' own on tricky text and on every output of a generated workload.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from clickcash.events import Reason


def _reason_fields(obj: object) -> dict[str, object]:
    if type(obj) is Reason:
        return obj.__dict__
    raise TypeError(f"not a Reason: {type(obj).__name__}")


def order_accepted(order_id: str, customer_id: str, total_cents: int, currency: str, country: str) -> bytes:
    """``OrderAccepted(...)`` serialized."""
    return orjson.dumps(
        {
            "order_id": order_id,
            "customer_id": customer_id,
            "total_cents": total_cents,
            "currency": currency,
            "country": country,
        }
    )


def route_decided(
    order_id: str,
    customer_id: str,
    attempt: int,
    psp: str,
    fallbacks: Sequence[str],
    amount_cents: int,
    currency: str,
    idempotency_key: str,
    reasons: Sequence[Reason],
) -> bytes:
    """``RouteDecided(...)`` serialized (``reasons`` as the ``Reason`` models routing made)."""
    return orjson.dumps(
        {
            "order_id": order_id,
            "customer_id": customer_id,
            "attempt": attempt,
            "psp": psp,
            "fallbacks": list(fallbacks),
            "amount_cents": amount_cents,
            "currency": currency,
            "idempotency_key": idempotency_key,
            # a ``Reason``'s fields handed over directly: orjson calling ``default`` back per reason cost
            # more than this loop; anything else still goes to ``_reason_fields`` (which refuses it)
            "reasons": [r.__dict__ if type(r) is Reason else r for r in reasons],
        },
        default=_reason_fields,
    )
