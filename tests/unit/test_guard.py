"""The unit conftest's guard: every way into Ray, Redis or Kafka fails fast in a unit test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import confluent_kafka
import confluent_kafka.admin
import pytest
import ray
import redis

import clickcash.router._router
from clickcash.actors.state.redis import RedisStateStore

GUARD_TEXT = "unit tests must not use real services; put this test under tests/integration"

CALLS: dict[str, Callable[[], Any]] = {
    "ray.init": lambda: ray.init(num_cpus=1),
    "redis.Redis": lambda: redis.Redis(host="127.0.0.1", port=6379),
    "redis.StrictRedis": lambda: redis.StrictRedis(),
    "redis.Redis.from_url": lambda: redis.Redis.from_url("redis://127.0.0.1:6379/0"),
    "redis.from_url": lambda: redis.from_url("redis://127.0.0.1:6379/0"),
    "RedisStateStore.from_url": lambda: RedisStateStore.from_url("redis://127.0.0.1:6379/0", "cc", 60, 60),
    "confluent_kafka.Consumer": lambda: confluent_kafka.Consumer({"group.id": "g"}),
    "confluent_kafka.Producer": lambda: confluent_kafka.Producer({}),
    "confluent_kafka.admin.AdminClient": lambda: confluent_kafka.admin.AdminClient({}),
    "clickcash.router._router.Consumer": lambda: clickcash.router._router.Consumer({"group.id": "g"}),
    "clickcash.router._router.Producer": lambda: clickcash.router._router.Producer({}),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_real_services_are_refused(name: str) -> None:
    with pytest.raises(RuntimeError, match="put this test under tests/integration") as info:
        CALLS[name]()
    assert GUARD_TEXT in str(info.value)


def test_modules_imported_during_a_test_are_guarded_too() -> None:
    import clickcash.cluster.topics

    with pytest.raises(RuntimeError, match="unit tests must not use real services"):
        clickcash.cluster.topics.AdminClient({"bootstrap.servers": "127.0.0.1:9"})
