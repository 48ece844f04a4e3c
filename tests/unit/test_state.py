"""What a shard remembers: records, customer state and the in-memory store's semantics (expiry included)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickcash.actors.contract import OutputTopics, ShardBatch
from clickcash.actors.shard import Shard
from clickcash.actors.state.base import (
    BatchWrite,
    CustomerState,
    IdempotencyRecord,
    InMemoryStateStore,
    OpenDunning,
    OrderSummary,
    PendingStep,
)
from clickcash.config.domain import DomainConfig

SUMMARY = OrderSummary(amount_cents=1000, currency="USD", country="US", network="visa")


class ManualClock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@given(
    fingerprint=st.text(alphabet="0123456789abcdef", min_size=1, max_size=32),
    partition=st.integers(min_value=0, max_value=10_000),
    offset=st.integers(min_value=0, max_value=2**62),
)
def test_idempotency_record_round_trips(fingerprint: str, partition: int, offset: int) -> None:
    record = IdempotencyRecord(fingerprint, partition, offset)
    assert IdempotencyRecord.decode(record.encode()) == record


def test_customer_state_round_trips_and_ignores_unknown_fields() -> None:
    state = CustomerState(timezone="Europe/Berlin", channels=["sms"], payment_network="visa")
    state.remember_order("o-1", SUMMARY)
    state.open_plan("o-1", OpenDunning(declines=2, last_psp="adyen", decline_class="soft"))
    assert CustomerState.decode(state.encode()) == state
    newer = orjson.loads(state.encode())
    newer["loyalty_tier"] = "gold"  # written by a newer version: still readable
    assert CustomerState.decode(orjson.dumps(newer)) == state


def test_unknown_fields_inside_orders_plans_and_steps_are_ignored() -> None:
    """The parts (dataclasses) read documents with keys they do not know, as the whole state does."""
    state = CustomerState()
    state.remember_order("o-1", SUMMARY)
    state.open_plan("o-1", OpenDunning(steps=[PendingStep(kind="retry", due_ms=5, channel=None)]))
    newer = orjson.loads(state.encode())
    newer["orders"]["o-1"]["risk_score"] = 7
    newer["open_dunning"]["o-1"]["owner"] = "x"
    newer["open_dunning"]["o-1"]["steps"][0]["note"] = "y"
    decoded = CustomerState.decode(orjson.dumps(newer))
    assert decoded == state
    assert decoded.encode() == state.encode() == state.__pydantic_serializer__.to_json(state)


def test_a_part_of_the_wrong_shape_is_refused() -> None:
    doc = b'{"orders":{"o-1":{"amount_cents":"many","currency":"EUR","country":"DE","network":"visa"}}}'
    with pytest.raises(ValueError):
        CustomerState.decode(doc)


def test_new_customer_state_defaults() -> None:
    state = CustomerState()
    assert (state.timezone, state.channels, state.orders, state.open_dunning) == ("UTC", ["email"], {}, {})


def test_open_plans_are_bounded_and_the_oldest_close_first() -> None:
    state = CustomerState()
    closed: list[str] = []
    for i in range(CustomerState.MAX_OPEN_DUNNING + 3):
        closed += [order_id for order_id, _ in state.open_plan(f"o-{i}", OpenDunning(declines=i + 1))]
    assert closed == ["o-0", "o-1", "o-2"]
    assert len(state.open_dunning) == CustomerState.MAX_OPEN_DUNNING


def test_reopening_a_plan_makes_it_the_newest() -> None:
    state = CustomerState()
    for i in range(CustomerState.MAX_OPEN_DUNNING):
        state.open_plan(f"o-{i}", OpenDunning())
    state.open_plan("o-0", OpenDunning(declines=2))
    assert [order_id for order_id, _ in state.open_plan("o-new", OpenDunning())] == ["o-1"]
    assert state.open_dunning["o-0"].declines == 2


def test_remembered_orders_are_bounded_oldest_first() -> None:
    state = CustomerState()
    for i in range(CustomerState.MAX_ORDERS + 5):
        state.remember_order(f"o-{i}", SUMMARY)
    assert len(state.orders) == CustomerState.MAX_ORDERS
    assert next(iter(state.orders)) == "o-5"


def test_orders_with_an_open_plan_are_kept_while_others_are_trimmed() -> None:
    state = CustomerState()
    state.remember_order("o-0", SUMMARY)
    state.open_plan("o-0", OpenDunning())
    for i in range(1, 3 * CustomerState.MAX_ORDERS):
        state.remember_order(f"o-{i}", SUMMARY)
    assert "o-0" in state.orders, "an order in dunning must stay retryable"
    assert len(state.orders) <= CustomerState.MAX_ORDERS, (
        f"{len(state.orders)} orders kept: one open plan on the oldest order stops all trimming"
    )


def test_a_hot_customer_with_one_order_in_dunning_has_bounded_state(
    domain: DomainConfig,
    cloud_event: Callable[..., bytes],
    event_data: Callable[..., dict[str, Any]],
    shard_batch: Callable[..., ShardBatch],
) -> None:
    store = InMemoryStateStore()
    shard = Shard(0, OutputTopics("o", "p", "d", "dlq"), domain, store)
    records = [
        (
            0,
            0,
            b"c-1",
            cloud_event("order.placed", event_data("order.placed", order_id="o-0"), event_id="e-0"),
        ),
        (
            0,
            1,
            b"c-1",
            cloud_event("payment.declined", event_data("payment.declined", order_id="o-0"), event_id="d-0"),
        ),
    ]
    for i in range(1, 3 * CustomerState.MAX_ORDERS):
        value = cloud_event("order.placed", event_data("order.placed", order_id=f"o-{i}"), event_id=f"e-{i}")
        records.append((0, len(records), b"c-1", value))
    shard.apply(shard_batch(records))
    state = CustomerState.decode(store.customers["c-1"][1])
    assert "o-0" in state.open_dunning
    assert len(state.orders) <= CustomerState.MAX_ORDERS


# --- the in-memory store ------------------------------------------------------------------------------


def _claim(eid: str, offset: int = 0, response: bytes = b"[]") -> tuple[str, IdempotencyRecord, bytes]:
    return (eid, IdempotencyRecord("fp-" + eid, 0, offset), response)


def test_unknown_customers_load_as_new_and_commits_bump_versions() -> None:
    store = InMemoryStateStore(clock=ManualClock())
    assert store.load([], ["c-1"]).customers == {"c-1": (0, None)}
    assert store.commit(BatchWrite(expected_versions={"c-1": 0}, customers={"c-1": b"v1"}))
    assert store.load([], ["c-1"]).customers == {"c-1": (1, b"v1")}
    assert store.commit(BatchWrite(expected_versions={"c-1": 1}, customers={"c-1": b"v2"}))
    assert store.load([], ["c-1"]).customers == {"c-1": (2, b"v2")}
    assert store.round_trips == 5


def test_a_stale_version_fails_the_whole_commit() -> None:
    store = InMemoryStateStore(clock=ManualClock())
    assert store.commit(BatchWrite(expected_versions={"c-1": 0}, customers={"c-1": b"v1"}))
    stale = BatchWrite(
        expected_versions={"c-1": 0, "c-2": 0},
        customers={"c-1": b"lost", "c-2": b"lost"},
        claims=[_claim("e-1")],
    )
    assert store.commit(stale) is False
    loaded = store.load(["e-1"], ["c-1", "c-2"])
    assert loaded.customers == {"c-1": (1, b"v1"), "c-2": (0, None)}
    assert loaded.records == {}
    assert loaded.responses == {}


def test_claiming_an_event_twice_fails_and_writes_nothing() -> None:
    store = InMemoryStateStore(clock=ManualClock())
    assert store.commit(BatchWrite(claims=[_claim("e-1", response=b"first")]))
    second = BatchWrite(
        expected_versions={"c-1": 0}, customers={"c-1": b"x"}, claims=[_claim("e-1", 9, b"second")]
    )
    assert store.commit(second) is False
    loaded = store.load(["e-1"], ["c-1"])
    assert loaded.records["e-1"].offset == 0
    assert loaded.responses["e-1"] == b"first"
    assert loaded.customers["c-1"] == (0, None)


def test_responses_expire_after_their_ttl_and_records_after_retention() -> None:
    clock = ManualClock()
    store = InMemoryStateStore(retention_s=100, response_ttl_s=10, clock=clock)
    assert store.commit(BatchWrite(claims=[_claim("e-1")]))
    assert store.stored_responses() == 1
    clock.t += 11
    loaded = store.load(["e-1"], [])
    assert "e-1" in loaded.records
    assert loaded.responses == {}
    assert store.stored_responses() == 0
    assert store.commit(BatchWrite(claims=[_claim("e-1")])) is False, "a live record still blocks a claim"
    clock.t += 90
    assert store.load(["e-1"], []).records == {}
    assert store.commit(BatchWrite(claims=[_claim("e-1", 5)])), "an expired record no longer blocks a claim"


def test_released_responses_are_deleted() -> None:
    store = InMemoryStateStore(clock=ManualClock())
    assert store.commit(BatchWrite(claims=[_claim("e-1"), _claim("e-2", 1)]))
    assert store.commit(BatchWrite(release_responses=["e-1", "never-stored"]))
    loaded = store.load(["e-1", "e-2"], [])
    assert set(loaded.records) == {"e-1", "e-2"}
    assert set(loaded.responses) == {"e-2"}
    assert store.stored_responses() == 1


@pytest.mark.parametrize(
    ("write", "empty"),
    [
        (BatchWrite(), True),
        (BatchWrite(expected_versions={"c": 0}), True),
        (BatchWrite(customers={"c": b"x"}), False),
        (BatchWrite(claims=[_claim("e")]), False),
        (BatchWrite(release_responses=["e"]), False),
    ],
)
def test_batch_write_is_empty(write: BatchWrite, empty: bool) -> None:
    assert write.is_empty() is empty
