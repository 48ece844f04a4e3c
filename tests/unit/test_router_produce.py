"""The router's transactional producer queues a shard result's records in order, with their headers, and
waits out a full local queue instead of losing a record."""

from __future__ import annotations

from typing import Any

from clickcash.router._transactions import Transactions


class _Producer:
    """Records what is produced; raises ``BufferError`` (librdkafka's full queue) ``full`` times first."""

    def __init__(self, full: int = 0) -> None:
        self.full = full
        self.records: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self.polls = 0

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.records.append((topic, key, value, kw.get("headers")))

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


def _txn(producer: _Producer) -> Transactions:
    return Transactions(producer, name="t", call_timeout_s=1.0, grace_s=1.0)


def test_a_result_is_produced_in_order_with_its_headers() -> None:
    producer = _Producer()
    txn = _txn(producer)
    h = [("clickcash_synthetic", b"1")]
    txn.produce_all(["a", "b", "a"], [b"k1", None, b"k3"], [b"v1", b"v2", b"v3"], [h, None, []])
    assert producer.records == [("a", b"k1", b"v1", h), ("b", None, b"v2", None), ("a", b"k3", b"v3", None)]
    txn.close()


def test_a_full_queue_is_served_and_the_record_is_not_lost() -> None:
    producer = _Producer(full=3)
    txn = _txn(producer)
    txn.produce_all(["a", "a"], [b"k1", b"k2"], [b"v1", b"v2"], [None, None])
    assert [r[2] for r in producer.records] == [b"v1", b"v2"]
    assert producer.polls > 0, "the full queue is served (delivery reports polled) until the record fits"
    txn.close()
