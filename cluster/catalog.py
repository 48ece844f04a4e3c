"""The event catalogue: an AsyncAPI 3.0 document of every topic, message, producer, consumer and ACL role.

Built from the same sources as the product (the pydantic event models through ``clickcash.schemas``, the
topic names of the settings, the roles of ``clickcash.cluster.acls``), so it cannot drift from what runs. A
new
consumer team starts here: which topic carries what, the schema of each message, who writes it, which
role may read it and with which security scheme. ``tests/unit/test_catalog.py`` validates it against the
AsyncAPI 3.0.0 JSON Schema (vendored in ``config/asyncapi/``, from ``@asyncapi/specs``).
"""

from __future__ import annotations

import copy
import json
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clickcash import config
from clickcash.campaign_snapshot import SNAPSHOT_TYPE
from clickcash.cluster.acls import DOWNSTREAM_KINDS, acl_inputs
from clickcash.events import ERASURE_EVENT_TYPE, INPUT_TYPES, OUTPUT_TYPES, TIMER_EVENT_TYPE
from clickcash.schemas import contract_schemas

if TYPE_CHECKING:
    from clickcash.config.settings import Settings

ASYNCAPI_SCHEMA = Path(config.__file__).resolve().parent / "asyncapi" / "asyncapi-3.0.0.schema.json"
_WHO = {
    TIMER_EVENT_TYPE: "written by clickcash's own dunning timers",
    ERASURE_EVENT_TYPE: "written by clickcash forget (erasure of a customer)",
}
_KIND_OF_PREFIX = {"order": "orders", "payment": "payments", "dunning": "dunning", "customer": "orders"}


def _rebase_refs(node: Any, base: str) -> Any:
    """Point a schema's local ``#/$defs/X`` references at where the schema sits in the document."""
    if isinstance(node, dict):
        return {
            k: (
                base + v[1:]
                if k == "$ref" and isinstance(v, str) and v.startswith("#/")
                else _rebase_refs(v, base)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rebase_refs(v, base) for v in node]
    return node


def _version() -> str:
    try:
        return metadata.version("clickcash")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _security_schemes(settings: Settings) -> dict[str, Any]:
    k = settings.kafka
    mechanism = k.sasl_mechanism or "SCRAM-SHA-512"
    schemes: dict[str, dict[str, Any]] = {
        "PLAIN": {"type": "plain"},
        "SCRAM-SHA-256": {"type": "scramSha256"},
        "SCRAM-SHA-512": {"type": "scramSha512"},
        "OAUTHBEARER": {
            "type": "oauth2",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": k.sasl_oauthbearer_token_endpoint_url or "https://idp.example/token",
                    "availableScopes": {k.sasl_oauthbearer_scope or "kafka": "access to the Kafka cluster"},
                }
            },
            "scopes": [k.sasl_oauthbearer_scope or "kafka"],
        },
    }
    scheme = schemes[mechanism]
    scheme["description"] = (
        f"SASL {mechanism} over TLS, one principal per role (`clickcash acls`); see docs/security.md"
    )
    return {"kafka": scheme}


