"""Turning raw Kafka records into validated input events, or into dead letters with a precise reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from hashlib import blake2b
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import Field, GetPydanticSchema, TypeAdapter, ValidationError
from pydantic_core import core_schema
from typing_extensions import TypedDict

from clickcash.card_data import CARD_DATA_DETAIL, card_data_field
from clickcash.events import (
    INPUT_TYPES,
    RFC3339_START,
    DeadLetter,
    DeadLetterCode,
    Id,
    InputData,
    InputEnvelope,
    mask_card_numbers,
    says_synthetic,
)


@dataclass(slots=True)
class InputEvent:
    """One validated input. Treated as immutable, but not ``frozen``: a frozen dataclass sets every field
    through ``object.__setattr__`` (nine fields: ~1.2 µs against ~0.2 µs), and one is built per record."""

    id: str
    type: str
    time: datetime
    customer_id: str
    correlationid: str | None
    campaignid: str | None
    data: InputData
    fingerprint: str
    """digest of (type, partitionkey, data): what makes a re-send 'the same event' (empty when decoded
    ``with_fingerprint=False``)"""
    synthetic: bool = False
    """the envelope said ``synthetic: true``: its outputs and dead letters are marked the same way"""


_RFC3339_TIME = GetPydanticSchema(
    lambda _source, _handler: core_schema.chain_schema(
        [
            core_schema.str_schema(pattern=RFC3339_START.pattern, strict=True),
            core_schema.datetime_schema(tz_constraint="aware"),
        ]
    )
)
"""``InputEnvelope.time`` (``AwareDatetime`` after ``_rfc3339_text``) checked in pydantic-core alone: a string
that starts like an RFC 3339 timestamp, parsed into an aware datetime, without the Python call per record of
``InputEnvelope``'s ``_rfc3339_text`` validator. A value this refuses and that validator would accept (a
``datetime``, which no parsed JSON holds) takes the ``InputEnvelope`` path, which decides it."""


class _EnvelopeHead(TypedDict):
    """``InputEnvelope``'s attributes but ``data``, with the same constraints, validated into a plain dict:
    no model instance per record (``data`` is checked to be an object and validated by its own model)."""

    specversion: Literal["1.0"]
    id: Id
    source: Annotated[str, Field(min_length=1, max_length=1024)]
    type: str
    time: Annotated[datetime, _RFC3339_TIME]
    partitionkey: Id
    correlationid: NotRequired[Id | None]
    campaignid: NotRequired[Id | None]
    synthetic: NotRequired[bool | None]


_HEAD = TypeAdapter(_EnvelopeHead)
_validate_head = _HEAD.validator.validate_python
"""``_HEAD.validate_python`` without its Python wrapper (its only work here is checking defaults)"""
_DATA_VALIDATORS: dict[str, Callable[[Any], InputData]] = {
    name: model.__pydantic_validator__.validate_python for name, model in INPUT_TYPES.items()
}
"""input type -> its data model's ``model_validate`` without the Python wrapper: once per record"""


@dataclass(slots=True)
class _Envelope:
    """Not ``frozen``, for the cost of its ``__init__`` (see ``InputEvent``); built once per record."""

    id: str
    type: str
    time: datetime
    partitionkey: str
    correlationid: str | None
    campaignid: str | None
    data: dict[str, Any]
    synthetic: bool | None = None


def _validate_envelope(raw: dict[str, Any]) -> _Envelope | InputEnvelope:
    """The envelope of a valid record by the cheap path; anything else through ``InputEnvelope``, whose
    error (raised) is the one a dead letter reports. Both accept exactly the same records."""
    data = raw.get("data")
    if isinstance(data, dict):
        try:
            head = _validate_head(raw)
        except ValidationError:
            pass
        else:
            return _Envelope(
                head["id"],
                head["type"],
                head["time"],
                head["partitionkey"],
                head.get("correlationid"),
                head.get("campaignid"),
                data,
                head.get("synthetic"),
            )
    return InputEnvelope.model_validate(raw)


def _first_error(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(p) for p in err["loc"])
    field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "value"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return field, f"{err['msg']}{more}"


