"""The event contract: what clickcash reads from the input topic and writes to its output topics.

Every event is a CloudEvents 1.0 JSON event in structured mode, keyed in Kafka by customer ID. These models
are the published contract; ``clickcash schemas`` writes them as JSON Schema files under
``config/schemas`` so consuming services can validate without Python, and a unit test keeps the two equal.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from enum import StrEnum
from hashlib import sha1
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

import orjson
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from clickcash.card_data import holds_card_number
from clickcash.card_data import mask_card_numbers as mask_card_numbers

SPEC_VERSION = "1.0"
OUTPUT_SOURCE = "clickcash"
SYNTHETIC_HEADER = "ce_synthetic"
"""Kafka header of every output and dead letter of a synthetic input (value ``true``): a consumer that acts
on real orders (a PSP, a CRM) drops synthetic traffic with this one header check, without parsing."""
SYNTHETIC_HEADER_VALUE = b"true"


def says_synthetic(value: bytes | None) -> bool:
    """Whether a record that became a dead letter still says ``synthetic: true`` in a JSON object envelope.

    Only on dead-letter paths (rare): a record that is not a JSON object cannot say, and counts as real
    traffic."""
    if not value:
        return False
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(raw, dict) and raw.get("synthetic") is True


_OUTPUT_ID_NAMESPACE = uuid.UUID("6f1b2a8e-3c2d-4f5e-9a7b-1c0d2e3f4a5b")
_OUTPUT_ID_NAMESPACE_BYTES = _OUTPUT_ID_NAMESPACE.bytes

Id = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""An identifier: 1-255 characters, no control characters (they separate parts of internal keys)."""
Cents = Annotated[int, Field(ge=0, le=10**12)]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- input data -------------------------------------------------------------------------------------


class LineItem(_Model):
    sku: Id
    quantity: Annotated[int, Field(ge=1, le=10_000)]
    unit_price_cents: Cents


class PaymentMethod(_Model):
    """A tokenised payment method. ``token`` is a PSP or vault token, never a card number."""

    type: Literal["card", "wallet", "bank_transfer"]
    network: Literal["visa", "mastercard", "amex", "discover", "paypal", "applepay", "googlepay", "sepa"]
    token: Annotated[str, Field(min_length=1, max_length=128)]


class OrderPlaced(_Model):
    order_id: Id
    customer_id: Id
    country: Country
    currency: Currency
    items: Annotated[list[LineItem], Field(min_length=1, max_length=200)]
    total_cents: Cents
    payment_method: PaymentMethod
    merchant_segment: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """The selling merchant's segment (e.g. ``enterprise``), for routing overrides."""


class PaymentAuthorized(_Model):
    order_id: Id
    customer_id: Id
    attempt: Annotated[int, Field(ge=1, le=100)]
    psp: Id
    amount_cents: Cents
    currency: Currency


class PaymentDeclined(_Model):
    order_id: Id
    customer_id: Id
    attempt: Annotated[int, Field(ge=1, le=100)]
    psp: Id
    amount_cents: Cents
    currency: Currency
    decline_code: Annotated[str, Field(min_length=1, max_length=16)]
    merchant_advice_code: Annotated[str, Field(min_length=1, max_length=4)] | None = None
    """Mastercard merchant advice code when the PSP returned one (03/21 stop, 24-30 retry after)."""


class PaymentMethodUpdated(_Model):
    customer_id: Id
    payment_method: PaymentMethod


_TIMEZONES = frozenset(available_timezones())
Channel = Literal["email", "sms", "push"]


class CustomerPreferencesUpdated(_Model):
    customer_id: Id
    timezone: str = "UTC"
    channels: list[Channel] = Field(default_factory=lambda: list[Channel](["email"]))
    customer_since: date | None = None
    """When the customer signed up (from the CRM): tenure for the dunning tier. Without it, tenure counts
    from the first event clickcash saw for the customer."""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value not in _TIMEZONES:
            raise ValueError("unknown IANA time zone")
        return value


class DunningTimerFired(_Model):
    """A dunning plan's timer came due (written to the input topic by the router that owns the partition).

    Firing through the input topic puts the step in the customer's ordered stream and under the same
    exactly-once path as every other event; its id ``timer:<plan_id>:<step_index>`` makes a re-fire a
    duplicate. Anyone who can write the input topic can write this type too: the shard acts only on a
    command that carries the MAC a router signs with the configured key.
    """

    customer_id: Id
    order_id: Id
    plan_id: Id
    step_index: Annotated[int, Field(ge=0, le=1000)]
    due_ms: int
    mac: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """HMAC-SHA256 (hex) of the router that fired it, over id, customer, order, plan, step and due time
    (``clickcash.timer_mac``); a command without a valid one is dead-lettered as ``forged_command``."""


