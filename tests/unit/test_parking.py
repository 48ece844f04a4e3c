"""Parking: which records belong to a parked customer, the store's contract, the drop dead letter, and
how a shard's failure is classified."""

from __future__ import annotations

import orjson
import pytest

from clickcash.errors import ServiceError, StaleShardCallError
from clickcash.events import DeadLetter, DeadLetterCode, output_id
from clickcash.router._failures import FailureKind
from clickcash.router.actor import classify_shard_error
from clickcash.router.parking import InMemoryParkingStore, ParkedCustomer, dropped_dead_letter


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
    assert "ce_synthetic" not in h


def test_a_dropped_synthetic_record_keeps_the_synthetic_header() -> None:
    value = b'{"id": "e-1", "synthetic": true}'
    _, _, headers = dropped_dead_letter(
        "t.events", (0, 1, b"c-1", value, 1), "dropped", "2026-01-01T00:00:00Z"
    )
    assert dict(headers)["ce_synthetic"] == b"true"


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


def _parked_store() -> InMemoryParkingStore:
    store = InMemoryParkingStore()
    store.park(ParkedCustomer(b"c-7", 1, 4, "ValueError: engine bug", 1_700_000_000_000))
    store.keep([(1, 4, b"c-7", b'{"pan": "4111111111111111"}', 1_700_000_000_000), (1, 9, b"c-7", b"{}", 0)])
    return store


def test_the_operator_lists_and_shows_parked_customers_without_card_numbers() -> None:
    from clickcash.cluster.ops.parked import list_lines, show_lines

    store = _parked_store()
    listed = "\n".join(list_lines(store))
    assert "c-7: 2 record(s) from partition 1 offset 4" in listed and "engine bug" in listed
    shown = "\n".join(show_lines(store, b"c-7"))
    assert "partition 1 offset 4" in shown and "partition 1 offset 9" in shown
    assert "4111111111111111" not in shown
    assert list_lines(InMemoryParkingStore()) == ["no parked customers"]


def test_a_request_waits_for_the_routers_outcome_and_refuses_unknown_customers() -> None:
    from clickcash.cluster.ops.parked import request, show_lines
    from clickcash.errors import ClickcashError

    store = _parked_store()
    ticks = iter(range(100))

    def router_answers(_: float) -> None:
        assert store.requests() == {b"c-7": "replay"}
        store.release(b"c-7")
        store.outcome(b"c-7", "replay: 2 records released")

    assert request(store, b"c-7", "replay", wait_s=5, sleep=router_answers, clock=lambda: next(ticks)) == (
        "replay: 2 records released"
    )
    with pytest.raises(ClickcashError, match="not parked"):
        request(store, b"c-7", "drop", wait_s=0)
    with pytest.raises(ClickcashError, match=r"not parked .*last request: replay"):
        show_lines(store, b"c-7")
    with pytest.raises(ClickcashError, match="unknown action"):
        request(_parked_store(), b"c-7", "erase", wait_s=0)
