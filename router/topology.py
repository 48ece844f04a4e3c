"""How many shards and routers the app should run: the desired topology, kept in Redis.

``clickcash scale`` writes it; the supervisor (``clickcash.cluster.app.App``) reconciles the running actors to
it,
and a router reads the shard count when it (re)starts, so a router process that Ray restarts after a
rescale maps customers to the current shards, not to the count it was created with.

The rescale itself is safe for per-customer order because of one rule the router keeps: it switches to a
new shard count only at a round boundary with nothing in flight and its transaction committed. A
customer's events come through one partition, hence one router, so no customer ever has work in flight
on two shards; shard state lives in Redis, so the new shard picks up where the old one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import redis

from clickcash.actors import keyspace
from clickcash.errors import map_exceptions


@dataclass(frozen=True, slots=True)
class Topology:
    shards: int
    routers: int


@dataclass(frozen=True, slots=True)
class RescalePlan:
    """What turns ``current`` into ``desired``, in the order it must happen."""

    start_shards: tuple[int, ...]
    """new shard actors, started before any router maps customers to them"""
    switch_routers_to: int | None
    """the shard count every router switches to (drained first), or None if unchanged"""
    stop_shards: tuple[int, ...]
    """shard actors removed once every router has switched away from them"""
    start_routers: tuple[int, ...]
    stop_routers: tuple[int, ...]
    """routers asked to drain, commit and leave the group (their partitions move to the others)"""

    @property
    def empty(self) -> bool:
        return not (
            self.start_shards
            or self.switch_routers_to is not None
            or self.stop_shards
            or self.start_routers
            or self.stop_routers
        )


def plan_rescale(current: Topology, desired: Topology) -> RescalePlan:
    if desired.shards < 1 or desired.routers < 1:
        raise ValueError(f"a topology needs at least one shard and one router, got {desired}")
    return RescalePlan(
        start_shards=tuple(range(current.shards, desired.shards)),
        switch_routers_to=desired.shards if desired.shards != current.shards else None,
        stop_shards=tuple(range(desired.shards, current.shards)),
        start_routers=tuple(range(current.routers, desired.routers)),
        stop_routers=tuple(range(desired.routers, current.routers)),
    )


def topology_key(key_prefix: str) -> str:
    return keyspace.topology(key_prefix)


class RedisTopologyStore:
    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self._r = client
        self._key = topology_key(key_prefix)

    @classmethod
    def from_url(cls, url: str, key_prefix: str, timeout_s: float = 5.0) -> RedisTopologyStore:
        return cls(redis.Redis.from_url(url, socket_timeout=timeout_s), key_prefix)

    def get(self) -> Topology | None:
        with map_exceptions("redis", redis.RedisError):
            raw = self._r.get(self._key)
        if raw is None:
            return None
        doc = orjson.loads(raw)
        return Topology(int(doc["shards"]), int(doc["routers"]))

    def set(self, topology: Topology) -> None:
        with map_exceptions("redis", redis.RedisError):
            self._r.set(self._key, orjson.dumps({"shards": topology.shards, "routers": topology.routers}))

    def close(self) -> None:
        self._r.close()
