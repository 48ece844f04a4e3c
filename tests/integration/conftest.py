"""Session fixtures for integration tests: real Kafka, real Redis, real Ray, started once.

Set ``CLICKCASH_TEST_KAFKA_BOOTSTRAP`` and ``CLICKCASH_TEST_REDIS_URL`` to run against existing services
instead (``CLICKCASH_TEST_RAY_ADDRESS`` for an existing Ray). Every test gets its own topics, consumer group
and Redis key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import ray

from clickcash.cluster.local._ray_nodes import LocalRayCluster
from clickcash.cluster.local.stack import CACHE_DIR, Endpoints, LocalStack
from clickcash.cluster.ray_runtime import init_ray, local_token_env, ray_node_env
from clickcash.cluster.topics import ensure_topics
from clickcash.config.settings import Settings, load_settings
from tests.integration._harness import SettingsFactory

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@dataclass
class Services:
    endpoints: Endpoints
    stack: LocalStack | None
    """the local Kafka and Redis when the session fixture started them (chaos tests restart Redis)"""

    @property
    def bootstrap_servers(self) -> str:
        return self.endpoints.bootstrap_servers

    @property
    def redis_url(self) -> str:
        return self.endpoints.redis_url


def _log(msg: str) -> None:
    print(msg, flush=True)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    bootstrap = os.environ.get("CLICKCASH_TEST_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("CLICKCASH_TEST_REDIS_URL")
    if bootstrap and redis_url:
        yield Services(Endpoints(bootstrap, redis_url), None)
        return
    stack = LocalStack("tests", log=_log)
    endpoints = stack.start()
    try:
        yield Services(endpoints, stack)
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster | None]:
    """One Ray for the whole session: a real two-node cluster (head + worker) on this machine, so shards
    spread over nodes and a node can be killed; or the cluster named by CLICKCASH_TEST_RAY_ADDRESS."""
    address = os.environ.get("CLICKCASH_TEST_RAY_ADDRESS")
    cluster = None
    if not address:
        cluster = LocalRayCluster(
            CACHE_DIR / "run" / f"ray-tests-{os.getpid()}",
            head_cpus=2,
            worker_cpus=(2,),
            env={**local_token_env(), **ray_node_env(load_settings())},
            log=_log,
        )
        cluster.start()
        address = cluster.address
    try:
        init_ray(load_settings(ray={"address": address, "namespace": "clickcash-tests"}))
        yield cluster
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.stop()


@pytest.fixture(scope="session")
def ray_session(ray_cluster: LocalRayCluster | None) -> None:
    """Ray is initialised for the session (depend on this when the cluster object itself is not needed)."""


@pytest.fixture
def make_settings(services: Services, ray_session: None, request: pytest.FixtureRequest) -> SettingsFactory:
    """Settings with this test's own topics, group, key prefix and Ray namespace; topics are created."""

    def make(partitions: int = 4, replication_factor: int = 1, **sections: dict[str, Any]) -> Settings:
        tag = f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
        tag = "".join(c if c.isalnum() or c in "-_" else "-" for c in tag)
        kafka = {
            "bootstrap_servers": services.bootstrap_servers,
            "input_topic": f"{tag}.events",
            "orders_topic": f"{tag}.orders",
            "payments_topic": f"{tag}.payments",
            "dunning_topic": f"{tag}.dunning",
            "dlq_topic": f"{tag}.dlq",
            "campaigns_topic": f"{tag}.campaigns",
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
        ensure_topics(settings, partitions=partitions, replication_factor=replication_factor)
        return settings

    return make