def build_catalog(settings: Settings) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the deployment ``settings`` describe."""
    inp = acl_inputs(settings)
    schemas = contract_schemas()
    components_schemas: dict[str, Any] = {}
    for name, schema in schemas.items():
        key = name.removesuffix(".schema.json")
        components_schemas[key] = _rebase_refs(copy.deepcopy(schema), f"#/components/schemas/{key}")

    def message(etype: str, envelope: str, summary: str) -> dict[str, Any]:
        return {
            "name": etype,
            "title": etype,
            "summary": summary,
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    {"$ref": f"#/components/schemas/{envelope}"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": etype},
                            "data": {"$ref": f"#/components/schemas/{etype}.data"},
                        },
                    },
                ]
            },
        }

    messages: dict[str, Any] = {}
    channel_messages: dict[str, list[str]] = {
        "input": [],
        "orders": [],
        "payments": [],
        "dunning": [],
        "dlq": [],
        "campaigns": [],
    }
    for etype in INPUT_TYPES:
        who = _WHO.get(etype, "an input event")
        messages[etype] = message(etype, "input-envelope", who)
        channel_messages["input"].append(etype)
    for etype in OUTPUT_TYPES:
        messages[etype] = message(etype, "output-envelope", "an output of clickcash (deterministic id)")
        channel_messages[_KIND_OF_PREFIX[etype.split(".")[0]]].append(etype)
    messages["dead-letter"] = {
        "name": "clickcash.dead_letter",
        "title": "dead letter",
        "summary": "the rejected input record as it was (card numbers masked); the reason in a header",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "properties": {"clickcash_reason": {"$ref": "#/components/schemas/dead-letter-reason"}},
        },
        "payload": {"type": "string", "description": "the input record's bytes"},
    }
    channel_messages["dlq"].append("dead-letter")
    messages[SNAPSHOT_TYPE] = message(
        SNAPSHOT_TYPE,
        "campaign-snapshot-envelope",
        "a campaign's totals as of the ledger's last transaction (the latest record per key is current)",
    )
    channel_messages["campaigns"].append(SNAPSHOT_TYPE)

    topics = {
        "input": inp.input_topic,
        "orders": inp.orders_topic,
        "payments": inp.payments_topic,
        "dunning": inp.dunning_topic,
        "dlq": inp.dlq_topic,
        "campaigns": inp.campaigns_topic,
    }
    descriptions = {
        "input": "Input events keyed by customer id (per-customer order); dunning timer commands too.",
        "orders": "Order decisions (accepted / rejected) and customer erasures, keyed by customer id.",
        "payments": "PSP routing decisions, keyed by customer id.",
        "dunning": "Dunning plans, steps and outcomes, keyed by customer id.",
        "dlq": "Input records clickcash could not accept, with the reason; the stream moves on.",
        "campaigns": "The campaign ledger's per-campaign totals, keyed by campaign id; compacted.",
    }
    channels = {
        name: {
            "address": topic,
            "title": topic,
            "description": descriptions[name],
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in channel_messages[name]},
        }
        for name, topic in topics.items()
    }
    security = [{"$ref": "#/components/securitySchemes/kafka"}]

    def operation(action: str, channel: str, role: str, summary: str) -> dict[str, Any]:
        return {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "security": security,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in channel_messages[channel]],
            "x-clickcash-acl-role": role,
            "x-clickcash-principal": f"User:{inp.principals[role]}",
        }

    operations: dict[str, Any] = {
        "loadgenSendsInput": operation("send", "input", "loadgen", "Producers of input events"),
        "appReceivesInput": operation("receive", "input", "app", f"clickcash reads, group {inp.group_id}"),
        "appSendsTimerCommands": operation("send", "input", "app", "clickcash's dunning timer commands"),
        "appSendsDeadLetters": operation("send", "dlq", "app", "clickcash dead-letters bad input"),
        "operatorReceivesDeadLetters": operation(
            "receive", "dlq", "operator", "Operators inspect dead letters"
        ),
        "appSendsCampaignSnapshots": operation(
            "send", "campaigns", "app", "clickcash's campaign ledger writes snapshots in Kafka transactions"
        ),
        "operatorReceivesCampaignSnapshots": operation(
            "receive", "campaigns", "operator", "`clickcash campaigns` and dashboards read the latest per key"
        ),
    }
    for kind in DOWNSTREAM_KINDS:
        operations[f"appSends{kind.title()}"] = operation(
            "send", kind, "app", f"clickcash writes {kind} outputs in Kafka transactions"
        )
        operations[f"{kind}ConsumerReceives"] = operation(
            "receive",
            kind,
            kind,
            f"A {kind} consumer reads {topics[kind]} (read_committed) with groups named "
            f"`{topics[kind]}.<team>`; it may read nothing else",
        )
    return {
        "asyncapi": "3.0.0",
        "id": "urn:clickcash:events",
        "info": {
            "title": "clickcash event catalogue",
            "version": _version(),
            "description": (
                "Every topic of clickcash, the CloudEvents messages on it and their JSON Schemas, who "
                "writes and who reads each, and the ACL role a reader needs (`clickcash acls`). Read "
                "with `isolation.level=read_committed`: outputs commit in Kafka transactions."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": settings.kafka.bootstrap_servers.split(",")[0],
                "protocol": "kafka-secure",
                "description": "the cluster's brokers (SASL over TLS)",
                "security": [{"$ref": "#/components/securitySchemes/kafka"}],
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": components_schemas,
            "messages": messages,
            "securitySchemes": _security_schemes(settings),
        },
    }


def render_catalog(settings: Settings) -> str:
    return json.dumps(build_catalog(settings), indent=2, sort_keys=False) + "\n"
