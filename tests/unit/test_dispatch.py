"""The router's pure bookkeeping: splitting a consumed batch per shard, and committable offsets."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickcash.actors.contract import ShardBatch
from clickcash.router._dispatch import OffsetTracker, RawRecord, split_by_shard
from clickcash.router.assignment import shard_for

TOPIC = "clickcash.events"

keys = st.one_of(st.none(), st.sampled_from([f"c-{i}".encode() for i in range(40)]), st.binary(max_size=12))


@st.composite
def consumed_batches(draw: st.DrawFn) -> list[RawRecord]:
    """Records as a consumer returns them: offsets increase per partition, partitions interleave."""
    drawn = draw(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=3), keys, st.one_of(st.none(), st.binary(max_size=4))
            ),
            max_size=80,
        )
    )
    next_offset: dict[int, int] = defaultdict(int)
    records: list[RawRecord] = []
    for i, (p, key, value) in enumerate(drawn):
        records.append((p, next_offset[p], key, value, 1_000 + i))
        next_offset[p] += 1 + i % 3  # gaps, as after compaction or transaction markers
    return records


def _rows(batch: ShardBatch) -> list[RawRecord]:
    cols = (batch.partitions, batch.offsets, batch.keys, batch.values, batch.timestamps_ms)
    assert len({len(c) for c in cols}) == 1, "columns of a ShardBatch must have equal lengths"
    return list(zip(*cols, strict=True))


@given(records=consumed_batches(), shards=st.integers(min_value=1, max_value=9))
def test_every_record_lands_exactly_once_in_its_owners_batch_in_consumption_order(
    records: list[RawRecord], shards: int
) -> None:
    out = split_by_shard(TOPIC, records, shards)
    seen = []
    for idx, batch in out.items():
        assert 0 <= idx < shards
        assert batch.topic == TOPIC
        assert len(batch) > 0
        rows = _rows(batch)
        # per shard, the records keep their consumption order (so per customer and per partition too)
        assert rows == [r for r in records if (0 if r[2] is None else shard_for(r[2], shards)) == idx]
        seen.extend(rows)
    assert sorted(seen, key=records.index) == records
    assert len(seen) == len(records)


@given(records=consumed_batches(), shards=st.integers(min_value=1, max_value=9))
def test_cache_gives_the_same_split_and_remembers_owners(records: list[RawRecord], shards: int) -> None:
    cache: dict[bytes, int] = {}
    plain = split_by_shard(TOPIC, records, shards)
    cached_first = split_by_shard(TOPIC, records, shards, cache)
    cached_again = split_by_shard(TOPIC, records, shards, cache)
    for result in (cached_first, cached_again):
        assert {i: _rows(b) for i, b in result.items()} == {i: _rows(b) for i, b in plain.items()}
    assert cache == {r[2]: shard_for(r[2], shards) for r in records if r[2] is not None}


def test_records_without_a_key_go_to_shard_0() -> None:
    records: list[RawRecord] = [(0, 0, None, b"x", 1), (1, 5, None, None, 2), (0, 1, None, b"y", 3)]
    out = split_by_shard(TOPIC, records, 16)
    assert list(out) == [0]
    assert out[0].offsets == [0, 5, 1]
    assert out[0].partitions == [0, 1, 0]
    assert out[0].keys == [None, None, None]


def test_one_customer_keeps_its_order_across_partitions_and_shards() -> None:
    key = b"c-hot"
    owner = shard_for(key, 5)
    records: list[RawRecord] = [
        (p, o, key if o % 2 == 0 else b"other", b"v", o) for o in range(6) for p in (2, 0)
    ]
    out = split_by_shard(TOPIC, records, 5)
    hot = [(p, o) for p, o, k, _, _ in _rows(out[owner]) if k == key]
    assert hot == [(p, o) for p, o, k, _, _ in records if k == key]


def test_empty_input_gives_no_batches() -> None:
    assert split_by_shard(TOPIC, [], 4) == {}


def test_shard_batch_defaults() -> None:
    batch = ShardBatch(TOPIC)
    assert len(batch) == 0
    assert batch.committed == {}


# --- OffsetTracker ----------------------------------------------------------------------------------


def test_produced_offsets_become_pending_next_offsets() -> None:
    t = OffsetTracker()
    assert t.pending() == {}
    t.produced([0, 1, 0], [5, 3, 7])
    assert t.pending() == {0: 8, 1: 4}
    t.produced([0, 1], [6, 9])  # an older offset never lowers the watermark
    assert t.pending() == {0: 8, 1: 10}
    assert t.committed == {}


def test_pending_returns_a_copy() -> None:
    t = OffsetTracker()
    t.produced([0], [1])
    t.pending()[0] = 99
    assert t.pending() == {0: 2}


def test_mark_committed_moves_pending_to_committed() -> None:
    t = OffsetTracker()
    t.produced([0, 1], [4, 2])
    t.mark_committed()
    assert t.committed == {0: 5, 1: 3}
    assert t.pending() == {}
    t.produced([0], [10])
    t.mark_committed()
    assert t.committed == {0: 11, 1: 3}


def test_discard_forgets_uncommitted_progress_only() -> None:
    t = OffsetTracker()
    t.produced([0, 1, 2], [1, 1, 1])
    t.mark_committed()
    t.produced([0, 1, 2], [5, 6, 7])
    t.discard([1])
    assert t.pending() == {0: 6, 2: 8}
    assert t.committed == {0: 2, 1: 2, 2: 2}
    t.discard()
    assert t.pending() == {}
    assert t.committed == {0: 2, 1: 2, 2: 2}


def test_forget_drops_pending_and_committed_of_revoked_partitions() -> None:
    t = OffsetTracker()
    t.produced([0, 1], [1, 1])
    t.mark_committed()
    t.produced([0, 1], [3, 3])
    t.forget([1, 7])
    assert t.pending() == {0: 4}
    assert t.committed == {0: 2}


def test_produced_rejects_mismatched_columns() -> None:
    t = OffsetTracker()
    with pytest.raises(ValueError):
        t.produced([0, 1], [1])
