"""The published JSON Schema files must be exactly what the contract models generate."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from clickcash.events import INPUT_TYPES, OUTPUT_TYPES
from clickcash.schemas import contract_schemas, render

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "config" / "schemas"
HINT = (
    "the published schemas drifted from clickcash/events.py: "
    "run `clickcash schemas` and commit config/schemas"
)


def test_schema_files_are_exactly_the_generated_ones() -> None:
    expected = contract_schemas()
    on_disk = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert on_disk == set(expected), (
        f"{HINT} (missing: {sorted(set(expected) - on_disk)}, stale: {sorted(on_disk - set(expected))})"
    )


@pytest.mark.parametrize("name", sorted(contract_schemas()))
def test_schema_file_matches_byte_for_byte(name: str) -> None:
    path = SCHEMA_DIR / name
    assert path.is_file(), f"{name} missing; {HINT}"
    assert path.read_bytes() == render(contract_schemas()[name]), f"{name} differs; {HINT}"


def test_every_event_type_has_a_data_schema() -> None:
    names = set(contract_schemas())
    for etype in {**INPUT_TYPES, **OUTPUT_TYPES}:
        assert f"{etype}.data.schema.json" in names
    assert {
        "input-envelope.schema.json",
        "output-envelope.schema.json",
        "dead-letter-reason.schema.json",
    } <= names


def test_render_is_stable_and_sorted() -> None:
    schema = contract_schemas()["order.placed.data.schema.json"]
    text = render(schema)
    assert text.endswith(b"\n")
    assert orjson.loads(text) == schema
    assert render(orjson.loads(text)) == text
