"""The paced latency measurement's own parts against the real broker: an output reader that starts at the
partitions' ends, and the broker warm-up that leaves nothing behind."""

from __future__ import annotations

import time
import uuid

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from clickcash.cluster.outputs import OutputReader
from clickcash.cluster.topics import ensure_topics
from clickcash.config.settings import Settings, load_settings
from clickcash.loadtest.traffic.warm_broker import warm_transactions
from tests.integration.conftest import Services


def _settings(services: Services) -> Settings:
    tag = f"latency-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        kafka={
            "bootstrap_servers": services.bootstrap_servers,
            "input_topic": f"{tag}.events",
            "orders_topic": f"{tag}.orders",
            "payments_topic": f"{tag}.payments",
            "dunning_topic": f"{tag}.dunning",
            "dlq_topic": f"{tag}.dlq",
            "group_id": f"{tag}-group",
        }
    )
    ensure_topics(settings, partitions=2)
    return settings


def _produce(settings: Settings, ids: list[str]) -> None:
    producer = Producer(settings.kafka.client_config())
    for event_id in ids:
        producer.produce(
            settings.kafka.orders_topic, orjson.dumps({"id": event_id, "type": "order.accepted"})
        )
    assert producer.flush(30) == 0


def test_reader_from_end_reads_only_what_follows(services: Services) -> None:
    settings = _settings(services)
    _produce(settings, ["before-1", "before-2", "before-3"])
    reader = OutputReader(settings, from_end=True)
    try:
        _produce(settings, ["after-1", "after-2"])
        records = reader.read_until(lambda rs: len(rs) >= 2, timeout_s=30, idle_s=None)
        # anything still to come would be an earlier record: give it the time a subscribing reader needs
        reader.read_until(lambda _rs: False, timeout_s=2)
    finally:
        reader.close()
    assert sorted(r.id for r in records) == ["after-1", "after-2"]


def test_warm_up_commits_transactions_and_leaves_nothing_behind(services: Services) -> None:
    settings = _settings(services)
    messages: list[str] = []
    warm_transactions(settings, 20, log=messages.append)
    assert messages == []  # not skipped
    admin = AdminClient(settings.kafka.client_config())
    deadline = time.monotonic() + 30
    while True:
        left = [
            t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{settings.kafka.input_topic}.")
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == []
    reader = OutputReader(settings, topics=[settings.kafka.input_topic])
    try:
        assert reader.read_until(lambda rs: bool(rs), timeout_s=5) == []
    finally:
        reader.close()
