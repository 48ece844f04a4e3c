"""Shard state: the store protocol and the in-memory store (base), the Redis store (redis)."""
