"""Which shard owns a customer: jump consistent hashing over a stable 64-bit digest of the customer ID.

Pure and deterministic across processes and machines (it never uses Python's salted ``hash``). Growing from
N to N+1 shards moves only ~1/(N+1) of customers, all of them onto the new shard; shrinking by removing the
highest-numbered shards moves only the customers those shards owned (Lamping & Veach, 2014).
"""

from __future__ import annotations

from hashlib import blake2b

_MULT = 2862933555777941757
_MASK = (1 << 64) - 1


def _digest64(customer_key: bytes) -> int:
    return int.from_bytes(blake2b(customer_key, digest_size=8).digest(), "little")


def jump_hash(key: int, buckets: int) -> int:
    """Map a 64-bit key to a bucket in ``[0, buckets)``."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _MULT + 1) & _MASK
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def shard_for(customer_key: bytes, shards: int) -> int:
    """The shard index that owns ``customer_key`` (the Kafka key bytes) among ``shards`` shards."""
    return jump_hash(_digest64(customer_key), shards)
