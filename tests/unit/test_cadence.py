"""When the router commits and how long it waits: the transaction interval bounds batching under a backlog
and is never the latency floor when no backlog is waiting."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest
from confluent_kafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from clickcash.actors.contract import ShardBatch, ShardResult
from clickcash.config.settings import load_settings
from clickcash.router._cadence import FULL_WAIT_S, Cadence
from clickcash.router._router import Router
from clickcash.testing import FakeMessage
from tests.unit._fake_kafka import RecordingProducer, input_message

CADENCE = Cadence(
    commit_interval_s=0.1, idle_wait_s=0.02, inflight_poll_s=0.002, batch_max=2000, max_inflight=4
)


def test_with_no_backlog_an_open_transaction_commits_at_once() -> None:
    d = CADENCE.decide(10.0, txn_open=True, txn_started=9.999, inflight=0, last_consumed=3)
    assert d.commit and not d.backlog and d.wait_s == 0.0
    assert d.take, "what is queued goes to the shards before the commit"


def test_rounds_still_in_flight_do_not_hold_back_a_commit_when_no_backlog_waits() -> None:
    """their shard work overlaps the commit; their outputs join the next transaction"""
    d = CADENCE.decide(10.0, txn_open=True, txn_started=9.999, inflight=2, last_consumed=40)
    assert d.commit


def test_a_full_batch_keeps_the_transaction_open_until_the_interval() -> None:
    d = CADENCE.decide(10.0, txn_open=True, txn_started=9.96, inflight=1, last_consumed=2000)
    assert not d.commit and d.backlog
    assert d.take and d.wait_s == pytest.approx(0.002), "under a backlog rounds pipeline"
    due = CADENCE.decide(10.1, txn_open=True, txn_started=10.0, inflight=1, last_consumed=2000)
    assert due.commit


def test_a_full_batch_known_to_wait_past_the_position_is_a_backlog_too() -> None:
    """the local queue may hold less than a batch while the broker holds many more"""
    d = CADENCE.decide(10.0, txn_open=True, txn_started=9.99, inflight=1, last_consumed=300, waiting=5000)
    assert not d.commit and d.backlog
    d = CADENCE.decide(10.0, txn_open=True, txn_started=9.99, inflight=1, last_consumed=300, waiting=12)
    assert d.commit


def test_the_in_flight_limit_counts_as_backlog_and_its_wait_ends_when_the_transaction_is_due() -> None:
    d = CADENCE.decide(10.0, txn_open=True, txn_started=9.95, inflight=4, last_consumed=10)
    assert not d.commit and d.backlog and not d.take
    assert d.wait_s == pytest.approx(0.05)
    closed = CADENCE.decide(10.0, txn_open=False, txn_started=0.0, inflight=4, last_consumed=10)
    assert closed.wait_s == FULL_WAIT_S and not closed.take
    due = CADENCE.decide(10.0, txn_open=True, txn_started=9.8, inflight=4, last_consumed=10)
    assert due.commit and not due.take


def test_waits_idle_for_the_first_record_and_on_the_round_in_flight_without_a_backlog() -> None:
    """Without a backlog, input that arrives while a round is in flight waits for it and goes out as one
    round: a Ray call per handful of events costs more than it saves."""
    idle = CADENCE.decide(10.0, txn_open=False, txn_started=0.0, inflight=0, last_consumed=0)
    busy = CADENCE.decide(10.0, txn_open=False, txn_started=0.0, inflight=1, last_consumed=5)
    assert (idle.commit, idle.take, idle.wait_s) == (False, True, 0.02)
    assert (busy.commit, busy.take, busy.wait_s) == (False, False, FULL_WAIT_S)
    due_soon = CADENCE.decide(10.0, txn_open=True, txn_started=9.97, inflight=1, last_consumed=2000)
    assert due_soon.take and due_soon.wait_s == pytest.approx(0.002)


@given(
    now=st.floats(0, 1e6),
    age=st.floats(0, 10),
    txn_open=st.booleans(),
    inflight=st.integers(0, 4),
    last=st.integers(0, 2000),
)
def test_no_transaction_outlives_the_interval_and_no_wait_runs_past_it(
    now: float, age: float, txn_open: bool, inflight: int, last: int
) -> None:
    d = CADENCE.decide(now, txn_open=txn_open, txn_started=now - age, inflight=inflight, last_consumed=last)
    assert d.wait_s >= 0
    if not txn_open:
        assert not d.commit
    elif age >= CADENCE.commit_interval_s:
        assert d.commit
    elif not d.commit:
        assert d.backlog and d.wait_s <= CADENCE.commit_interval_s - age + 1e-9


def test_rounds_grow_only_while_a_backlog_waits() -> None:
    cadence = replace(CADENCE, backlog_batch_max=8000)
    assert cadence.round_max(backlog=False) == 2000
    assert cadence.round_max(backlog=True) == 8000
    assert CADENCE.round_max(backlog=True) == 2000, "0: rounds keep batch_max under a backlog too"
    with pytest.raises(ValueError):
        replace(CADENCE, batch_max=10, backlog_batch_max=5)


def test_cadence_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        Cadence(commit_interval_s=0, idle_wait_s=0.02, inflight_poll_s=0.002, batch_max=1, max_inflight=1)
    with pytest.raises(ValueError, match="at least 1"):
        Cadence(commit_interval_s=1, idle_wait_s=0.02, inflight_poll_s=0.002, batch_max=0, max_inflight=1)


# --- the router follows it ---------------------------------------------------------------------------


class _Consumer:
    """Hands out a queue of records, at most ``n`` a call as librdkafka does, or a script of batches (one per
    call); ``revoke_on_call``: the rebalance callback revokes partition 0 inside that call."""

    def __init__(
        self,
        records: list[FakeMessage] | None = None,
        script: list[list[FakeMessage]] | None = None,
        revoke_on_call: int | None = None,
    ) -> None:
        self.queue = list(records or [])
        self.script = list(script or [])
        self.calls: list[tuple[int, float]] = []
        self.revoke_on_call = revoke_on_call
        self.callbacks: dict[str, Any] = {}
        self.position_of = -1001
        """the consumer's position (-1001: none yet)"""
        self.high = 0
        """partition 0's end as last fetched"""

    def consume(self, n: int, timeout: float) -> list[FakeMessage]:
        self.calls.append((n, timeout))
        if self.revoke_on_call == len(self.calls):
            self.callbacks["on_revoke"](self, [TopicPartition("t", 0)])
        if self.script:
            return self.script.pop(0)
        out, self.queue = self.queue[:n], self.queue[n:]
        return out

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consumer_group_metadata(self) -> object:
        return object()

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.position_of) for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached, "the router asks librdkafka's cache, never the broker, on its hot path"
        return (0, self.high)

    def close(self) -> None:
        pass


