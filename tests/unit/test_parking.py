"""Parking: which records belong to a parked customer, the store's contract, the drop dead letter, and
how a shard's failure is classified."""

from __future__ import annotations

import orjson
import pytest

from clickcash._errors import ServiceError, StaleShardCallError
from clickcash.events import DeadLetter, DeadLetterCode, output_id
from router._failures import FailureKind
from router._parking import InMemoryParkingStore, ParkedCustomer, dropped_dead_letter
from router.actor import classify_shard_error


def test_a_parked_customer_holds_its_records_from_the_park_position_on() -> None:
    c = ParkedCustomer(b"c-1", partition=2, offset=40, reason="boom", parked_at_ms=1)
    assert not c.holds(2, 39)
    assert c.holds(2, 40)
    assert c.holds(2, 41)
    assert c.holds(3, 0), "a record of another partition (the topic grew) comes after the park"


def test_the_first_park_position_wins_and_records_are_kept_once_in_order() -> None:
    store = InMemoryParkingStore()
    first = store.park(ParkedCustomer(b"c-1", 0, 5, "first", 1))
    again = store.park(ParkedCustomer(b"c-1", 0, 9, "second", 2))
    assert again == first
    store.keep([(0, 7, b"c-1", b"b", 70), (0, 5, b"c-1", b"a", 50)])
    store.keep([(0, 5, b"c-1", b"a", 50)])  # a replayed round keeps the same record again
    assert store.records(b"c-1") == [(0, 5, b"c-1", b"a", 50), (0, 7, b"c-1", b"b", 70)]
    store.request(b"c-1", "replay")
    assert store.requests() == {b"c-1": "replay"}
    store.release(b"c-1")
    assert store.load() == {} and store.records(b"c-1") == [] and store.requests() == {}


def test_a_dropped_record_becomes_a_dead_letter_with_its_positional_id_and_masked_body() -> None:
    value = b'{"token": "4111111111111111"}'
    key, body, headers = dropped_dead_letter(
        "t.events", (3, 17, b"c-9", value, 123), "dropped by an operator", "2026-01-01T00:00:00+00:00"
    )
    h = dict(headers)
    assert key == b"c-9"
    assert b"4111111111111111" not in body
    assert h["ce_id"] == output_id("t.events:3:17", "dead-letter").encode()
    assert h["ce_partitionkey"] == b"c-9"
    reason = DeadLetter.model_validate(orjson.loads(h["clickcash_reason"]))
    assert reason.code is DeadLetterCode.PARKED_DROPPED
    assert (reason.partition, reason.offset, reason.redacted) == (3, 17, True)


class _RayLikeError(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@pytest.mark.parametrize(
    ("cause", "kind", "service"),
    [
        (ServiceError("redis", "ConnectionError: refused"), FailureKind.OUTAGE, "redis"),
        (StaleShardCallError("restarted"), FailureKind.OUTAGE, "shard restart"),
        (ValueError("engine bug"), FailureKind.PROCESSING, ""),
    ],
)
def test_a_shard_error_is_an_outage_only_when_a_service_failed(
    cause: BaseException, kind: FailureKind, service: str
) -> None:
    assert classify_shard_error(_RayLikeError(cause)) == (kind, service)
    assert classify_shard_error(RuntimeError("actor died"))[0] is FailureKind.PROCESSING
