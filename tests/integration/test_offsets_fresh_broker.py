"""On a broker nothing has warmed up, the tools that read a group's offsets wait out the coordinator.

A fresh Kafka has no ``__consumer_offsets`` topic: the first offsets request makes it create one and answers
NOT_COORDINATOR until it is loaded. ``clickcash loadtest --with-app`` died there with a raw traceback (its
``start_at_end`` was the first offsets request). This test starts its own broker, so no earlier test has
created that topic, and runs the same paths first thing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from clickcash.cluster.local._kafka import LocalKafka
from clickcash.cluster.local.stack import CACHE_DIR
from clickcash.cluster.offsets import GroupOffsets, group_lag
from clickcash.cluster.topics import ensure_topics
from clickcash.config.settings import Settings, load_settings
from clickcash.loadtest.locust_run.cli import start_at_end
from tests.integration.conftest import Services

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def fresh_kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    kafka = LocalKafka(CACHE_DIR, tmp_path / "kafka", log=lambda _m: None)
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def _settings(bootstrap: str, group: str) -> Settings:
    return load_settings(kafka={"bootstrap_servers": bootstrap, "group_id": group})


def _offsets_topic_exists(bootstrap: str) -> bool:
    return (
        "__consumer_offsets" in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    )


def test_start_at_end_and_lag_work_as_the_first_offsets_requests_of_a_fresh_broker(
    fresh_kafka: LocalKafka,
) -> None:
    bootstrap = fresh_kafka.bootstrap_servers
    settings = _settings(bootstrap, "fresh-loadtest")
    ensure_topics(settings, partitions=4)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(40):
        producer.produce(settings.kafka.input_topic, b"{}", f"customer-{i}".encode())
    assert producer.flush(30) == 0
    assert not _offsets_topic_exists(bootstrap), "the broker is not fresh: the scenario would not be tested"

    start_at_end(settings)  # the call that raised NOT_COORDINATOR

    with GroupOffsets(settings) as offsets:
        ends = offsets.ends()
        assert sum(ends.values()) == 40
        assert offsets.committed() == ends
    assert group_lag(settings) == 0
    assert group_lag(settings, group_id="fresh-never-committed") is None


def test_clickcash_verify_on_a_fresh_broker_reports_instead_of_a_traceback(
    fresh_kafka: LocalKafka, services: Services
) -> None:
    bootstrap = fresh_kafka.bootstrap_servers
    ensure_topics(_settings(bootstrap, "clickcash"), partitions=2)
    assert not _offsets_topic_exists(bootstrap)
    env = {
        **os.environ,
        "CLICKCASH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        # the verifier also reads the parking store; the session's Redis under a prefix of this test's own
        "CLICKCASH_REDIS__URL": services.redis_url,
        "CLICKCASH_REDIS__KEY_PREFIX": f"fresh{os.getpid()}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "clickcash.cli", "verify"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verify OK" in done.stdout
