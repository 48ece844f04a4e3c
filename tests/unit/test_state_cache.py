"""The shard's cache of decoded customer states: never used unless it is exactly what the store holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from clickcash.actors.contract import OutputTopics, ShardBatch, ShardResult
from clickcash.actors.shard import Shard
from clickcash.actors.state.base import BatchWrite, CustomerState, InMemoryStateStore, LoadedBatch, StateCache
from clickcash.config.domain import DomainConfig
from clickcash.loadtest.traffic.campaign import CampaignGenerator, loadtest_mix

TOPICS = OutputTopics("clickcash.orders", "clickcash.payments", "clickcash.dunning", "clickcash.dlq")
START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
BatchFactory = Callable[..., ShardBatch]
EventFactory = Callable[..., bytes]
DataFactory = Callable[..., dict[str, Any]]


def _shard(domain: DomainConfig, store: Any, cache: int, shard_id: int = 0) -> Shard:
    return Shard(
        shard_id,
        TOPICS,
        domain,
        store,
        clock=lambda: START,  # dead letters' ce_time reads the clock: the same in every run
        psp_stats_refresh_ms=0,
        state_cache_customers=cache,
    )


def _outputs(result: ShardResult) -> list[tuple[str, bytes | None, bytes, Any]]:
    return list(zip(result.topics, result.keys, result.values, result.headers, strict=True))


def test_cached_and_uncached_shards_give_byte_identical_outputs_and_documents(
    domain: DomainConfig, shard_batch: BatchFactory
) -> None:
    """Hot customers (Zipf skew over 100 customers) come back batch after batch, so the cache is hit."""
    gen = CampaignGenerator(loadtest_mix(customers=100, duplicate_rate=0.03, malformed_rate=0.01), seed=5)
    events = [gen.next_event() for _ in range(3_000)]
    batches = [
        shard_batch([(0, s + i, e.key, e.value) for i, e in enumerate(events[s : s + 100])])
        for s in range(0, len(events), 100)
    ]
    runs = []
    for size in (0, 1_000):
        store = InMemoryStateStore(clock=lambda: 1_000.0)
        shard = _shard(domain, store, size)
        runs.append(([_outputs(shard.apply(b)) for b in batches], dict(store.customers), shard.state_cache))
    (plain_out, plain_docs, plain_cache), (cached_out, cached_docs, cache) = runs
    assert cached_out == plain_out
    assert cached_docs == plain_docs
    assert plain_cache.hits == 0
    assert cache.hits > cache.misses > 0


def test_a_cached_state_is_what_decoding_its_document_gives(
    domain: DomainConfig, shard_batch: BatchFactory
) -> None:
    gen = CampaignGenerator(loadtest_mix(customers=50), seed=9)
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    shard = _shard(domain, store, 1_000)
    events = [gen.next_event() for _ in range(1_000)]
    for s in range(0, len(events), 100):
        shard.apply(shard_batch([(0, s + i, e.key, e.value) for i, e in enumerate(events[s : s + 100])]))
    assert len(shard.state_cache) == len(store.customers)
    for cid, (version, doc) in store.customers.items():
        state = shard.state_cache.take(cid, version, doc)
        assert state is not None
        assert state == CustomerState.decode(doc)


def test_take_refuses_another_version_or_other_bytes_and_forgets_the_entry() -> None:
    cache = StateCache(10)
    state = CustomerState(timezone="Europe/Berlin")
    doc = state.encode()
    cache.put("c-1", 3, doc, state)
    assert cache.take("c-1", 4, doc) is None, "a newer version in the store: the cached state is stale"
    cache.put("c-1", 3, doc, state)
    assert cache.take("c-1", 3, CustomerState().encode()) is None, "same version, other bytes: a miss"
    cache.put("c-1", 3, doc, state)
    assert cache.take("c-1", 3, None) is None, "the key is gone from the store"
    cache.put("c-1", 3, doc, state)
    assert cache.take("c-1", 3, doc) is state
    assert cache.take("c-1", 3, doc) is None, "a taken state is out until its batch commits"
    assert (cache.hits, cache.misses) == (1, 4)


def test_the_cache_keeps_the_most_recently_committed_customers() -> None:
    cache = StateCache(2)
    for cid in ("a", "b", "c"):
        cache.put(cid, 1, b"{}", CustomerState())
    assert len(cache) == 2
    assert cache.take("a", 1, b"{}") is None
    assert cache.take("c", 1, b"{}") is not None
    assert StateCache(0).take("a", 1, b"{}") is None
    disabled = StateCache(0)
    disabled.put("a", 1, b"{}", CustomerState())
    assert len(disabled) == 0


def _order_then(
    cloud_event: EventFactory, event_data: DataFactory, n: int, units: int
) -> tuple[bytes, bytes]:
    """An order of ``units`` units of the campaign (the per-campaign quantity guard reads the state)."""
    data = event_data(
        "order.placed",
        order_id=f"o-{n}",
        items=[{"sku": "sku-1", "quantity": units, "unit_price_cents": 100}],
        total_cents=units * 100,
    )
    return b"c-1", cloud_event("order.placed", data, event_id=f"e-{n}")


def test_a_write_by_another_shard_is_seen_not_the_cached_state(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory, shard_batch: BatchFactory
) -> None:
    """Shard A caches c-1, shard B (a takeover) changes c-1, A gets c-1 back: A must decide on B's state."""
    records = [_order_then(cloud_event, event_data, n, 2) for n in range(3)]
    batches = [shard_batch([(0, n, k, v)]) for n, (k, v) in enumerate(records)]

    reference_store = InMemoryStateStore(clock=lambda: 1_000.0)
    reference = _shard(domain, reference_store, 0)
    expected = [_outputs(reference.apply(b)) for b in batches]

    store = InMemoryStateStore(clock=lambda: 1_000.0)
    a, b = _shard(domain, store, 100), _shard(domain, store, 100, shard_id=1)
    got = [_outputs(a.apply(batches[0])), _outputs(b.apply(batches[1])), _outputs(a.apply(batches[2]))]
    assert got == expected
    assert store.customers == reference_store.customers
    assert a.state_cache.misses == 2, "first sight, then the version B wrote"


