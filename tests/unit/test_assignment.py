"""Customer -> shard assignment: jump consistent hashing over a stable digest of the Kafka key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickcash.router.assignment import jump_hash, shard_for

KEYS_10K = [f"customer-{i:05d}".encode() for i in range(10_000)]

# Generated from the reference C++ implementation (Lamping & Veach), as published in the test of
# github.com/dgryski/go-jump: bucket for buckets = 1, 2, 3, ...
JUMP_REFERENCE = {
    0: [0] * 20,
    1: [0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 17, 17],
    0xDEADBEEF: [0, 1, 2, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 16, 16, 16],
    0x0DDC0FFEEBADF00D: [0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 15, 15, 15, 15],
}

# Pinned assignments: a change here re-shards every customer of a running deployment.
PINNED_SHARDS = [2, 3, 4, 8, 16, 100, 1000]
PINNED = {
    b"alice": [0, 2, 3, 5, 5, 72, 197],
    b"bob": [0, 2, 3, 5, 9, 40, 592],
    b"c-000001": [0, 2, 3, 4, 4, 71, 594],
    b"customer-42": [0, 2, 2, 2, 14, 68, 417],
    b"run-c000007": [0, 0, 0, 0, 0, 52, 165],
    "Zoë".encode(): [1, 1, 3, 6, 14, 49, 421],
}


@pytest.mark.parametrize("key", sorted(JUMP_REFERENCE))
def test_jump_hash_matches_the_reference_implementation(key: int) -> None:
    expected = JUMP_REFERENCE[key]
    assert [jump_hash(key, n) for n in range(1, len(expected) + 1)] == expected


@pytest.mark.parametrize("key", sorted(PINNED))
def test_shard_for_is_pinned(key: bytes) -> None:
    assert [shard_for(key, n) for n in PINNED_SHARDS] == PINNED[key]


@pytest.mark.parametrize("buckets", [0, -1])
def test_jump_hash_rejects_no_buckets(buckets: int) -> None:
    with pytest.raises(ValueError, match="buckets"):
        jump_hash(123, buckets)


@given(key=st.binary(max_size=64), shards=st.integers(min_value=1, max_value=5000))
def test_shard_is_in_range_and_deterministic(key: bytes, shards: int) -> None:
    s = shard_for(key, shards)
    assert 0 <= s < shards
    assert shard_for(bytes(key), shards) == s


@given(key=st.integers(min_value=0, max_value=2**64 - 1))
def test_one_bucket_owns_everything(key: int) -> None:
    assert jump_hash(key, 1) == 0


@pytest.mark.parametrize("shards", [4, 10, 37])
def test_distribution_is_roughly_uniform(shards: int) -> None:
    counts = [0] * shards
    for key in KEYS_10K:
        counts[shard_for(key, shards)] += 1
    expected = len(KEYS_10K) / shards
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    # chi-square critical values at p = 0.001 for shards - 1 degrees of freedom
    critical = {4: 16.27, 10: 27.88, 37: 67.99}[shards]
    assert chi2 < critical, f"chi2={chi2:.1f} counts={counts}"
    assert min(counts) > 0.8 * expected
    assert max(counts) < 1.2 * expected


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 15])
def test_growing_by_one_moves_about_one_in_n_plus_one_and_only_to_the_new_shard(n: int) -> None:
    moved = 0
    for key in KEYS_10K:
        before, after = shard_for(key, n), shard_for(key, n + 1)
        if before != after:
            assert after == n, f"{key!r} moved {before}->{after} when growing {n}->{n + 1}"
            moved += 1
    share = moved / len(KEYS_10K)
    p = 1 / (n + 1)
    sd = (p * (1 - p) / len(KEYS_10K)) ** 0.5
    assert abs(share - p) < 5 * sd, f"moved {share:.4f} of keys, expected ~{p:.4f}"


@given(key=st.binary(max_size=40), n=st.integers(min_value=1, max_value=300))
def test_growth_moves_a_key_only_onto_the_new_shard(key: bytes, n: int) -> None:
    assert shard_for(key, n + 1) in (shard_for(key, n), n)


@given(key=st.binary(max_size=40))
def test_shrinking_8_to_3_moves_only_keys_of_removed_shards(key: bytes) -> None:
    before, after = shard_for(key, 8), shard_for(key, 3)
    if before < 3:
        assert after == before
    else:
        assert 0 <= after < 3


def test_shrinking_8_to_3_keeps_every_surviving_shards_keys() -> None:
    kept = moved = 0
    for key in KEYS_10K:
        before, after = shard_for(key, 8), shard_for(key, 3)
        if before < 3:
            assert after == before
            kept += 1
        else:
            moved += 1
    # about 3/8 of the keys lived on the surviving shards
    assert abs(kept / len(KEYS_10K) - 3 / 8) < 0.03
    assert kept + moved == len(KEYS_10K)
