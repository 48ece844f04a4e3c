"""Customer erasure (``clickcash forget``) in the shard, with the in-memory store: what goes, what stays,
what is written, and that a forged command changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from clickcash.actors.contract import OutputTopics, ShardBatch, ShardResult
from clickcash.actors.erasure import authentic_erasure, erasure_command, timer_removals
from clickcash.actors.shard import Shard
from clickcash.actors.state.base import CustomerState, InMemoryStateStore
from clickcash.config.domain import DomainConfig
from clickcash.erasure_mac import LOCAL_STACK_ERASURE_MAC, ErasureMac
from clickcash.events import OUTPUT_TYPES, DeadLetter, OutputEnvelope, OutputRole, output_id

TOPICS = OutputTopics(
    orders="clickcash.orders", payments="clickcash.payments", dunning="clickcash.dunning", dlq="clickcash.dlq"
)
KEY_A = b"erasure-key-a-0123456789"
KEY_B = b"erasure-key-b-0123456789"

EventFactory = Callable[..., bytes]
DataFactory = Callable[..., dict[str, Any]]


def _batch(
    records: list[tuple[int, bytes, bytes]], partition: int = 0, committed: dict[int, int] | None = None
) -> ShardBatch:
    batch = ShardBatch("clickcash.events", committed=dict(committed or {}))
    for offset, key, value in records:
        batch.partitions.append(partition)
        batch.offsets.append(offset)
        batch.keys.append(key)
        batch.values.append(value)
        batch.timestamps_ms.append(1_772_443_800_000 + offset)
    return batch


def _shard(
    domain: DomainConfig, mac: ErasureMac = LOCAL_STACK_ERASURE_MAC
) -> tuple[Shard, InMemoryStateStore]:
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    return Shard(0, TOPICS, domain, store, erasure_mac=mac), store


def _types(result: ShardResult) -> list[str]:
    return [
        str(orjson.loads(v)["type"]) if h is None or t != TOPICS.dlq else "dead-letter"
        for t, v, h in zip(result.topics, result.values, result.headers, strict=True)
    ]


def _history(cloud_event: EventFactory, event_data: DataFactory, customer: str = "c-1") -> list[bytes]:
    """An order and its decline: the customer has state and an open dunning plan with a timer."""
    return [
        cloud_event("order.placed", event_data("order.placed", customer), event_id=f"{customer}-o"),
        cloud_event("payment.declined", event_data("payment.declined", customer), event_id=f"{customer}-d"),
    ]


def _forget(
    customer: str = "c-1", event_id: str = "forget-1", mac: ErasureMac = LOCAL_STACK_ERASURE_MAC
) -> bytes:
    return erasure_command(customer, mac, event_id=event_id)[2]


def test_the_mac_verifies_with_any_configured_key_and_binds_id_and_customer() -> None:
    mac = ErasureMac([KEY_A]).sign(event_id="e-1", customer_id="c-1")
    assert ErasureMac([KEY_B, KEY_A]).verify(mac, event_id="e-1", customer_id="c-1")
    assert not ErasureMac([KEY_B]).verify(mac, event_id="e-1", customer_id="c-1")
    assert not ErasureMac([KEY_A]).verify(mac, event_id="e-1", customer_id="c-2")
    assert not ErasureMac([KEY_A]).verify(mac, event_id="e-2", customer_id="c-1")
    assert not ErasureMac([KEY_A]).verify(None, event_id="e-1", customer_id="c-1")


def test_an_erasure_deletes_state_and_timers_and_writes_one_customer_erased(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    shard, store = _shard(domain)
    history = _history(cloud_event, event_data) + _history(cloud_event, event_data, "c-2")
    shard.apply(_batch([(i, b"c-1" if i < 2 else b"c-2", v) for i, v in enumerate(history)]))
    assert {"c-1", "c-2"} <= set(store.customers)
    timers_of = lambda c: [m for ms in store.timers.values() for m in ms if m.startswith(c + "\x1f")]  # noqa: E731
    assert timers_of("c-1") and timers_of("c-2")

    # the earlier records' offsets are committed: their stored responses go with this batch
    result = shard.apply(_batch([(4, b"c-1", _forget())], committed={0: 4}))

    assert "c-1" not in store.customers and "c-2" in store.customers
    assert timers_of("c-1") == [] and timers_of("c-2")
    assert _types(result) == ["customer.erased"]
    assert result.topics == [TOPICS.orders] and result.keys == [b"c-1"]
    env = OutputEnvelope.model_validate_json(result.values[0])
    OUTPUT_TYPES[env.type].model_validate(env.data)
    assert env.id == output_id("forget-1", OutputRole.ERASURE)
    assert env.causationid == "forget-1" and env.data == {"customer_id": "c-1"}
    # no stored response holds the customer: a replay of the command's offset recomputes the output
    assert b"c-1" not in b"".join(r for _, r in store._responses.values())


def test_a_replay_of_the_same_offset_writes_the_same_output_and_a_duplicate_nothing(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    shard, _ = _shard(domain)
    shard.apply(_batch([(i, b"c-1", v) for i, v in enumerate(_history(cloud_event, event_data))]))
    first = shard.apply(_batch([(2, b"c-1", _forget())]))
    replay = shard.apply(_batch([(2, b"c-1", _forget())]))
    assert replay.values == first.values and replay.counts.get("replayed") == 1
    duplicate = shard.apply(_batch([(3, b"c-1", _forget())]))
    assert len(duplicate) == 0 and duplicate.counts.get("duplicate") == 1


def test_a_second_erasure_is_a_no_op_but_for_its_own_output(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    shard, store = _shard(domain)
    shard.apply(_batch([(i, b"c-1", v) for i, v in enumerate(_history(cloud_event, event_data))]))
    shard.apply(_batch([(2, b"c-1", _forget())]))
    before = (dict(store.customers), {p: dict(m) for p, m in store.timers.items()})
    again = shard.apply(_batch([(3, b"c-1", _forget(event_id="forget-2"))]))
    assert _types(again) == ["customer.erased"]
    assert (dict(store.customers), {p: dict(m) for p, m in store.timers.items()}) == before


@pytest.mark.parametrize(
    "mac", [None, "0" * 64, ErasureMac([KEY_B]).sign(event_id="forget-1", customer_id="c-1")]
)
def test_a_forged_erasure_is_dead_lettered_and_changes_nothing(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory, mac: str | None
) -> None:
    shard, store = _shard(domain)
    shard.apply(_batch([(i, b"c-1", v) for i, v in enumerate(_history(cloud_event, event_data))]))
    before = (dict(store.customers), {p: dict(m) for p, m in store.timers.items()})
    data: dict[str, Any] = {"customer_id": "c-1"} if mac is None else {"customer_id": "c-1", "mac": mac}
    result = shard.apply(
        _batch([(2, b"c-1", cloud_event("customer.erasure_requested", data, event_id="forget-1"))])
    )
    assert result.topics == [TOPICS.dlq]
    reason = DeadLetter.model_validate_json(dict(result.headers[0] or [])["clickcash_reason"])
    assert reason.code == "forged_command" and reason.field == "data.mac"
    assert (dict(store.customers), {p: dict(m) for p, m in store.timers.items()}) == before


def test_a_valid_mac_moved_to_another_customer_does_not_erase_it(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    shard, store = _shard(domain)
    shard.apply(_batch([(i, b"c-2", v) for i, v in enumerate(_history(cloud_event, event_data, "c-2"))]))
    mac = LOCAL_STACK_ERASURE_MAC.sign(event_id="forget-1", customer_id="c-1")
    value = cloud_event("customer.erasure_requested", {"customer_id": "c-2", "mac": mac}, event_id="forget-1")
    result = shard.apply(_batch([(2, b"c-2", value)]))
    assert result.topics == [TOPICS.dlq] and "c-2" in store.customers


def test_events_after_the_erasure_start_a_fresh_state(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    shard, store = _shard(domain)
    later = cloud_event("order.placed", event_data("order.placed", order_id="o-2"), event_id="after")
    records = [*_history(cloud_event, event_data), _forget(), later]
    result = shard.apply(_batch([(i, b"c-1", v) for i, v in enumerate(records)]))
    assert _types(result)[-3:] == ["customer.erased", "order.accepted", "payment.route_decided"]
    state = CustomerState.decode(store.customers["c-1"][1])
    assert list(state.orders) == ["o-2"] and state.open_dunning == {}
    assert not [m for ms in store.timers.values() for m in ms]


def test_a_timer_applied_after_the_erasure_does_not_recreate_the_customer(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    shard, store = _shard(domain)
    shard.apply(_batch([(i, b"c-1", v) for i, v in enumerate(_history(cloud_event, event_data))]))
    ((partition, member),) = [(p, m) for p, ms in store.timers.items() for m in ms]
    due = store.timers[partition][member]
    from clickcash.router._timers import DueTimer

    _, command = DueTimer(partition, member, due).command()
    shard.apply(_batch([(2, b"c-1", _forget())]))
    result = shard.apply(_batch([(3, b"c-1", command)]))
    assert len(result) == 0 and result.counts.get("timer_stale") == 1
    assert "c-1" not in store.customers


def test_the_router_recognises_only_authentic_erasure_commands(cloud_event: EventFactory) -> None:
    assert authentic_erasure(b"c-1", _forget(), LOCAL_STACK_ERASURE_MAC)
    assert not authentic_erasure(b"c-2", _forget(), LOCAL_STACK_ERASURE_MAC)
    assert not authentic_erasure(b"c-1", _forget(mac=ErasureMac([KEY_B])), LOCAL_STACK_ERASURE_MAC)
    assert not authentic_erasure(b"c-1", b"not json customer.erasure_requested", LOCAL_STACK_ERASURE_MAC)
    unsigned = cloud_event("customer.erasure_requested", {"customer_id": "c-1"})
    assert not authentic_erasure(b"c-1", unsigned, LOCAL_STACK_ERASURE_MAC)


def test_timer_removals_name_every_open_plan_timer(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory
) -> None:
    shard, store = _shard(domain)
    shard.apply(
        _batch([(i, b"c-1", v) for i, v in enumerate(_history(cloud_event, event_data))], partition=3)
    )
    state = CustomerState.decode(store.customers["c-1"][1])
    assert timer_removals(state, "c-1") == [(p, m) for p, ms in store.timers.items() for m in ms]


def test_run_against_a_ray_cluster_refuses_the_published_erasure_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from clickcash.cli import main

    monkeypatch.setenv("CLICKCASH_SECURITY__TIMER_COMMAND_KEYS", orjson.dumps([KEY_A.decode()]).decode())
    assert main(["run", "--address", "auto"]) == 2
    err = capsys.readouterr().err
    assert "CLICKCASH_SECURITY__ERASURE_COMMAND_KEYS" in err and "local-stack key" in err


def test_forget_names_the_bad_customer_id() -> None:
    from clickcash.cluster.ops.forget import checked_customers
    from clickcash.errors import ConfigError

    assert checked_customers(["c-1", "c-2", "c-1"]) == ["c-1", "c-2"]
    with pytest.raises(ConfigError, match="customer"):
        checked_customers(["bad\nid"])
    with pytest.raises(ConfigError, match="card number"):
        checked_customers(["4111111111111111"])


def test_a_parked_customer_is_split_at_its_last_authentic_erasure(
    cloud_event: EventFactory, event_data: DataFactory
) -> None:
    from clickcash.router.erasure import erasing_customers, split_at_erasure

    held: list[tuple[int, int, bytes | None, bytes | None, int]] = [
        (0, 10, b"c-1", _history(cloud_event, event_data)[0], 1),
        (0, 11, b"c-1", _forget(event_id="f-1"), 2),
        (0, 12, b"c-1", _forget(event_id="f-forged", mac=ErasureMac([KEY_B])), 3),
        (0, 13, b"c-1", _forget(event_id="f-2"), 4),
        (0, 14, b"c-1", _history(cloud_event, event_data)[1], 5),
    ]
    assert erasing_customers(held, LOCAL_STACK_ERASURE_MAC) == {b"c-1"}
    assert erasing_customers([held[0], held[2]], LOCAL_STACK_ERASURE_MAC) == set()
    split = split_at_erasure(held, LOCAL_STACK_ERASURE_MAC)
    assert split == (held[:3], held[3:])
    assert split_at_erasure([held[0], held[2]], LOCAL_STACK_ERASURE_MAC) is None
