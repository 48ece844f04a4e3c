"""Stand-ins for confluent-kafka's ``Message`` and transactional ``Producer`` in the router's unit tests:
just the calls the router makes, recorded so a test can say what was committed. (Integration tests use a
real broker.)"""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition


class FakeMessage:
    """An input record of customer ``c-1`` at ``offset`` of ``partition``."""

    def __init__(self, offset: int, partition: int = 0) -> None:
        self._o, self._p = offset, partition

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return b"c-1"

    def value(self) -> bytes:
        return b"{}"

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


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
