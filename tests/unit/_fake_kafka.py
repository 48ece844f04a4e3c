"""The router's unit tests' input records (the testing harness's :class:`~clickcash.testing.FakeMessage`)
and a stand-in for confluent-kafka's transactional ``Producer``: just the calls the router makes, recorded
so a test can say what was committed. (Integration tests use a real broker.)"""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from clickcash.testing import FakeMessage, FakeRecord


def input_message(offset: int, partition: int = 0) -> FakeMessage:
    """An input record of customer ``c-1`` at ``offset`` of ``partition``."""
    return FakeMessage(
        "clickcash.events", partition, offset, FakeRecord(b"c-1", b"{}", None, 1_700_000_000_000)
    )


class RecordingProducer:
    """Records the transactional calls in order (``calls``) and the offsets each transaction sent
    (``offsets``: one list of (partition, offset) per ``send_offsets_to_transaction``)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.offsets: list[list[tuple[int, int]]] = []

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("produce")

    def poll(self, timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], metadata: Any, timeout: float
    ) -> None:
        self.offsets.append([(tp.partition, tp.offset) for tp in offsets])

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")

    def flush(self, timeout: float) -> int:
        return 0
