"""Customer erasure (``clickcash forget``): the command, and what erasing a customer takes out of a shard.

A ``customer.erasure_requested`` command travels through the input topic keyed by the customer, so it is
applied in order with the customer's other events: everything before it is erased, everything after it
starts from a fresh state. Applying it (see ``clickcash.actors.shard``) means, in the batch's one atomic
commit:

* the customer's state document is deleted (``cust:<customer>``);
* the timer of every open dunning plan is removed from its partition's timer index (:func:`timer_removals`);
* one ``customer.erased`` output is written (:func:`erased_output`), a pure function of the command, so a
  replay of the same offset writes the same record without a stored response holding the customer id.

Idempotency records stay: they hold no customer id (an event id, a keyless digest of the payload, a
partition and an offset) and they keep a re-delivered old event from re-creating the erased data; they
expire after ``pipeline.idempotency_retention_s`` (see docs/data-protection.md).

Pure: no Ray, Kafka or Redis.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from clickcash.actors.state.base import CustomerState
from clickcash.envelope import structured_event
from clickcash.erasure_mac import ErasureMac
from clickcash.events import (
    ERASED_EVENT_TYPE,
    ERASURE_EVENT_TYPE,
    ERASURE_SOURCE,
    OUTPUT_SOURCE,
    CustomerErased,
    OutputRole,
    output_id,
)

ERASED_DOCUMENT = b""
"""what a batch writes for a customer it erased (and did not see again): the commit deletes the key"""


def erasure_command(
    customer_id: str, signer: ErasureMac, *, event_id: str | None = None, now: datetime | None = None
) -> tuple[str, bytes, bytes]:
    """(event id, Kafka key, CloudEvent value) of a signed erasure command for ``customer_id``."""
    event_id = event_id or f"forget:{uuid.uuid4()}"
    mac = signer.sign(event_id=event_id, customer_id=customer_id)
    value = structured_event(
        id=event_id,
        source=ERASURE_SOURCE,
        type=ERASURE_EVENT_TYPE,
        time=(now or datetime.now(UTC)).isoformat(),
        partitionkey=customer_id,
        data={"customer_id": customer_id, "mac": mac},
    )
    return event_id, customer_id.encode(), value


def authentic_erasure(key: bytes | None, value: bytes | None, signer: ErasureMac) -> bool:
    """Whether a raw input record is an erasure command for its key's customer with a valid MAC.

    The router's check for a parked customer's records (the shard decodes and checks every record):
    cheap for every other record, which does not hold the type's name."""
    if not key or not value or ERASURE_EVENT_TYPE.encode() not in value:
        return False
    try:
        raw = orjson.loads(value)
        data = raw["data"]
        event_id, customer_id, mac = raw["id"], data["customer_id"], data.get("mac")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return False
    if raw.get("type") != ERASURE_EVENT_TYPE or not isinstance(event_id, str) or not isinstance(mac, str):
        return False
    if (
        not isinstance(customer_id, str)
        or key != customer_id.encode()
        or raw.get("partitionkey") != customer_id
    ):
        return False
    return signer.verify(mac, event_id=event_id, customer_id=customer_id)


def timer_removals(state: CustomerState, customer_id: str) -> list[tuple[int, str]]:
    """(partition, member) of every timer the customer's open dunning plans hold in the timer index."""
    out = []
    for order_id, plan in state.open_dunning.items():
        member = plan.timer_member(customer_id, order_id)
        if member is not None and plan.timer_partition is not None:
            out.append((plan.timer_partition, member))
    return out


def erased_output(event_id: str, customer_id: str, time_text: str, *, synthetic: bool = False) -> bytes:
    """The ``customer.erased`` CloudEvent answering erasure command ``event_id`` (same bytes every time)."""
    extensions: dict[str, object] = {"causationid": event_id, "correlationid": None, "campaignid": None}
    if synthetic:
        extensions["synthetic"] = True
    data = CustomerErased(customer_id=customer_id)
    return structured_event(
        id=output_id(event_id, OutputRole.ERASURE),
        source=OUTPUT_SOURCE,
        type=ERASED_EVENT_TYPE,
        time=time_text,
        datacontenttype="application/json",
        partitionkey=customer_id,
        extensions=extensions,
        data=data.__pydantic_serializer__.to_json(data),
    )