class CustomerErasureRequested(_Model):
    """Erase everything clickcash keeps about a customer (``clickcash forget``): state, stored responses,
    timers and parked records; the shard answers with one ``customer.erased`` output.

    A command on the input topic, keyed by the customer, so it is applied in order with the customer's
    other events. Anyone who can write the input topic can write this type too: the shard acts only on a
    command that carries the MAC ``clickcash forget`` signs with a key of ``security.erasure_command_keys``.
    """

    customer_id: Id
    mac: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """HMAC-SHA256 (hex) over the event id and the customer id (``clickcash.erasure_mac``); a command
    without a valid one is dead-lettered as ``forged_command`` and erases nothing."""


InputData = (
    OrderPlaced
    | PaymentAuthorized
    | PaymentDeclined
    | PaymentMethodUpdated
    | CustomerPreferencesUpdated
    | DunningTimerFired
    | CustomerErasureRequested
)

TIMER_EVENT_TYPE = "dunning.timer_fired"
TIMER_SOURCE = "clickcash/timers"
ERASURE_EVENT_TYPE = "customer.erasure_requested"
ERASURE_SOURCE = "clickcash/forget"
ERASED_EVENT_TYPE = "customer.erased"

INPUT_TYPES: dict[str, type[_Model]] = {
    "order.placed": OrderPlaced,
    "payment.authorized": PaymentAuthorized,
    "payment.declined": PaymentDeclined,
    "payment_method.updated": PaymentMethodUpdated,
    "customer.preferences_updated": CustomerPreferencesUpdated,
    "dunning.timer_fired": DunningTimerFired,
    "customer.erasure_requested": CustomerErasureRequested,
}


RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
"""how an input's CloudEvents ``time`` must start (the decoder's fast path checks it in pydantic-core)"""


def _rfc3339_text(value: Any) -> Any:
    """CloudEvents ``time`` is an RFC 3339 string; a bare number is not a timestamp here."""
    if isinstance(value, datetime) or (isinstance(value, str) and RFC3339_START.match(value)):
        return value
    raise ValueError("time must be an RFC 3339 timestamp string")


class InputEnvelope(BaseModel):
    """CloudEvents 1.0 attributes of an input; unknown extension attributes are allowed and ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"]
    id: Id
    source: Annotated[str, Field(min_length=1, max_length=1024)]
    type: str
    time: Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
    partitionkey: Id
    correlationid: Id | None = None
    campaignid: Id | None = None
    synthetic: bool | None = None
    """CloudEvents extension: ``true`` on events of load tests, demos, benchmarks and the PSP simulator;
    every output and dead letter of such an event carries it too (attribute and ``ce_synthetic`` header)"""
    data: dict[str, Any]


# --- output data ------------------------------------------------------------------------------------


class Reason(_Model):
    """A machine-readable reason: a stable ``code``, the field it concerns, and a human hint."""

    code: str
    field: str | None = None
    detail: str | None = None


class OrderAccepted(_Model):
    order_id: Id
    customer_id: Id
    total_cents: Cents
    currency: Currency
    country: Country


class OrderRejected(_Model):
    order_id: Id
    customer_id: Id
    reasons: list[Reason]


class RouteDecided(_Model):
    """Which PSP gets the authorization, the ranked fallbacks, and why."""

    order_id: Id
    customer_id: Id
    attempt: int
    psp: Id
    fallbacks: list[str]
    amount_cents: Cents
    currency: Currency
    idempotency_key: str
    reasons: list[Reason]


class DunningStep(_Model):
    kind: Literal["retry", "reminder", "escalation"]
    due_at: AwareDatetime
    channel: str | None = None


class DunningScheduled(_Model):
    order_id: Id
    customer_id: Id
    decline_code: str
    decline_class: Literal["hard", "soft", "technical"]
    steps: list[DunningStep]


class DunningStepDue(_Model):
    """A step of a dunning plan is due now: retry the payment, remind the customer, or escalate."""

    order_id: Id
    customer_id: Id
    plan_id: str
    step_index: int
    kind: Literal["retry", "reminder", "escalation"]
    channel: str | None = None
    attempt: int | None = None


class DunningClosed(_Model):
    """``dunning.recovered`` / ``dunning.cancelled`` / ``dunning.exhausted``."""

    order_id: Id
    customer_id: Id
    reason: str


class CustomerErased(_Model):
    """clickcash erased what it kept about the customer (``clickcash forget``): downstream services that
    keep data of the customer erase theirs. Written on the orders topic, keyed by the customer, after every
    earlier output of the customer; a later event of the customer starts from a fresh state."""

    customer_id: Id


class OutputRole(StrEnum):
    """What an output is to its input; with the input ``id`` it derives the output ``id``."""

    ORDER_DECISION = "order-decision"
    ROUTE = "route"
    DUNNING = "dunning"
    ERASURE = "erasure"


OUTPUT_TYPES: dict[str, type[_Model]] = {
    "order.accepted": OrderAccepted,
    "order.rejected": OrderRejected,
    "payment.route_decided": RouteDecided,
    "dunning.scheduled": DunningScheduled,
    "dunning.step_due": DunningStepDue,
    "dunning.recovered": DunningClosed,
    "dunning.cancelled": DunningClosed,
    "dunning.exhausted": DunningClosed,
    "customer.erased": CustomerErased,
}


def output_id(input_id: str, role: str) -> str:
    """Derive an output's id from its input's id and role, so a replay produces the same id.

    Exactly ``str(uuid.uuid5(namespace, f"{input_id}\\x00{role}"))`` (ids must not change between versions:
    stored first responses hold them), computed from the SHA-1's hex digits without building ``UUID``
    objects or byte arrays: this runs once per output on the hot path. The version nibble is always 5, and
    the variant bits turn the 17th hex digit into one of 8, 9, a, b (``_VARIANT_DIGIT``).
    """
    h = _OUTPUT_ID_SEED.copy()
    h.update(f"{input_id}\x00{role}".encode())
    x = h.hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT_DIGIT[x[16]]}{x[17:20]}-{x[20:32]}"


_OUTPUT_ID_SEED = sha1(_OUTPUT_ID_NAMESPACE_BYTES, usedforsecurity=False)
"""SHA-1 state after the namespace: each id copies it rather than hashing the namespace again"""
_VARIANT_DIGIT = {d: format((int(d, 16) & 0x3) | 0x8, "x") for d in "0123456789abcdef"}
"""RFC 4122 variant: the top two bits of byte 8 are 10"""


class OutputEnvelope(BaseModel):
    """CloudEvents 1.0 attributes every output carries (schema of the structured-mode JSON)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"]
    id: str
    source: str
    type: str
    time: AwareDatetime
    datacontenttype: Literal["application/json"]
    partitionkey: str
    causationid: str
    correlationid: str | None = None
    campaignid: str | None = None
    synthetic: Literal[True] | None = None
    """present (``true``) only when the input was synthetic (load test, demo, benchmark, PSP simulator);
    the record then also carries the Kafka header ``ce_synthetic: true``"""
    data: dict[str, Any]


