"""The Redis-backed state store: one MGET per batch to load, one Lua call per batch to commit.

The same two round trips carry the shared PSP outcome counters: read with the batch's MGET, incremented
by its commit, so an outcome of a replayed batch is never counted twice.

Customer documents are stored as ``<version>|<json>`` so the commit script can check versions without
decoding JSON; every write sets the document's expiry afresh (``pipeline.customer_ttl_s`` since the
customer's last activity); an empty document (a customer erased by ``clickcash forget``) deletes the key.
Idempotency records expire after the retention; first responses expire after
the (shorter) replay TTL and are deleted earlier, once the router reports their offsets committed. Keys of
one batch span many customers, so this needs standalone Redis (with replicas or Sentinel), not Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import redis

from clickcash.actors import keyspace
from clickcash.actors.state.base import BatchWrite, IdempotencyRecord, LoadedBatch, timer_key
from clickcash.errors import map_exceptions

_COMMIT_LUA = """
local nc = tonumber(ARGV[1])
local ni = tonumber(ARGV[2])
local nr = tonumber(ARGV[3])
local retention = ARGV[4]
local resp_ttl = ARGV[5]
local cust_ttl = tonumber(ARGV[6])
local a = 7
for i = 1, nc do
  local cur = redis.call('GET', KEYS[i])
  local v = 0
  if cur then v = tonumber(string.match(cur, '^(%d+)|')) end
  if v ~= tonumber(ARGV[a + i - 1]) then return 0 end
end
for i = 1, ni do
  if redis.call('EXISTS', KEYS[nc + i]) == 1 then return 0 end
end
for i = 1, nc do
  local v = tonumber(ARGV[a + i - 1]) + 1
  if ARGV[a + nc + i - 1] == '' then
    redis.call('DEL', KEYS[i])
  elseif cust_ttl > 0 then
    redis.call('SET', KEYS[i], v .. '|' .. ARGV[a + nc + i - 1], 'EX', cust_ttl)
  else
    redis.call('SET', KEYS[i], v .. '|' .. ARGV[a + nc + i - 1])
  end
end
local b = a + 2 * nc
for i = 1, ni do
  redis.call('SET', KEYS[nc + i], ARGV[b + i - 1], 'EX', retention)
  redis.call('SET', KEYS[nc + ni + i], ARGV[b + ni + i - 1], 'EX', resp_ttl)
end
for i = 1, nr do
  redis.call('UNLINK', KEYS[nc + 2 * ni + i])
end
local nta = tonumber(ARGV[b + 2 * ni])
local ntr = tonumber(ARGV[b + 2 * ni + 1])
local k = nc + 2 * ni + nr
local t = b + 2 * ni + 2
for i = 1, ntr do
  redis.call('ZREM', KEYS[k + i], ARGV[t + i - 1])
end
k = k + ntr
t = t + ntr
for i = 1, nta do
  redis.call('ZADD', KEYS[k + i], ARGV[t + 2 * (i - 1)], ARGV[t + 2 * (i - 1) + 1])
end
k = k + nta
t = t + 2 * nta
local nci = tonumber(ARGV[t])
local counter_ttl = ARGV[t + 1]
t = t + 2
for i = 1, nci do
  redis.call('INCRBY', KEYS[k + i], ARGV[t + i - 1])
  redis.call('PEXPIRE', KEYS[k + i], counter_ttl)
end
return 1
"""


class RedisStateStore:
    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        retention_s: int,
        response_ttl_s: int,
        customer_ttl_s: int = 0,
    ) -> None:
        self._r = client
        self._p = key_prefix
        self._retention_s = retention_s
        self._response_ttl_s = response_ttl_s
        self._customer_ttl_s = customer_ttl_s
        """a customer's state expires this long after its last write (0: never)"""
        with map_exceptions("redis", redis.RedisError):
            self._commit = self._r.register_script(_COMMIT_LUA)
        self.round_trips = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        key_prefix: str,
        retention_s: int,
        response_ttl_s: int,
        timeout_s: float = 5.0,
        customer_ttl_s: int = 0,
    ) -> RedisStateStore:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(client, key_prefix, retention_s, response_ttl_s, customer_ttl_s)

    def _idem(self, eid: str) -> str:
        return keyspace.idempotency(self._p, eid)

    def _resp(self, eid: str) -> str:
        return keyspace.response(self._p, eid)

    def _cust(self, cid: str) -> str:
        return keyspace.customer(self._p, cid)

    def _counter(self, key: str) -> str:
        return keyspace.below(self._p, key)

    def load(
        self, event_ids: Sequence[str], customer_ids: Sequence[str], counter_keys: Sequence[str] = ()
    ) -> LoadedBatch:
        keys = (
            [self._idem(e) for e in event_ids]
            + [self._resp(e) for e in event_ids]
            + [self._cust(c) for c in customer_ids]
            + [self._counter(k) for k in counter_keys]
        )
        if not keys:
            return LoadedBatch({}, {}, {})
        self.round_trips += 1
        with map_exceptions("redis", redis.RedisError):
            values = cast(list[bytes | None], self._r.mget(keys))
        n = len(event_ids)
        records = {
            eid: IdempotencyRecord.decode(raw)
            for eid, raw in zip(event_ids, values[:n], strict=True)
            if raw is not None
        }
        responses = {
            eid: raw for eid, raw in zip(event_ids, values[n : 2 * n], strict=True) if raw is not None
        }
        m = 2 * n + len(customer_ids)
        counters = {
            k: int(raw) if raw is not None else 0 for k, raw in zip(counter_keys, values[m:], strict=True)
        }
        customers: dict[str, tuple[int, bytes | None]] = {}
        for cid, raw in zip(customer_ids, values[2 * n : m], strict=True):
            if raw is None:
                customers[cid] = (0, None)
            else:
                ver, _, doc = raw.partition(b"|")
                customers[cid] = (int(ver), doc)
        return LoadedBatch(records, responses, customers, counters)

    def commit(self, write: BatchWrite) -> bool:
        if write.is_empty():
            return True
        cids = list(write.customers)
        keys = (
            [self._cust(c) for c in cids]
            + [self._idem(e) for e, _, _ in write.claims]
            + [self._resp(e) for e, _, _ in write.claims]
            + [self._resp(e) for e in write.release_responses]
            + [timer_key(self._p, p) for p, _ in write.timer_removes]
            + [timer_key(self._p, p) for p, _, _ in write.timer_adds]
            + [self._counter(k) for k in write.counter_increments]
        )
        args: list[bytes | str | int] = [
            len(cids),
            len(write.claims),
            len(write.release_responses),
            self._retention_s,
            self._response_ttl_s,
            self._customer_ttl_s,
        ]
        args += [write.expected_versions.get(c, 0) for c in cids]
        args += [write.customers[c] for c in cids]
        args += [rec.encode() for _, rec, _ in write.claims]
        args += [resp for _, _, resp in write.claims]
        args += [len(write.timer_adds), len(write.timer_removes)]
        args += [member for _, member in write.timer_removes]
        for _, member, due_ms in write.timer_adds:
            args += [due_ms, member]
        args += [len(write.counter_increments), max(write.counter_ttl_ms, 1)]
        args += list(write.counter_increments.values())
        self.round_trips += 1
        with map_exceptions("redis", redis.RedisError):
            return bool(self._commit(keys=keys, args=args))

    def close(self) -> None:
        self._r.close()
