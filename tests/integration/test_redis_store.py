"""The Redis store on a real Redis: one key per event and one per batch, the in-memory store's semantics,
and a Redis written by the previous layout (one response key per event) still replays exactly once."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import cast

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from clickcash.actors import keyspace
from clickcash.actors.contract import OutputTopics, ShardBatch, ShardResult
from clickcash.actors.shard import Shard
from clickcash.actors.state.base import BatchWrite, IdempotencyRecord, InMemoryStateStore, StateStore
from clickcash.actors.state.layout import decode_record, unpack_responses
from clickcash.actors.state.redis import RedisStateStore
from clickcash.config.domain import load_domain_config
from clickcash.config.settings import load_settings
from clickcash.errors import ServiceError
from clickcash.loadtest.traffic.campaign import CampaignGenerator, loadtest_mix
from tests.integration._harness import redis_held_busy
from tests.integration.conftest import Services

RETENTION_S = 3_600
RESPONSE_TTL_S = 600


@pytest.fixture
def client(services: Services) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(services.redis_url)
    yield r
    r.close()


@pytest.fixture
def prefix() -> str:
    return f"t-store-{uuid.uuid4().hex[:10]}"


def make_store(client: redis.Redis, prefix: str) -> RedisStateStore:
    return RedisStateStore(client, prefix, retention_s=RETENTION_S, response_ttl_s=RESPONSE_TTL_S)


def key_classes(r: redis.Redis, prefix: str) -> Counter[str]:
    return Counter(
        str(keyspace.classify(prefix, k.decode())) for k in r.scan_iter(match=keyspace.all_keys(prefix))
    )


def claim(eid: str, offset: int, response: bytes) -> tuple[str, IdempotencyRecord, bytes]:
    return (eid, IdempotencyRecord("fp-" + eid, 0, offset), response)


def test_a_batch_writes_one_key_per_event_and_one_for_all_its_responses(
    client: redis.Redis, prefix: str
) -> None:
    store = make_store(client, prefix)
    write = BatchWrite(
        expected_versions={"c-1": 0},
        customers={"c-1": b'{"a":1}'},
        claims=[claim("e-1", 0, b'[["t","one"]]'), claim("e-2", 1, b""), claim("e-3", 2, b"[]")],
    )
    assert store.commit(write)
    assert key_classes(client, prefix) == {"idempotency": 3, "batch_responses": 1, "customer": 1}
    assert client.get(keyspace.customer(prefix, "c-1")) == b'1|{"a":1}'
    assert RETENTION_S - 60 < client.ttl(keyspace.idempotency(prefix, "e-1")) <= RETENTION_S
    [resps] = client.keys(keyspace.batch_responses(prefix, "*"))
    assert RESPONSE_TTL_S - 60 < client.ttl(resps) <= RESPONSE_TTL_S

    trips = store.round_trips
    loaded = store.load(["e-1", "e-2", "e-3", "e-4"], ["c-1"])
    assert store.round_trips == trips + 1
    assert loaded.records["e-1"] == IdempotencyRecord("fp-e-1", 0, 0)
    assert set(loaded.records) == {"e-1", "e-2", "e-3"}
    assert loaded.customers == {"c-1": (1, b'{"a":1}')}
    assert loaded.responses.get("e-4") is None
    assert store.round_trips == trips + 1, "an event without a record reads no response"
    assert loaded.responses.get("e-1") == b'[["t","one"]]'
    assert dict(loaded.responses) == {"e-1": b'[["t","one"]]', "e-2": b"", "e-3": b"[]"}
    assert store.round_trips == trips + 2, "the responses of a loaded batch are read once, in one trip"


def test_a_commit_that_fails_writes_nothing_not_even_the_claims_it_made_first(
    client: redis.Redis, prefix: str
) -> None:
    store = make_store(client, prefix)
    assert store.commit(BatchWrite(claims=[claim("e-1", 0, b"first")]))
    before = key_classes(client, prefix)
    taken = BatchWrite(
        expected_versions={"c-1": 0},
        customers={"c-1": b"x"},
        claims=[claim("e-2", 1, b"x"), claim("e-3", 2, b"x"), claim("e-1", 9, b"second")],
        timer_adds=[(0, "m", 5)],
        counter_increments={"psp:x": 1},
        counter_ttl_ms=60_000,
    )
    assert store.commit(taken) is False
    stale = BatchWrite(expected_versions={"c-1": 3}, customers={"c-1": b"x"}, claims=[claim("e-4", 3, b"x")])
    assert store.commit(stale) is False
    assert key_classes(client, prefix) == before
    loaded = store.load(["e-1", "e-2", "e-3", "e-4"], ["c-1"])
    assert set(loaded.records) == {"e-1"} and loaded.records["e-1"].offset == 0
    assert dict(loaded.responses) == {"e-1": b"first"}
    assert loaded.customers == {"c-1": (0, None)}


def test_a_commit_whose_reply_is_lost_still_replays_its_responses_and_is_not_overwritten(
    client: redis.Redis, prefix: str
) -> None:
    """Redis ran the script but the reply never arrived (a restart, a dropped connection): the shard's batch
    fails and is replayed. The replay must get the stored first responses back, and the store's next batch
    must not write over them."""
    store = make_store(client, prefix)
    execute = store._execute

    def reply_lost(packed: bytes, *, resend: bool = True) -> object:
        execute(packed, resend=resend)
        raise redis.ConnectionError("Connection closed by server.")

    store._execute = reply_lost  # type: ignore[method-assign]
    with pytest.raises(ServiceError):
        store.commit(BatchWrite(claims=[claim("e-1", 0, b"first"), claim("e-2", 1, b"second")]))
    store._execute = execute  # type: ignore[method-assign]
    assert store.commit(BatchWrite(claims=[claim("e-3", 2, b"third")]))
    loaded = store.load(["e-1", "e-2", "e-3"], [])
    assert dict(loaded.responses) == {"e-1": b"first", "e-2": b"second", "e-3": b"third"}
    assert store.commit(BatchWrite(release_responses=["e-1", "e-2", "e-3"]))
    assert key_classes(client, prefix) == {"idempotency": 3}


def test_a_commit_that_times_out_is_sent_once_and_its_responses_still_replay(
    services: Services, prefix: str
) -> None:
    """A commit whose reply does not come in time has an unknown outcome, even on a client whose retry
    policy resends commands: Redis may still run the script. Sent again, the script would find its own
    claims and fail as a conflict; the shard would then reload, find the events already claimed by a batch
    the store thinks released, and replay them without their first responses. So the store raises, and
    the batch's replay gets its responses back once Redis has run the script."""
    client = redis.Redis.from_url(services.redis_url, socket_timeout=0.3, retry=Retry(NoBackoff(), 3))
    store = make_store(client, prefix)
    # a first commit loads the commit script into Redis (``load`` does not) and opens a connection: the
    # timed-out commit's EVALSHA must find the script, or Redis answers NOSCRIPT and runs nothing
    assert store.commit(BatchWrite(claims=[claim("e-warm", 9, b"warm")]))
    try:
        # Redis is running a busy script: the commit's reply cannot come in time
        with redis_held_busy(services.redis_url, 1.2), pytest.raises(ServiceError):
            store.commit(BatchWrite(claims=[claim("e-1", 0, b"first"), claim("e-2", 1, b"second")]))
        idem = keyspace.idempotency(prefix, "e-1")
        deadline = time.monotonic() + 5
        while not client.exists(idem):  # Redis runs the command it read before the connection closed
            assert time.monotonic() < deadline, "Redis never ran the commit whose reply was lost"
            time.sleep(0.05)
        loaded = store.load(["e-1", "e-2"], [])
        assert set(loaded.records) == {"e-1", "e-2"}
        assert dict(loaded.responses) == {"e-1": b"first", "e-2": b"second"}
    finally:
        client.close()


