"""Least privilege as data: the Kafka ACLs and Redis ACL rules each role needs, from the settings.

A pure function of the configured topic names, group id, transactional id prefix, Redis key prefix and
principal names (no client library imported): ``clickcash acls`` prints it for a platform team
(``kafka-acls.sh`` commands, JSON, or Terraform for the Mongey/kafka provider), and the secured local stack
applies exactly this list with Kafka's admin API, so what is printed is what the tests prove.

Roles:

- ``app`` (routers and shards): reads the input with its group, writes the outputs and the dead-letter
  topic transactionally, writes dunning timer commands back into the input, and reads committed offsets.
- ``loadgen`` (Locust users, campaign producer): writes the input and nothing else.
- ``operator`` (verifier, ``clickcash status``/``outputs``, topic admin): reads every topic, creates them,
  and reads the app group's committed offsets; its own reader groups start with ``clickcash-``.
- one downstream consumer per output kind (``orders``, ``payments``, ``dunning``): reads its one topic
  with groups named ``<topic>.<anything>`` (e.g. ``clickcash.payments.ledger``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from clickcash.actors import keyspace
from clickcash.config.settings import router_transactional_id_prefix

if TYPE_CHECKING:
    from clickcash.config.settings import Settings

ResourceType = Literal["Topic", "Group", "TransactionalId", "Cluster"]
PatternType = Literal["Literal", "Prefixed"]
Operation = Literal["Read", "Write", "Describe", "Create", "DescribeConfigs", "IdempotentWrite"]

OPERATOR_GROUP_PREFIX = "clickcash-"
"""reader groups of the operator's tools (``clickcash-reader-*``, ``clickcash-verify-*``, load test
monitors)"""

DOWNSTREAM_KINDS = ("orders", "payments", "dunning")
ROLES = ("app", "loadgen", "operator", *DOWNSTREAM_KINDS)


@dataclass(frozen=True, order=True)
class KafkaAcl:
    """One Allow ACL binding (host ``*``): there are no Deny rules, since the authorizer denies by default
    (``allow.everyone.if.no.acl.found=false``)."""

    role: str
    principal: str
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: Operation


@dataclass(frozen=True)
class AclInputs:
    """What the ACLs are computed from (``clickcash acls`` fills it from the settings)."""

    input_topic: str
    orders_topic: str
    payments_topic: str
    dunning_topic: str
    dlq_topic: str
    group_id: str
    transactional_id_prefix: str
    redis_key_prefix: str
    principals: dict[str, str]
    """role -> Kafka user name (the SCRAM user or certificate CN)"""
    campaigns_topic: str
    """the campaign ledger's compacted snapshot topic (written by the app's ledger actor)"""

    def topic_of(self, kind: str) -> str:
        return {"orders": self.orders_topic, "payments": self.payments_topic, "dunning": self.dunning_topic}[
            kind
        ]

    @property
    def all_topics(self) -> tuple[str, ...]:
        return (
            self.input_topic,
            self.orders_topic,
            self.payments_topic,
            self.dunning_topic,
            self.dlq_topic,
            self.campaigns_topic,
        )


def transactional_id_pattern(inp: AclInputs) -> str:
    """The routers' transactional ids are ``<prefix>-<group>-router-<i>``
    (``KafkaSettings.router_transactional_id``): the ACL's prefix is exactly that, so another app's ids
    under the same prefix stay out of reach."""
    return router_transactional_id_prefix(inp.transactional_id_prefix, inp.group_id)


def kafka_acls(inp: AclInputs) -> list[KafkaAcl]:
    """Every Kafka ACL of every role, sorted; nothing more than each role's work needs."""
    missing = set(ROLES) - set(inp.principals)
    if missing:
        raise ValueError(f"no principal for role(s) {sorted(missing)}")
    out: list[KafkaAcl] = []

    def allow(
        role: str, rtype: ResourceType, name: str, ops: tuple[Operation, ...], pattern: PatternType
    ) -> None:
        out.extend(KafkaAcl(role, f"User:{inp.principals[role]}", rtype, name, pattern, op) for op in ops)

    outputs = (inp.orders_topic, inp.payments_topic, inp.dunning_topic, inp.dlq_topic)
    # app: consume the input in its group, write outputs + timer commands in transactions
    allow("app", "Topic", inp.input_topic, ("Read", "Write", "Describe"), "Literal")
    for topic in outputs:
        allow("app", "Topic", topic, ("Write", "Describe"), "Literal")
    allow("app", "Group", inp.group_id, ("Read", "Describe"), "Literal")
    allow("app", "TransactionalId", transactional_id_pattern(inp), ("Write", "Describe"), "Prefixed")
    allow("app", "Cluster", "kafka-cluster", ("IdempotentWrite",), "Literal")
    # app's campaign ledger: reads the orders and dunning outputs (and the input, above) in its own group,
    # writes its snapshots with its own transactional id
    for topic in (inp.orders_topic, inp.dunning_topic):
        allow("app", "Topic", topic, ("Read",), "Literal")
    allow("app", "Topic", inp.campaigns_topic, ("Write", "Describe"), "Literal")
    allow("app", "Group", f"{inp.group_id}-campaigns", ("Read", "Describe"), "Literal")
    allow("app", "TransactionalId", f"{inp.transactional_id_prefix}-{inp.group_id}-campaign-ledger",
          ("Write", "Describe"), "Literal")  # fmt: skip
    # load generator: the input only
    allow("loadgen", "Topic", inp.input_topic, ("Write", "Describe"), "Literal")
    allow("loadgen", "Cluster", "kafka-cluster", ("IdempotentWrite",), "Literal")
    # operator: read everything, create the topics, read the app's committed offsets
    for topic in inp.all_topics:
        allow("operator", "Topic", topic, ("Read", "Describe", "Create", "DescribeConfigs"), "Literal")
    allow("operator", "Group", inp.group_id, ("Describe",), "Literal")
    allow("operator", "Group", OPERATOR_GROUP_PREFIX, ("Read", "Describe"), "Prefixed")
    # downstream consumers: one topic each, groups named after it
    for kind in DOWNSTREAM_KINDS:
        topic = inp.topic_of(kind)
        allow(kind, "Topic", topic, ("Read", "Describe"), "Literal")
        allow(kind, "Group", f"{topic}.", ("Read", "Describe"), "Prefixed")
    return sorted(out)


