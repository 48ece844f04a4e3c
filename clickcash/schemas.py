"""JSON Schema files for the event contract, generated from the pydantic models so they cannot drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from clickcash.campaign_snapshot import SNAPSHOT_TYPE, CampaignSnapshot, SnapshotEnvelope
from clickcash.events import INPUT_TYPES, OUTPUT_TYPES, DeadLetter, InputEnvelope, OutputEnvelope


def contract_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema for every envelope and every event type's ``data``."""
    out: dict[str, dict[str, Any]] = {
        "input-envelope.schema.json": InputEnvelope.model_json_schema(),
        "output-envelope.schema.json": OutputEnvelope.model_json_schema(),
        "dead-letter-reason.schema.json": DeadLetter.model_json_schema(),
    }
    for etype, model in {**INPUT_TYPES, **OUTPUT_TYPES}.items():
        schema = model.model_json_schema()
        schema["$comment"] = f"data of CloudEvents type {etype!r}"
        out[f"{etype}.data.schema.json"] = schema
    out["campaign-snapshot-envelope.schema.json"] = SnapshotEnvelope.model_json_schema()
    snapshot = CampaignSnapshot.model_json_schema()
    snapshot["$comment"] = f"data of CloudEvents type {SNAPSHOT_TYPE!r}"
    out[f"{SNAPSHOT_TYPE}.data.schema.json"] = snapshot
    return out


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in contract_schemas().items():
        path = folder / name
        path.write_bytes(render(schema))
        written.append(path)
    return written
