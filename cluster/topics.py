"""Creating the input and output topics (idempotently) with the AdminClient."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from clickcash._errors import ServiceError, map_exceptions
from config.settings import Settings


def all_topics(settings: Settings) -> list[str]:
    k = settings.kafka
    return [k.input_topic, k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic]


INPUT_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}
"""The shards decide at each input record's timestamp: the broker's append time is one clock for every
producer (a client with a skewed clock cannot move a decision), and it never runs backwards in a partition."""


def ensure_topics(settings: Settings, partitions: int = 8, replication_factor: int = 1) -> None:
    """Create missing topics (the input with :data:`INPUT_TOPIC_CONFIG`); existing ones are left as they
    are."""
    config: dict[str, Any] = {**settings.kafka.client_config(), "logger": logging.getLogger("librdkafka")}
    admin = AdminClient(config)
    with map_exceptions("kafka", KafkaException):
        existing = set(admin.list_topics(timeout=30).topics)
        wanted = [
            NewTopic(
                t,
                num_partitions=partitions,
                replication_factor=replication_factor,
                config=INPUT_TOPIC_CONFIG if t == settings.kafka.input_topic else {},
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