def redis_acl_rules(inp: AclInputs) -> dict[str, str]:
    """Redis ``ACL SETUSER`` rules (without the password) per role that uses Redis: key prefix and
    command categories only. The app runs its state scripts (EVALSHA, SCRIPT LOAD) on its own keys; the
    operator (status, breakers) only reads them."""
    keys = "~" + keyspace.all_keys(inp.redis_key_prefix)
    return {
        "app": f"on {keys} resetchannels -@all +@connection +@read +@write +@scripting -@dangerous",
        "operator": f"on {keys} resetchannels -@all +@connection +@read -@dangerous",
    }


def render_json(inp: AclInputs) -> str:
    return json.dumps(
        {
            "kafka": [asdict(a) for a in kafka_acls(inp)],
            "redis": {
                role: {"user": inp.principals[role], "rules": rule}
                for role, rule in redis_acl_rules(inp).items()
            },
        },
        indent=2,
    )


def render_kafka_acls(inp: AclInputs) -> str:
    """``kafka-acls.sh`` commands; ``$BOOTSTRAP`` and ``$ADMIN_CONFIG`` (an admin client properties file)
    are the operator's."""
    flag = {
        "Topic": "--topic",
        "Group": "--group",
        "TransactionalId": "--transactional-id",
        "Cluster": "--cluster",
    }
    lines = ["# clickcash ACLs (generated by `clickcash acls`); Redis rules: `clickcash acls --format json`"]
    for a in kafka_acls(inp):
        target = (
            flag[a.resource_type]
            if a.resource_type == "Cluster"
            else f"{flag[a.resource_type]} {a.resource_name}"
        )
        pattern = " --resource-pattern-type prefixed" if a.pattern_type == "Prefixed" else ""
        lines.append(
            'kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add '
            f"--allow-principal {a.principal} --operation {a.operation} {target}{pattern}  # {a.role}"
        )
    return "\n".join(lines) + "\n"


def render_terraform(inp: AclInputs) -> str:
    """``kafka_acl`` resources of the Mongey/kafka Terraform provider."""
    blocks = ["# clickcash ACLs (generated by `clickcash acls --format terraform`)"]
    for i, a in enumerate(kafka_acls(inp)):
        name = f"{a.role}_{a.resource_type.lower()}_{a.operation.lower()}_{i}"
        blocks.append(
            f'resource "kafka_acl" "{name}" {{\n'
            f'  resource_name                = "{a.resource_name}"\n'
            f'  resource_type                = "{a.resource_type}"\n'
            f'  resource_pattern_type_filter = "{a.pattern_type}"\n'
            f'  acl_principal                = "{a.principal}"\n'
            f'  acl_host                     = "*"\n'
            f'  acl_operation                = "{a.operation}"\n'
            f'  acl_permission_type          = "Allow"\n'
            "}"
        )
    return "\n\n".join(blocks) + "\n"


RENDERERS = {"kafka-acls": render_kafka_acls, "json": render_json, "terraform": render_terraform}


def acl_inputs(settings: Settings) -> AclInputs:
    k = settings.kafka
    return AclInputs(
        input_topic=k.input_topic,
        orders_topic=k.orders_topic,
        payments_topic=k.payments_topic,
        dunning_topic=k.dunning_topic,
        dlq_topic=k.dlq_topic,
        group_id=k.group_id,
        transactional_id_prefix=k.transactional_id_prefix,
        redis_key_prefix=settings.redis.key_prefix,
        principals=dict(settings.access.principals),
        campaigns_topic=k.campaigns_topic,
    )
