"""A run that ends on an unexpected error aborts its open transaction; leaving the group afterwards must
not commit the positions of what that abort threw away."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest
from confluent_kafka import TopicPartition

from clickcash.actors.contract import ShardBatch, ShardResult
from clickcash.config.settings import load_settings
from clickcash.router._router import Router
from clickcash.testing import FakeMessage
from tests.unit._fake_kafka import RecordingProducer, input_message


class _Consumer:
    """One batch per consume call from a script; leaving the group revokes through the callback, as
    librdkafka's close does."""

    def __init__(self, script: list[list[FakeMessage]]) -> None:
        self.script = script
        self.callbacks: dict[str, Any] = {}
        self.position_of = 0

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, n: int, timeout: float) -> list[FakeMessage]:
        out = self.script.pop(0) if self.script else []
        if out:
            self.position_of = out[-1].offset() + 1
        return out

    def consumer_group_metadata(self) -> object:
        return object()

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.position_of) for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return (0, self.position_of)

    def close(self) -> None:
        self.callbacks["on_revoke"](self, [TopicPartition("t", 0)])


class _Pool:
    size = 1

    def fence(self) -> None:
        pass

    def submit(self, shard: int, batch: ShardBatch) -> Any:
        return ShardResult(topics=["out"], keys=[b"k"], values=[b"v"], headers=[[]])

    def wait(self, handles: Any, timeout_s: float) -> bool:
        return True

    def results(self, handles: Any) -> list[ShardResult]:
        return list(handles)


class _Timers:
    """The second poll fails as a bug would: an error the router's loop does not expect."""

    def __init__(self) -> None:
        self.polls = 0

    def poll(self, partitions: list[int]) -> list[Any]:
        self.polls += 1
        if self.polls == 2:
            raise RuntimeError("a bug")
        return []


def test_a_run_ended_by_an_unexpected_error_commits_nothing_past_the_aborted_transaction() -> None:
    consumer = _Consumer([[input_message(0)], [input_message(1)], [input_message(2), input_message(3)]])
    producer = RecordingProducer()
    router = Router(
        load_settings(kafka={"commit_interval_ms": 60_000, "consume_batch_max": 100}),
        0,
        _Pool(),
        timers=cast(Any, _Timers()),
        consumer_factory=lambda c: cast(Any, consumer),
        producer_factory=lambda c: cast(Any, producer),
    )
    original_start = router.start

    def start() -> None:
        original_start()
        router._assigned.add(0)  # what the group's assignment would do

    router.start = start  # type: ignore[method-assign]
    # turn 1 dispatches [0, 1]; turn 2 produces their outputs into the open transaction, dispatches
    # [2, 3] and fails before committing: the run aborts the transaction and leaves the group
    with pytest.raises(RuntimeError, match="a bug"):
        router.run(threading.Event())
    assert "abort" in producer.calls
    assert producer.offsets == [], "the outputs of 0 and 1 were aborted: their offsets must stay uncommitted"
