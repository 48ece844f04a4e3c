"""Fake Kafka clients for the router: one in-process broker with transactions and a consumer group.

The router talks to Kafka through a consumer (``subscribe``, ``consume``, ``position``, ``committed``,
``seek``, cached watermarks, group metadata) and a transactional producer (``init_transactions``,
``begin_transaction``, ``produce``, ``send_offsets_to_transaction``, ``commit_transaction``,
``abort_transaction``). :class:`FakeBroker` keeps topics as lists of records and a group's committed
offsets; a transaction's records and offsets reach them only at commit, so a ``read_committed`` reader
(every reader here) never sees an aborted transaction's records. Nothing blocks: a consume returns what is
there, at once. Failures are injected by queueing exceptions with :meth:`FakeProducer.fail_next`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

Headers = list[tuple[str, bytes]]

_NO_OFFSET = -1001
"""librdkafka's OFFSET_INVALID: what ``committed`` returns for a partition the group never committed"""


@dataclass(frozen=True, slots=True)
class FakeRecord:
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    timestamp_ms: int


class FakeMessage:
    """The part of ``confluent_kafka.Message`` the router reads."""

    def __init__(self, topic: str, partition: int, offset: int, record: FakeRecord) -> None:
        self._topic, self._partition, self._offset, self._record = topic, partition, offset, record

    def error(self) -> KafkaError | None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._record.key

    def value(self) -> bytes | None:
        return self._record.value

    def headers(self) -> Headers | None:
        return self._record.headers

    def timestamp(self) -> tuple[int, int]:
        return 1, self._record.timestamp_ms  # TIMESTAMP_CREATE_TIME


@dataclass
class FakeBroker:
    """Topics, their partitions' records, and consumer groups' committed offsets, in memory."""

    partitions: int = 2
    """partitions of every topic"""
    topics: dict[str, list[list[FakeRecord]]] = field(default_factory=dict)
    committed: dict[tuple[str, str, int], int] = field(default_factory=dict)
    """(group, topic, partition) -> next offset to read"""
    transactions: int = 0
    """committed transactions"""
    aborts: int = 0
    producers: list[FakeProducer] = field(default_factory=list)
    """every producer made by :meth:`producer`, oldest first"""

    def topic(self, name: str) -> list[list[FakeRecord]]:
        return self.topics.setdefault(name, [[] for _ in range(self.partitions)])

    def append(self, topic: str, partition: int, record: FakeRecord) -> int:
        log = self.topic(topic)[partition]
        log.append(record)
        return len(log) - 1

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> tuple[int, int]:
        """Write one record outside any transaction (test input); (partition, offset). Without a
        partition, the key picks one, as a keyed producer would."""
        if partition is None:
            partition = sum(key or b"") % self.partitions
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        return partition, self.append(topic, partition, FakeRecord(key, value, headers, stamp))

    def records(self, topic: str) -> list[FakeRecord]:
        """Every committed record of the topic, partition by partition."""
        return [r for log in self.topic(topic) for r in log]

    def end(self, topic: str, partition: int) -> int:
        return len(self.topic(topic)[partition])

    def committed_offsets(self, group: str, topic: str) -> dict[int, int]:
        return {p: o for (g, t, p), o in self.committed.items() if g == group and t == topic}

    def consumer(self, config: dict[str, Any]) -> FakeConsumer:
        """A consumer of this broker: pass the method as ``Router(consumer_factory=broker.consumer)``."""
        return FakeConsumer(self, config)

    def producer(self, config: dict[str, Any]) -> FakeProducer:
        """A producer of this broker, kept in :attr:`producers`: pass the method as
        ``Router(producer_factory=broker.producer)``."""
        made = FakeProducer(self, config)
        self.producers.append(made)
        return made


