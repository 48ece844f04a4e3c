"""A router wired to the in-process fakes, started and ready to be stepped."""

from __future__ import annotations

from typing import Any, cast

from clickcash.config.settings import Settings
from clickcash.router._router import Router
from clickcash.router.parking import InMemoryParkingStore
from clickcash.testing._kafka import FakeBroker
from clickcash.testing._shards import InProcessShardPool


def router_under_test(
    settings: Settings,
    broker: FakeBroker,
    pool: InProcessShardPool | None = None,
    *,
    parking: InMemoryParkingStore | None = None,
    router_index: int = 0,
) -> Router:
    """A :class:`Router` over ``broker`` and ``pool`` (a new pool of ``settings.pipeline.shards`` shards
    by default), started: call ``router.step()`` to run it one turn at a time."""
    router = Router(
        settings,
        router_index,
        pool if pool is not None else InProcessShardPool(settings),
        consumer_factory=cast(Any, broker.consumer),
        producer_factory=cast(Any, broker.producer),
        parking=parking,
    )
    router.start()
    return router
