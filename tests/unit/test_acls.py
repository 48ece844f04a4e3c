"""Least-privilege ACLs as data: what each role may do, computed from the settings."""

from __future__ import annotations

import json

import pytest

from clickcash.cluster.acls import (
    AclInputs,
    KafkaAcl,
    kafka_acls,
    redis_acl_rules,
    render_json,
    render_kafka_acls,
    render_terraform,
)
from clickcash.config.settings import AccessSettings


@pytest.fixture
def inp() -> AclInputs:
    return AclInputs(
        input_topic="t.in",
        orders_topic="t.orders",
        payments_topic="t.payments",
        dunning_topic="t.dunning",
        dlq_topic="t.dlq",
        group_id="grp",
        transactional_id_prefix="tx",
        redis_key_prefix="cc1",
        principals=dict(AccessSettings().principals),
        campaigns_topic="t.campaigns",
    )


def _grants(acls: list[KafkaAcl], role: str) -> set[tuple[str, str, str, str]]:
    return {(a.resource_type, a.resource_name, a.pattern_type, a.operation) for a in acls if a.role == role}


def test_app_gets_exactly_what_the_pipeline_does(inp: AclInputs) -> None:
    app = _grants(kafka_acls(inp), "app")
    assert ("Topic", "t.in", "Literal", "Read") in app
    assert ("Topic", "t.in", "Literal", "Write") in app, "dunning timer commands go back into the input"
    for out in ("t.orders", "t.payments", "t.dunning", "t.dlq"):
        assert ("Topic", out, "Literal", "Write") in app
    # the campaign ledger reads the order decisions and dunning outcomes, nothing else of the outputs
    for out in ("t.payments", "t.dlq"):
        assert ("Topic", out, "Literal", "Read") not in app
    for out in ("t.orders", "t.dunning"):
        assert ("Topic", out, "Literal", "Read") in app
    assert ("Topic", inp.campaigns_topic, "Literal", "Write") in app
    assert ("Group", "grp-campaigns", "Literal", "Read") in app
    assert ("TransactionalId", "tx-grp-campaign-ledger", "Literal", "Write") in app
    assert ("Group", "grp", "Literal", "Read") in app
    assert ("TransactionalId", "tx-grp-router-", "Prefixed", "Write") in app
    assert ("TransactionalId", "tx-grp-router-", "Prefixed", "Describe") in app
    assert ("Cluster", "kafka-cluster", "Literal", "IdempotentWrite") in app
    assert not any(op == "Create" for _, _, _, op in app)


def test_load_generator_only_writes_the_input(inp: AclInputs) -> None:
    assert _grants(kafka_acls(inp), "loadgen") == {
        ("Topic", "t.in", "Literal", "Write"),
        ("Topic", "t.in", "Literal", "Describe"),
        ("Cluster", "kafka-cluster", "Literal", "IdempotentWrite"),
    }


@pytest.mark.parametrize("kind", ["orders", "payments", "dunning"])
def test_a_downstream_consumer_reads_its_one_topic(inp: AclInputs, kind: str) -> None:
    topic = f"t.{kind}"
    assert _grants(kafka_acls(inp), kind) == {
        ("Topic", topic, "Literal", "Read"),
        ("Topic", topic, "Literal", "Describe"),
        ("Group", f"{topic}.", "Prefixed", "Read"),
        ("Group", f"{topic}.", "Prefixed", "Describe"),
    }


def test_operator_reads_everything_and_writes_nothing(inp: AclInputs) -> None:
    ops = _grants(kafka_acls(inp), "operator")
    for topic in inp.all_topics:
        assert ("Topic", topic, "Literal", "Read") in ops
    assert not any(op in ("Write", "IdempotentWrite") for _, _, _, op in ops)


def test_acls_follow_the_configured_names(inp: AclInputs) -> None:
    names = {a.resource_name for a in kafka_acls(inp)}
    assert not any(n.startswith("clickcash.") for n in names), "nothing is hard-wired to default topics"
    principals = {a.principal for a in kafka_acls(inp)}
    assert principals == {f"User:{p}" for p in inp.principals.values()}


def test_a_missing_principal_is_refused(inp: AclInputs) -> None:
    del inp.principals["payments"]
    with pytest.raises(ValueError, match="payments"):
        kafka_acls(inp)


def test_redis_rules_are_key_prefix_and_commands_only(inp: AclInputs) -> None:
    rules = redis_acl_rules(inp)
    assert set(rules) == {"app", "operator"}
    for rule in rules.values():
        assert "~cc1:*" in rule and "-@dangerous" in rule and "allkeys" not in rule and ">" not in rule
    assert "+@write" in rules["app"] and "+@write" not in rules["operator"]


def test_every_format_renders_every_acl(inp: AclInputs) -> None:
    acls = kafka_acls(inp)
    doc = json.loads(render_json(inp))
    assert len(doc["kafka"]) == len(acls)
    assert doc["redis"]["app"]["user"] == inp.principals["app"]
    commands = [ln for ln in render_kafka_acls(inp).splitlines() if ln.startswith("kafka-acls.sh")]
    assert len(commands) == len(acls)
    assert all("--allow-principal User:" in c for c in commands)
    assert render_terraform(inp).count('resource "kafka_acl"') == len(acls)
