"""The Redis-backed state store: one MGET per batch to load, one Lua call per batch to commit.

The same two round trips carry the shared PSP outcome counters: read with the batch's MGET, incremented
by its commit, so an outcome of a replayed batch is never counted twice.

Customer documents are stored as ``<version>|<json>`` so the commit script can check versions without
decoding JSON; every write sets the document's expiry afresh (``pipeline.customer_ttl_s`` since the
customer's last activity); an empty document (a customer erased by ``clickcash forget``) deletes the key.
Idempotency records are one key per event and expire after the retention; the first responses of a batch
are one key per batch (``clickcash.actors.state.layout``), named by each event's record, that expires after
the (shorter) replay TTL and is deleted earlier, once the router reports every offset of the batch
committed. A response is read only when an event is replayed at the offset of its first sighting: the
records come with the batch's MGET, and the responses of the replayed events with one more round trip
when the shard first asks for one. Keys of one batch span many customers, so this needs standalone Redis
(with replicas or Sentinel), not Redis Cluster.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from clickcash.actors import keyspace
from clickcash.actors.state.base import BatchWrite, IdempotencyRecord, LoadedBatch, timer_key
from clickcash.actors.state.layout import (
    PendingReleases,
    decode_record,
    encode_record,
    pack_responses,
    unpack_responses,
)
from clickcash.actors.state.resp import pack_command
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
  local cur = redis.call('GETRANGE', KEYS[i], 0, 20)
  local v = 0
  if cur ~= '' then v = tonumber(string.match(cur, '^(%d+)|')) end
  if v ~= tonumber(ARGV[a + i - 1]) then return 0 end
end
local b = a + 2 * nc
for i = 1, ni do
  if not redis.call('SET', KEYS[nc + i], ARGV[b + i - 1], 'EX', retention, 'NX') then
    for j = 1, i - 1 do redis.call('DEL', KEYS[nc + j]) end
    return 0
  end
end
for i = 1, nc do
  if ARGV[a + nc + i - 1] == '' then
    redis.call('DEL', KEYS[i])
  elseif cust_ttl > 0 then
    redis.call('SET', KEYS[i], ARGV[a + nc + i - 1], 'EX', cust_ttl)
  else
    redis.call('SET', KEYS[i], ARGV[a + nc + i - 1])
  end
end
local k = nc + ni
local t = b + ni
if ni > 0 then
  redis.call('SET', KEYS[k + 1], ARGV[t], 'EX', resp_ttl)
  k = k + 1
  t = t + 1
end
for i = 1, nr do
  redis.call('UNLINK', KEYS[k + i])
end
k = k + nr
local nta = tonumber(ARGV[t])
local ntr = tonumber(ARGV[t + 1])
t = t + 2
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
"""Checks every version first (reads only: ``GETRANGE`` of the version prefix, not the whole document),
then claims every event with ``SET ... NX``: a claim that finds its record taken deletes the records this
call created and fails the commit, so nothing is written (the script is atomic; no client sees the records
in between). That saves an ``EXISTS`` per event. Documents arrive already prefixed with their new version
(``<version + 1>|<json>``), so the script copies no document into a Lua string."""


_SEND_ONCE = Retry(NoBackoff(), 0)
"""the retry policy of a command that must not be sent twice: an error drops the connection and is raised"""


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
        self._commit_sha = self._commit.sha.encode()
        self.round_trips = 0
        self._writer = secrets.token_hex(6)
        """names this store's batches of responses apart from every other store's (48 random bits)"""
        self._batches = 0
        self.pending = PendingReleases()
        """the batches of responses this store wrote and has not released yet"""

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

    def _cust(self, cid: str) -> str:
        return keyspace.customer(self._p, cid)

    def _counter(self, key: str) -> str:
        return keyspace.below(self._p, key)

    def load(
        self, event_ids: Sequence[str], customer_ids: Sequence[str], counter_keys: Sequence[str] = ()
    ) -> LoadedBatch:
        if not (event_ids or customer_ids or counter_keys):
            return LoadedBatch({}, {}, {})
        command = [b"MGET"]
        command += [self._idem(e).encode() for e in event_ids]
        command += [self._cust(c).encode() for c in customer_ids]
        command += [self._counter(k).encode() for k in counter_keys]
        self.round_trips += 1
        with map_exceptions("redis", redis.RedisError):
            values = cast(list[bytes | None], self._execute(pack_command(command)))
        n = len(event_ids)
        records: dict[str, IdempotencyRecord] = {}
        refs: dict[str, str | None] = {}
        for eid, raw in zip(event_ids, values[:n], strict=True):
            if raw is not None:
                records[eid], refs[eid] = decode_record(raw)
        m = n + len(customer_ids)
        counters = {
            k: int(raw) if raw is not None else 0 for k, raw in zip(counter_keys, values[m:], strict=True)
        }
        customers: dict[str, tuple[int, bytes | None]] = {}
        for cid, raw in zip(customer_ids, values[n:m], strict=True):
            if raw is None:
                customers[cid] = (0, None)
            else:
                ver, _, doc = raw.partition(b"|")
                customers[cid] = (int(ver), doc)
        return LoadedBatch(records, _StoredResponses(self, refs), customers, counters)

    def read_responses(self, refs: Mapping[str, str | None]) -> dict[str, bytes]:
        """The stored first responses of events by their records' batch references (None: the previous
        layout's ``resp:<event id>``), in one round trip; events whose responses are gone are left out."""
        batch_keys = sorted({ref for ref in refs.values() if ref is not None})
        legacy = [eid for eid, ref in refs.items() if ref is None]
        keys = [keyspace.batch_responses(self._p, r) for r in batch_keys]
        keys += [keyspace.response(self._p, e) for e in legacy]
        if not keys:
            return {}
        self.round_trips += 1
        with map_exceptions("redis", redis.RedisError):
            values = cast(list[bytes | None], self._r.mget(keys))
        by_batch = {
            ref: unpack_responses(raw)
            for ref, raw in zip(batch_keys, values[: len(batch_keys)], strict=True)
            if raw is not None
        }
        # a batch's key outlives the release of its first events until the last one is released: a
        # response this store already released is gone, as in the in-memory store
        mine = self._writer + "."
        out = {
            eid: by_batch[ref][eid]
            for eid, ref in refs.items()
            if ref is not None
            and ref in by_batch
            and eid in by_batch[ref]
            and (eid in self.pending or not ref.startswith(mine))
        }
        for eid, raw in zip(legacy, values[len(batch_keys) :], strict=True):
            if raw is not None:
                out[eid] = raw
        return out

    def commit(self, write: BatchWrite) -> bool:
        if write.is_empty():
            return True
        cids = list(write.customers)
        claims = write.claims
        if len({eid for eid, _, _ in claims}) != len(claims):
            # one claim per event, the last one wins (as in the in-memory store)
            claims = list({eid: (eid, rec, resp) for eid, rec, resp in claims}.values())
        # a new reference per attempt: an attempt whose outcome is unknown may have stored its batch, which
        # a later batch must not overwrite
        self._batches += 1
        batch_ref = f"{self._writer}.{self._batches}"
        released = self.pending.releasable(write.release_responses)
        keys = [self._cust(c).encode() for c in cids]
        keys += [self._idem(e).encode() for e, _, _ in claims]
        if claims:
            keys.append(keyspace.batch_responses(self._p, batch_ref).encode())
        keys += [keyspace.batch_responses(self._p, r).encode() for r in released]
        keys += [timer_key(self._p, p).encode() for p, _ in write.timer_removes]
        keys += [timer_key(self._p, p).encode() for p, _, _ in write.timer_adds]
        keys += [self._counter(k).encode() for k in write.counter_increments]
        command = [b"EVALSHA", self._commit_sha, b"%d" % len(keys), *keys]
        command += [
            b"%d" % len(cids),
            b"%d" % len(claims),
            b"%d" % len(released),
            b"%d" % self._retention_s,
            b"%d" % self._response_ttl_s,
            b"%d" % self._customer_ttl_s,
        ]
        versions = [write.expected_versions.get(c, 0) for c in cids]
        command += [b"%d" % v for v in versions]
        command += [
            b"%d|%b" % (v + 1, doc) if (doc := write.customers[c]) else b""
            for c, v in zip(cids, versions, strict=True)
        ]
        command += [encode_record(rec, batch_ref) for _, rec, _ in claims]
        if claims:
            command.append(pack_responses([(eid, resp) for eid, _, resp in claims]))
        command += [b"%d" % len(write.timer_adds), b"%d" % len(write.timer_removes)]
        command += [member.encode() for _, member in write.timer_removes]
        for _, member, due_ms in write.timer_adds:
            command += [b"%d" % due_ms, member.encode()]
        command += [b"%d" % len(write.counter_increments), b"%d" % max(write.counter_ttl_ms, 1)]
        command += [b"%d" % n for n in write.counter_increments.values()]
        packed = pack_command(command)
        self.round_trips += 1
        try:
            with map_exceptions("redis", redis.RedisError):
                try:
                    reply = self._execute(packed, resend=False)
                except NoScriptError:  # a restarted or flushed Redis: load the script and send again
                    self._r.script_load(_COMMIT_LUA)
                    reply = self._execute(packed, resend=False)
                ok = bool(reply)
        except BaseException:
            # Outcome unknown (a reply lost to a restart or a dropped connection): the script may have run.
            # Its responses then count as this store's and unreleased, so the batch's replay gets them back;
            # if it did not run there are no records, and a later release of the batch deletes nothing.
            if claims:
                self.pending.stored(batch_ref, [eid for eid, _, _ in claims])
            raise
        if ok:
            self.pending.released(write.release_responses)
            if claims:
                self.pending.stored(batch_ref, [eid for eid, _, _ in claims])
        return ok

    def _execute(self, packed: bytes, *, resend: bool = True) -> object:
        """Send one packed command (``resp.pack_command``) on a connection of the client's pool and read its
        reply. With ``resend``, the client's retry policy applies as it does to its own commands: a
        connection or timeout error drops the connection and sends again on a fresh one, up to the policy's
        retries. Without it, such an error drops the connection and is raised: the commit script is sent
        once, because a script that ran before its reply was lost would make a second send fail its
        claims, and that failure would read as a conflict instead of an unknown outcome. A command error
        (``NOSCRIPT``, a script error) is raised as redis-py raises it."""
        pool = self._r.connection_pool
        conn = pool.get_connection()

        def send() -> object:
            conn.send_packed_command([packed])
            return conn.read_response()

        retry = conn.retry if resend else _SEND_ONCE
        try:
            return retry.call_with_retry(send, lambda _error: conn.disconnect())
        finally:
            pool.release(conn)

    def close(self) -> None:
        self._r.close()


class _StoredResponses(Mapping[str, bytes]):
    """A loaded batch's stored first responses, read on first use: the shard asks only for events replayed
    at the offset of their first sighting, so a batch without replays never reads one."""

    def __init__(self, store: RedisStateStore, refs: dict[str, str | None]) -> None:
        self._store = store
        self._refs = refs
        """event id -> batch reference of its record (None: previous layout), for every loaded record"""
        self._read: dict[str, bytes] | None = None

    def _responses(self) -> dict[str, bytes]:
        if self._read is None:
            self._read = self._store.read_responses(self._refs)
        return self._read

    def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        if key not in self._refs:
            return default
        return self._responses().get(key, default)

    def __getitem__(self, key: str) -> bytes:
        if key not in self._refs:
            raise KeyError(key)
        return self._responses()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._responses())

    def __len__(self) -> int:
        return len(self._responses())
