"""Smoke test of cluster/: the real Kafka and Redis it provisions work end to end and go away.

Self-contained on purpose (no conftest fixtures): when the session fixtures misbehave, this is
the test that tells whether the provisioning itself is at fault.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from clickcash.cluster.local._kafka import LocalKafka
from clickcash.cluster.local._procs import pid_alive
from clickcash.cluster.local.redis_server import LocalRedis

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache"


def _create_topic(bootstrap: str, topic: str, partitions: int, replication: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, replication)], operation_timeout=30)
    futures[topic].result(timeout=60)


def _consume_values(bootstrap: str, topic: str, until: bytes, timeout_s: float = 60.0) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"smoke-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    seen: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while until not in seen:
            assert time.monotonic() < deadline, f"timed out; consumed so far: {seen}"
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            value = msg.value()
            assert value is not None
            seen.append(value)
    finally:
        consumer.close()
    return seen


@pytest.mark.integration
def test_single_node_kafka_and_redis(tmp_path: Path) -> None:
    kafka = LocalKafka(CACHE_DIR, tmp_path / "kafka", nodes=1)
    local_redis = LocalRedis(tmp_path / "redis")
    with kafka, local_redis:
        kafka_pids, redis_pid = kafka.pids, local_redis.pid
        assert len(kafka_pids) == 1 and redis_pid is not None
        bootstrap = kafka.bootstrap_servers
        topic = "smoke"
        _create_topic(bootstrap, topic, partitions=1, replication=1)

        plain = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        plain.produce(topic, b"plain")
        assert plain.flush(30) == 0

        txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": "smoke-txn"})
        txn.init_transactions(60)
        txn.begin_transaction()
        txn.produce(topic, b"aborted")
        txn.abort_transaction(30)
        txn.begin_transaction()
        txn.produce(topic, b"committed")
        txn.commit_transaction(30)
        plain.close()
        txn.close()

        # read_committed: the aborted record is skipped, the committed one is delivered.
        assert _consume_values(bootstrap, topic, until=b"committed") == [b"plain", b"committed"]

        client = redis.Redis.from_url(local_redis.url)
        client.set("smoke:key", "v1")
        assert client.get("smoke:key") == b"v1"
        local_redis.restart()
        assert local_redis.pid is not None and local_redis.pid != redis_pid
        assert client.get("smoke:key") == b"v1", "AOF should bring the key back"
        redis_pid_after_restart = local_redis.pid
        client.close()

    assert kafka.pids == [] and local_redis.pid is None
    for pid in [*kafka_pids, redis_pid, redis_pid_after_restart]:
        assert not pid_alive(pid), f"pid {pid} still running after stop()"


@pytest.mark.integration
def test_three_node_kafka_survives_kill_and_restart(tmp_path: Path) -> None:
    with LocalKafka(CACHE_DIR, tmp_path / "kafka3", nodes=3) as kafka:
        started_pids = kafka.pids
        assert len(started_pids) == 3
        bootstrap = kafka.bootstrap_servers
        _create_topic(bootstrap, "failover", partitions=3, replication=3)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})

        kafka.kill_node(1)
        assert started_pids[1] not in kafka.pids and not pid_alive(started_pids[1])
        # min.insync.replicas=2: acks=all writes keep working once node 2 is fenced.
        for i in range(10):
            producer.produce("failover", str(i).encode())
        assert producer.flush(60) == 0
        producer.close()

        kafka.restart_node(1)
        assert len(kafka.pids) == 3
        admin = AdminClient({"bootstrap.servers": bootstrap})
        deadline = time.monotonic() + 30
        while True:
            partitions = admin.list_topics("failover", timeout=10).topics["failover"].partitions
            if all(len(p.isrs) == 3 for p in partitions.values()):
                break
            assert time.monotonic() < deadline, "restarted node did not rejoin the ISR"
            time.sleep(0.5)
        final_pids = kafka.pids

    for pid in {*started_pids, *final_pids}:
        assert not pid_alive(pid), f"pid {pid} still running after stop()"