def test_the_store_packs_its_own_commands_and_survives_a_flushed_script_and_a_dropped_connection(
    client: redis.Redis, services: Services, prefix: str
) -> None:
    """The store sends its load and commit packed by itself on the client's pooled connections: a Redis
    that lost its scripts (a restart) gets the commit script again, and a connection the server dropped
    is replaced, as for redis-py's own commands."""
    store = make_store(client, prefix)
    client.script_flush()
    assert store.commit(BatchWrite(expected_versions={"c-1": 0}, customers={"c-1": b'{"a":1}'}))
    killer = redis.Redis.from_url(services.redis_url)
    try:
        assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
        loaded = store.load(["e-1"], ["c-1"])
        assert loaded.customers == {"c-1": (1, b'{"a":1}')} and not loaded.records
        killer.client_kill_filter(_type="normal", skipme=True)
        assert store.commit(
            BatchWrite(
                expected_versions={"c-1": 1},
                customers={"c-1": b'{"a":2}'},
                claims=[claim("e-1", 0, b"first")],
                counter_increments={"psp:x|s|0|a": 2},
                counter_ttl_ms=60_000,
            )
        )
    finally:
        killer.close()
    assert client.get(keyspace.customer(prefix, "c-1")) == b'2|{"a":2}'
    assert client.get(keyspace.below(prefix, "psp:x|s|0|a")) == b"2"
    assert store.load(["e-1"], []).records["e-1"] == IdempotencyRecord("fp-e-1", 0, 0)


def test_a_batch_of_responses_goes_once_every_one_of_its_events_is_released(
    client: redis.Redis, prefix: str
) -> None:
    store = make_store(client, prefix)
    assert store.commit(BatchWrite(claims=[claim("e-1", 0, b"1"), claim("e-2", 1, b"2")]))
    assert store.commit(BatchWrite(claims=[claim("e-3", 2, b"3")]))
    assert key_classes(client, prefix)["batch_responses"] == 2
    assert store.commit(BatchWrite(release_responses=["e-1", "never-stored"]))
    assert key_classes(client, prefix)["batch_responses"] == 2, "e-2 of the first batch still waits"
    loaded = store.load(["e-1", "e-2", "e-3"], [])
    assert dict(loaded.responses) == {"e-2": b"2", "e-3": b"3"}, "a released response is gone"
    assert store.commit(BatchWrite(release_responses=["e-2", "e-3"]))
    assert key_classes(client, prefix) == {"idempotency": 3}
    loaded = store.load(["e-1", "e-2", "e-3"], [])
    assert set(loaded.records) == {"e-1", "e-2", "e-3"} and dict(loaded.responses) == {}
    assert len(store.pending) == 0


