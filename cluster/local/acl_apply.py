"""Applying least privilege to a Kafka cluster with its own admin API (the secured local stack does).

What is applied is exactly :func:`clickcash.cluster.acls.kafka_acls`: the list ``clickcash acls`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from clickcash.cluster.acls import KafkaAcl
from clickcash.errors import ServiceError

_RESOURCE = {
    "Topic": ResourceType.TOPIC,
    "Group": ResourceType.GROUP,
    "TransactionalId": ResourceType.TRANSACTIONAL_ID,
    "Cluster": ResourceType.BROKER,
}
_OPERATION = {
    "Read": AclOperation.READ,
    "Write": AclOperation.WRITE,
    "Describe": AclOperation.DESCRIBE,
    "Create": AclOperation.CREATE,
    "DescribeConfigs": AclOperation.DESCRIBE_CONFIGS,
    "IdempotentWrite": AclOperation.IDEMPOTENT_WRITE,
}
_PATTERN = {"Literal": ResourcePatternType.LITERAL, "Prefixed": ResourcePatternType.PREFIXED}
SCRAM_ITERATIONS = 8192


def binding(acl: KafkaAcl) -> AclBinding:
    return AclBinding(
        _RESOURCE[acl.resource_type],
        acl.resource_name,
        _PATTERN[acl.pattern_type],
        acl.principal,
        "*",
        _OPERATION[acl.operation],
        AclPermissionType.ALLOW,
    )


def create_scram_users(admin: AdminClient, passwords: dict[str, str], timeout_s: float = 30) -> None:
    """SCRAM-SHA-512 credentials for ``user -> password`` (created or replaced)."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, pw.encode()) for user, pw in passwords.items()
    ]
    for user, fut in admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s).items():
        try:
            fut.result()
        except Exception as exc:
            raise ServiceError("kafka", f"creating SCRAM user {user}: {exc}") from exc


def apply_acls(admin: AdminClient, acls: Iterable[KafkaAcl], timeout_s: float = 30) -> int:
    """Create every ACL (an existing one is left as it is); returns how many were applied."""
    bindings = [binding(a) for a in acls]
    for b, fut in admin.create_acls(bindings, request_timeout=timeout_s).items():
        try:
            fut.result()
        except Exception as exc:
            raise ServiceError("kafka", f"creating ACL {b}: {exc}") from exc
    return len(bindings)
