"""Clear answers from a secured cluster: who was refused what, and why a connection failed.

librdkafka reports a refused topic as an error code on a poll or a delivery, and a wrong password or an
untrusted certificate as a log line while it keeps retrying: a client that only waits for data hangs. These
checks turn both into a ``ServiceError`` naming the principal, the resource and the setting to look at,
within a budget (every wait here has one and ends).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from clickcash.config.settings import KafkaSecuritySettings
from clickcash.errors import ServiceError

_REFUSALS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "group",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional id",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
}


_AFTER = re.compile(r"\(after \d+ms in state \w+\)")


def _is_fatal(error: str) -> bool:
    """An authentication or TLS failure: retrying with the same settings cannot heal it."""
    lowered = error.lower()
    return "authentication" in lowered or "ssl handshake failed" in lowered or "certificate" in lowered


def principal_of(k: KafkaSecuritySettings) -> str:
    if k.sasl_mechanism == "OAUTHBEARER":
        return f"OAuth client {k.sasl_oauthbearer_client_id}"
    if k.sasl_username:
        return f"User:{k.sasl_username}"
    if k.ssl_certificate_location is not None:
        return f"the certificate {k.ssl_certificate_location}"
    return "User:ANONYMOUS"


def refusal_message(k: KafkaSecuritySettings, error: KafkaError, action: str, resource: str) -> str | None:
    """``principal … is not allowed to <action> <kind> <resource>`` for an authorization error, else None."""
    kind = _REFUSALS.get(error.code())
    if kind is None:
        return None
    return (
        f"{principal_of(k)} is not allowed to {action} {kind} {resource} ({error.name()}); "
        "the ACLs each role needs: `clickcash acls`"
    )


def connection_message(k: KafkaSecuritySettings, errors: list[str]) -> str:
    """What a failed connection most likely means, from librdkafka's error lines."""
    distinct = list(dict.fromkeys(_AFTER.sub("", e).strip() for e in errors))
    telling = [e for e in distinct if _is_fatal(e)] or distinct
    text = " | ".join(telling[:3]) or "no answer from any broker"
    lowered = text.lower()
    if "ssl handshake failed" in lowered or "certificate" in lowered:
        return (
            "TLS handshake failed: the broker's certificate is not trusted or does not match the host "
            f"(settings kafka.ssl_ca_location = {k.ssl_ca_location}, "
            f"kafka.ssl_endpoint_identification_algorithm): {text}"
        )
    if "authentication" in lowered:
        return (
            f"authentication of {principal_of(k)} failed (wrong password, unknown user or mechanism "
            f"{k.sasl_mechanism}; settings kafka.sasl_username / kafka.sasl_password): {text}"
        )
    return f"cannot reach Kafka at {k.bootstrap_servers}: {text}"


def check_connection(k: KafkaSecuritySettings, timeout_s: float = 15.0) -> None:
    """Connect and authenticate, or raise ``ServiceError`` saying why (within ``timeout_s``)."""
    errors: list[str] = []

    def on_error(err: KafkaError) -> None:
        errors.append(err.str())

    conf: dict[str, Any] = {**k.client_config(), "error_cb": on_error, "log_level": 0}
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
            return
        except KafkaException as exc:
            errors.append(str(exc.args[0].str() if exc.args else exc))
        admin.poll(0.1)  # serves error_cb: the TLS and SASL failures arrive there, not in the exception
        # an authentication or TLS failure does not heal by retrying: report it at once
        if any(_is_fatal(e) for e in errors):
            break
        if time.monotonic() >= deadline:
            break
    raise ServiceError("kafka", connection_message(k, errors))


def check_read(k: KafkaSecuritySettings, topic: str, group: str, timeout_s: float = 20.0) -> None:
    """Join ``group`` and read ``topic`` (nothing is committed), or raise ``ServiceError`` naming the
    principal and the refused topic or group."""
    errors: list[str] = []
    conf: dict[str, Any] = {
        **k.client_config(),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "error_cb": lambda err: errors.append(err.str()),
        "log_level": 0,
    }
    c = Consumer(conf)
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            err = msg.error() if msg is not None else None
            if err is not None:
                resource = group if _REFUSALS.get(err.code()) == "group" else topic
                refused = refusal_message(k, err, "read", resource)
                raise ServiceError("kafka", refused or f"reading {topic}: {err.str()}")
            if msg is not None or c.assignment():
                # assigned (or a record): the group and the topic are readable; the position needs Read too
                parts = c.assignment() or [TopicPartition(topic, 0)]
                c.committed(parts, timeout=max(deadline - time.monotonic(), 1.0))
                return
        raise ServiceError("kafka", connection_message(k, errors) if errors else f"no answer reading {topic}")
    except KafkaException as exc:
        err = exc.args[0]
        refused = refusal_message(k, err, "read", group) if isinstance(err, KafkaError) else None
        raise ServiceError("kafka", refused or f"reading {topic}: {exc}") from exc
    finally:
        c.close()


def new_group(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"