def decode_record(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    max_event_bytes: int,
    *,
    parsed: dict[str, Any] | None = None,
    with_fingerprint: bool = True,
) -> InputEvent | DeadLetter:
    """Validate one record against the contract: the one verdict on an input, for the shards and for the
    campaign ledger (which counts an input only when this returns an :class:`InputEvent`).

    ``parsed``: ``orjson.loads(value)`` when the caller has parsed the value already (the ledger looks at
    an input's type and campaign before validating it); it spares a second parse and changes no verdict.
    ``with_fingerprint=False`` leaves ``InputEvent.fingerprint`` empty, for a reader that does not compare
    re-sends by payload (the ledger): the digest is about a sixth of this function's work.

    Error details never include the offending value: it may hold card data, and it is in the DLQ record
    anyway.
    """

    def dead(code: DeadLetterCode, detail: str, field: str | None = None) -> DeadLetter:
        # a field name or a validator message can quote input: never let a card number through
        return DeadLetter(
            code=code,
            field=mask_card_numbers(field.encode())[0].decode() if field else None,
            detail=mask_card_numbers(detail.encode())[0].decode(),
            source_topic=topic,
            partition=partition,
            offset=offset,
        )

    if value is None or not value:
        return dead(DeadLetterCode.MALFORMED_JSON, "empty value", "value")
    if len(value) > max_event_bytes:
        return dead(
            DeadLetterCode.OVERSIZED,
            f"value is {len(value)} bytes, limit is {max_event_bytes} (pipeline.max_event_bytes)",
            "value",
        )
    if card_field := card_data_field(key, value):
        return dead(DeadLetterCode.CARD_DATA, CARD_DATA_DETAIL, card_field)
    if key is None:
        return dead(DeadLetterCode.MISSING_KEY, "record has no Kafka key (expected customer id)", "key")
    try:
        raw = orjson.loads(value) if parsed is None else parsed
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return dead(DeadLetterCode.NOT_UTF8, f"invalid UTF-8 at byte {uexc.start}", "value")
        return dead(DeadLetterCode.MALFORMED_JSON, str(exc), "value")
    if not isinstance(raw, dict):
        return dead(DeadLetterCode.NOT_AN_OBJECT, f"JSON {type(raw).__name__}, not an object", "value")
    try:
        env = _validate_envelope(raw)
    except ValidationError as exc:
        field, msg = _first_error(exc)
        return dead(DeadLetterCode.INVALID_FIELD, msg, field)
    validate_data = _DATA_VALIDATORS.get(env.type)
    if validate_data is None:
        return dead(
            DeadLetterCode.UNKNOWN_TYPE,
            f"unknown event type; known: {', '.join(sorted(INPUT_TYPES))}",
            "type",
        )
    try:
        data = validate_data(env.data)
    except ValidationError as exc:
        field, msg = _first_error(exc, "data.")
        return dead(DeadLetterCode.INVALID_FIELD, msg, field)
    customer_id = data.customer_id
    try:
        key_text = key.decode("utf-8")
    except UnicodeDecodeError:
        key_text = None
    if customer_id != env.partitionkey or key_text != customer_id:
        return dead(
            DeadLetterCode.KEY_MISMATCH,
            "Kafka key, partitionkey and data.customer_id must be the same customer id",
            "partitionkey",
        )
    fingerprint = (
        ""
        if not with_fingerprint
        else blake2b(
            orjson.dumps([env.type, env.partitionkey, env.data], option=orjson.OPT_SORT_KEYS),
            digest_size=16,
        ).hexdigest()
    )
    return InputEvent(
        id=env.id,
        type=env.type,
        time=env.time,
        customer_id=customer_id,
        correlationid=env.correlationid,
        campaignid=env.campaignid,
        data=data,
        fingerprint=fingerprint,
        synthetic=env.synthetic is True,
    )


def synthetic_value(value: bytes | None) -> bool:
    """Whether a record that became a dead letter still says ``synthetic: true`` (``says_synthetic``)."""
    return says_synthetic(value)