# --- dead letters -----------------------------------------------------------------------------------


class DeadLetterCode(StrEnum):
    NOT_UTF8 = "not_utf8"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_KEY = "missing_key"
    KEY_MISMATCH = "key_mismatch"
    OVERSIZED = "oversized"
    DUPLICATE_CONFLICT = "duplicate_conflict"
    CARD_DATA = "card_data"
    """the key or value holds what reads as a card number (Luhn); the dead letter's copy is masked"""
    FORGED_COMMAND = "forged_command"
    """a ``dunning.timer_fired`` command whose MAC is missing or does not verify (not from a router), or
    a ``customer.erasure_requested`` command without a valid MAC (not from ``clickcash forget``)"""

    PARKED_DROPPED = "parked_dropped"
    """an operator dropped a parked customer's records (``clickcash parked drop``)"""


class TruncatedOriginal(_Model):
    """The original did not fit in a dead letter: the record carries only its first ``prefix_bytes``
    (after masking); length and SHA-256 identify the whole original (the SHA-256 is of the masked
    original when the reason says ``redacted``: no digest of card data leaves either)."""

    original_bytes: Annotated[int, Field(ge=0)]
    original_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    prefix_bytes: Annotated[int, Field(ge=0)]


class DeadLetter(_Model):
    """Why an input went to the dead-letter topic.

    The DLQ record's value is the original bytes, untouched unless they held something that looks like a
    card number (then those digits are masked and ``redacted`` is true) or did not fit in one record with
    the headers (then it is a prefix and ``truncated`` says so); this reason travels in the
    ``clickcash_reason`` header as JSON, with the position in the ``clickcash_source_*`` headers.
    """

    code: DeadLetterCode
    field: str | None = None
    detail: str
    source_topic: str
    partition: int
    offset: int
    redacted: bool = False
    truncated: TruncatedOriginal | None = None
    """set when the record's value is a prefix of the original, not all of it (see ``TruncatedOriginal``)"""
    key_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """set when the original Kafka key was longer than 1,024 bytes (no customer id is): the dead letter is
    then keyed ``sha256:<this digest>`` (of the key, masked if it held card data) instead"""


def looks_like_card_number(text: str) -> bool:
    """True when ``text`` holds a probable card number, in any of the forms :mod:`clickcash.card_data`
    finds (separators, Unicode digits, JSON escapes)."""
    return holds_card_number(text.encode("utf-8", "surrogateescape"))