def test_an_erased_customer_document_is_deleted(client: redis.Redis, prefix: str) -> None:
    store = make_store(client, prefix)
    assert store.commit(BatchWrite(expected_versions={"c-1": 0}, customers={"c-1": b"{}"}))
    assert store.commit(BatchWrite(expected_versions={"c-1": 1}, customers={"c-1": b""}))
    assert store.load([], ["c-1"]).customers == {"c-1": (0, None)}
    assert store.commit(BatchWrite(expected_versions={"c-1": 0}, customers={"c-1": b"{}"}))


# --- the shard on both stores, and on a Redis of the previous layout ---------------------------------

_T0_MS = 1_767_225_600_000


def campaign_batches(n_batches: int, size: int) -> list[ShardBatch]:
    gen = CampaignGenerator(loadtest_mix(customers=300), seed=11, run_id=f"store-{uuid.uuid4().hex[:6]}")
    events = list(gen.events(n_batches * size))
    out = []
    for b in range(n_batches):
        batch = ShardBatch("clickcash.events")
        for i in range(b * size, (b + 1) * size):
            batch.partitions.append(i % 2)
            batch.offsets.append(i // 2)
            batch.keys.append(events[i].key)
            batch.values.append(events[i].value)
            batch.timestamps_ms.append(_T0_MS + i)
        out.append(batch)
    return out


def make_shard(store: StateStore) -> Shard:
    settings = load_settings()
    k = settings.kafka
    topics = OutputTopics(k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic)
    fixed = datetime(2026, 1, 1, tzinfo=UTC)
    return Shard(0, topics, load_domain_config(settings.domain_file), store, clock=lambda: fixed)


def outputs(result: ShardResult) -> list[tuple[str, bytes | None, bytes, object]]:
    return list(zip(result.topics, result.keys, result.values, result.headers, strict=True))


def test_the_shard_gives_the_same_outputs_on_redis_as_in_memory_replays_and_release_included(
    client: redis.Redis, prefix: str
) -> None:
    batches = campaign_batches(3, 200)
    on_redis, in_memory = make_shard(make_store(client, prefix)), make_shard(InMemoryStateStore())
    first = []
    for b in batches:
        a, m = on_redis.apply(b), in_memory.apply(b)
        assert outputs(a) == outputs(m) and a.counts == m.counts
        first.append(a)
    assert first[1].counts.get("processed", 0) > 150
    # the router's transaction failed: it replays the last batch, with the same offsets
    again_a, again_m = on_redis.apply(batches[2]), in_memory.apply(batches[2])
    assert outputs(again_a) == outputs(again_m) == outputs(first[2])
    assert again_a.counts == again_m.counts and again_a.counts.get("replayed", 0) > 150
    assert key_classes(client, prefix)["batch_responses"] == 3
    # every offset committed: the next batch releases every stored response, one UNLINK per batch
    done = ShardBatch("clickcash.events", committed={0: 300, 1: 300})
    on_redis.apply(done)
    in_memory.apply(done)
    assert key_classes(client, prefix)["batch_responses"] == 0
    assert on_redis.stored_responses() == in_memory.stored_responses() == 0


def test_a_redis_of_the_previous_layout_still_replays_its_stored_responses_exactly_once(
    client: redis.Redis, prefix: str
) -> None:
    """Upgrades read both layouts: records ``<fp>|<partition>|<offset>`` with one ``resp:<event id>`` each
    (as the previous version wrote them) block re-claims and replay the stored outputs byte for byte."""
    [batch] = campaign_batches(1, 200)
    first = make_shard(make_store(client, prefix)).apply(batch)
    # rewrite what the new layout wrote into the previous one, keeping the TTLs' order of magnitude
    for key in list(client.scan_iter(match=keyspace.idempotency(prefix, "*"))):
        record, _ = decode_record(cast(bytes, client.get(key)))
        client.set(key, record.encode(), ex=RETENTION_S)
    for key in list(client.scan_iter(match=keyspace.batch_responses(prefix, "*"))):
        for eid, response in unpack_responses(cast(bytes, client.get(key))).items():
            client.set(keyspace.response(prefix, eid), response, ex=RESPONSE_TTL_S)
        client.delete(key)
    assert key_classes(client, prefix)["batch_responses"] == 0
    assert key_classes(client, prefix)["response"] > 150

    upgraded = make_shard(make_store(client, prefix))  # a new instance, as after a deployment
    replay = upgraded.apply(batch)
    assert outputs(replay) == outputs(first)
    assert replay.counts.get("replayed", 0) == first.counts.get("processed", 0)
    assert replay.counts.get("processed", 0) == 0
