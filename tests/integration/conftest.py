"""Session fixtures for integration tests: real Kafka, real Redis, real Ray, started once.

Set ``CLICKCASH_TEST_KAFKA_BOOTSTRAP`` and ``CLICKCASH_TEST_REDIS_URL`` to run against existing services
instead (``CLICKCASH_TEST_RAY_ADDRESS`` for an existing Ray). Every test gets its own topics, consumer group
and Redis key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from cluster._ray import init_ray
from cluster.local_stack import Endpoints, LocalStack
from cluster.topics import ensure_topics
from config.settings import Settings, load_settings
from tests.integration._harness import SettingsFactory

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def services() -> Iterator[Endpoints]:
    bootstrap = os.environ.get("CLICKCASH_TEST_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("CLICKCASH_TEST_REDIS_URL")
    if bootstrap and redis_url:
        yield Endpoints(bootstrap, redis_url)
        return
    stack = LocalStack("tests", log=lambda m: print(m, flush=True))
    endpoints = stack.start()
    try:
        yield endpoints
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def ray_session(services: Endpoints) -> Iterator[None]:
    base = load_settings(
        ray={
            "num_cpus": 4,
            "address": os.environ.get("CLICKCASH_TEST_RAY_ADDRESS"),
            "namespace": "clickcash-tests",
        }
    )
    init_ray(base)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def make_settings(services: Endpoints, ray_session: None, request: pytest.FixtureRequest) -> SettingsFactory:
    """Settings with this test's own topics, group, key prefix and Ray namespace; topics are created."""

    def make(partitions: int = 4, **sections: dict[str, Any]) -> Settings:
        tag = f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
        tag = "".join(c if c.isalnum() or c in "-_" else "-" for c in tag)
        kafka = {
            "bootstrap_servers": services.bootstrap_servers,
            "input_topic": f"{tag}.events",
            "orders_topic": f"{tag}.orders",
            "payments_topic": f"{tag}.payments",
            "dunning_topic": f"{tag}.dunning",
            "dlq_topic": f"{tag}.dlq",
            "group_id": f"{tag}-group",
            "transactional_id_prefix": tag,
            **sections.pop("kafka", {}),
        }
        settings = load_settings(
            kafka=kafka,
            redis={"url": services.redis_url, "key_prefix": tag, **sections.pop("redis", {})},
            ray={"namespace": f"ns-{tag}", **sections.pop("ray", {})},
            pipeline={"shard_num_cpus": 0.1, "router_num_cpus": 0.1, **sections.pop("pipeline", {})},
            **sections,
        )
        ensure_topics(settings, partitions=partitions)
        return settings

    return make