class _Pool:
    """Each shard call answers with one output; ``ready`` says whether calls have finished yet."""

    size = 1

    def __init__(self) -> None:
        self.ready = True
        self.batches: list[list[int]] = []

    def fence(self) -> None:
        pass

    def submit(self, shard: int, batch: ShardBatch) -> Any:
        self.batches.append(list(batch.offsets))
        return ShardResult(topics=["out"], keys=[b"k"], values=[b"v"], headers=[[]])

    def wait(self, handles: Any, timeout_s: float) -> bool:
        return self.ready

    def results(self, handles: Any) -> list[ShardResult]:
        return list(handles)


def _router(consumer: _Consumer, producer: RecordingProducer, pool: _Pool, **kafka: Any) -> Router:
    settings = load_settings(
        kafka={
            "commit_interval_ms": 60_000,
            "consume_batch_max": 100,
            "consume_backlog_batch_max": 100,
            **kafka,
        }
    )
    router = Router(
        settings,
        0,
        pool,
        consumer_factory=lambda c: cast(Any, consumer),
        producer_factory=lambda c: cast(Any, producer),
    )
    router._assigned.add(0)
    router._fenced = True
    return router


def test_a_light_round_commits_once_its_outputs_are_produced_not_after_the_interval() -> None:
    """The interval is a minute here: a commit within a few steps can only come from the no-backlog rule."""
    consumer, producer, pool = (
        _Consumer([input_message(0), input_message(1)]),
        RecordingProducer(),
        _Pool(),
    )
    router = _router(consumer, producer, pool)
    pool.ready = False
    router._step()  # consumes both records and dispatches them; the shard has not answered
    assert pool.batches == [[0, 1]] and "commit" not in producer.calls
    assert consumer.calls[0] == (1, 0.02), "waits for the first record only, up to the idle wait"
    assert consumer.calls[1] == (99, 0.002), "then lingers for the rest of the round"
    pool.ready = True
    router._step()
    assert producer.calls.count("commit") == 1
    assert producer.offsets == [[(0, 2)]]
    router._txn.close()


