"""Integration-test harness: building and producing inputs, running the app, reading outputs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import ray
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from clickcash.cluster.app import App
from clickcash.cluster.offsets import group_lag
from clickcash.cluster.outputs import OutputReader, OutputRecord
from clickcash.config.settings import Settings
from clickcash.errors import ServiceError
from clickcash.offset_retry import RetryBudget

SettingsFactory = Callable[..., Settings]


def event(
    eid: str, etype: str, customer: str, data: dict[str, Any], *, correlationid: str | None = None
) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": eid,
            "source": "tests",
            "type": etype,
            "time": datetime.now(UTC).isoformat(),
            "partitionkey": customer,
            "correlationid": correlationid or f"corr-{eid}",
            "campaignid": "test-campaign",
            "data": data,
        }
    )


def order(
    order_id: str, customer: str, *, network: str = "visa", quantity: int = 1, **over: Any
) -> dict[str, Any]:
    data = {
        "order_id": order_id,
        "customer_id": customer,
        "country": "US",
        "currency": "USD",
        "items": [{"sku": "sku-1", "quantity": quantity, "unit_price_cents": 2500}],
        "total_cents": 2500 * quantity,
        "payment_method": {"type": "card", "network": network, "token": f"tok_{order_id}"},
    }
    data.update(over)
    return data


def declined(order_id: str, customer: str, code: str = "51", psp: str = "stripe") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": customer,
        "attempt": 1,
        "psp": psp,
        "amount_cents": 2500,
        "currency": "USD",
        "decline_code": code,
    }


def produce(
    settings: Settings, records: Sequence[tuple[bytes | None, bytes]], *, per_s: float | None = None
) -> None:
    """Produce records in order (idempotent producer: no reordering within a partition); with ``per_s``,
    paced at that many records per second."""
    p = Producer({**settings.kafka.client_config(), "enable.idempotence": True, "linger.ms": 5})
    errors: list[str] = []
    started = time.monotonic()
    for n, (key, value) in enumerate(records):
        if per_s:
            time.sleep(max(0.0, started + n / per_s - time.monotonic()))
        while True:
            try:
                p.produce(
                    settings.kafka.input_topic,
                    value,
                    key,
                    on_delivery=lambda err, _m: errors.append(str(err)) if err else None,
                )
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0
    assert not errors, errors


@dataclass(frozen=True)
class InputEvent:
    partition: int
    offset: int
    event: dict[str, Any]


def input_events(settings: Settings) -> dict[str, InputEvent]:
    """Event id -> first position and parsed body of every parseable input, read back from the input topic
    (read_committed), so the dunning timer commands the routers write are included."""
    c = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": "positions-reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    topic = settings.kafka.input_topic
    meta = c.list_topics(topic, timeout=10).topics[topic]
    tps = []
    for p in meta.partitions:
        _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        tps.append((p, high))
    c.assign([TopicPartition(topic, p, 0) for p, _ in tps])
    remaining = {p: high for p, high in tps if high > 0}
    out: dict[str, InputEvent] = {}
    while remaining:
        for m in c.consume(1000, 1.0):
            if m.error():
                continue
            partition, offset = m.partition() or 0, m.offset() or 0
            try:
                body = orjson.loads(m.value() or b"")
            except orjson.JSONDecodeError:
                continue
            if isinstance(body, dict) and isinstance(body.get("id"), str):
                out.setdefault(body["id"], InputEvent(partition, offset, body))
        # the log may end in transaction markers (the router writes timer commands transactionally)
        for tp in c.position([TopicPartition(topic, p) for p in list(remaining)]):
            if tp.offset >= remaining[tp.partition]:
                remaining.pop(tp.partition)
    c.close()
    return out


@contextmanager
def running_app(settings: Settings) -> Iterator[App]:
    app = App(settings)
    app.start()
    try:
        yield app
    finally:
        try:
            app.stop()
        except Exception:
            for a in [*app.routers, *app.shards]:
                ray.kill(a, no_restart=True)


def _lag_now(settings: Settings) -> int | None:
    """The group's lag, or None while it cannot be read. A killed router's open transaction holds
    transactional offset commits of the group pending until its restarted successor's producer aborts it
    (``init_transactions``), and the broker answers offset reads meanwhile with a retriable error; the
    app must be supervised while that lasts, so the read gets a short budget here, not the 30 s default."""
    try:
        return group_lag(settings, budget=RetryBudget(budget_s=2.0))
    except ServiceError:
        return None


def wait_for_drain(settings: Settings, app: App | None = None, timeout_s: float = 180) -> None:
    """Until the group committed every input offset (supervising the app while waiting)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if app is not None:
            app.supervise(0.2)
        else:
            time.sleep(0.2)
        if _lag_now(settings) == 0:
            return
    raise AssertionError(f"input not drained in {timeout_s} s: lag {_lag_now(settings)}")


def read_outputs(settings: Settings, expected: int | None = None, idle_s: float = 3.0) -> list[OutputRecord]:
    """All committed outputs (read_committed), reading until ``expected`` arrive or nothing new for idle_s."""
    reader = OutputReader(settings)
    try:
        done = (lambda recs: len(recs) >= expected) if expected is not None else (lambda recs: False)
        reader.read_until(done, timeout_s=120, idle_s=idle_s)
        # keep reading briefly: more than expected would be a duplicate we must see
        reader.read_until(lambda recs: False, timeout_s=idle_s, idle_s=1.0)
        return list(reader.records)
    finally:
        reader.close()


@contextmanager
def redis_held_busy(url: str, seconds: float) -> Iterator[None]:
    """Redis runs a busy Lua script for ``seconds`` from a connection of its own, so every other client's
    command waits behind it, as behind a slow command on a loaded server; the block is entered once the
    script is running and left once it has ended."""
    client = redis.Redis.from_url(url)
    script = (
        "local t = redis.call('TIME'); local s = t[1] * 1e6 + t[2]; "
        f"repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - s > {int(seconds * 1e6)}"
    )
    busy = threading.Thread(target=client.eval, args=(script, 0))
    busy.start()
    probe = redis.Redis.from_url(url, socket_timeout=0.05)
    try:
        deadline = time.monotonic() + 10
        while True:  # running once a PING from another connection gets no answer
            try:
                probe.ping()
            except redis.TimeoutError:
                break
            assert time.monotonic() < deadline, "the busy script did not start"
            time.sleep(0.01)
        yield
    finally:
        probe.close()
        busy.join()
        client.close()
