"""``clickcash forget`` on the real stack: two customers erased (one of them parked), nothing of them left
in Redis, one ``customer.erased`` each, a forged erasure dead-lettered and harmless, and the verifier agrees.

Real Kafka, Redis and Ray. The parked customer is parked by the test-only engine fault
``pipeline.fault_inject_customer_ids`` (its records are held, as an engine bug would leave them); an
erasure command runs no engine, so it goes through while the fault is still there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import orjson
import redis

from clickcash.actors import keyspace
from clickcash.actors.erasure import erasure_command
from clickcash.cluster.ops.forget import forget
from clickcash.cluster.verify import verify
from clickcash.erasure_mac import LOCAL_STACK_ERASURE_MAC
from clickcash.events import DeadLetter
from tests.integration._fixtures import domain_without_breakers, faulty_customer, parking_store, workload
from tests.integration._harness import SettingsFactory, produce, read_outputs, running_app, wait_for_drain

ERASURE_KEY = "integration-test-erasure-key-0001"


def _say(msg: str) -> None:
    print(f"[forget {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _traces(r: redis.Redis, prefix: str, customers: list[str]) -> list[str]:
    """Every place under the prefix that names one of ``customers``: a key, or a string value, hash field
    or value, set, sorted-set or list member holding the id."""
    ids = [c.encode() for c in customers]
    found: list[str] = []

    def check(where: str, blob: bytes) -> None:
        found.extend(f"{where}: {c.decode()}" for c in ids if c in blob)

    for key in cast(list[bytes], list(r.scan_iter(match=keyspace.all_keys(prefix), count=1000))):
        name = key.decode()
        check(f"key {name}", key)
        kind = cast(bytes, r.type(key)).decode()
        if kind == "string":
            check(f"value of {name}", cast(bytes | None, r.get(key)) or b"")
        elif kind == "hash":
            for f, v in cast(dict[bytes, bytes], r.hgetall(key)).items():
                check(f"hash {name} field", f)
                check(f"hash {name} value", v)
        elif kind == "set":
            for m in cast(set[bytes], r.smembers(key)):
                check(f"set {name} member", m)
        elif kind == "zset":
            for m in cast(list[bytes], r.zrange(key, 0, -1)):
                check(f"sorted set {name} member", m)
        elif kind == "list":
            for m in cast(list[bytes], r.lrange(key, 0, -1)):
                check(f"list {name} element", m)
        else:
            found.append(f"key {name} of unexpected type {kind}")
    return found


def _customers_with_timers(r: redis.Redis, prefix: str) -> set[str]:
    return {keyspace.parse_timer_member(m.decode())[0] for m in _members(r, prefix)}


def test_forget_erases_two_customers_one_parked_and_a_forged_forget_changes_nothing(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    records = workload(201, 3_000, 1_500)
    parked = faulty_customer(records)
    settings = make_settings(
        domain_file=domain_without_breakers(tmp_path),
        partitions=4,
        pipeline={
            "shards": 2,
            "round_max_attempts": 2,
            "round_retry_backoff_ms": 50,
            "round_retry_backoff_max_ms": 200,
            "timer_poll_interval_ms": 200,
            "fault_inject_customer_ids": parked,
        },
        kafka={"consume_batch_max": 500},
        security={"erasure_command_keys": [ERASURE_KEY]},
    )
    prefix = settings.redis.key_prefix
    produce(settings, records)
    r = redis.Redis.from_url(settings.redis.url.get_secret_value())
    store = parking_store(settings)
    try:
        with running_app(settings) as app:
            wait_for_drain(settings, app, timeout_s=300)
            assert list(store.load()) == [parked.encode()], "the faulty customer must be parked"
            held = store.records(parked.encode())
            assert held
            with_timers = _customers_with_timers(r, prefix) - {parked}
            plain = min(c for c in with_timers if r.exists(keyspace.customer(prefix, c)))
            bystander = min(c for c in with_timers if c != plain and r.exists(keyspace.customer(prefix, c)))
            assert _traces(r, prefix, [plain]), "the plain customer must have state and a timer"
            assert _traces(r, prefix, [parked]), "the parked customer must have held records"
            state_before = r.get(keyspace.customer(prefix, bystander))
            timers_before = {m for m in _members(r, prefix) if m.startswith(bystander.encode() + b"\x1f")}
            assert state_before and timers_before

            # a forgery: signed with the published local-stack key, not the configured one
            forged_id, key, forged = erasure_command(bystander, LOCAL_STACK_ERASURE_MAC)
            produce(settings, [(key, forged)])
            requested = dict(forget(settings, [plain, parked, plain]))
            assert set(requested) == {plain, parked}
            wait_for_drain(settings, app, timeout_s=120)
            deadline = time.monotonic() + 120
            while store.load() and time.monotonic() < deadline:
                app.supervise(0.2)
            assert store.load() == {}, "the parked customer's erasure was not served"
            wait_for_drain(settings, app, timeout_s=120)

        traces = _traces(r, prefix, [plain, parked])
        assert traces == [], "\n".join(traces[:20])
        # the forged command changed nothing
        assert r.get(keyspace.customer(prefix, bystander)) == state_before
        assert timers_before <= set(_members(r, prefix))
        # the held records of the parked customer are erased by position only
        assert {(p, o) for p, o, *_ in held} <= store.erased() and not store.dropped()
    finally:
        store.close()
        r.close()

    outputs = read_outputs(settings)
    erased = [o for o in outputs if o.type == "customer.erased"]
    assert sorted((o.key or b"").decode() for o in erased) == sorted([plain, parked])
    for o in erased:
        assert o.topic == settings.kafka.orders_topic and o.event is not None
        assert o.event["data"] == {"customer_id": (o.key or b"").decode()}
        assert o.causationid == requested[(o.key or b"").decode()]
    forged_letters = [
        o
        for o in outputs
        if o.topic == settings.kafka.dlq_topic and o.key == bystander.encode() and o.value == forged
    ]
    assert len(forged_letters) == 1
    reason = DeadLetter.model_validate(orjson.loads(forged_letters[0].headers["clickcash_reason"]))
    assert reason.code == "forged_command" and reason.field == "data.mac", reason
    assert not any(o.causationid == forged_id for o in outputs if o.type == "customer.erased")
    # no output of the parked customer but its erasure (its held records were erased unprocessed)
    assert [o.type for o in outputs if o.key == parked.encode()] == ["customer.erased"]

    report = verify(settings, log=_say)
    _say(report.render())
    assert report.ok, report.render()
    assert report.parked_customers == 0 and report.parked_records == 0
    assert report.erased_records == len(held)  # held before the erasure command, erased without output


def _members(r: redis.Redis, prefix: str) -> list[bytes]:
    """Every timer member of every partition."""
    out: list[bytes] = []
    for key in r.scan_iter(match=keyspace.timers(prefix, 0)[:-1] + "*"):
        out.extend(cast(list[bytes], r.zrange(key, 0, -1)))
    return out
