"""A shard's stored first responses (``actors/_first_response.py``): framed outputs, and the previous JSON
format still replayed the same."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickcash.actors import _first_response as first_response
from clickcash.actors.contract import Headers

_TOPICS = st.sampled_from(["clickcash.orders", "clickcash.payments", "clickcash.dunning", "a-b_c.1"])
_OUTPUT = st.tuples(_TOPICS, st.binary(max_size=400), st.booleans())
_SYNTHETIC: Headers = [("ce_synthetic", b"true")]


def _columns(outputs: list[tuple[str, bytes, bool]]) -> tuple[list[str], list[bytes], list[Headers | None]]:
    return (
        [t for t, _, _ in outputs],
        [v for _, v, _ in outputs],
        [_SYNTHETIC if s else None for _, _, s in outputs],
    )


@given(st.lists(_OUTPUT, max_size=6), st.lists(_OUTPUT, max_size=3))
def test_the_outputs_of_one_event_come_back_byte_for_byte(
    before: list[tuple[str, bytes, bool]], outputs: list[tuple[str, bytes, bool]]
) -> None:
    topics, values, headers = _columns(before + outputs)
    raw = first_response.encode(topics, values, headers, len(before), len(before) + len(outputs))
    assert first_response.decode(raw) == outputs


@given(st.lists(st.tuples(_TOPICS, st.text(max_size=200), st.booleans()), max_size=4))
def test_a_response_of_the_previous_format_is_still_read(outputs: list[tuple[str, str, bool]]) -> None:
    """The JSON an earlier version stored: a third member marks a synthetic output."""
    legacy = orjson.dumps([[t, v, 1] if s else [t, v] for t, v, s in outputs])
    assert first_response.decode(legacy) == [(t, v.encode(), s) for t, v, s in outputs]


def test_no_outputs_in_either_format() -> None:
    assert first_response.decode(first_response.FORMAT) == []
    assert first_response.decode(b"[]") == []


@pytest.mark.parametrize(
    "raw",
    [b"F1clickcash.orders 0 10\n12345", b"F1clickcash.orders 2 1\nx", b"F1clickcash.orders 0\nx", b"F1x"],
)
def test_a_truncated_or_malformed_response_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        first_response.decode(raw)
