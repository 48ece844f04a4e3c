"""Output ids: derived from the input id and the output's role, identical across versions."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from clickcash.events import output_id

NAMESPACE = uuid.UUID("6f1b2a8e-3c2d-4f5e-9a7b-1c0d2e3f4a5b")


@given(st.text(max_size=40), st.sampled_from(["order-decision", "route", "dunning:end", "route:o-1"]))
def test_output_ids_are_the_uuid5_of_input_id_and_role(input_id: str, role: str) -> None:
    """Ids are stored in first responses and consumed downstream: the fast derivation must give exactly
    the uuid5 ids earlier versions wrote, or a replay across an upgrade would emit new ids."""
    expected = str(uuid.uuid5(NAMESPACE, f"{input_id}\x00{role}"))
    assert output_id(input_id, role) == expected


def test_an_output_id_is_a_version_5_uuid() -> None:
    parsed = uuid.UUID(output_id("e-1", "route"))
    assert parsed.version == 5
    assert parsed.variant == uuid.RFC_4122
