"""Raw Kafka record -> validated InputEvent, or a DeadLetter with a precise, card-number-free reason."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickcash.actors._decode import InputEvent, decode_record
from clickcash.events import INPUT_TYPES, DeadLetter, DeadLetterCode, looks_like_card_number
from tests.unit._strategies import VISA_TEST_PAN, digits_of, luhn_valid, pans

TOPIC = "clickcash.events"
MAX_BYTES = 64 * 1024

EventFactory = Callable[..., bytes]
DataFactory = Callable[..., dict[str, Any]]


def decode(
    value: bytes | None, key: bytes | None = b"c-1", *, max_bytes: int = MAX_BYTES, offset: int = 7
) -> InputEvent | DeadLetter:
    return decode_record(TOPIC, 3, offset, key, value, max_bytes)


def dead(value: bytes | None, key: bytes | None = b"c-1", **kw: Any) -> DeadLetter:
    out = decode(value, key, **kw)
    assert isinstance(out, DeadLetter), f"expected a dead letter, got {out!r}"
    assert (out.source_topic, out.partition, out.offset) == (TOPIC, 3, kw.get("offset", 7))
    assert out.detail
    assert out.redacted is False
    return out


def event(value: bytes, key: bytes | None = b"c-1") -> InputEvent:
    out = decode(value, key)
    assert isinstance(out, InputEvent), f"expected an event, got {out!r}"
    return out


def test_the_visa_test_pan_is_luhn_valid() -> None:
    assert luhn_valid(VISA_TEST_PAN)
    assert looks_like_card_number(VISA_TEST_PAN)


# --- valid events -------------------------------------------------------------------------------------


@pytest.mark.parametrize("etype", sorted(INPUT_TYPES))
def test_a_valid_event_of_each_input_type_decodes(
    etype: str, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    data = event_data(etype, customer="c-1")
    ev = event(cloud_event(etype, data, event_id="evt-42", time="2026-03-02T10:15:00+01:00"))
    assert ev.id == "evt-42"
    assert ev.type == etype
    assert ev.customer_id == "c-1"
    assert ev.correlationid == "corr-1"
    assert ev.campaignid == "spring-sale"
    assert ev.time == datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
    assert type(ev.data) is INPUT_TYPES[etype]
    assert ev.data.model_dump(mode="json") == INPUT_TYPES[etype].model_validate(data).model_dump(mode="json")
    assert len(ev.fingerprint) == 32


def test_optional_attributes_may_be_absent_and_extensions_are_ignored(
    cloud_event: EventFactory, event_data: DataFactory
) -> None:
    value = cloud_event(
        "payment.authorized",
        event_data("payment.authorized"),
        correlationid=None,
        campaignid=None,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    ev = event(value)
    assert ev.correlationid is None
    assert ev.campaignid is None


def test_preferences_defaults_apply(cloud_event: EventFactory) -> None:
    ev = event(cloud_event("customer.preferences_updated", {"customer_id": "c-1"}))
    assert ev.data.model_dump() == {
        "customer_id": "c-1",
        "timezone": "UTC",
        "channels": ["email"],
        "customer_since": None,
    }


# --- every dead-letter code from the right input -----------------------------------------------------


def test_not_utf8() -> None:
    dl = dead(b"\xff\xfe\x00garbage")
    assert dl.code == DeadLetterCode.NOT_UTF8
    assert dl.field == "value"


def test_not_utf8_inside_an_otherwise_wellformed_document() -> None:
    dl = dead(b'{"specversion": "1.0", "id": "\xc3\x28"}')
    assert dl.code == DeadLetterCode.NOT_UTF8


@pytest.mark.parametrize("value", [b"{not json", b'{"a": 1', b'{"a": 1} trailing', b"", None])
def test_malformed_json(value: bytes | None) -> None:
    dl = dead(value)
    assert dl.code == DeadLetterCode.MALFORMED_JSON
    assert dl.field == "value"


@pytest.mark.parametrize("value", [b"[1, 2, 3]", b'"order.placed"', b"42", b"null", b"true"])
def test_not_an_object(value: bytes) -> None:
    dl = dead(value)
    assert dl.code == DeadLetterCode.NOT_AN_OBJECT
    assert dl.field == "value"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": ""}, "id"),
        ({"time": "not a time"}, "time"),
        ({"time": "2026-03-02T09:00:00"}, "time"),  # CloudEvents time must carry its offset
        ({"data": ["not", "an", "object"]}, "data"),
        ({"partitionkey": ""}, "partitionkey"),
    ],
)
def test_invalid_envelope_field_is_named(
    overrides: dict[str, Any], field: str, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    dl = dead(cloud_event("order.placed", event_data("order.placed"), **overrides))
    assert dl.code == DeadLetterCode.INVALID_FIELD
    assert dl.field == field


def test_missing_envelope_attribute_is_named(cloud_event: EventFactory, event_data: DataFactory) -> None:
    raw = orjson.loads(cloud_event("order.placed", event_data("order.placed")))
    del raw["source"]
    dl = dead(orjson.dumps(raw))
    assert dl.code == DeadLetterCode.INVALID_FIELD
    assert dl.field == "source"


@pytest.mark.parametrize(
    ("etype", "mutate", "field"),
    [
        ("order.placed", lambda d: d["items"][0].update(quantity=0), "data.items.0.quantity"),
        (
            "order.placed",
            lambda d: d["items"].append({"sku": "x", "quantity": 1}),
            "data.items.1.unit_price_cents",
        ),
        ("order.placed", lambda d: d.update(country="us"), "data.country"),
        ("order.placed", lambda d: d.update(items=[]), "data.items"),
        (
            "order.placed",
            lambda d: d["payment_method"].update(network="diners"),
            "data.payment_method.network",
        ),
        ("order.placed", lambda d: d.update(coupon="SPRING"), "data.coupon"),
        ("payment.declined", lambda d: d.pop("decline_code"), "data.decline_code"),
        ("payment.authorized", lambda d: d.update(attempt=0), "data.attempt"),
        ("customer.preferences_updated", lambda d: d.update(timezone="Mars/Olympus"), "data.timezone"),
        ("customer.preferences_updated", lambda d: d.update(channels=["pigeon"]), "data.channels.0"),
    ],
)
def test_invalid_data_field_names_its_location(
    etype: str,
    mutate: Callable[[dict[str, Any]], Any],
    field: str,
    cloud_event: EventFactory,
    event_data: DataFactory,
) -> None:
    data = event_data(etype)
    mutate(data)
    dl = dead(cloud_event(etype, data))
    assert dl.code == DeadLetterCode.INVALID_FIELD
    assert dl.field == field


def test_several_errors_are_counted_in_the_detail(cloud_event: EventFactory) -> None:
    dl = dead(cloud_event("order.placed", {"customer_id": "c-1"}))
    assert dl.code == DeadLetterCode.INVALID_FIELD
    assert dl.field is not None
    assert dl.field.startswith("data.")
    assert "more)" in dl.detail


def test_unknown_type(cloud_event: EventFactory, event_data: DataFactory) -> None:
    dl = dead(cloud_event("coupon.redeemed", event_data("order.placed")))
    assert dl.code == DeadLetterCode.UNKNOWN_TYPE
    assert dl.field == "type"
    for known in INPUT_TYPES:
        assert known in dl.detail


def test_missing_key(cloud_event: EventFactory, event_data: DataFactory) -> None:
    dl = dead(cloud_event("order.placed", event_data("order.placed")), key=None)
    assert dl.code == DeadLetterCode.MISSING_KEY
    assert dl.field == "key"


@pytest.mark.parametrize(
    ("key", "partitionkey", "customer_id"),
    [
        (b"c-2", "c-1", "c-1"),  # Kafka key differs
        (b"c-1", "c-2", "c-1"),  # partitionkey differs
        (b"c-1", "c-1", "c-2"),  # data.customer_id differs
        (b"\xff\xfe", "c-1", "c-1"),  # key is not even text
    ],
)
def test_key_mismatch(
    key: bytes, partitionkey: str, customer_id: str, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    value = cloud_event(
        "payment.declined", event_data("payment.declined", customer_id), customer=partitionkey
    )
    dl = dead(value, key=key)
    assert dl.code == DeadLetterCode.KEY_MISMATCH
    assert dl.field == "partitionkey"


def test_oversized_is_checked_before_parsing_and_names_the_setting() -> None:
    dl = dead(b"{" + b" " * 400, max_bytes=256)
    assert dl.code == DeadLetterCode.OVERSIZED
    assert dl.field == "value"
    assert "pipeline.max_event_bytes" in dl.detail


def test_oversized_limit_is_inclusive(cloud_event: EventFactory, event_data: DataFactory) -> None:
    value = cloud_event("payment.authorized", event_data("payment.authorized"))
    assert isinstance(decode(value, max_bytes=len(value)), InputEvent)
    assert dead(value, max_bytes=len(value) - 1).code == DeadLetterCode.OVERSIZED


@pytest.mark.parametrize("where", ["token", "key", "partitionkey", "json_escaped_sku"])
def test_a_card_number_in_the_key_or_any_field_is_card_data(
    where: str, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    data = event_data("payment_method.updated")
    key = b"c-1"
    raw = cloud_event("payment_method.updated", data)
    if where == "token":
        raw = raw.replace(data["payment_method"]["token"].encode(), VISA_TEST_PAN.encode())
    elif where == "key":
        key = b"4111-1111-1111-1111"
    elif where == "partitionkey":
        raw = cloud_event("payment_method.updated", data, customer="4111 1111 1111 1111")
    else:
        order = event_data("order.placed")
        order["items"][0]["sku"] = "@@"
        raw = cloud_event("order.placed", order).replace(b"@@", b"\\u0034111 1111 1111 1111")
    out = decode(raw, key)
    assert isinstance(out, DeadLetter)
    assert out.code == DeadLetterCode.CARD_DATA
    assert out.field == ("key" if where == "key" else "value")
    assert "card number" in out.detail and not looks_like_card_number(out.detail)


def test_every_decode_code_is_covered_by_a_test_above() -> None:
    """A new DeadLetterCode needs its own test here (duplicate_conflict is the shard's, see test_shard;
    parked_dropped the router's, see test_parking)."""
    covered = {
        DeadLetterCode.NOT_UTF8,
        DeadLetterCode.MALFORMED_JSON,
        DeadLetterCode.NOT_AN_OBJECT,
        DeadLetterCode.INVALID_FIELD,
        DeadLetterCode.UNKNOWN_TYPE,
        DeadLetterCode.MISSING_KEY,
        DeadLetterCode.KEY_MISMATCH,
        DeadLetterCode.OVERSIZED,
        DeadLetterCode.CARD_DATA,
    }
    # duplicate_conflict and forged_command are the shard's (test_shard), parked_dropped the router's
    assert set(DeadLetterCode) - covered == {
        DeadLetterCode.DUPLICATE_CONFLICT,
        DeadLetterCode.FORGED_COMMAND,
        DeadLetterCode.PARKED_DROPPED,
    }


# --- dead-letter details never carry a card number ----------------------------------------------------


def _card_positions(pan: str, cloud_event: EventFactory, event_data: DataFactory) -> dict[str, bytes]:
    """Inputs that each put ``pan`` somewhere a validation error could be about."""
    order = event_data("order.placed")
    bad_qty = {**order, "items": [{"sku": "a", "quantity": 0, "unit_price_cents": 1}]}
    bad_qty["payment_method"] = {**order["payment_method"], "token": pan}
    declined = event_data("payment.declined", decline_code=pan + "0000")
    return {
        "type": cloud_event(pan, order),
        "timezone": cloud_event("customer.preferences_updated", {"customer_id": "c-1", "timezone": pan}),
        "token_of_an_invalid_order": cloud_event("order.placed", bad_qty),
        "currency": cloud_event("order.placed", {**order, "currency": pan}),
        "too_long_decline_code": cloud_event("payment.declined", declined),
        "time": cloud_event("order.placed", order, time=pan),
        "specversion": cloud_event("order.placed", order, specversion=pan),
        "data": cloud_event("order.placed", order, data=pan),
        "id_of_an_invalid_event": cloud_event("order.placed", {**order, "total_cents": -1}, event_id=pan),
        "malformed_json": b'{"token": "' + pan.encode() + b'", oops}',
        "truncated_json": b'{"token": ' + pan.replace(" ", "").replace("-", "").encode(),
    }


POSITIONS = [
    "type",
    "timezone",
    "token_of_an_invalid_order",
    "currency",
    "too_long_decline_code",
    "time",
    "specversion",
    "data",
    "id_of_an_invalid_event",
    "malformed_json",
    "truncated_json",
]


@pytest.mark.parametrize("position", POSITIONS)
def test_detail_never_contains_a_card_number_from_the_input(
    position: str, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    value = _card_positions(VISA_TEST_PAN, cloud_event, event_data)[position]
    dl = dead(value)
    assert VISA_TEST_PAN not in dl.detail, f"{dl.code} detail echoes the card number: {dl.detail!r}"
    assert not looks_like_card_number(dl.detail), f"{dl.code} detail holds a card number: {dl.detail!r}"


@given(pan=pans(), position=st.sampled_from(POSITIONS))
def test_detail_never_contains_any_card_number(
    pan: str, position: str, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    value = _card_positions(pan, cloud_event, event_data)[position]
    out = decode(value)
    assert isinstance(out, DeadLetter)
    assert digits_of(pan) not in digits_of(out.detail)
    assert not looks_like_card_number(out.detail)


# --- fingerprint: what makes a re-send "the same event" ----------------------------------------------


def test_fingerprint_ignores_time_id_source_and_tracing(
    cloud_event: EventFactory, event_data: DataFactory
) -> None:
    data = event_data("order.placed")
    first = event(cloud_event("order.placed", data, event_id="e-1", time="2026-03-02T09:00:00Z"))
    resent = event(
        cloud_event(
            "order.placed",
            data,
            event_id="e-1",
            time="2026-03-05T17:45:12.5+02:00",
            source="another/producer",
            correlationid="corr-other",
        )
    )
    assert resent.fingerprint == first.fingerprint


def test_fingerprint_ignores_key_order_and_whitespace(
    cloud_event: EventFactory, event_data: DataFactory
) -> None:
    data = event_data("order.placed")
    value = cloud_event("order.placed", data)
    reordered = dict(reversed(list(orjson.loads(value).items())))
    reordered["data"] = dict(reversed(list(data.items())))
    reordered["data"]["payment_method"] = dict(reversed(list(data["payment_method"].items())))
    pretty = orjson.dumps(reordered, option=orjson.OPT_INDENT_2)
    assert pretty != value
    assert event(pretty).fingerprint == event(value).fingerprint


@pytest.mark.parametrize(
    "change",
    [
        {"total_cents": 10001},
        {"order_id": "o-2"},
        {"payment_method": {"type": "card", "network": "visa", "token": "tok_other"}},
    ],
)
def test_fingerprint_changes_with_data(
    change: dict[str, Any], cloud_event: EventFactory, event_data: DataFactory
) -> None:
    data = event_data("order.placed")
    base = event(cloud_event("order.placed", data)).fingerprint
    assert event(cloud_event("order.placed", {**data, **change})).fingerprint != base