class FakeConsumer:
    """A consumer that is the group's only member: it is assigned every partition of its topic at its
    first ``consume`` and reads from the group's committed offsets (the beginning where none)."""

    def __init__(self, broker: FakeBroker, config: dict[str, Any]) -> None:
        self._broker = broker
        self.group_id = str(config.get("group.id", "group"))
        self._topic: str | None = None
        self._on_assign: Callable[[Any, list[TopicPartition]], None] | None = None
        self._assigned = False
        self._positions: dict[int, int] = {}
        self.closed = False

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: Callable[[Any, list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[Any, list[TopicPartition]], None] | None = None,
        on_lost: Callable[[Any, list[TopicPartition]], None] | None = None,
    ) -> None:
        self._topic = topics[0]
        self._on_assign = on_assign

    def _assign(self) -> None:
        assert self._topic is not None, "consume before subscribe"
        self._assigned = True
        committed = self._broker.committed_offsets(self.group_id, self._topic)
        tps = [TopicPartition(self._topic, p) for p in range(self._broker.partitions)]
        self._positions = {tp.partition: committed.get(tp.partition, 0) for tp in tps}
        if self._on_assign is not None:
            self._on_assign(self, tps)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        if self._topic is None:
            return []
        if not self._assigned:
            self._assign()
        out: list[FakeMessage] = []
        logs = self._broker.topic(self._topic)
        for p in sorted(self._positions):
            while len(out) < num_messages and self._positions[p] < len(logs[p]):
                offset = self._positions[p]
                out.append(FakeMessage(self._topic, p, offset, logs[p][offset]))
                self._positions[p] = offset + 1
        return out

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self._positions.get(tp.partition, _NO_OFFSET))
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float | None = None, cached: bool = False
    ) -> tuple[int, int]:
        return 0, self._broker.end(partition.topic, partition.partition)

    def committed(
        self, partitions: list[TopicPartition], timeout: float | None = None
    ) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic,
                tp.partition,
                self._broker.committed.get((self.group_id, tp.topic, tp.partition), _NO_OFFSET),
            )
            for tp in partitions
        ]

    def seek(self, partition: TopicPartition) -> None:
        offset = partition.offset
        self._positions[partition.partition] = 0 if offset == OFFSET_BEGINNING else offset

    def consumer_group_metadata(self) -> str:
        return self.group_id

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """A transactional producer: records and offsets of a transaction reach the broker at commit."""

    def __init__(self, broker: FakeBroker, config: dict[str, Any]) -> None:
        self._broker = broker
        self.transactional_id = str(config.get("transactional.id", ""))
        self._initialised = False
        self._open = False
        self._records: list[tuple[str, FakeRecord]] = []
        self._offsets: dict[tuple[str, str, int], int] = {}
        self._failures: dict[str, deque[BaseException]] = {}

    def fail_next(self, call: str, exc: BaseException | None = None) -> None:
        """Make the next call of ``call`` (e.g. ``"commit_transaction"``) raise ``exc`` (by default a
        KafkaException that asks for the transaction to be aborted, as a broker refusing it would)."""
        if exc is None:
            exc = KafkaException(
                KafkaError(KafkaError._STATE, f"{call} refused (injected)", txn_requires_abort=True)
            )
        self._failures.setdefault(call, deque()).append(exc)

    def _maybe_fail(self, call: str) -> None:
        queued = self._failures.get(call)
        if queued:
            raise queued.popleft()

    def init_transactions(self, timeout: float | None = None) -> None:
        self._maybe_fail("init_transactions")
        self._initialised = True

    def begin_transaction(self) -> None:
        self._maybe_fail("begin_transaction")
        assert self._initialised and not self._open, "begin_transaction out of order"
        self._open = True

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Headers | None = None,
        **_: Any,
    ) -> None:
        self._maybe_fail("produce")
        assert self._open, "produce outside a transaction"
        self._records.append((topic, FakeRecord(key, value, headers, int(time.time() * 1000))))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], group_metadata: Any, timeout: float | None = None
    ) -> None:
        self._maybe_fail("send_offsets_to_transaction")
        assert self._open, "send_offsets_to_transaction outside a transaction"
        for tp in offsets:
            self._offsets[(str(group_metadata), tp.topic, tp.partition)] = tp.offset

    def commit_transaction(self, timeout: float | None = None) -> None:
        self._maybe_fail("commit_transaction")
        assert self._open, "commit_transaction outside a transaction"
        for topic, record in self._records:
            partition = sum(record.key or b"") % self._broker.partitions
            self._broker.append(topic, partition, record)
        self._broker.committed.update(self._offsets)
        self._broker.transactions += 1
        self._reset()

    def abort_transaction(self, timeout: float | None = None) -> None:
        self._maybe_fail("abort_transaction")
        self._broker.aborts += 1
        self._reset()

    def _reset(self) -> None:
        self._open = False
        self._records.clear()
        self._offsets.clear()
