"""The event catalogue is a valid AsyncAPI 3.0 document that says what the product does."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from clickcash.cluster.catalog import ASYNCAPI_SCHEMA, build_catalog, render_catalog
from clickcash.config.settings import Settings, load_settings
from clickcash.events import INPUT_TYPES, OUTPUT_TYPES

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_catalog_validates_against_the_asyncapi_3_schema(
    validator: jsonschema.Draft7Validator, settings: Settings
) -> None:
    doc = build_catalog(settings)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []


def test_the_validation_rejects_a_broken_document(
    validator: jsonschema.Draft7Validator, settings: Settings
) -> None:
    doc = copy.deepcopy(build_catalog(settings))
    del doc["operations"]["paymentsConsumerReceives"]["action"]
    assert not validator.is_valid(doc)
    doc = copy.deepcopy(build_catalog(settings))
    doc["channels"]["orders"]["address"] = 42
    assert not validator.is_valid(doc)


def test_every_reference_resolves(settings: Settings) -> None:
    doc = build_catalog(settings)
    refs = _refs(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        _resolve(doc, ref)


def test_every_event_type_is_on_its_topic_with_its_writer_and_reader_role(settings: Settings) -> None:
    doc = build_catalog(settings)
    k = settings.kafka
    addresses = {name: ch["address"] for name, ch in doc["channels"].items()}
    assert set(addresses.values()) == {
        k.input_topic,
        k.orders_topic,
        k.payments_topic,
        k.dunning_topic,
        k.dlq_topic,
        k.campaigns_topic,
    }
    on = {m: name for name, ch in doc["channels"].items() for m in ch["messages"]}
    assert set(INPUT_TYPES) | set(OUTPUT_TYPES) <= set(on)
    assert on["order.accepted"] == "orders" and on["payment.route_decided"] == "payments"
    assert on["dunning.scheduled"] == "dunning" and on["order.placed"] == "input"
    ops = doc["operations"]
    readers = {
        (o["channel"]["$ref"], o["x-clickcash-acl-role"]) for o in ops.values() if o["action"] == "receive"
    }
    assert ("#/channels/payments", "payments") in readers and ("#/channels/orders", "orders") in readers
    writers = {
        (o["channel"]["$ref"], o["x-clickcash-acl-role"]) for o in ops.values() if o["action"] == "send"
    }
    assert ("#/channels/input", "loadgen") in writers and ("#/channels/orders", "app") in writers
    assert on["campaign.snapshot"] == "campaigns" and ("#/channels/campaigns", "app") in writers
    assert doc["components"]["securitySchemes"]["kafka"]["type"] == "scramSha512"


def test_catalog_follows_the_configured_topic_names() -> None:
    custom = load_settings(kafka={"payments_topic": "acme.payments"})
    doc = build_catalog(custom)
    assert doc["channels"]["payments"]["address"] == "acme.payments"


def test_the_shipped_catalog_is_current(settings: Settings) -> None:
    assert SHIPPED.read_text() == render_catalog(settings), (
        "regenerate: clickcash catalog --out docs/asyncapi.json"
    )
