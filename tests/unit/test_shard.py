"""The shard's batch path with the in-memory store: outputs, exactly-once semantics, state and the DLQ."""

from __future__ import annotations

import copy
import hashlib
import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from clickcash.actors.contract import OutputTopics, ShardBatch, ShardResult
from clickcash.actors.shard import MAX_COMMIT_ATTEMPTS, RECORD_FRAMING_RESERVE_BYTES, Shard
from clickcash.actors.state.base import BatchWrite, CustomerState, InMemoryStateStore, LoadedBatch
from clickcash.config.domain import DomainConfig
from clickcash.errors import StateConflictError
from clickcash.events import (
    OUTPUT_SOURCE,
    OUTPUT_TYPES,
    DeadLetter,
    DeadLetterCode,
    OutputEnvelope,
    looks_like_card_number,
    output_id,
)
from clickcash.loadtest.traffic.campaign import CampaignGenerator, loadtest_mix
from clickcash.router._timers import DueTimer
from clickcash.timer_mac import TimerMac
from tests.unit._strategies import VISA_TEST_PAN

TOPICS = OutputTopics(
    orders="clickcash.orders", payments="clickcash.payments", dunning="clickcash.dunning", dlq="clickcash.dlq"
)
TOPIC_OF_FAMILY = {"order": TOPICS.orders, "payment": TOPICS.payments, "dunning": TOPICS.dunning}
START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

EventFactory = Callable[..., bytes]
DataFactory = Callable[..., dict[str, Any]]
BatchFactory = Callable[..., ShardBatch]


