"""The router's logic in one process (``clickcash.testing``): real shards over the in-memory store, fake
Kafka clients with transactions. Commit as soon as the input is caught up, rewind and replay after an
aborted transaction without a duplicate, and a poison record isolated and its customer parked."""

from __future__ import annotations

import orjson

from clickcash.config.settings import KafkaSettings, PipelineSettings, Settings
from clickcash.router._router import Router
from clickcash.testing import (
    FakeBroker,
    InMemoryParkingStore,
    InProcessShardPool,
    fail_customer,
    router_under_test,
)
from tests.unit.conftest import build_cloud_event, build_event_data

CUSTOMERS = [f"c-{i}" for i in range(6)]


def _settings(**pipeline: object) -> Settings:
    return Settings(
        kafka=KafkaSettings(commit_interval_ms=60_000, consume_batch_max=100),
        pipeline=PipelineSettings.model_validate(
            {"shards": 2, "round_retry_backoff_ms": 1, "round_retry_backoff_max_ms": 1, **pipeline}
        ),
    )


def _orders(broker: FakeBroker, settings: Settings, per_customer: int = 2) -> int:
    n = 0
    for round_ in range(per_customer):
        for c in CUSTOMERS:
            data = build_event_data("order.placed", c, order_id=f"{c}-o{round_}")
            value = build_cloud_event("order.placed", data, event_id=f"{c}-e{round_}")
            broker.produce(settings.kafka.input_topic, c.encode(), value)
            n += 1
    return n


def _caught_up(broker: FakeBroker, settings: Settings) -> bool:
    topic = settings.kafka.input_topic
    committed = broker.committed_offsets(settings.kafka.group_id, topic)
    return all(committed.get(p, 0) == broker.end(topic, p) for p in range(broker.partitions))


def _run_until_caught_up(router: Router, broker: FakeBroker, settings: Settings, max_steps: int = 500) -> int:
    for step in range(1, max_steps + 1):
        router.step()
        if _caught_up(broker, settings):
            return step
    raise AssertionError(f"input not committed after {max_steps} steps: {router.snapshot()}")


def _output_ids(broker: FakeBroker, settings: Settings) -> list[str]:
    k = settings.kafka
    return sorted(
        orjson.loads(r.value)["id"]
        for topic in (k.orders_topic, k.payments_topic, k.dunning_topic)
        for r in broker.records(topic)
        if r.value is not None
    )


def test_a_caught_up_router_commits_without_waiting_for_the_interval() -> None:
    settings = _settings()
    broker = FakeBroker()
    _orders(broker, settings)
    router = router_under_test(settings, broker)
    # one step consumes and dispatches the round, the next produces its outputs and commits: the commit
    # interval (60 s here) only bounds batching while a backlog waits
    assert _run_until_caught_up(router, broker, settings) <= 2
    assert broker.transactions == 1
    assert broker.records(settings.kafka.orders_topic)
    assert router.snapshot().rewinds == 0


def test_an_aborted_transaction_is_rewound_and_replayed_without_duplicates() -> None:
    settings = _settings()
    clean = FakeBroker()
    _orders(clean, settings)
    _run_until_caught_up(router_under_test(settings, clean), clean, settings)

    broker = FakeBroker()
    _orders(broker, settings)
    router = router_under_test(settings, broker)
    broker.producers[0].fail_next("commit_transaction")
    _run_until_caught_up(router, broker, settings)

    stats = router.snapshot()
    assert broker.aborts == 1
    assert stats.rewinds == 1 and stats.failed_rounds == 1
    assert _output_ids(broker, settings) == _output_ids(clean, settings)
    assert len(set(_output_ids(broker, settings))) == len(_output_ids(broker, settings))


def test_a_poison_record_is_isolated_and_its_customer_parked() -> None:
    settings = _settings(round_max_attempts=2)
    broker = FakeBroker()
    total = _orders(broker, settings, per_customer=3)
    pool = InProcessShardPool(settings)
    pool.fail_when = fail_customer([b"c-3"])
    parking = InMemoryParkingStore()
    router = router_under_test(settings, broker, pool, parking=parking)
    _run_until_caught_up(router, broker, settings)

    stats = router.snapshot()
    assert set(parking.index) == {b"c-3"}
    assert [r[1] for r in parking.records(b"c-3")] == sorted(r[1] for r in parking.records(b"c-3"))
    assert len(parking.records(b"c-3")) == 3
    assert stats.parked == 1 and stats.isolations == 1
    # every other customer's orders went through, once each
    orders = [orjson.loads(r.value) for r in broker.records(settings.kafka.orders_topic) if r.value]
    decided = {o["data"]["order_id"] for o in orders}
    assert len(decided) == total - 3
    assert not any(o.startswith("c-3-") for o in decided)