class _InterleavingStore:
    """Runs another shard's batch between this shard's load and its first commit: a real conflict."""

    def __init__(self, inner: InMemoryStateStore, meanwhile: Callable[[], None]) -> None:
        self._inner = inner
        self._meanwhile: Callable[[], None] | None = meanwhile
        self.round_trips = 0
        self.failed_commits = 0

    def load(
        self, event_ids: Sequence[str], customer_ids: Sequence[str], counter_keys: Sequence[str] = ()
    ) -> LoadedBatch:
        return self._inner.load(event_ids, customer_ids, counter_keys)

    def commit(self, write: BatchWrite) -> bool:
        if self._meanwhile is not None:
            run, self._meanwhile = self._meanwhile, None
            run()
        ok = self._inner.commit(write)
        self.failed_commits += not ok
        return ok


def test_a_conflicting_commit_leaves_no_cached_state_behind(
    domain: DomainConfig, cloud_event: EventFactory, event_data: DataFactory, shard_batch: BatchFactory
) -> None:
    records = [_order_then(cloud_event, event_data, n, 2) for n in range(4)]
    batches = [shard_batch([(0, n, k, v)]) for n, (k, v) in enumerate(records)]
    reference_store = InMemoryStateStore(clock=lambda: 1_000.0)
    reference = _shard(domain, reference_store, 0)
    expected = [_outputs(reference.apply(b)) for b in batches]
    expected_docs = dict(reference_store.customers)

    store = InMemoryStateStore(clock=lambda: 1_000.0)
    other = _shard(domain, store, 100, shard_id=1)
    a = _shard(domain, store, 100)
    got = [_outputs(a.apply(batches[0]))]
    got.append(_outputs(a.apply(batches[1])))
    # a's batch 3 loads c-1, then batch 2 commits through another shard before a commits: a must retry
    # on the new state, and the state it worked on in the failed attempt must not be cached
    a._store = _InterleavingStore(store, lambda: got.append(_outputs(other.apply(batches[2]))))
    got.append(_outputs(a.apply(batches[3])))
    assert a._store.failed_commits == 1
    assert got == expected
    assert store.customers == expected_docs
    version, doc = store.customers["c-1"]
    cached = a.state_cache.take("c-1", version, doc)
    assert cached == CustomerState.decode(doc)


def test_card_retries_are_bounded_and_every_cap_is_decided_as_with_all_of_them() -> None:
    """A hot card's retry history stops growing at ``MAX_CARD_RETRIES`` (even with out-of-order times),
    and "at least N in the window" answers, for every N the config may set, stay those of the full list."""
    bounded = CustomerState()
    full: list[int] = []
    now = 1_772_443_800_000
    times = [now + (i * 7_919 % 1_000) * 60_000 for i in range(3 * CustomerState.MAX_CARD_RETRIES)]
    for t in times:
        bounded.record_retry(t)
        full = [x for x in full if t - x < CustomerState.RETRY_WINDOW_MS] + [t]
        assert len(bounded.card_retries_ms) <= CustomerState.MAX_CARD_RETRIES
        for window in (3_600_000, 86_400_000, CustomerState.RETRY_WINDOW_MS):
            true_count = sum(1 for x in full if t - x < window)
            kept = bounded.retries_made(t, window)
            assert kept == min(true_count, CustomerState.MAX_CARD_RETRIES)
    assert len(bounded.card_retries_ms) == CustomerState.MAX_CARD_RETRIES


def test_the_config_cannot_set_a_cap_the_bounded_history_could_not_decide() -> None:
    from clickcash.config.domain import MAX_NETWORK_RETRY_CAP, NetworkRetryLimit

    assert CustomerState.MAX_CARD_RETRIES >= MAX_NETWORK_RETRY_CAP
    NetworkRetryLimit(max_retries_30d=MAX_NETWORK_RETRY_CAP)
    with pytest.raises(ValidationError, match="max_retries_30d"):
        NetworkRetryLimit(max_retries_30d=MAX_NETWORK_RETRY_CAP + 1)
