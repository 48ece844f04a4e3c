"""The envelope's cheap path (a TypedDict, no model instance) accepts exactly what ``InputEnvelope``
accepts, and anything it refuses is judged by ``InputEnvelope`` itself, so dead letters do not change."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from clickcash.actors._decode import _validate_envelope
from clickcash.events import InputEnvelope

VALID: dict[str, Any] = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "tests",
    "type": "order.placed",
    "time": "2026-03-02T09:00:00Z",
    "partitionkey": "c-1",
    "correlationid": "corr-1",
    "data": {"customer_id": "c-1"},
}
MISSING = object()

CHANGES: list[dict[str, Any]] = [
    {},
    {"correlationid": None, "campaignid": None},
    {"correlationid": MISSING},
    {"extension": "ignored"},
    {"time": "2026-03-02T11:00:00+02:00"},
    *({name: MISSING} for name in ("specversion", "id", "source", "type", "time", "partitionkey", "data")),
    {"specversion": "0.3"},
    {"specversion": None},
    {"id": ""},
    {"id": "a\x1fb"},
    {"id": 5},
    {"source": ""},
    {"source": "s" * 1025},
    {"type": 7},
    {"time": "2026-03-02T09:00:00"},
    {"time": 1_772_443_800},
    {"time": "yesterday"},
    {"partitionkey": None},
    {"correlationid": "x" * 256},
    {"campaignid": 3},
    {"data": []},
    {"data": None},
    {"id": "", "data": []},
]


@pytest.mark.parametrize("change", CHANGES)
def test_the_cheap_envelope_path_agrees_with_the_model(change: dict[str, Any]) -> None:
    raw = {**VALID, **change}
    for name in [k for k, v in change.items() if v is MISSING]:
        del raw[name]
    try:
        expected = InputEnvelope.model_validate(raw)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as got:
            _validate_envelope(raw)
        assert got.value.errors(include_context=False) == exc.errors(include_context=False)
        return
    env = _validate_envelope(raw)
    for name in ("id", "type", "time", "partitionkey", "correlationid", "campaignid", "data"):
        assert getattr(env, name) == getattr(expected, name)
