"""The retry decision for a group's offset requests, and the retry loop around a client call."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException

from clickcash.errors import ServiceError
from clickcash.group_offsets import call_with_retry, partition_lags, total_lag
from clickcash.offset_retry import RetryBudget, failure_message, is_transient, next_delay

BUDGET = RetryBudget(budget_s=10.0, first_delay_s=0.1, max_delay_s=2.0)


@pytest.mark.parametrize(
    "name", ["NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE", "_TIMED_OUT"]
)
def test_coordinator_transitions_are_retried(name: str) -> None:
    assert is_transient(name, retriable=False)
    assert next_delay(name, False, 0, 0.0, BUDGET) == 0.1


@pytest.mark.parametrize("name", ["GROUP_AUTHORIZATION_FAILED", "INVALID_GROUP_ID", "UNKNOWN"])
def test_errors_that_waiting_cannot_fix_fail_at_once(name: str) -> None:
    assert next_delay(name, False, 0, 0.0, BUDGET) is None


def test_an_error_the_client_calls_retriable_is_retried() -> None:
    assert next_delay("SOMETHING_NEW", True, 0, 0.0, BUDGET) == 0.1


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = [next_delay("NOT_COORDINATOR", False, a, 0.0, BUDGET) for a in range(8)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]


def test_backoff_never_runs_past_the_budget_and_then_gives_up() -> None:
    assert next_delay("NOT_COORDINATOR", False, 6, 9.5, BUDGET) == pytest.approx(0.5)
    assert next_delay("NOT_COORDINATOR", False, 6, 10.0, BUDGET) is None
    assert next_delay("NOT_COORDINATOR", False, 0, 12.0, BUDGET) is None


def test_a_budget_of_nonsense_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="RetryBudget"):
        RetryBudget(budget_s=1, first_delay_s=0)


def test_the_failure_message_is_one_line_naming_group_broker_cause_and_what_to_check() -> None:
    msg = failure_message("read the committed offsets", "g1", "127.0.0.1:9092", "NOT_COORDINATOR", "x", 30.2)
    assert "\n" not in msg
    for part in (
        "'g1'",
        "127.0.0.1:9092",
        "NOT_COORDINATOR",
        "30 s",
        "__consumer_offsets",
        "services status",
    ):
        assert part in msg
    other = failure_message("commit offsets", "g1", "b:1", "GROUP_AUTHORIZATION_FAILED", "denied", 0.0)
    assert "permissions" in other and "\n" not in other


class _FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def _failing(codes: list[int], result: str = "ok") -> tuple[list[float], Callable[[float], str]]:
    timeouts: list[float] = []

    def call(timeout_s: float) -> str:
        timeouts.append(timeout_s)
        if codes:
            raise KafkaException(KafkaError(codes.pop(0)))
        return result

    return timeouts, call


def test_the_loop_waits_out_a_fresh_brokers_coordinator_and_returns_the_answer() -> None:
    t = _FakeTime()
    codes = [KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TIMED_OUT]
    _, call = _failing(codes)
    got = call_with_retry(
        call,
        operation="read",
        group_id="g",
        bootstrap="b:1",
        budget=BUDGET,
        clock=t.clock,
        sleep=t.sleep,
    )
    assert got == "ok"
    assert t.sleeps == [0.1, 0.2, 0.4]


def test_the_loop_gives_up_after_its_budget_with_a_service_error_keeping_the_cause() -> None:
    t = _FakeTime()
    timeouts, call = _failing([KafkaError.NOT_COORDINATOR] * 1000)
    with pytest.raises(ServiceError) as info:
        call_with_retry(
            call,
            operation="read the committed offsets",
            group_id="g",
            bootstrap="b:1",
            budget=BUDGET,
            call_timeout_s=10.0,
            clock=t.clock,
            sleep=t.sleep,
        )
    assert info.value.service == "kafka"
    assert "NOT_COORDINATOR" in info.value.message and "'g'" in info.value.message
    assert isinstance(info.value.__cause__, KafkaException)
    assert sum(t.sleeps) == pytest.approx(10.0)
    assert all(0.5 <= x <= 10.0 for x in timeouts)


def test_the_loop_does_not_retry_a_permanent_error() -> None:
    t = _FakeTime()
    _, call = _failing([KafkaError.GROUP_AUTHORIZATION_FAILED])
    with pytest.raises(ServiceError, match="GROUP_AUTHORIZATION_FAILED"):
        call_with_retry(
            call,
            operation="read",
            group_id="g",
            bootstrap="b:1",
            budget=BUDGET,
            clock=t.clock,
            sleep=t.sleep,
        )
    assert t.sleeps == []


def test_an_admin_future_timeout_counts_as_transient() -> None:
    t = _FakeTime()
    failures = [TimeoutError()]

    def call(_timeout_s: float) -> str:
        if failures:
            raise failures.pop()
        return "done"

    assert call_with_retry(
        call, operation="r", group_id="g", bootstrap="b", clock=t.clock, sleep=t.sleep
    ) == ("done")
    assert t.sleeps == [0.1]


def test_lag_per_partition_and_in_total() -> None:
    ends = {0: 100, 1: 0, 2: 50}
    assert partition_lags({0: 90, 1: None, 2: 50}, ends) == {0: 10, 1: 0, 2: 0}
    assert total_lag({0: 90, 1: None, 2: 50}, ends) == 10, "an empty partition without a commit lags by 0"
    assert partition_lags({0: 90}, ends) == {0: 10, 1: 0, 2: 50}
    assert total_lag({0: 90}, ends) is None, "a non-empty partition never committed: lag not known yet"
    assert total_lag({0: 120, 1: 0, 2: 50}, ends) == 0, "a commit past a stale end is no negative lag"
