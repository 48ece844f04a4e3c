"""Calls that may never return (librdkafka#5456/#5511): bounded by the caller, and the router that owns a
wedged producer ends its run instead of hanging silently."""

from __future__ import annotations

import pickle
import threading
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from clickcash.actors.contract import ShardBatch, ShardResult
from clickcash.config.settings import load_settings
from clickcash.errors import ClientWedgedError
from clickcash.router._bounded import BoundedCalls
from clickcash.router._router import Router
from clickcash.testing import FakeMessage
from tests.unit._fake_kafka import input_message


def test_a_call_gets_its_timeout_and_returns_its_result() -> None:
    calls = BoundedCalls("kafka", "t", grace_s=1.0)
    assert calls.call(lambda a, b, timeout: (a, b, timeout), 1, 2, timeout_s=30) == (1, 2, 30)
    assert calls.call(lambda: "no timeout") == "no timeout"
    calls.close()


def test_a_call_that_fails_raises_its_own_error() -> None:
    calls = BoundedCalls("kafka", "t", grace_s=1.0)

    def fails(timeout: float) -> None:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT))

    with pytest.raises(KafkaException):
        calls.call(fails, timeout_s=5)
    assert calls.wedged is None
    calls.close()


def test_a_call_that_never_returns_wedges_the_client_and_later_calls_are_refused() -> None:
    release = threading.Event()
    calls = BoundedCalls("kafka", "t", grace_s=0.2)

    def send_offsets_to_transaction(timeout: float) -> None:
        release.wait()  # like librdkafka waiting for a coordinator that is gone, past its timeout

    started = time.monotonic()
    with pytest.raises(ClientWedgedError, match=r"send_offsets_to_transaction did not return within 0\.3 s"):
        calls.call(send_offsets_to_transaction, timeout_s=0.1)
    assert time.monotonic() - started < 5
    ran: list[str] = []
    with pytest.raises(ClientWedgedError, match="refused: send_offsets_to_transaction never returned"):
        calls.call(lambda timeout: ran.append("commit"), timeout_s=1)
    assert ran == [], "a call after the wedge must not run at all"
    release.set()
    calls.close()


def test_a_service_error_survives_pickling_as_ray_sends_it_to_the_caller() -> None:
    err = ClientWedgedError("kafka", "send_offsets_to_transaction did not return within 60 s")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ClientWedgedError
    assert (back.service, back.message, str(back)) == (err.service, err.message, str(err))


class _Consumer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.batches = [[input_message(0), input_message(1)]]
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, n: int, timeout: float) -> list[FakeMessage]:
        if self.batches:
            return self.batches.pop()
        time.sleep(min(timeout, 0.01))
        return []

    def consumer_group_metadata(self) -> object:
        return object()

    def close(self) -> None:
        """Like librdkafka: leaving the group revokes the assignment through the callback first."""
        self.callbacks["on_revoke"](self, [TopicPartition("t", 0)])
        self.closed = True


class _WedgingProducer:
    """Commits never come back from ``send_offsets_to_transaction``."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init_transactions")

    def begin_transaction(self) -> None:
        self.calls.append("begin_transaction")

    def produce(self, *args: Any, **kwargs: Any) -> None:
        pass

    def poll(self, timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self.calls.append("send_offsets_to_transaction")
        self.release.wait()

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit_transaction")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort_transaction")

    def flush(self, timeout: float) -> int:
        self.calls.append("flush")
        return 0


class _Pool:
    size = 1

    def fence(self) -> None:
        pass

    def submit(self, shard: int, batch: ShardBatch) -> Any:
        return ShardResult()

    def wait(self, handles: Any, timeout_s: float) -> bool:
        return True

    def results(self, handles: Any) -> list[ShardResult]:
        return list(handles)


def test_a_router_whose_commit_never_returns_ends_its_run_instead_of_hanging() -> None:
    consumers: list[_Consumer] = []
    producers: list[_WedgingProducer] = []

    def make_consumer(config: dict[str, Any]) -> Any:
        consumers.append(_Consumer(config))
        return consumers[-1]

    def make_producer(config: dict[str, Any]) -> Any:
        producers.append(_WedgingProducer(config))
        return producers[-1]

    router = Router(
        load_settings(kafka={"commit_interval_ms": 10, "transaction_call_timeout_ms": 200}),
        0,
        _Pool(),
        consumer_factory=make_consumer,
        producer_factory=make_producer,
        transaction_grace_s=0.3,
    )
    started = time.monotonic()
    with pytest.raises(ClientWedgedError, match="send_offsets_to_transaction"):
        router.run(threading.Event())
    assert time.monotonic() - started < 10, "the run ends after the call's timeout plus the grace"
    producer = producers[0]
    assert producer.calls[-1] == "send_offsets_to_transaction"
    assert "abort_transaction" not in producer.calls and "flush" not in producer.calls
    assert consumers[0].closed, "the consumer leaves the group, so its partitions move at once"
    producer.release.set()
