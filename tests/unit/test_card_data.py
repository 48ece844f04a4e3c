"""Card numbers are found and masked however they are written: separators, Unicode digits, JSON escapes,
a CVV or expiry date behind them; ordinary events and epoch timestamps are not card numbers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickcash.actors._decode import InputEvent, decode_record
from clickcash.card_data import card_data_field, holds_card_number, mask_card_numbers, mask_text
from clickcash.events import INPUT_TYPES, DeadLetter, DeadLetterCode
from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix
from tests.unit._strategies import VISA_TEST_PAN, luhn_check_digit

EventFactory = Callable[..., bytes]
DataFactory = Callable[..., dict[str, Any]]

# Unicode decimal digit zeros: ASCII, full-width, Arabic-Indic, extended Arabic-Indic, Devanagari, Bengali,
# Thai, mathematical bold (outside the BMP, so its JSON escape is a surrogate pair: not a digit escape)
DIGIT_ZEROS = [0x30, 0xFF10, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0x1D7CE]
SEPARATORS = [" ", "  ", "-", ".", "/", " - ", "\u00a0", "\u2013", "\u2009", "\t"]


@st.composite
def card_digits(draw: st.DrawFn) -> str:
    """A Luhn-valid card number of 13-19 ASCII digits starting with a card network's digit (2-6)."""
    length = draw(st.integers(min_value=13, max_value=19))
    body = draw(st.sampled_from("23456")) + "".join(
        draw(st.lists(st.sampled_from("0123456789"), min_size=length - 2, max_size=length - 2))
    )
    return body + luhn_check_digit(body)


@st.composite
def written_pans(draw: st.DrawFn) -> tuple[str, str]:
    """(ASCII digits, how they are written in a JSON string's text): grouped with separators, in
    Unicode digits, some as ``\\uXXXX`` escapes, maybe followed by a CVV or an expiry date."""
    digits = draw(card_digits())
    zero = draw(st.sampled_from(DIGIT_ZEROS))
    escape_digits = draw(st.booleans()) and zero < 0x10000
    group = draw(st.sampled_from([0, 4, 3, 5, 6]))
    sep = draw(st.sampled_from(SEPARATORS))
    escape_seps = draw(st.booleans())

    def write_digit(d: str) -> str:
        cp = zero + int(d)
        return f"\\u{cp:04x}" if escape_digits else chr(cp)

    def write_sep(s: str) -> str:
        if escape_seps:
            return "".join(f"\\u{ord(c):04X}" for c in s)
        return s.replace("/", draw(st.sampled_from(["/", "\\/"])))

    parts = [digits[i : i + group] for i in range(0, len(digits), group)] if group else [digits]
    text = write_sep(sep).join("".join(write_digit(d) for d in p) for p in parts)
    suffix = draw(st.sampled_from(["", " 123", " 1234", " 12/27", " 12/2027", "  exp 0127", " cvv 999"]))
    return digits, text + suffix


def _json_text(text: str) -> bytes:
    """``text`` as the inside of a JSON string (escapes kept as escapes, other characters as UTF-8)."""
    return text.replace('"', '\\"').encode("utf-8", "surrogatepass")