def test_under_a_backlog_rounds_share_one_transaction_until_the_interval() -> None:
    consumer, producer, pool = (
        _Consumer([input_message(i) for i in range(300)]),
        RecordingProducer(),
        _Pool(),
    )
    router = _router(consumer, producer, pool)
    for _ in range(3):  # every consume returns a full batch of 100
        router._step()
    assert pool.batches and all(len(b) == 100 for b in pool.batches)
    assert "commit" not in producer.calls, "a full batch means more is waiting: keep batching"
    router._step()  # the queue is empty now: nothing waits, the open transaction commits
    assert producer.calls.count("commit") == 1
    assert producer.offsets == [[(0, 300)]]
    router._txn.close()


def test_under_a_backlog_the_router_takes_larger_rounds_and_goes_back_to_small_ones_when_it_clears() -> None:
    consumer, producer, pool = (
        _Consumer([input_message(i) for i in range(650)]),
        RecordingProducer(),
        _Pool(),
    )
    router = _router(consumer, producer, pool, consume_backlog_batch_max=400)
    for _ in range(3):
        router._step()
    assert [len(b) for b in pool.batches] == [100, 400, 150], (
        "a full round means a backlog: larger ones follow"
    )
    assert consumer.calls[-2][0] == 1 and consumer.calls[-1][0] == 399
    router._step()  # the queue ran dry: no backlog
    consumer.queue = [input_message(i) for i in range(650, 900)]
    router._step()
    assert len(pool.batches[-1]) == 100, "without a backlog a round is back to consume_batch_max"
    router._txn.close()


def test_a_backlog_at_the_broker_keeps_the_transaction_open_though_the_local_queue_ran_dry() -> None:
    consumer, producer, pool = (
        _Consumer([input_message(0), input_message(1)]),
        RecordingProducer(),
        _Pool(),
    )
    router = _router(consumer, producer, pool)
    consumer.position_of, consumer.high = 2, 50_000
    router._step()
    router._step()
    assert pool.batches == [[0, 1]]
    assert "commit" not in producer.calls
    consumer.high = 2  # caught up
    router._step()
    assert producer.calls.count("commit") == 1
    router._txn.close()


def test_records_of_a_partition_revoked_while_the_round_lingers_are_not_dispatched() -> None:
    """The first record came before the revoke: the partition's next owner reads it again from the
    committed offset, so dispatching it here would process it twice."""
    consumer = _Consumer(script=[[input_message(5)], [input_message(7, partition=1)]], revoke_on_call=2)
    producer, pool = RecordingProducer(), _Pool()
    router = _router(consumer, producer, pool)
    consumer.subscribe(["t"], on_revoke=router._on_revoke, on_lost=router._on_lost)
    router._step()
    assert pool.batches == [[7]]
    router._txn.close()
