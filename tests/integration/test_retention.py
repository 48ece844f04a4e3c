"""Retention on the real stack: customer state carries the configured TTL, refreshed by each write."""

from __future__ import annotations

import redis

from clickcash.actors import keyspace
from tests.integration._harness import (
    SettingsFactory,
    event,
    order,
    produce,
    running_app,
    wait_for_drain,
)


def test_customer_state_expires_after_the_configured_time_since_last_activity(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(partitions=1, pipeline={"shards": 1, "customer_ttl_s": 300})
    produce(settings, [(b"r1", event("re1", "order.placed", "r1", order("ro1", "r1")))])
    r = redis.Redis.from_url(settings.redis.url.get_secret_value())
    key = keyspace.customer(settings.redis.key_prefix, "r1")
    try:
        with running_app(settings) as app:
            wait_for_drain(settings, app)
            assert r.exists(key), f"no customer state under {key}"
            first = r.ttl(key)
            assert 0 < first <= 300, f"customer state TTL {first} does not follow customer_ttl_s"
            r.expire(key, 10)  # as if most of the time had passed: the next write sets it afresh
            produce(settings, [(b"r1", event("re2", "order.placed", "r1", order("ro2", "r1")))])
            wait_for_drain(settings, app)
            refreshed = r.ttl(key)
            assert 10 < refreshed <= 300, f"a write did not refresh the customer TTL ({refreshed})"
    finally:
        r.close()