def _no_pan_left(digits: str, raw: bytes) -> None:
    assert not holds_card_number(raw), raw
    # and the digits are gone, not merely regrouped: no 13-digit stretch of the number survives
    plain = "".join(ch for ch in raw.decode("utf-8", "replace") if ch.isdigit())
    assert digits[:13] not in plain


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pan=written_pans(), etype=st.sampled_from(sorted(INPUT_TYPES)), where=st.sampled_from(["new", "id"]))
def test_a_card_number_anywhere_in_any_event_is_found_and_masked(
    pan: tuple[str, str], etype: str, where: str, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    digits, text = pan
    raw = cloud_event(
        etype, {**event_data(etype), "note": "@@PAN@@"}, event_id="e-@@PAN@@" if where == "id" else "e-1"
    )
    raw = raw.replace(b"@@PAN@@", _json_text(text))
    assert holds_card_number(raw), text
    out = decode_record("in", 0, 5, b"c-1", raw, 64 * 1024)
    assert isinstance(out, DeadLetter) and out.code == DeadLetterCode.CARD_DATA
    assert out.field == "value"
    masked, found = mask_card_numbers(raw)
    assert found
    _no_pan_left(digits, masked)
    if "\t" not in text:  # a raw tab is not JSON to begin with
        orjson.loads(masked)  # masking keeps JSON JSON


@given(pan=written_pans())
def test_a_card_number_in_the_kafka_key_or_partitionkey_is_found(
    pan: tuple[str, str], cloud_event: EventFactory, event_data: DataFactory
) -> None:
    digits, text = pan
    key = text.encode("utf-8", "surrogatepass")
    assert card_data_field(key, b"{}") == "key"
    raw = cloud_event("order.placed", event_data("order.placed"), customer="@@PAN@@")
    raw = raw.replace(b"@@PAN@@", _json_text(text))
    out = decode_record("in", 0, 5, b"c-1", raw, 64 * 1024)
    assert isinstance(out, DeadLetter) and out.code == DeadLetterCode.CARD_DATA
    masked_key, found = mask_card_numbers(key)
    assert found
    _no_pan_left(digits, masked_key)


@given(pan=written_pans(), before=st.text(max_size=20), after=st.text(max_size=20))
def test_mask_text_masks_log_lines(pan: tuple[str, str], before: str, after: str) -> None:
    digits, text = pan
    line = f"{before} {text} {after}"
    masked = mask_text(line)
    _no_pan_left(digits, masked.encode("utf-8", "surrogateescape"))


@pytest.mark.parametrize(
    "written",
    [
        "4111111111111111 123",
        "4111 1111 1111 1111 12/27",
        "4111.1111.1111.1111",
        "4111/1111/1111/1111",
        "4111\\/1111\\/1111\\/1111",
        "4111  1111  1111  1111",
        "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11",
        "\\u0034\\u0031\\u0031\\u0031111111111111",
        "4111\u00a01111\u20131111 1111",
        "tok_4111111111111111",
    ],
)
def test_the_variants_of_the_issue_are_found(written: str) -> None:
    raw = b'{"token": "' + written.encode() + b'"}'
    assert holds_card_number(raw)
    masked, found = mask_card_numbers(raw)
    assert found and not holds_card_number(masked)
    assert orjson.loads(masked)["token"].count("*") == 16


@pytest.mark.parametrize(
    "text",
    [
        '"due_ms": 1765000000000',  # epoch milliseconds: 13 digits starting with 1
        '"time": "2026-12-04T03:33:30.916472+00:00"',
        '"id": "6f1b2a8e-3c2d-4f5e-9a7b-1c0d2e3f4a5b"',
        VISA_TEST_PAN[:-1] + "2",  # fails the Luhn check
        "411111111111",  # 12 digits
        "41111111111111111111",  # 20 digits
        "7111111111111111" + luhn_check_digit("711111111111111"),  # no card network starts with 7
    ],
)
def test_what_is_not_a_card_number(text: str) -> None:
    assert not holds_card_number(text.encode())
    assert mask_card_numbers(text.encode()) == (text.encode(), False)


def test_generated_campaign_events_are_never_taken_for_card_data() -> None:
    gen = CampaignGenerator(CampaignMix(customers=2_000), seed=11, run_id="cards")
    flagged = [e.value for e in gen.events(20_000) if e.value and holds_card_number(e.value)]
    assert flagged == []


def test_an_ordinary_event_decodes(cloud_event: EventFactory, event_data: DataFactory) -> None:
    for etype in INPUT_TYPES:
        raw = cloud_event(etype, event_data(etype))
        assert isinstance(decode_record("in", 0, 1, b"c-1", raw, 64 * 1024), InputEvent), etype


@pytest.mark.parametrize(
    "identifier",
    [
        "57379023-2157-4408-bb03-7afc895c1167",  # UUIDs whose first groups are digits: a Luhn-valid run
        "62049860-6198-4440-a419-934106abbe2f",
        "7d91f796-3162-5816-9915-9d1f21876295",  # an output id seen flagged before the UUID rule
        "5f3a" + "4111111111111111" + "9c0e7d21ab",  # a digest-like word with a PAN-like run inside
    ],
)
def test_hex_identifiers_are_not_card_numbers(identifier: str) -> None:
    raw = b'{"id": "' + identifier.encode() + b'"}'
    assert not holds_card_number(raw)


@settings(max_examples=2_000)
@given(st.uuids(), st.binary(min_size=32, max_size=32))
def test_uuids_and_digests_are_never_card_numbers(u: Any, digest: bytes) -> None:
    assert not holds_card_number(str(u).encode())
    assert not holds_card_number(digest.hex().encode())