class TickingClock:
    """Advances one second per reading, so recomputed outputs would differ from stored ones."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def make_shard(
    domain: DomainConfig, store: Any | None = None, clock: Callable[[], datetime] | None = None
) -> tuple[Shard, Any]:
    store = store if store is not None else InMemoryStateStore(clock=lambda: 1_000.0)
    return Shard(0, TOPICS, domain, store, clock=clock or TickingClock()), store


def outputs(result: ShardResult) -> list[tuple[str, bytes | None, bytes]]:
    return list(zip(result.topics, result.keys, result.values, strict=True))


def envelopes(result: ShardResult) -> list[dict[str, Any]]:
    """The non-DLQ outputs as parsed JSON, each checked against the published contract."""
    out = []
    for topic, key, value in outputs(result):
        if topic == TOPICS.dlq:
            continue
        env = OutputEnvelope.model_validate_json(value)
        assert env.type in OUTPUT_TYPES, env.type
        OUTPUT_TYPES[env.type].model_validate(env.data)
        assert topic == TOPIC_OF_FAMILY[env.type.split(".")[0]], (topic, env.type)
        assert env.source == OUTPUT_SOURCE
        assert key == env.partitionkey.encode(), "outputs are keyed by customer id"
        out.append(orjson.loads(value))
    return out


def dead_letters(result: ShardResult) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    out = []
    for topic, key, value, headers in zip(
        result.topics, result.keys, result.values, result.headers, strict=True
    ):
        if topic == TOPICS.dlq:
            assert headers is not None
            out.append((key, value, dict(headers)))
    return out


def reason_of(headers: dict[str, bytes]) -> DeadLetter:
    return DeadLetter.model_validate_json(headers["clickcash_reason"])


def types_of(result: ShardResult) -> list[str]:
    return [e["type"] for e in envelopes(result)]


class Rec:
    """Builds records of one partition with increasing offsets."""

    def __init__(self, cloud_event: EventFactory, event_data: DataFactory, partition: int = 0) -> None:
        self._ev = cloud_event
        self._data = event_data
        self.partition = partition
        self.offset = 0
        self._ids = itertools.count(1)

    def __call__(
        self, etype: str, customer: str = "c-1", *, event_id: str | None = None, **data_overrides: Any
    ) -> tuple[int, int, bytes, bytes]:
        eid = event_id or f"e-{next(self._ids)}"
        value = self._ev(
            etype, self._data(etype, customer, **data_overrides), event_id=eid, correlationid=f"corr-{eid}"
        )
        rec = (self.partition, self.offset, customer.encode(), value)
        self.offset += 1
        return rec


@pytest.fixture
def rec(cloud_event: EventFactory, event_data: DataFactory) -> Rec:
    return Rec(cloud_event, event_data)


# --- order.placed -------------------------------------------------------------------------------------


def test_order_placed_gives_accepted_and_route_with_deterministic_ids(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    result = shard.apply(shard_batch([rec("order.placed", event_id="evt-order-1")]))
    accepted, route = envelopes(result)
    assert result.topics == [TOPICS.orders, TOPICS.payments]
    assert result.keys == [b"c-1", b"c-1"]
    assert accepted["type"] == "order.accepted"
    assert accepted["id"] == output_id("evt-order-1", "order-decision")
    assert route["type"] == "payment.route_decided"
    assert route["id"] == output_id("evt-order-1", "route")
    for env in (accepted, route):
        assert env["specversion"] == "1.0"
        assert env["datacontenttype"] == "application/json"
        assert env["causationid"] == "evt-order-1"
        assert env["correlationid"] == "corr-evt-order-1"
        assert env["campaignid"] == "spring-sale"
        assert env["partitionkey"] == "c-1"
        assert datetime.fromisoformat(env["time"]) >= START
    assert accepted["data"] == {
        "order_id": "o-1",
        "customer_id": "c-1",
        "total_cents": 10000,
        "currency": "USD",
        "country": "US",
    }
    assert route["data"]["attempt"] == 1
    assert route["data"]["psp"] == "adyen"
    # scored: stripe's higher expected approval outweighs its fee against braintree's
    assert route["data"]["fallbacks"] == ["stripe", "braintree"]
    assert route["data"]["idempotency_key"] == "o-1:1"
    assert route["data"]["amount_cents"] == 10000
    assert result.counts["processed"] == 1


def test_output_ids_do_not_depend_on_the_shard_or_the_clock(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    batch = shard_batch([rec("order.placed", event_id="evt-x")])
    one = envelopes(make_shard(domain)[0].apply(batch))
    other, _ = make_shard(domain, clock=lambda: START + timedelta(days=3))
    two = envelopes(other.apply(copy.deepcopy(batch)))
    assert [e["id"] for e in one] == [e["id"] for e in two]
    assert len({e["id"] for e in one}) == 2


@pytest.mark.parametrize(
    ("input_id", "role", "expected"),
    [
        ("evt-order-1", "order-decision", "213ff346-e2a3-5ff3-b961-79d8b1af9bdc"),
        ("evt-order-1", "route", "a8eb98bb-182b-580d-a2cb-5be51885ca56"),
        ("clickcash.events:4:99", "dead-letter", "fb9d075d-28e5-5da2-97b8-1ed68ef5aaaa"),
    ],
)
def test_output_ids_are_pinned_across_releases(input_id: str, role: str, expected: str) -> None:
    """Consumers dedupe on output ids: a new release replaying old inputs must produce the same ids."""
    assert output_id(input_id, role) == expected


def test_rejected_order_gives_exactly_one_order_rejected(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, store = make_shard(domain)
    result = shard.apply(
        shard_batch([rec("order.placed", event_id="evt-bad", total_cents=12345, country="JP")])
    )
    [rejected] = envelopes(result)
    assert rejected["type"] == "order.rejected"
    assert rejected["id"] == output_id("evt-bad", "order-decision")
    codes = [r["code"] for r in rejected["data"]["reasons"]]
    assert "total_mismatch" in codes
    assert "country_not_served" in codes
    state = CustomerState.decode(store.customers["c-1"][1])
    assert state.orders == {}


def test_order_with_no_eligible_psp_is_rejected(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    only_paypal = domain.model_copy(update={"psps": [p for p in domain.psps if p.name == "paypal"]})
    shard, _ = make_shard(only_paypal)
    [rejected] = envelopes(shard.apply(shard_batch([rec("order.placed")])))
    assert rejected["type"] == "order.rejected"
    assert [r["code"] for r in rejected["data"]["reasons"]] == ["no_eligible_psp"]


def test_card_number_as_token_is_dead_lettered_masked_and_never_stored(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, store = make_shard(domain)
    pm = {"type": "card", "network": "visa", "token": VISA_TEST_PAN}
    result = shard.apply(
        shard_batch(
            [rec("order.placed", payment_method=pm), rec("payment_method.updated", payment_method=pm)]
        )
    )
    assert envelopes(result) == []
    letters = dead_letters(result)
    assert [reason_of(h).code for _, _, h in letters] == [DeadLetterCode.CARD_DATA] * 2
    assert all(reason_of(h).redacted for _, _, h in letters)
    assert all(VISA_TEST_PAN.encode() not in v and b"****************" in v for _, v, _ in letters)
    assert store.customers == {} or VISA_TEST_PAN.encode() not in b"".join(
        doc or b"" for _, doc in store.customers.values()
    )


# --- the contract of every output -------------------------------------------------------------------


def test_every_output_of_a_mixed_batch_matches_the_contract(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    batch = shard_batch(
        [
            rec("customer.preferences_updated"),
            rec("order.placed", order_id="o-1"),
            rec("order.placed", order_id="o-2"),
            rec("payment.declined", order_id="o-1", decline_code="51"),
            rec("payment.declined", order_id="o-2", decline_code="91"),
            rec("payment_method.updated"),
            rec("payment.authorized", order_id="o-1", attempt=2, psp="braintree"),
            rec("order.placed", order_id="o-3", country="DE", currency="USD"),
            rec("payment.declined", order_id="o-3", decline_code="54"),
        ]
    )
    result = shard.apply(batch)
    assert types_of(result) == [
        "order.accepted",
        "payment.route_decided",
        "order.accepted",
        "payment.route_decided",
        "dunning.scheduled",
        "dunning.scheduled",
        "payment.route_decided",
        "payment.route_decided",
        "dunning.recovered",
        "order.rejected",
        "dunning.scheduled",
    ]
    assert dead_letters(result) == []


def test_generated_campaign_traffic_gives_only_contract_outputs(
    domain: DomainConfig, shard_batch: BatchFactory
) -> None:
    """Realistic traffic (duplicates and malformed records included) through one shard, in batches."""
    gen = CampaignGenerator(loadtest_mix(customers=200, duplicate_rate=0.03, malformed_rate=0.02), seed=11)
    events = [gen.next_event(START) for _ in range(1_500)]
    shard, store = make_shard(domain)
    produced: list[dict[str, Any]] = []
    dlq = 0
    for start in range(0, len(events), 250):
        chunk = events[start : start + 250]
        batch = shard_batch([(0, start + i, e.key, e.value) for i, e in enumerate(chunk)])
        result = shard.apply(batch)
        produced.extend(envelopes(result))
        dlq += len(dead_letters(result))
    malformed = sum(1 for e in events if e.kind == "malformed")
    duplicates = sum(1 for e in events if e.kind == "duplicate")
    assert malformed > 0
    assert duplicates > 0
    assert dlq == malformed
    assert shard.totals["processed"] == len(events) - malformed - duplicates
    assert shard.totals["duplicate"] == duplicates
    assert len({e["id"] for e in produced}) == len(produced), "output ids are unique"
    assert store.round_trips == 2 * shard.batches


# --- replay, duplicates, conflicts ------------------------------------------------------------------


def _snapshot(store: InMemoryStateStore) -> dict[str, tuple[int, bytes]]:
    return dict(store.customers)


def test_replaying_a_batch_returns_byte_identical_outputs_and_keeps_state(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, store = make_shard(domain)
    records = [
        rec("order.placed", order_id="o-1"),
        rec("order.placed", "c-2", order_id="o-2"),
        rec("payment.declined", order_id="o-1"),
        rec("payment_method.updated"),
        rec("payment.authorized", "c-2", order_id="o-2"),
    ]
    first = shard.apply(shard_batch(records))
    state = _snapshot(store)
    again = shard.apply(shard_batch(records))
    assert outputs(again) == outputs(first)
    assert again.counts.get("replayed") == len(records)
    assert "processed" not in again.counts
    assert _snapshot(store) == state
    # a fresh shard (a restarted or another actor) answers the replay from the store the same way
    other, _ = make_shard(domain, store=store)
    assert outputs(other.apply(shard_batch(records))) == outputs(first)
    assert _snapshot(store) == state


def test_replay_of_dead_letters_is_identical(
    domain: DomainConfig,
    rec: Rec,
    cloud_event: EventFactory,
    event_data: DataFactory,
    shard_batch: BatchFactory,
) -> None:
    shard, _ = make_shard(domain, clock=lambda: START)
    records = [
        rec("order.placed"),
        (0, 1, b"c-1", b"{broken"),
        (0, 2, None, cloud_event("order.placed", event_data("order.placed"))),
    ]
    first = shard.apply(shard_batch(records))
    again = shard.apply(shard_batch(records))
    assert outputs(again) == outputs(first)
    assert again.headers == first.headers


def test_same_id_at_another_offset_with_same_payload_is_a_silent_duplicate(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory, shard_batch: BatchFactory
) -> None:
    shard, store = make_shard(domain)
    data = event_data("order.placed")
    shard.apply(shard_batch([(0, 10, b"c-1", cloud_event("order.placed", data, event_id="dup"))]))
    state = _snapshot(store)
    # re-sent later (another offset, even another partition, another time): same event
    resent = cloud_event("order.placed", data, event_id="dup", time="2026-03-02T11:00:00Z")
    result = shard.apply(shard_batch([(0, 11, b"c-1", resent), (1, 0, b"c-1", resent)]))
    assert len(result) == 0
    assert result.counts == {"in:order.placed": 2, "duplicate": 2}
    assert _snapshot(store) == state


def test_same_id_with_a_different_payload_is_a_duplicate_conflict(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory, shard_batch: BatchFactory
) -> None:
    shard, store = make_shard(domain)
    shard.apply(
        shard_batch(
            [(0, 10, b"c-1", cloud_event("order.placed", event_data("order.placed"), event_id="dup"))]
        )
    )
    state = _snapshot(store)
    changed = cloud_event("order.placed", event_data("order.placed", total_cents=9999), event_id="dup")
    result = shard.apply(shard_batch([(2, 42, b"c-1", changed)]))
    [(key, value, headers)] = dead_letters(result)
    assert len(result) == 1
    assert key == b"c-1"
    assert value == changed
    reason = reason_of(headers)
    assert reason.code == DeadLetterCode.DUPLICATE_CONFLICT
    assert reason.field == "id"
    assert (reason.partition, reason.offset) == (2, 42)
    assert "partition 0 offset 10" in reason.detail
    assert headers["ce_causationid"] == b"dup"
    assert _snapshot(store) == state


def test_duplicates_and_conflicts_within_one_batch(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    data = event_data("order.placed")
    original = cloud_event("order.placed", data, event_id="dup")
    same = cloud_event("order.placed", data, event_id="dup", time="2026-03-02T12:00:00Z")
    different = cloud_event("order.placed", {**data, "order_id": "o-9"}, event_id="dup")
    batch = shard_batch([(0, 0, b"c-1", original), (0, 1, b"c-1", same), (0, 2, b"c-1", different)])
    result = shard.apply(batch)
    assert types_of(result) == ["order.accepted", "payment.route_decided"]
    [(_, value, headers)] = dead_letters(result)
    assert value == different
    assert reason_of(headers).code == DeadLetterCode.DUPLICATE_CONFLICT
    assert result.counts["duplicate"] == 1
    assert result.counts["processed"] == 1
    # and the whole batch replays identically
    assert outputs(shard.apply(copy.deepcopy(batch))) == outputs(result)


# --- order of outputs -------------------------------------------------------------------------------


def test_outputs_follow_input_order_per_customer(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    records = []
    for n in range(4):
        for c in ("c-a", "c-b", "c-c"):
            records.append(rec("order.placed", c, order_id=f"{c}-o{n}", event_id=f"{c}-e{n}"))
            if n % 2:
                records.append(rec("payment.declined", c, order_id=f"{c}-o{n}", event_id=f"{c}-d{n}"))
    result = shard.apply(shard_batch(records))
    input_ids = [orjson.loads(v)["id"] for _, _, _, v in records]
    causes = [e["causationid"] for e in envelopes(result)]
    positions = [input_ids.index(c) for c in causes]
    assert positions == sorted(positions)
    for c in ("c-a", "c-b", "c-c"):
        mine = [e for e in envelopes(result) if e["partitionkey"] == c]
        assert [e["data"]["order_id"] for e in mine if e["type"] == "order.accepted"] == [
            f"{c}-o{n}" for n in range(4)
        ]


def test_later_events_see_state_from_earlier_events_of_the_same_batch(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    result = shard.apply(
        shard_batch(
            [
                rec("customer.preferences_updated", channels=["push"]),
                rec("order.placed"),
                rec("payment.declined", decline_code="51"),
            ]
        )
    )
    scheduled = envelopes(result)[-1]
    assert scheduled["type"] == "dunning.scheduled"
    reminder = scheduled["data"]["steps"][0]
    assert (reminder["kind"], reminder["channel"]) == ("reminder", "push")


# --- batching: one load and one commit --------------------------------------------------------------


class CountingStore:
    """Wraps a store and counts calls; ``fail_commits`` first commits return False without writing."""

    def __init__(
        self,
        inner: InMemoryStateStore,
        fail_commits: int = 0,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self.inner = inner
        self.loads = 0
        self.commits = 0
        self.fail_commits = fail_commits
        self.before_commit = before_commit

    @property
    def round_trips(self) -> int:
        return self.inner.round_trips

    def load(
        self, event_ids: Sequence[str], customer_ids: Sequence[str], counter_keys: Sequence[str] = ()
    ) -> LoadedBatch:
        self.loads += 1
        return self.inner.load(event_ids, customer_ids, counter_keys)

    def commit(self, write: BatchWrite) -> bool:
        self.commits += 1
        if self.before_commit is not None:
            hook, self.before_commit = self.before_commit, None
            hook()
        if self.fail_commits > 0:
            self.fail_commits -= 1
            self.inner.round_trips += 1
            return False
        return self.inner.commit(write)

    def stored_responses(self) -> int:
        return self.inner.stored_responses()


@pytest.mark.parametrize("size", [1, 7, 300])
def test_one_load_and_one_commit_per_batch_whatever_its_size(
    size: int, domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    store = CountingStore(InMemoryStateStore(clock=lambda: 1_000.0))
    shard, _ = make_shard(domain, store=store)
    records = [rec("order.placed", f"c-{i % 13}", order_id=f"o-{i}") for i in range(size)]
    result = shard.apply(shard_batch(records))
    assert (store.loads, store.commits) == (1, 1)
    assert shard.store_round_trips == store.inner.round_trips == 2
    assert result.counts["processed"] == size
    shard.apply(shard_batch(records))  # a replay is one batch too
    assert (store.loads, store.commits) == (2, 2)


def test_a_batch_of_dead_letters_only_still_costs_one_load_and_one_commit(
    domain: DomainConfig, shard_batch: BatchFactory
) -> None:
    store = CountingStore(InMemoryStateStore())
    shard, _ = make_shard(domain, store=store)
    shard.apply(shard_batch([(0, i, b"k", b"nope") for i in range(5)]))
    assert (store.loads, store.commits) == (1, 1)


# --- stored first responses are released once committed ---------------------------------------------


def test_stored_responses_are_released_once_offsets_commit(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory, shard_batch: BatchFactory
) -> None:
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    shard, _ = make_shard(domain, store=store)

    def records(partition: int, offsets: range) -> list[tuple[int, int, bytes, bytes]]:
        return [
            (
                partition,
                o,
                b"c-1",
                cloud_event(
                    "customer.preferences_updated",
                    event_data("customer.preferences_updated"),
                    event_id=f"p{partition}-{o}",
                ),
            )
            for o in offsets
        ]

    shard.apply(shard_batch(records(0, range(0, 10)) + records(1, range(0, 4))))
    assert shard.stored_responses() == store.stored_responses() == 14
    # the router committed partition 0 up to offset 5 (exclusive): offsets 0-4 can never be replayed
    shard.apply(shard_batch(records(0, range(10, 12)), committed={0: 5}))
    assert shard.stored_responses() == store.stored_responses() == 14 - 5 + 2
    # a watermark that does not move releases nothing more
    shard.apply(shard_batch([], committed={0: 5}))
    assert shard.stored_responses() == store.stored_responses() == 11
    shard.apply(shard_batch([], committed={0: 12, 1: 4}))
    assert shard.stored_responses() == store.stored_responses() == 0


def test_replay_after_release_gives_no_outputs_but_still_no_reprocessing(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, store = make_shard(domain)
    records = [rec("order.placed")]
    shard.apply(shard_batch(records))
    shard.apply(shard_batch([], committed={0: 1}))
    state = _snapshot(store)
    result = shard.apply(shard_batch(records))
    assert len(result) == 0
    assert result.counts == {"in:order.placed": 1, "replay_without_response": 1}
    assert _snapshot(store) == state


# --- dead letters ------------------------------------------------------------------------------------


def test_dead_letter_carries_original_bytes_and_its_position(
    domain: DomainConfig, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain, clock=lambda: START)
    raw = b'{"specversion": "1.0", "id": "x"}'
    result = shard.apply(shard_batch([(4, 99, b"c-7", raw)], topic="campaign.events"))
    [(key, value, headers)] = dead_letters(result)
    assert result.topics == [TOPICS.dlq]
    assert key == b"c-7"
    assert value == raw
    assert headers["clickcash_source_topic"] == b"campaign.events"
    assert headers["clickcash_source_partition"] == b"4"
    assert headers["clickcash_source_offset"] == b"99"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"clickcash.dead_letter"
    assert headers["ce_source"] == OUTPUT_SOURCE.encode()
    assert headers["ce_partitionkey"] == b"c-7"
    assert headers["ce_id"] == output_id("campaign.events:4:99", "dead-letter").encode()
    assert datetime.fromisoformat(headers["ce_time"].decode()) == START
    reason = reason_of(headers)
    assert reason.code == DeadLetterCode.INVALID_FIELD
    assert (reason.source_topic, reason.partition, reason.offset) == ("campaign.events", 4, 99)
    assert reason.redacted is False
    assert result.counts == {"in:invalid": 1, "dead_letter.invalid_field": 1}


def test_dead_letter_of_a_record_without_key_or_value(
    domain: DomainConfig, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    result = shard.apply(shard_batch([(0, 0, None, None)]))
    [(key, value, headers)] = dead_letters(result)
    assert key is None
    assert value == b""
    assert "ce_partitionkey" not in headers
    assert reason_of(headers).code == DeadLetterCode.MALFORMED_JSON


def test_dead_letter_masks_card_numbers_in_the_original_bytes(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    data = event_data("order.placed")
    data["payment_method"]["token"] = "4111 1111 1111 1111"
    data["items"][0]["quantity"] = 0  # invalid, so the record is dead-lettered
    raw = cloud_event("order.placed", data)
    [(_, value, headers)] = dead_letters(shard.apply(shard_batch([(0, 0, b"c-1", raw)])))
    assert value == raw.replace(b"4111 1111 1111 1111", b"**** **** **** ****")
    assert not looks_like_card_number(value.decode())
    reason = reason_of(headers)
    assert reason.redacted is True
    assert (reason.code, reason.field) == (DeadLetterCode.CARD_DATA, "value")


CARD_IN_DEAD_LETTER = {
    "unknown_type": lambda ev, data: ev(VISA_TEST_PAN, data("order.placed")),
    "bad_timezone": lambda ev, data: ev(
        "customer.preferences_updated", data("customer.preferences_updated", timezone=VISA_TEST_PAN)
    ),
    "extra_data_key": lambda ev, data: ev("order.placed", {**data("order.placed"), VISA_TEST_PAN: "x"}),
    "invalid_token_order": lambda ev, data: ev(
        "order.placed",
        data(
            "order.placed",
            total_cents=-1,
            payment_method={"type": "card", "network": "visa", "token": VISA_TEST_PAN},
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(CARD_IN_DEAD_LETTER))
def test_no_part_of_a_dead_letter_record_carries_a_card_number(
    case: str,
    domain: DomainConfig,
    cloud_event: EventFactory,
    event_data: DataFactory,
    shard_batch: BatchFactory,
) -> None:
    shard, _ = make_shard(domain)
    raw = CARD_IN_DEAD_LETTER[case](cloud_event, event_data)
    result = shard.apply(shard_batch([(0, 0, b"c-1", raw)]))
    [(_, value, headers)] = dead_letters(result)
    assert VISA_TEST_PAN.encode() not in value
    assert reason_of(headers).redacted is True
    for name, header in headers.items():
        assert VISA_TEST_PAN.encode() not in header, f"DLQ header {name} carries the card number: {header!r}"
        assert not looks_like_card_number(header.decode()), (
            f"DLQ header {name} holds a card number: {header!r}"
        )


# --- optimistic commit: conflicts are retried ---------------------------------------------------------


def _mixed_records(rec: Rec) -> list[tuple[int, int, bytes, bytes]]:
    return [
        rec("order.placed", order_id="o-1"),
        rec("payment.declined", order_id="o-1"),
        rec("order.placed", "c-2", order_id="o-2"),
        rec("payment_method.updated"),
    ]


def test_a_commit_conflict_is_retried_and_gives_correct_outputs(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory, shard_batch: BatchFactory
) -> None:
    records = _mixed_records(Rec(cloud_event, event_data))
    reference_shard, reference_store = make_shard(domain, clock=lambda: START)
    expected = reference_shard.apply(shard_batch(records))

    store = CountingStore(InMemoryStateStore(clock=lambda: 1_000.0), fail_commits=1)
    shard, _ = make_shard(domain, store=store, clock=lambda: START)
    result = shard.apply(shard_batch(records))
    assert (store.loads, store.commits) == (2, 2)
    assert outputs(result) == outputs(expected)
    assert result.counts == expected.counts
    assert store.inner.customers == reference_store.customers
    assert shard.stored_responses() == store.stored_responses() == len(records)
    # and the committed batch replays as usual
    assert outputs(shard.apply(shard_batch(records))) == outputs(expected)


def test_a_real_concurrent_write_is_detected_and_the_batch_is_re_evaluated(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    inner = InMemoryStateStore(clock=lambda: 1_000.0)

    def concurrent_writer() -> None:
        # another writer changes c-1's preferences between our load and our commit
        loaded = inner.load([], ["c-1"])
        version, _ = loaded.customers["c-1"]
        state = CustomerState(channels=["sms"])
        assert inner.commit(BatchWrite(expected_versions={"c-1": version}, customers={"c-1": state.encode()}))

    store = CountingStore(inner, before_commit=concurrent_writer)
    shard, _ = make_shard(domain, store=store)
    result = shard.apply(shard_batch([rec("order.placed"), rec("payment.declined", decline_code="51")]))
    assert store.loads == 2
    scheduled = envelopes(result)[-1]
    assert scheduled["type"] == "dunning.scheduled"
    assert scheduled["data"]["steps"][0]["channel"] == "sms", "the retry must use the state written meanwhile"
    version, doc = inner.customers["c-1"]
    assert version == 2
    assert CustomerState.decode(doc).channels == ["sms"]
    assert "o-1" in CustomerState.decode(doc).open_dunning


def test_endless_conflicts_raise_after_the_bounded_retries(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    store = CountingStore(InMemoryStateStore(), fail_commits=10**6)
    shard, _ = make_shard(domain, store=store)
    with pytest.raises(StateConflictError, match="shard 0"):
        shard.apply(shard_batch([rec("order.placed")]))
    assert store.commits == MAX_COMMIT_ATTEMPTS
    assert store.inner.customers == {}
    assert shard.stored_responses() == 0


# --- dunning across events ----------------------------------------------------------------------------


def test_authorization_of_an_order_in_dunning_gives_dunning_recovered(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, store = make_shard(domain)
    shard.apply(shard_batch([rec("order.placed"), rec("payment.declined", decline_code="51")]))
    assert "o-1" in CustomerState.decode(store.customers["c-1"][1]).open_dunning
    result = shard.apply(
        shard_batch([rec("payment.authorized", event_id="evt-auth", attempt=2, psp="braintree")])
    )
    [recovered] = envelopes(result)
    assert recovered["type"] == "dunning.recovered"
    assert recovered["id"] == output_id("evt-auth", "dunning")
    assert recovered["causationid"] == "evt-auth"
    assert recovered["data"] == {"order_id": "o-1", "customer_id": "c-1", "reason": "payment_authorized"}
    assert CustomerState.decode(store.customers["c-1"][1]).open_dunning == {}
    # the plan is closed: a second authorization recovers nothing
    assert len(shard.apply(shard_batch([rec("payment.authorized", attempt=3)]))) == 0


def test_authorization_without_dunning_gives_no_output(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    result = shard.apply(shard_batch([rec("order.placed"), rec("payment.authorized")]))
    assert types_of(result) == ["order.accepted", "payment.route_decided"]


def test_new_payment_method_retries_a_soft_plan_avoiding_the_declining_psp(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    first = shard.apply(shard_batch([rec("order.placed")]))
    declining_psp = envelopes(first)[1]["data"]["psp"]
    assert declining_psp == "adyen"
    # do-not-honor: often the acquirer's risk rules, so the retry goes elsewhere
    shard.apply(shard_batch([rec("payment.declined", decline_code="05", psp=declining_psp)]))
    result = shard.apply(shard_batch([rec("payment_method.updated", event_id="evt-pm")]))
    [route] = envelopes(result)
    assert route["type"] == "payment.route_decided"
    assert route["id"] == output_id("evt-pm", "route:o-1")
    assert route["causationid"] == "evt-pm"
    data = route["data"]
    assert data["order_id"] == "o-1"
    assert data["attempt"] == 2
    assert data["idempotency_key"] == "o-1:2"
    assert data["psp"] != declining_psp
    assert data["psp"] == "stripe"
    assert data["fallbacks"][-1] == declining_psp
    assert data["amount_cents"] == 10000
    codes = [r["code"] for r in data["reasons"]]
    assert codes[0] == "payment_method_updated"
    assert "avoided_after_decline" in codes


def test_hard_decline_schedules_only_a_reminder(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    result = shard.apply(shard_batch([rec("order.placed"), rec("payment.declined", decline_code="54")]))
    assert types_of(result) == ["order.accepted", "payment.route_decided", "dunning.scheduled"]
    scheduled = envelopes(result)[-1]["data"]
    assert scheduled["decline_class"] == "hard"
    assert [s["kind"] for s in scheduled["steps"]] == ["reminder"]


def test_too_many_open_plans_exhaust_the_oldest(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    n = CustomerState.MAX_OPEN_DUNNING + 1
    records = []
    for i in range(n):
        records.append(rec("order.placed", order_id=f"o-{i}"))
        records.append(rec("payment.declined", order_id=f"o-{i}", decline_code="51"))
    result = shard.apply(shard_batch(records))
    exhausted = [e for e in envelopes(result) if e["type"] == "dunning.exhausted"]
    assert [e["data"]["order_id"] for e in exhausted] == ["o-0"]
    assert exhausted[0]["data"]["reason"] == "too_many_open_plans"


# --- dunning timers -----------------------------------------------------------------------------------


def _only_timer(store: InMemoryStateStore) -> DueTimer:
    timers = [(p, m, d) for p, members in store.timers.items() for m, d in members.items()]
    assert len(timers) == 1, f"expected one timer per open plan, got {timers}"
    return DueTimer(*timers[0])


def _fire(timer: DueTimer, offset: int) -> tuple[int, int, bytes, bytes]:
    key, value = timer.command()
    return (timer.partition, offset, key, value)


def test_a_dunning_plan_arms_one_timer_and_payment_cancels_it(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory, shard_batch: BatchFactory
) -> None:
    rec = Rec(cloud_event, event_data, partition=2)
    shard, store = make_shard(domain, clock=lambda: START)
    placed_and_declined = shard_batch(
        [rec("order.placed"), rec("payment.declined", event_id="evt-decline", decline_code="51")]
    )
    shard.apply(placed_and_declined)
    timer = _only_timer(store)
    assert timer.partition == 2, "a timer lives with its customer's input partition"
    declined_at_ms = placed_and_declined.timestamps_ms[1]
    assert timer.due_ms == declined_at_ms, "the first step (the reminder) is due at once"
    customer, order, plan_id, step = timer.member.split("\x1f")
    assert (customer, order, plan_id, step) == ("c-1", "o-1", output_id("evt-decline", "dunning"), "0")
    shard.apply(shard_batch([rec("payment.authorized")]))
    assert all(not members for members in store.timers.values())


def test_a_timer_armed_and_cancelled_in_one_batch_leaves_no_timer(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory, shard_batch: BatchFactory
) -> None:
    """A commit runs the timer removes before the adds: a plan opened and closed (or superseded) in one
    batch must not leave its timer behind, where no open plan names it (an erasure would miss it)."""
    rec = Rec(cloud_event, event_data, partition=2)
    shard, store = make_shard(domain, clock=lambda: START)
    shard.apply(
        shard_batch(
            [
                rec("order.placed"),
                rec("payment.declined", event_id="evt-decline", decline_code="51"),
                rec("payment.authorized"),
            ]
        )
    )
    assert all(not members for members in store.timers.values())

    # declined twice in one batch: the second plan replaces the first, and only its timer is left
    shard.apply(
        shard_batch(
            [
                rec("order.placed", order_id="o-2"),
                rec("payment.declined", event_id="evt-d1", order_id="o-2", decline_code="51"),
                rec("payment.declined", event_id="evt-d2", order_id="o-2", decline_code="51"),
            ]
        )
    )
    timer = _only_timer(store)
    assert timer.member.split("\x1f")[1:3] == ["o-2", output_id("evt-d2", "dunning")]


def test_due_steps_fire_once_in_order_and_retry_avoiding_the_declining_psp(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, store = make_shard(domain, clock=lambda: START)
    placed_and_declined = shard_batch(
        [rec("order.placed"), rec("payment.declined", decline_code="51", psp="adyen")]
    )
    shard.apply(placed_and_declined)
    declined_at = datetime.fromtimestamp(placed_and_declined.timestamps_ms[1] / 1000, UTC)
    reminder_timer = _only_timer(store)

    [step_due] = envelopes(shard.apply(shard_batch([_fire(reminder_timer, 10)])))
    assert step_due["type"] == "dunning.step_due"
    assert (step_due["data"]["kind"], step_due["data"]["step_index"], step_due["data"]["channel"]) == (
        "reminder",
        0,
        "email",
    )
    retry_timer = _only_timer(store)
    assert retry_timer.member.endswith("\x1f1")
    assert retry_timer.due_ms == int((declined_at + timedelta(hours=24)).timestamp() * 1000)

    fired = envelopes(shard.apply(shard_batch([_fire(retry_timer, 11)])))
    assert [e["type"] for e in fired] == ["payment.route_decided", "dunning.step_due"]
    route = fired[0]["data"]
    assert route["attempt"] == 2
    assert route["psp"] != "adyen"
    assert fired[1]["data"]["kind"] == "retry"

    # the router may fire a timer again (it died before committing): a re-fire is a duplicate
    refire = shard.apply(shard_batch([_fire(retry_timer, 12)]))
    assert len(refire) == 0
    assert refire.counts == {"in:dunning.timer_fired": 1, "duplicate": 1}


def test_a_timer_of_a_closed_plan_fires_nothing_and_is_removed(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, store = make_shard(domain, clock=lambda: START)
    shard.apply(shard_batch([rec("order.placed"), rec("payment.declined", decline_code="51")]))
    timer = _only_timer(store)
    shard.apply(shard_batch([rec("payment.authorized")]))
    # the router read the timer just before the payment cancelled it
    result = shard.apply(shard_batch([_fire(timer, 50)]))
    assert len(result) == 0
    assert result.counts.get("timer_stale") == 1
    assert all(not members for members in store.timers.values())


def test_events_are_decided_at_their_record_timestamps_whatever_the_shards_clock(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    """A replay, another shard or the verifier's reference run later: same input, same outputs, byte for
    byte, because every time-dependent rule reads the record's timestamp, not the clock."""
    records = [
        rec("order.placed"),
        rec("payment.declined", decline_code="51", psp="adyen"),
        rec("payment_method.updated"),
    ]
    early, _ = make_shard(domain, clock=lambda: START)
    late, _ = make_shard(domain, clock=lambda: START + timedelta(days=3, hours=7))
    first = early.apply(shard_batch(records))
    again = late.apply(shard_batch(records))
    assert first.values == again.values
    stamps = shard_batch(records).timestamps_ms
    times = [datetime.fromisoformat(e["time"]) for e in envelopes(first)]
    assert times[0] == datetime.fromtimestamp(stamps[0] / 1000, UTC), "an output's time is its input's"


