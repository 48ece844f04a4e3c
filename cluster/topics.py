"""Creating the input and output topics (idempotently) with the AdminClient."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from clickcash.config.settings import Settings
from clickcash.errors import ServiceError, map_exceptions


def all_topics(settings: Settings) -> list[str]:
    k = settings.kafka
    return [
        k.input_topic,
        k.orders_topic,
        k.payments_topic,
        k.dunning_topic,
        k.dlq_topic,
        k.campaigns_topic,
    ]


INPUT_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}
"""The shards decide at each input record's timestamp: the broker's append time is one clock for every
producer (a client with a skewed clock cannot move a decision), and it never runs backwards in a partition."""

CAMPAIGNS_TOPIC_CONFIG = {"cleanup.policy": "compact"}
"""The campaign ledger's snapshots: the latest record per campaign is its state, older ones may go."""


def topic_config(settings: Settings, topic: str) -> dict[str, str]:
    """The configuration a topic is created with: ``max.message.bytes`` from ``kafka.max_message_bytes``
    on every topic (the clients' ``message.max.bytes`` comes from the same setting, so what the producer
    accepts the broker accepts too), :data:`INPUT_TOPIC_CONFIG` on the input, and
    :data:`CAMPAIGNS_TOPIC_CONFIG` (compacted) on the campaign ledger's topic."""
    config = {"max.message.bytes": str(settings.kafka.max_message_bytes)}
    if topic == settings.kafka.input_topic:
        config.update(INPUT_TOPIC_CONFIG)
    if topic == settings.kafka.campaigns_topic:
        config.update(CAMPAIGNS_TOPIC_CONFIG)
    return config


def ensure_topics(settings: Settings, partitions: int = 8, replication_factor: int = 1) -> None:
    """Create missing topics with :func:`topic_config`; on existing ones, set ``max.message.bytes`` where
    it differs from ``kafka.max_message_bytes`` (nothing else is changed)."""
    config: dict[str, Any] = {**settings.kafka.client_config(), "logger": logging.getLogger("librdkafka")}
    admin = AdminClient(config)
    with map_exceptions("kafka", KafkaException):
        existing = set(admin.list_topics(timeout=30).topics)
        _align_message_size(admin, settings, [t for t in all_topics(settings) if t in existing])
        wanted = [
            NewTopic(
                t,
                num_partitions=partitions,
                replication_factor=replication_factor,
                config=topic_config(settings, t),
            )
            for t in all_topics(settings)
            if t not in existing
        ]
        if not wanted:
            return
        for topic, fut in admin.create_topics(wanted, operation_timeout=30).items():
            try:
                fut.result()
            except KafkaException as exc:
                if exc.args[0].code() != exc.args[0].TOPIC_ALREADY_EXISTS:
                    raise ServiceError("kafka", f"creating topic {topic}: {exc}") from exc


def _align_message_size(admin: AdminClient, settings: Settings, topics: list[str]) -> None:
    """A topic whose ``max.message.bytes`` is below what the producer may write would refuse a dead letter
    the shard sized to fit, and the stream would stop on it; one above it is harmless but inconsistent."""
    if not topics:
        return
    wanted = str(settings.kafka.max_message_bytes)
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in topics])
    differing = []
    for resource, fut in described.items():
        entry = fut.result().get("max.message.bytes")
        if entry is None or entry.value != wanted:
            differing.append(resource.name)
    if not differing:
        return
    entry = ConfigEntry("max.message.bytes", wanted, incremental_operation=AlterConfigOpType.SET)
    resources = [ConfigResource(ResourceType.TOPIC, t, incremental_configs=[entry]) for t in differing]
    for resource, fut in admin.incremental_alter_configs(resources).items():
        try:
            fut.result()
        except KafkaException as exc:
            raise ServiceError(
                "kafka",
                f"setting max.message.bytes={wanted} on topic {resource.name} (from kafka.max_message_bytes, "
                f"env CLICKCASH_KAFKA__MAX_MESSAGE_BYTES): {exc}; set it on the topic by hand or change the "
                "setting to match the topic",
            ) from exc
