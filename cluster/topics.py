"""Creating the input and output topics (idempotently) with the AdminClient."""

from __future__ import annotations

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


def topic_config(settings: Settings, topic: str) -> dict[str, str]:
    """The configuration a topic is created with: ``max.message.bytes`` from ``kafka.max_message_bytes``
    on every topic (the clients' ``message.max.bytes`` comes from the same setting, so what the producer
    accepts the broker accepts too), and :data:`INPUT_TOPIC_CONFIG` on the input."""
    config = {"max.message.bytes": str(settings.kafka.max_message_bytes)}
    if topic == settings.kafka.input_topic:
        config.update(INPUT_TOPIC_CONFIG)
    return config


def ensure_topics(settings: Settings, partitions: int = 8, replication_factor: int = 1) -> None:
    """Create missing topics with :func:`topic_config`; existing ones are left as they are (an operator
    who raises ``kafka.max_message_bytes`` raises the topics' ``max.message.bytes`` to match)."""
    admin = AdminClient(settings.kafka.client_config())
    with map_exceptions("kafka", KafkaException):
        existing = set(admin.list_topics(timeout=30).topics)
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