def test_records_without_a_timestamp_are_decided_at_the_shards_clock(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    batch = shard_batch([rec("order.placed")])
    batch.timestamps_ms = [0]
    shard, _ = make_shard(domain, clock=lambda: START + timedelta(hours=5))
    [accepted, _route] = envelopes(shard.apply(batch))
    assert datetime.fromisoformat(accepted["time"]) == START + timedelta(hours=5)


# --- timer commands are authentic ------------------------------------------------------------------


def _state_of(store: InMemoryStateStore) -> Any:
    """Everything the store holds, to compare before and after (deep copy: the store mutates in place)."""
    return copy.deepcopy((store.customers, store.timers, store.counters))


def _forge(timer: DueTimer, offset: int, **change: Any) -> tuple[int, int, bytes, bytes]:
    """The router's command for ``timer`` with ``change`` applied to its data (MAC kept or replaced)."""
    key, value = timer.command()
    body = orjson.loads(value)
    body["data"].update(change)
    body["data"] = {k: v for k, v in body["data"].items() if v is not None}
    return (timer.partition, offset, key, orjson.dumps(body))


FORGERIES: dict[str, Callable[[DueTimer], dict[str, Any]]] = {
    "no_mac": lambda t: {"mac": None},
    "random_mac": lambda t: {"mac": "0" * 64},
    "mac_of_another_key": lambda t: {
        "mac": DueTimer(t.partition, t.member, t.due_ms, TimerMac([b"an attacker's own key 0123"]))
        .command()[1]
        .split(b'"mac":"')[1][:64]
        .decode()
    },
    "valid_mac_moved_to_an_earlier_due_time": lambda t: {"due_ms": t.due_ms - 3_600_000},
    "valid_mac_moved_to_the_next_step": lambda t: {"step_index": 1},
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_timer_command_is_dead_lettered_and_changes_nothing(
    forgery: str, domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    shard, store = make_shard(domain, clock=lambda: START)
    shard.apply(shard_batch([rec("order.placed"), rec("payment.declined", decline_code="51")]))
    timer = _only_timer(store)
    before = _state_of(store)
    result = shard.apply(shard_batch([_forge(timer, 20, **FORGERIES[forgery](timer))]))
    [(key, _, headers)] = dead_letters(result)
    assert len(result) == 1 and key == b"c-1"
    reason = reason_of(headers)
    assert (reason.code, reason.field) == (DeadLetterCode.FORGED_COMMAND, "data.mac")
    assert result.counts.get("processed") is None
    assert _state_of(store) == before, "customer state, timers and counters must not change"
    # the genuine command still fires afterwards: the forgery claimed nothing
    [step_due] = envelopes(shard.apply(shard_batch([_fire(timer, 21)])))
    assert (step_due["type"], step_due["data"]["step_index"]) == ("dunning.step_due", 0)


def test_timer_commands_verify_under_any_configured_key_and_sign_with_the_first(
    domain: DomainConfig, rec: Rec, shard_batch: BatchFactory
) -> None:
    old, new = b"the old timer key 0123456789", b"the new timer key 0123456789"
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    rotated = Shard(0, TOPICS, domain, store, clock=lambda: START, timer_mac=TimerMac([new, old]))
    rotated.apply(shard_batch([rec("order.placed"), rec("payment.declined", decline_code="51")]))
    t = _only_timer(store)
    signed_with_old = DueTimer(t.partition, t.member, t.due_ms, TimerMac([old]))
    [step_due] = envelopes(rotated.apply(shard_batch([_fire(signed_with_old, 20)])))
    assert step_due["type"] == "dunning.step_due"
    # a shard that no longer lists the old key refuses what it signed
    t = _only_timer(store)
    only_new = Shard(0, TOPICS, domain, store, clock=lambda: START, timer_mac=TimerMac([new]))
    result = only_new.apply(
        shard_batch([_fire(DueTimer(t.partition, t.member, t.due_ms, TimerMac([old])), 21)])
    )
    assert [reason_of(h).code for _, _, h in dead_letters(result)] == [DeadLetterCode.FORGED_COMMAND]


# --- a dead letter always fits ----------------------------------------------------------------------


def _record_bytes(key: bytes | None, value: bytes, headers: dict[str, bytes]) -> int:
    return len(key or b"") + len(value) + sum(len(k) + len(v) for k, v in headers.items())


@pytest.mark.parametrize("limit", [65_536, 1_048_576])
def test_a_dead_letter_too_big_for_a_record_carries_a_prefix_its_length_and_digest(
    limit: int, domain: DomainConfig, shard_batch: BatchFactory
) -> None:
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    shard = Shard(0, TOPICS, domain, store, clock=TickingClock(), max_message_bytes=limit)
    original = b'{"pad": "' + b"x" * (limit + 10_000) + b'"}'
    small = b"{not json at all"
    result = shard.apply(shard_batch([(0, 0, b"c-1", original), (0, 1, b"c-1", small)]))
    [(key, value, headers), (_, small_value, small_headers)] = dead_letters(result)
    assert _record_bytes(key, value, headers) <= limit - RECORD_FRAMING_RESERVE_BYTES
    reason = reason_of(headers)
    assert reason.code == DeadLetterCode.OVERSIZED
    assert reason.truncated is not None
    assert reason.truncated.original_bytes == len(original)
    assert reason.truncated.original_sha256 == hashlib.sha256(original).hexdigest()
    assert reason.truncated.prefix_bytes == len(value) > limit // 2
    assert original.startswith(value)
    # a dead letter that fits is carried whole, with no truncation note
    assert small_value == small and reason_of(small_headers).truncated is None


def test_a_card_number_cut_by_the_prefix_is_masked_before_the_cut(
    domain: DomainConfig, shard_batch: BatchFactory
) -> None:
    limit = 65_536
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    shard = Shard(0, TOPICS, domain, store, clock=TickingClock(), max_message_bytes=limit)
    pad = b"x" * (limit - RECORD_FRAMING_RESERVE_BYTES - 700)
    original = b'{"a": "' + pad + b" 4111 1111 1111 1111 " * 50 + b'"}'
    [(_, value, headers)] = dead_letters(shard.apply(shard_batch([(0, 0, b"c-1", original)])))
    reason = reason_of(headers)
    assert reason.truncated is not None and reason.redacted
    assert b"4111" not in value and b"1111" not in value


def test_a_huge_key_and_a_card_number_key_do_not_leave_in_the_dead_letter(
    domain: DomainConfig, shard_batch: BatchFactory
) -> None:
    shard, _ = make_shard(domain)
    huge = b"k" * 200_000
    result = shard.apply(shard_batch([(0, 0, huge, b"{}"), (0, 1, VISA_TEST_PAN.encode(), b"{}")]))
    [(k1, _, h1), (k2, _, h2)] = dead_letters(result)
    assert k1 == b"sha256:" + hashlib.sha256(huge).hexdigest().encode() == h1["ce_partitionkey"]
    assert reason_of(h1).key_sha256 == hashlib.sha256(huge).hexdigest()
    assert k2 == b"*" * 16 == h2["ce_partitionkey"]
    assert (reason_of(h2).code, reason_of(h2).field, reason_of(h2).redacted) == (
        DeadLetterCode.CARD_DATA,
        "key",
        True,
    )


def test_the_digest_of_a_truncated_dead_letter_holding_card_data_is_of_the_masked_original(
    domain: DomainConfig, shard_batch: BatchFactory
) -> None:
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    shard = Shard(0, TOPICS, domain, store, clock=TickingClock(), max_message_bytes=65_536)
    original = b'{"pan": "4111 1111 1111 1111", "pad": "' + b"x" * 70_000 + b'"}'
    [(_, value, headers)] = dead_letters(shard.apply(shard_batch([(0, 0, b"c-1", original)])))
    reason = reason_of(headers)
    assert reason.redacted and reason.truncated is not None
    masked = original.replace(b"4111 1111 1111 1111", b"**** **** **** ****")
    assert reason.truncated.original_sha256 == hashlib.sha256(masked).hexdigest()
    assert masked.startswith(value)
